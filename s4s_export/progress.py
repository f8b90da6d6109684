"""Progress bars (rich) on stderr that stay quiet when stderr is not a terminal, S4S_QUIET is set, or a
command prints JSON (`quiet()`): stdout carries only results."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")
QUIET_ENV = "S4S_QUIET"


def quiet() -> None:
    """No progress bars for the rest of this process (commands with --json call it)."""
    os.environ[QUIET_ENV] = "1"


def progress_enabled() -> bool:
    return sys.stderr.isatty() and not os.environ.get(QUIET_ENV)


def progress(items: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar on stderr."""
    if not progress_enabled():
        yield from items
        return
    total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task(escape(desc), total=total)
        for item in items:
            yield item
            bar.advance(task)


@contextmanager
def status(desc: str) -> Iterator[None]:
    """A spinner with the elapsed time on stderr while one long step (an export, a verification) runs."""
    if not progress_enabled():
        yield
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, transient=True, console=Console(stderr=True)) as bar:
        bar.add_task(escape(desc), total=None)
        yield
