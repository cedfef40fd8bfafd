"""Old spellings kept for one release: each warns (:class:`RasterCoreDeprecationWarning`) and names the new one.

Modules that moved (:func:`moved`), renamed keywords (:func:`renamed_keywords`)
and any other renamed option or field (:func:`renamed`) all warn through
:func:`deprecated`, which blames the first line outside rastercore: the user's.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import warnings

from rastercore.errors import RasterCoreDeprecationWarning

__all__ = ["deprecated", "renamed", "renamed_keywords", "moved"]

_PACKAGE = os.path.dirname(__file__) + os.sep


def deprecated(message: str) -> None:
    """Warn with ``message`` that something works for one more release only."""
    level, frame = 1, sys._getframe()
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, RasterCoreDeprecationWarning, stacklevel=level)


def renamed(old: str, new: str, where: str) -> None:
    """Warn that ``old`` (an option, keyword or field of ``where``) is now called ``new``."""
    deprecated(f"{where}: {old} is now called {new}; {old} will stop working in the next release.")


def renamed_keywords(names: dict[str, str], where: str | None = None):
    """Decorate a function whose keywords were renamed (``{old: new}``): the old ones still work, with a warning.

    ``where`` names the function in the warning (default ``name()``).
    """

    def decorate(function):
        label = where or f"{function.__name__}()"

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            for old, new in names.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{label} got {new} and its old name {old}; give {new} only")
                    renamed(old, new, label)
                    kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        return wrapper

    return decorate


def moved(old: str, names: dict[str, str]):
    """A module ``__getattr__`` for ``old``, whose ``names`` moved to the modules given as values."""

    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        new = names[name]
        deprecated(f"{old}.{name} moved to {new}.{name}; {old} will be removed in the next release.")
        return getattr(importlib.import_module(new), name)

    return __getattr__
