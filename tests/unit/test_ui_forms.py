"""The web UI's pure parts: forms from JSON schemas, the login cookie's value, where a login may
lead, and the template filters."""

from __future__ import annotations

import msgspec
import pytest

from engine.runtime.describe import fields_schema
from services.control.auth import ApiAuth, cookie_value
from services.control.ui.forms import FormField, form_fields
from services.control.ui.login import safe_next
from services.control.ui.pages import between, seconds_text, when
from tests.browser.flows import SignupStart


def test_each_top_level_property_becomes_an_input_by_its_type() -> None:
    fields = {f.name: f for f in form_fields(fields_schema(SignupStart))}
    assert list(fields) == ["name", "age", "newsletter", "score", "tags"]
    assert fields["name"] == FormField(name="name", type="string", input="text", required=True)
    assert fields["age"] == FormField(name="age", type="integer", input="number", required=True)
    assert fields["newsletter"].input == "checkbox" and not fields["newsletter"].required
    assert fields["score"] == FormField(name="score", type="number", input="number", nullable=True)
    assert fields["tags"] == FormField(name="tags", type="json", input="textarea", default="[]")


def test_enums_nested_objects_and_unions() -> None:
    schema = {
        "type": "object",
        "properties": {
            "color": {"enum": ["red", "green"], "default": "green", "description": "which"},
            "point": {"$ref": "#/$defs/Point"},
            "either": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
            "maybe": {"type": ["string", "null"]},
            "count": {"type": "integer", "default": 3},
        },
        "required": ["color"],
    }
    fields = {f.name: f for f in form_fields(schema)}
    assert fields["color"] == FormField(
        name="color", type="string", input="select", required=True, default="green",
        choices=["red", "green"], description="which",
    )
    assert fields["point"].type == "json" and fields["either"].type == "json"
    assert fields["maybe"] == FormField(name="maybe", type="string", input="text", nullable=True)
    assert fields["count"].default == "3"


@pytest.mark.parametrize("schema", [None, {}, {"type": "object"}, {"properties": []}])
def test_a_schema_without_properties_has_no_inputs(schema: object) -> None:
    assert form_fields(schema) == []  # type: ignore[arg-type]


def test_the_cookie_holds_any_token_and_only_a_known_one_passes() -> None:
    auth = ApiAuth.from_token("tök=en/+ with spaces")
    value = cookie_value("tök=en/+ with spaces")
    assert value.isascii() and not set(value) & set('=;," \\')
    token = auth.from_cookie(value)
    assert token is not None and token.name == "JETLOOM_API_TOKEN"
    for bad in (None, "", cookie_value("other"), "***", "é"):
        assert auth.from_cookie(bad) is None


@pytest.mark.parametrize(
    ("target", "goes"),
    [
        ("/ui/services", "/ui/services"),
        ("/ui?workflow=A", "/ui?workflow=A"),
        (None, "/ui/"),
        ("", "/ui/"),
        ("https://evil.example/ui", "/ui/"),
        ("//evil.example/ui", "/ui/"),
        ("/runs", "/ui/"),
        ("/ui\\@evil.example", "/ui/"),
    ],
)
def test_a_login_only_leads_back_into_the_ui(target: str | None, goes: str) -> None:
    assert safe_next(target) == goes


def test_filters() -> None:
    assert when("2026-12-04T06:40:12.123456Z") == "2026-12-04 06:40:12"
    assert when(None) == "" and when("garbage") == ""
    assert [seconds_text(s) for s in (0.0123, 12.34, 245, 7380)] == ["12 ms", "12.3 s", "4 min 5 s", "2 h 3 min"]
    assert between("2026-12-04T06:40:12Z", "2026-12-04T06:40:13.5Z") == "1.5 s"
    assert between("2026-12-04T06:40:12Z", None) == ""


def test_form_field_is_a_struct_the_templates_read() -> None:
    assert msgspec.structs.asdict(FormField(name="a", type="string", input="text"))["choices"] == []
