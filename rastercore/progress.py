"""Progress reporting: a tqdm bar, JSON lines for headless runs, or nothing."""

from __future__ import annotations

import json
import sys
import time
from typing import Literal

__all__ = ["Progress", "ProgressMode"]

ProgressMode = Literal["auto", "bar", "json", "none"]


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
    """

    def __init__(self, stage: str, total: int, *, mode: ProgressMode = "auto", initial: int = 0):
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "none"
        if mode not in ("bar", "json", "none"):
            raise ValueError(f"progress mode must be 'auto', 'bar', 'json' or 'none', not {mode!r}")
        self.stage, self.total, self.mode, self.done = stage, total, mode, initial
        self._start = time.perf_counter()
        self._initial = initial
        self._bar = None
        if mode == "bar":
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=stage, unit="tile", file=sys.stderr)

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
