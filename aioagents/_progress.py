"""Progress for long commands, on stderr, whatever extras are installed.

:func:`progress_bar` returns a :class:`ProgressBar`: call it with a :class:`aioagents._batch.Progress` after each item
(it is an ``on_progress`` callback for ``as_completed``/``run_many``) and ``close()`` it at the end (or use it as a
context manager). It draws:

- a tqdm bar when the ``progress`` extra (tqdm) is installed;
- otherwise a built-in one-line bar, redrawn in place with ``\\r`` at most ~10 times a second::

      batch  120/300 [#########-----------]  40%  failed 3  52.1/s  eta 0:03

- nothing at all when it is disabled (``--quiet``) or stderr is not a terminal, so logs and pipes stay clean.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

from aioagents._batch import Progress

__all__ = ["ProgressBar", "progress_bar"]

_REDRAW_EVERY = 0.1  # seconds between redraws of the built-in bar; the last state is always drawn
_WIDTH = 20  # cells of the built-in bar


class ProgressBar:
    """An ``on_progress`` callback that draws progress on a stream; a no-op when disabled."""

    def __init__(self, *, total: int | None, desc: str, stream: TextIO | None = None, enabled: bool = True) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._total = total
        self._desc = desc
        self._started = time.monotonic()
        self._drawn_at = 0.0
        self._last: Progress | None = None
        self._shown: Progress | None = None
        self._width = 0
        self._tqdm: Any = None
        self._enabled = enabled
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:  # no `progress` extra: the built-in line below
                self._draw(Progress(done=0, failed=0, total=total), force=True)
            else:
                # A terminal that reports no width (a fresh pty, some CI consoles) would get an empty tqdm bar.
                sized = _columns(self._stream) > 0
                self._tqdm = tqdm(
                    total=total,
                    desc=desc,
                    unit="item",
                    file=self._stream,
                    dynamic_ncols=sized,
                    ncols=None if sized else 80,
                )

    @property
    def enabled(self) -> bool:
        """Whether anything is drawn."""
        return self._enabled

    def __call__(self, progress: Progress) -> None:
        if not self._enabled:
            return
        if self._tqdm is not None:
            self._tqdm.update(progress.done - self._tqdm.n)
            if progress.failed:
                self._tqdm.set_postfix(failed=progress.failed, refresh=False)
            return
        self._draw(progress, force=progress.total is not None and progress.done >= progress.total)

    def _draw(self, progress: Progress, *, force: bool) -> None:
        self._last = progress
        now = time.monotonic()
        if not force and now - self._drawn_at < _REDRAW_EVERY:
            return
        self._drawn_at = now
        self._shown = progress
        elapsed = now - self._started
        rate = progress.done / elapsed if elapsed > 0 else 0.0
        parts = [f"{self._desc}  {progress.done}/{progress.total if progress.total is not None else '?'}"]
        if progress.total:
            filled = min(_WIDTH, _WIDTH * progress.done // progress.total)
            parts.append(f"[{'#' * filled}{'-' * (_WIDTH - filled)}] {100 * progress.done // progress.total:3d}%")
        if progress.failed:
            parts.append(f"failed {progress.failed}")
        if progress.done:
            parts.append(f"{rate:.1f}/s")
            if progress.total and progress.done < progress.total and rate > 0:
                left = round((progress.total - progress.done) / rate)
                parts.append(f"eta {left // 60}:{left % 60:02d}")
        line = "  ".join(parts)
        # Pad over a longer previous line instead of relying on an ANSI erase, which a dumb terminal shows as text.
        self._stream.write("\r" + line.ljust(self._width))
        self._stream.flush()
        self._width = len(line)

    def close(self) -> None:
        """Draw the final state and end the line, so what follows starts on a fresh one."""
        if not self._enabled:
            return
        self._enabled = False
        if self._tqdm is not None:
            self._tqdm.close()
            return
        if self._last is not None and self._last is not self._shown:
            self._draw(self._last, force=True)
        self._stream.write("\n")
        self._stream.flush()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress_bar(*, total: int | None, desc: str, quiet: bool = False, stream: TextIO | None = None) -> ProgressBar:
    """A progress bar on ``stream`` (stderr), enabled unless ``quiet`` or the stream is not a terminal."""
    stream = stream if stream is not None else sys.stderr
    enabled = not quiet and _isatty(stream)
    return ProgressBar(total=total, desc=desc, stream=stream, enabled=enabled)


def _columns(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return 0


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or stream-like object
        return False
