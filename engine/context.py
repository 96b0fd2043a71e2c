"""The names of llama-index-workflows' ``workflows.context`` (``Context`` and the serializers), for
programs that import them from there: ``from workflows.context import X`` becomes
``from engine.context import X``.

Each name is jetloom's own, defined in ``engine.runtime.context``; names it does not define (yet)
are looked up on first use and raise ``AttributeError`` if it still lacks them.
"""

# ruff: noqa: F822  (names in __all__ that the module-level __getattr__ below provides, PEP 562)
from __future__ import annotations

import importlib
from typing import Any

from engine.runtime.context import Context

__all__ = [
    "BaseSerializer",
    "Context",
    "JsonSerializer",
    "PickleSerializer",
]

_LATER = dict.fromkeys(("BaseSerializer", "JsonSerializer", "PickleSerializer"), "engine.runtime.context")


def __getattr__(name: str) -> Any:
    module = _LATER.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        value = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r} ({module} does not define it)") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
