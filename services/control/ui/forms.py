"""HTML forms built from an event's JSON schema (the catalog's ``WorkflowInfo.events``): the
form that starts a run, and (the run page's) the form that sends an awaited event.

Each top-level property becomes one input by its type: ``string`` a text input (an ``enum`` a
select; ``format: date-time`` still text), ``integer`` / ``number`` a number input, ``boolean`` a
checkbox; anything else (objects, arrays, unions other than ``T | None``, references to ``$defs``)
a textarea holding JSON. Required properties are marked. In the browser, ``static/ui.js`` (the
htmx extension ``jetloom-json``) turns the inputs back into a JSON object by each input's
``data-type``, so the API gets typed values (``42``, not ``"42"``).
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

__all__ = ["FormField", "form_fields"]

_SCALARS = {"string": "text", "integer": "number", "number": "number", "boolean": "checkbox"}


class FormField(msgspec.Struct, frozen=True, kw_only=True):
    """One input of a form.

    Attributes:
        name: the property.
        type: how the browser encodes the value: ``string``, ``integer``, ``number``,
            ``boolean`` or ``json``.
        input: the HTML control: ``text``, ``number``, ``checkbox``, ``select`` or ``textarea``.
        required: the schema lists the property as required.
        nullable: ``null`` is allowed (an empty input sends ``null`` rather than nothing).
        default: the schema's default as the input shows it (``""`` for none; JSON text for a
            ``json`` field).
        choices: the ``enum`` values of a select.
        description: the schema's ``description`` (a ``title`` is the name again, not shown).
    """

    name: str
    type: str
    input: str
    required: bool = False
    nullable: bool = False
    default: str = ""
    choices: list[str] = []
    description: str = ""


def _unwrap(node: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """``T | None`` (``anyOf`` of one schema and ``{"type": "null"}``) -> ``(T, True)``."""
    options = node.get("anyOf") or node.get("oneOf")
    if isinstance(options, list):
        rest = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
        if len(rest) == 1 and len(rest) < len(options) and isinstance(rest[0], dict):
            return {**node, **rest[0]}, True
    kind = node.get("type")
    if isinstance(kind, list) and "null" in kind:
        others = [k for k in kind if k != "null"]
        if len(others) == 1:
            return {**node, "type": others[0]}, True
    return node, False


def _field(name: str, node: dict[str, Any], required: bool) -> FormField:
    node, nullable = _unwrap(node)
    kind = node.get("type")
    description = str(node.get("description") or "")
    default = node.get("default")
    enum = node.get("enum")
    if isinstance(enum, list) and enum and all(isinstance(e, str) for e in enum):
        return FormField(
            name=name, type="string", input="select", required=required, nullable=nullable,
            default=default if isinstance(default, str) else "", choices=list(enum), description=description,
        )
    if isinstance(kind, str) and kind in _SCALARS and "$ref" not in node:
        shown = "" if default is None else ("true" if default is True else "" if default is False else str(default))
        return FormField(
            name=name, type=kind, input=_SCALARS[kind], required=required, nullable=nullable,
            default=shown, description=description,
        )
    shown = "" if "default" not in node else orjson.dumps(default).decode()
    return FormField(
        name=name, type="json", input="textarea", required=required, nullable=nullable,
        default=shown, description=description,
    )


def form_fields(schema: dict[str, Any] | None) -> list[FormField]:
    """The inputs of a form for the object ``schema`` describes, in the order of its
    ``properties`` (none for an empty or missing schema, or one without properties)."""
    if not isinstance(schema, dict):
        return []
    props = schema.get("properties")
    if not isinstance(props, dict):
        return []
    required = set(schema.get("required") or ())
    return [_field(name, node if isinstance(node, dict) else {}, name in required) for name, node in props.items()]
