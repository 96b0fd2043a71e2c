"""The names of llama-index-workflows' ``workflows.context`` (``Context`` and the serializers), for
programs that import them from there: ``from workflows.context import X`` becomes
``from engine.context import X``.

Each name is jetloom's own: ``Context`` is defined in ``engine.runtime.context``, the serializers
in ``engine.runtime.serializers``.
"""

from __future__ import annotations

from engine.runtime.context import Context
from engine.runtime.serializers import BaseSerializer, JsonSerializer, PickleSerializer

__all__ = [
    "BaseSerializer",
    "Context",
    "JsonSerializer",
    "PickleSerializer",
]
