"""The resource names of llama-index-workflows' ``workflows.resource`` (``Resource``,
``ResourceConfig``, ...), for programs that import them from there: ``from workflows.resource
import X`` becomes ``from engine.resource import X``.

Each name is jetloom's own, defined in ``engine.runtime.resources``; it is looked up on first use
(``AttributeError`` if that module does not define it).
"""

# ruff: noqa: F822  (names in __all__ that the module-level __getattr__ below provides, PEP 562)
from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Resource",
    "ResourceConfig",
    "ResourceDefinition",
    "ResourceDescriptor",
    "ResourceManager",
]

_LATER = dict.fromkeys(__all__, "engine.runtime.resources")


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
