"""A tqdm progress bar of a run: bytes and files done, rate and ETA.

Shown by default when stderr is a terminal or in a Jupyter notebook, and never in a
non-interactive job (Glue, Lambda, ECS, cron), whose logs it would only clutter. The
bar's total grows as each claimed unit's files are listed, so the ETA firms up once
every unit has been listed; files already copied by an earlier run count as done.
"""

from __future__ import annotations

import sys
import threading
from typing import IO, TYPE_CHECKING, Any, Optional

from .hooks import ExtractionHooks
from .models import FileRef, WorkUnit

if TYPE_CHECKING:
    from tqdm.std import tqdm as Tqdm


def in_notebook() -> bool:
    """True inside a Jupyter (IPython kernel) notebook."""
    shell = sys.modules.get("IPython")
    get_ipython = getattr(shell, "get_ipython", None)
    if get_ipython is None:
        return False
    return type(get_ipython()).__name__ == "ZMQInteractiveShell"


def interactive(stream: Optional[IO[str]] = None) -> bool:
    """True when a person is likely watching: a notebook, or ``stream`` (default
    stderr) is a terminal."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return in_notebook() or bool(isatty is not None and isatty())


class ProgressBar(ExtractionHooks):
    """Hooks that draw a tqdm bar of bytes (and files) done for one run.

    Args:
        dataset_id: shown as the bar's label.
        stream: where to draw (default stderr).
        notebook: draw a notebook widget (``tqdm.auto``) instead of text.
    """

    def __init__(
        self,
        dataset_id: str,
        *,
        stream: Optional[IO[str]] = None,
        notebook: bool = False,
    ) -> None:
        # Imported on use: a Lambda without a terminal never pays for it.
        from tqdm import auto, std

        bar_class: type[Tqdm[Any]] = auto.tqdm if notebook else std.tqdm
        self._lock = threading.Lock()
        self.files_total = 0
        self.files_done = 0
        self.throttled_count = 0
        self.bar: Tqdm[Any] = bar_class(
            total=None,
            desc=dataset_id,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            file=sys.stderr if stream is None else stream,
            dynamic_ncols=True,
            leave=True,
        )

    def unit_listed(
        self, *, unit: WorkUnit, files: int, bytes: int, **kwargs: Any
    ) -> None:
        """Grow the totals by the unit's files."""
        with self._lock:
            self.files_total += files
            self.bar.total = (self.bar.total or 0) + bytes
            self._postfix()

    def file_copied(
        self,
        *,
        unit: WorkUnit,
        file: FileRef,
        key: str,
        size: int,
        fresh: bool,
        **kwargs: Any,
    ) -> None:
        """Count the file and its bytes as done."""
        with self._lock:
            self.files_done += 1
            self.bar.update(size)
            self._postfix()

    def throttled(self, *, retry_after: Optional[float], **kwargs: Any) -> None:
        """Show how often the platform said 429 (called from worker threads)."""
        with self._lock:
            self.throttled_count += 1
            self._postfix()

    def _postfix(self) -> None:
        text = f"{self.files_done}/{self.files_total} files"
        if self.throttled_count:
            text += f", {self.throttled_count} throttled"
        self.bar.set_postfix_str(text)

    def close(self) -> None:
        """Draw the final state and let go of the stream."""
        with self._lock:
            self.bar.close()


def make_progress(
    dataset_id: str, enabled: Optional[bool], stream: Optional[IO[str]] = None
) -> Optional[ProgressBar]:
    """A bar for one run, or None: ``enabled`` None decides by :func:`interactive`."""
    if enabled is False or (enabled is None and not interactive(stream)):
        return None
    return ProgressBar(dataset_id, stream=stream, notebook=in_notebook())
