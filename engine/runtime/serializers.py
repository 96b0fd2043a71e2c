"""Value serializers for context dicts (``Context.to_dict`` / ``Context.from_dict``), with the
names and wire shapes of llama-index-workflows' ``BaseSerializer``, ``JsonSerializer`` and
``PickleSerializer``, so a state payload written by one library reads in the other.

A pydantic model is written as ``{"__is_pydantic": true, "value": <model_dump(mode="json")>,
"qualified_name": "<module>.<Class>"}`` and rebuilt by importing that class (or, with
``allowed_types``, only from the classes listed); dicts and lists are walked; other values must be
JSON values. The same tagged form keeps pydantic values of an untyped run state in the log.
"""

from __future__ import annotations

import base64
import importlib
import json
import pickle
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

__all__ = [
    "BaseSerializer",
    "JsonPickleSerializer",
    "JsonSerializer",
    "PickleSerializer",
    "has_models",
    "import_qualified",
    "qualified_name",
]

_MODEL_TAG = "__is_pydantic"
_COMPONENT_TAG = "__is_component"


def qualified_name(obj_or_cls: Any) -> str:
    """``"<module>.<name>"`` of a class, or of an object's class."""
    cls = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
    return f"{cls.__module__}.{cls.__name__}"


def import_qualified(name: str) -> type[Any]:
    """The class named ``"<module>.<name>"``.

    Raises:
        ValueError: the name has no module part, the module does not import, or it has no such
            class.
    """
    module, _, attr = name.rpartition(".")
    if not module:
        raise ValueError(f"{name!r} is not a qualified class name (module.Class)")
    try:
        found = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot import {name!r}: {e}") from None
    if not isinstance(found, type):
        raise ValueError(f"{name!r} is not a class")
    return found


def has_models(value: Any) -> bool:
    """Whether ``value`` is, or holds in its dicts and lists, a pydantic model."""
    if isinstance(value, BaseModel):
        return True
    if isinstance(value, dict):
        return any(has_models(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(has_models(v) for v in value)
    return False


class BaseSerializer(ABC):
    """Turns values into strings and back (llama-index-workflows' ``BaseSerializer``)."""

    @abstractmethod
    def serialize(self, value: Any) -> str:
        """``value`` as a string."""

    @abstractmethod
    def deserialize(self, value: str) -> Any:
        """The value ``serialize`` encoded into ``value``."""


class JsonSerializer(BaseSerializer):
    """JSON, with pydantic models tagged by class name so they come back as their class (as
    llama-index-workflows' ``JsonSerializer``; objects with ``class_name`` and ``to_dict``, as
    llama-index components have, are tagged the same way and rebuilt with ``from_dict``).

    Args:
        allowed_types: the classes (or their qualified names) that may be rebuilt; ``None``
            (default): any class, imported by name. A name not allowed raises ``ValueError`` on
            decode.
    """

    def __init__(self, *, allowed_types: Iterable[type[Any] | str] | None = None) -> None:
        self._classes: dict[str, type[Any]] = {}
        self._names: frozenset[str] | None = None
        if allowed_types is not None:
            names: set[str] = set()
            for entry in allowed_types:
                if isinstance(entry, str):
                    names.add(entry)
                elif isinstance(entry, type):
                    for n in (qualified_name(entry), f"{entry.__module__}.{entry.__qualname__}"):
                        names.add(n)
                        self._classes[n] = entry
                else:
                    raise TypeError(f"allowed_types takes classes or qualified names, got {entry!r}")
            self._names = frozenset(names)

    def resolve_class(self, name: str) -> type[Any]:
        """The class a tagged value names.

        Raises:
            ValueError: not among ``allowed_types``, or it does not import.
        """
        known = self._classes.get(name)
        if known is not None:
            return known
        if self._names is not None and name not in self._names:
            raise ValueError(f"class {name} is not in this serializer's allowed_types")
        return import_qualified(name)

    def serialize_value(self, value: Any) -> Any:
        """``value`` as JSON values, models tagged (dicts and lists walked; tuples become lists)."""
        if isinstance(value, BaseModel):
            return {_MODEL_TAG: True, "value": value.model_dump(mode="json"), "qualified_name": qualified_name(value)}
        if hasattr(value, "class_name") and callable(getattr(value, "to_dict", None)):
            return {_COMPONENT_TAG: True, "value": value.to_dict(), "qualified_name": qualified_name(value)}
        if isinstance(value, dict):
            return {k: self.serialize_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.serialize_value(v) for v in value]
        return value

    def deserialize_value(self, data: Any) -> Any:
        """The inverse of ``serialize_value``: tagged dicts become their class again."""
        if isinstance(data, dict):
            name = data.get("qualified_name")
            if data.get(_MODEL_TAG) and isinstance(name, str):
                return self.resolve_class(name).model_validate(data.get("value"))
            if data.get(_COMPONENT_TAG) and isinstance(name, str):
                return self.resolve_class(name).from_dict(data.get("value"))
            return {k: self.deserialize_value(v) for k, v in data.items()}
        if isinstance(data, list):
            return [self.deserialize_value(v) for v in data]
        return data

    def serialize(self, value: Any) -> str:
        """``value`` as a JSON string.

        Raises:
            ValueError: it is not JSON-encodable.
        """
        try:
            return json.dumps(self.serialize_value(value))
        except (TypeError, ValueError) as e:
            raise ValueError(f"cannot serialize {type(value).__name__} to JSON: {e}") from None

    def deserialize(self, value: str) -> Any:
        """The value of a JSON string ``serialize`` made."""
        return self.deserialize_value(json.loads(value))


class PickleSerializer(JsonSerializer):
    """JSON where it works, else pickle in base64 (as llama-index-workflows' ``PickleSerializer``).
    Decoding tries pickle first: only decode payloads you trust."""

    def serialize(self, value: Any) -> str:
        try:
            return super().serialize(value)
        except ValueError:
            return base64.b64encode(pickle.dumps(value)).decode("ascii")

    def deserialize(self, value: str) -> Any:
        try:
            return pickle.loads(base64.b64decode(value, validate=True))  # noqa: S301 - documented: trusted payloads only
        except Exception:
            return super().deserialize(value)


JsonPickleSerializer = PickleSerializer  # the reference's former name
