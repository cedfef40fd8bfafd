"""Old module names kept for one release: each name warns once where it is used and points to its new home."""

from __future__ import annotations

import importlib
import warnings

__all__ = ["moved"]


def moved(old: str, names: dict[str, str]):
    """A module ``__getattr__`` for ``old``, whose ``names`` moved to the modules given as values."""

    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        new = names[name]
        warnings.warn(f"{old}.{name} moved to {new}.{name}; {old} will be removed in the next release.",
                      DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(new), name)

    return __getattr__
