"""Background runs of a session: what a run computes, how far it is, its stop switch, and
how its progress and errors are shown."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from shiny import ui


@dataclass
class Job:
    """One background run: what it computes, how far it is, and its stop switch."""

    key: dict
    total: int
    started: float = field(default_factory=time.perf_counter)
    done: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)

    def advance(self, n: int) -> None:
        self.done += n


def error_line(exc: BaseException) -> str:
    message = getattr(exc, "format_message", None)
    return message() if callable(message) else str(exc)


def progress_bar(job: Job | None, label: str):
    if job is None or job.total == 0:
        return None
    share = min(1.0, job.done / job.total)
    elapsed = time.perf_counter() - job.started
    return ui.div(
        ui.tags.progress(value=str(job.done), max=str(job.total), style="width:100%"),
        ui.span(f"{label}: {job.done} / {job.total} ({share:.0%}), {elapsed:.1f} s"),
        id=f"{label}-progress",
    )
