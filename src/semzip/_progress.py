"""Progress on stderr (rich) for long work: bars for loops, spinners with elapsed time for steps
that report nothing (a faiss fit). Silent when disabled, under `semzip --quiet`, or off a terminal."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

#: Set by `semzip --quiet`: no progress output at all.
_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def _shown(enabled: bool) -> bool:
    return enabled and not _quiet and sys.stderr.isatty()


@contextlib.contextmanager
def status(label: str, enabled: bool = True) -> Iterator[Callable[[str], None]]:
    """A spinner with elapsed seconds while a step runs; yields `update(label)`."""
    if not _shown(enabled):
        yield lambda text: None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=None)
        yield lambda text: bar.update(task, description=text)


@contextlib.contextmanager
def progress_bar(label: str, total: int, enabled: bool = True) -> Iterator[Callable[..., None]]:
    """Yield `advance(n, note=None)` (`note`: a short status shown after the bar); draws a bar on
    stderr when enabled and stderr is a terminal."""
    if not _shown(enabled):
        yield lambda n, note=None: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[note]}"))
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total, note="")

        def advance(n: int, note: str | None = None) -> None:
            if note is None:
                bar.update(task, advance=n)
            else:
                bar.update(task, advance=n, note=note)

        yield advance
