"""The `semzip` command line: a thin layer over the library.

`main(argv) -> int` runs one command and is the single place where library errors become exit
codes (see `semzip._errors`), so it can be tested without a subprocess. Command groups live in their
own modules, each registering on `app`.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from .._errors import SemzipError

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


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

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

from . import _core, _embed, _eval, _search, _smic  # noqa: E402,F401  (register commands)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with `argv` (default: sys.argv[1:]) and return the exit code."""
    try:
        result = app(args=argv, prog_name="semzip", standalone_mode=False)
    except SemzipError as exc:
        stderr.print(f"semzip: error: {exc}", markup=False, highlight=False)
        return exc.exit_code
    except typer.Abort:
        stderr.print("semzip: aborted")
        return 130
    except typer.TyperException as exc:  # usage errors: typer prints them with the usage line
        exc.show()
        return exc.exit_code
    except OSError as exc:
        stderr.print(f"semzip: error: {exc.strerror or exc}: {exc.filename or ''}", markup=False)
        return 5
    return result if isinstance(result, int) else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
