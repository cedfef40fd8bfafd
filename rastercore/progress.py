"""Progress reporting: a tqdm bar, JSON lines for headless runs, or nothing."""

from __future__ import annotations

import json
import sys
import time
from typing import Literal

from rastercore.errors import ParameterError

__all__ = ["Progress", "ProgressMode", "PROGRESS_MODES", "check_progress"]

ProgressMode = Literal["auto", "bar", "json", "none"]
PROGRESS_MODES = ("auto", "bar", "json", "none")


def check_progress(mode, name: str = "progress (--progress)") -> ProgressMode:
    """``mode`` if it is one of :data:`PROGRESS_MODES`, else a :class:`rastercore.errors.ParameterError`."""
    if mode not in PROGRESS_MODES:
        raise ParameterError(f"{name} must be one of {', '.join(PROGRESS_MODES)}, not {mode!r}.")
    return mode


class Progress:
    """Counts finished units of work (tiles) for one named stage.

    Parameters
    ----------
    stage : str
        Name of the stage, e.g. ``"ingest"``.
    total : int
        Number of units.
    mode : {"auto", "bar", "json", "none"}, default "auto"
        ``"bar"`` draws a tqdm bar with ETA on stderr, ``"json"`` writes one
        JSON object per update to stderr (``stage``, ``done``, ``total``,
        ``elapsed_s``, ``eta_s``), ``"none"`` is silent, ``"auto"`` is a bar
        when stderr is a terminal and silent otherwise.
    initial : int, default 0
        Units already done (a resumed run).
    unit : str, default "tile"
        What a unit is, shown by the bar.

    Raises
    ------
    rastercore.errors.ParameterError
        ``mode`` is not one of :data:`PROGRESS_MODES`.
    """

    def __init__(self, stage: str, total: int, *, mode: ProgressMode = "auto", initial: int = 0, unit: str = "tile"):
        if check_progress(mode) == "auto":
            mode = "bar" if sys.stderr.isatty() else "none"
        self.stage, self.total, self.mode, self.done = stage, total, mode, initial
        self._start = time.perf_counter()
        self._initial = initial
        self._bar = None
        if mode == "bar":
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=stage, unit=unit, file=sys.stderr)

    def update(self, n: int = 1) -> None:
        """Record ``n`` more finished units."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.mode == "json":
            elapsed = time.perf_counter() - self._start
            rate = (self.done - self._initial) / elapsed if elapsed > 0 else 0.0
            eta = (self.total - self.done) / rate if rate > 0 else None
            record = {"stage": self.stage, "done": self.done, "total": self.total,
                      "elapsed_s": round(elapsed, 3), "eta_s": None if eta is None else round(eta, 3)}
            print(json.dumps(record), file=sys.stderr, flush=True)

    def close(self) -> None:
        """Finish the bar."""
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
