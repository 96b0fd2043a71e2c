"""The resource names of llama-index-workflows' ``workflows.resource`` (``Resource``,
``ResourceConfig``, ...), for programs that import them from there: ``from workflows.resource
import X`` becomes ``from engine.resource import X``.

Each name is jetloom's own, defined in ``engine.runtime.resources`` (see it for lifetimes).
"""

from __future__ import annotations

from engine.runtime.resources import (
    Resource,
    ResourceConfig,
    ResourceDefinition,
    ResourceDescriptor,
    ResourceManager,
)

__all__ = [
    "Resource",
    "ResourceConfig",
    "ResourceDefinition",
    "ResourceDescriptor",
    "ResourceManager",
]
