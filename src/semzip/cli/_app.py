"""The typer app and what every command module shares: consoles, the JSON options, result writers.

Command modules import from here (not from the `semzip.cli` package, which imports them)."""

from __future__ import annotations

import csv
import functools
import inspect
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_type_hints

import typer
from rich.console import Console

from .._errors import InputError
from ..codecs import Codec, load_codec

app = typer.Typer(
    name="semzip",
    help="Semantic compression of images as CLIP embeddings: a few hundred bits per image or less.\n\n"
    "Typical use: `semzip fit pq:M=32,K=256 train.npz:features -o pq.smzc`, then "
    "`semzip compress emb.npz --codec pq.smzc -o photos.smz`, `semzip info photos.smz`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)

#: One JSON convention for every command: `--json` prints JSON on stdout instead of tables and
#: sentences; `--json-out PATH` also writes the full results to a file.
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for machines on stdout (instead of tables).")]
JsonOutOpt = Annotated[Path | None, typer.Option("--json-out", help="Also write the full results as JSON to this file.")]


Command = TypeVar("Command", bound=Callable[..., Any])


def option_rules(*, excludes: tuple[tuple[str, ...], ...] = (), needs: tuple[tuple[str, str], ...] = (),
                 one_of: tuple[tuple[str, ...], ...] = ()) -> Callable[[Command], Command]:
    """Declare how a command's options relate, by parameter name; checked before the command runs.

    `excludes`: groups of which at most one may be given; `needs`: (a, b) pairs where a needs b;
    `one_of`: groups of which exactly one must be given. An option counts as given when its value
    is neither its default nor None, False or empty (0 counts: `--bits 0` is given). A broken rule
    is an InputError naming the options as typed."""

    def wrap(command: Command) -> Command:
        signature = inspect.signature(command)
        hints = get_type_hints(command, include_extras=True)
        flags = {name: _flag(name, hints.get(name)) for name in signature.parameters}

        @functools.wraps(command)
        def checked(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            given = {name for name, value in bound.arguments.items()
                     if value is not None and value is not False and value != () and value != []
                     and value != signature.parameters[name].default}
            for group in excludes:
                both = [flags[n] for n in group if n in given]
                if len(both) > 1:
                    raise InputError(f"{' and '.join(both)} cannot be given together")
            for group in one_of:
                chosen = [flags[n] for n in group if n in given]
                if len(chosen) != 1:
                    raise InputError(f"give exactly one of {', '.join(flags[n] for n in group)}"
                                     f" (got {', '.join(chosen) or 'none'})")
            for name, needed in needs:
                if name in given and needed not in given:
                    raise InputError(f"{flags[name]} needs {flags[needed]}")
            return command(*args, **kwargs)

        return checked  # type: ignore[return-value]  # same signature (functools.wraps), typer reads it

    return wrap


def _flag(name: str, hint: Any) -> str:
    """The option as typed on the command line (its first declared flag), from its typer.Option."""
    for meta in getattr(hint, "__metadata__", ()):
        decls = [d for d in getattr(meta, "param_decls", None) or () if d.startswith("--")]
        if decls:
            return decls[0]
    return "--" + name.replace("_", "-")


#: The codec file of archives written with --shared, for every command that reads archives.
CodecFileOpt = Annotated[Path | None, typer.Option("--codec", help="Codec file (.smzc) for archives that do not embed theirs.")]


def codec_file(path: Path | None) -> Codec | None:
    """The codec a `--codec FILE` option names, loaded and verified; None when not given."""
    return load_codec(path) if path is not None else None


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


def write_rows(path: Path, rows: list[Any], header: list[str], csv_rows: Any) -> None:
    """Results to a file, atomically: `rows` as JSON when the name ends in .json, as a parquet table
    of the CSV columns when it ends in .parquet, else CSV with `header` and `csv_rows` (tuples)."""
    from .._atomic import atomic_writer

    if path.suffix == ".json":
        data = json.dumps(rows).encode()
    elif path.suffix == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise InputError("writing parquet needs pyarrow: pip install 'semzip[parquet]'") from None
        table = pa.Table.from_pylist([dict(zip(header, r)) for r in csv_rows])
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        data = sink.getvalue().to_pybytes()
    else:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(csv_rows)
        data = buf.getvalue().encode()
    with atomic_writer(path) as fh:
        fh.write(data)


def chosen_ids(ids: list[str] | None, ids_file: Path | None) -> list[str]:
    """Item ids named on the command line and in a text file (one per line), in that order."""
    wanted = list(ids or [])
    if ids_file is not None:
        try:
            wanted += [line for line in ids_file.read_text(encoding="utf-8").splitlines() if line]
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read ids file {str(ids_file)!r} ({exc})") from None
    return wanted


def _print_version(value: bool) -> None:
    if value:
        from .._version import __version__

        stdout.print(f"semzip {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the version and exit."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or spinners (they are also off when stderr is not a terminal)."),
) -> None:
    """Options that apply before any command."""
    from .._progress import set_quiet

    set_quiet(quiet)
