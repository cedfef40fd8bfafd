"""Deprecated: the dask client moved to :mod:`rastercore.scheduler` (``rastercore cluster`` is k-means)."""

from rastercore._deprecated import moved

__getattr__ = moved("rastercore.cluster", dict.fromkeys(["client", "SCHEDULER_ENV", "resolve_scheduler"],
                                                        "rastercore.scheduler"))
