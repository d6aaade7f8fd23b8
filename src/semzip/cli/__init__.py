"""The `semzip` command line: a thin layer over the library.

`main(argv) -> int` runs one command and is the single place where library errors become exit
codes (see `semzip._errors`), so it can be tested without a subprocess. The app and what commands
share live in `_app`; command groups live in their own modules, each registering on `app`.
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from .._errors import SemzipError
from . import _core, _decode, _embed, _eval, _search, _smic  # noqa: F401  (they register their commands)
from ._app import app, stderr


#: Help labels of parameter types, as a person reads them (typer shows Python annotations).
_LABELS = {"bool": "", "str": "TEXT", "int": "INT", "float": "NUMBER", "path": "PATH", "Path": "PATH",
           "list[str]": "TEXT...", "list[Path]": "PATH...", "list[path]": "PATH..."}


def _command() -> Any:
    """The command tree, with help type labels PATH, INT, TEXT... instead of <Path>, <int>, <list[str]>,
    and none on flags."""
    command = typer.main.get_command(app)
    for sub in (command, *getattr(command, "commands", {}).values()):
        for param in sub.params:
            shown = param.display_type_rich(None)
            if shown and shown.startswith("<") and shown.endswith(">"):
                bare = shown[1:-1]
                label = "" if getattr(param, "is_flag", False) else _LABELS.get(bare, bare.upper())
                param.display_type_rich = lambda ctx, label=label: label
        sub.get_help_option = _unlabelled(sub.get_help_option)
    return command


def _unlabelled(get_help_option: Any) -> Any:
    """`--help` is made at parse time: give it no type label either."""
    def wrapped(ctx: Any) -> Any:
        option = get_help_option(ctx)
        if option is not None:
            option.display_type_rich = lambda ctx: ""
        return option
    return wrapped


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with `argv` (default: sys.argv[1:]) and return the exit code."""
    try:
        result = _command().main(args=argv, prog_name="semzip", standalone_mode=False)
    except SemzipError as exc:
        stderr.print(f"semzip: error: {exc}", markup=False, highlight=False)
        return exc.exit_code
    except typer.Abort:
        stderr.print("semzip: aborted")
        return 130
    except typer.TyperException as exc:  # usage errors (typer's click exceptions) print with the usage line
        show = getattr(exc, "show", None)  # typer types only its base class, which has no `show`
        if show is None:
            stderr.print(f"semzip: error: {exc.format_message()}", markup=False, highlight=False)
        else:
            show()
        return exc.exit_code
    except OSError as exc:
        stderr.print(f"semzip: error: {exc.strerror or exc}: {exc.filename or ''}", markup=False)
        return 5
    return result if isinstance(result, int) else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
