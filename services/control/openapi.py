"""What the control plane's OpenAPI document says beyond what Litestar reads off the handlers, and
its pages.

- ``responses(...)``: the error responses an operation declares, each with the error body
  (``services.control.errors.ERROR_RESPONSES``).
- ``operation(...)``: the operation class of a handler (Litestar's ``operation_class``): it adds
  the request body the handler parses itself (so that a bad body gets the same 400 or 422 with a
  ``field`` as today, after the checks of the path, rather than Litestar's generic 400 before
  them), and the ``Retry-After`` (503) and ``WWW-Authenticate`` (401) response headers.
- ``render_plugins()`` and ``docs_assets_router()``: Swagger UI (``/schema/swagger``) and ReDoc
  (``/schema/redoc``) with their scripts, styles and favicon served by the app itself, from the
  ``drf-spectacular-sidecar`` package (it ships both; nothing of it is imported), so the pages
  work without reaching any other host. The assets are left out of the OpenAPI document, which
  makes the auth guard let them through as it does ``/schema``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

import msgspec
from litestar import Router
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import (
    JsonRenderPlugin,
    OpenAPIRenderPlugin,
    RedocRenderPlugin,
    SwaggerRenderPlugin,
    YamlRenderPlugin,
)
from litestar.openapi.spec import (
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)
from litestar.static_files import create_static_files_router

from .errors import ERROR_RESPONSES, RETRY_AFTER_S

__all__ = [
    "ASSETS_PATH",
    "ApiOperation",
    "SCHEMA_PATH",
    "body_schema",
    "docs_assets_router",
    "operation",
    "render_plugins",
    "responses",
]

# Every guarded operation may answer these: a bad parameter, no or a wrong token, a token
# without the scope, NATS unavailable.
_ALWAYS = (400, 401, 403, 503)

SCHEMA_PATH = "/schema"
ASSETS_PATH = f"{SCHEMA_PATH}/assets"
# Where the sidecar package keeps the files, inside its installed tree.
_SIDECAR = "drf-spectacular-sidecar"
_SIDECAR_STATIC = "drf_spectacular_sidecar/static/drf_spectacular_sidecar"


def responses(*codes: int) -> dict[int, ResponseSpec]:
    """The error responses of an operation: those every guarded operation may answer (400, 401,
    403, 503) and ``codes``, each with the error body."""
    return {code: ERROR_RESPONSES[code] for code in sorted({*_ALWAYS, *codes})}


# JSON Schema keywords (as msgspec writes them) -> fields of Litestar's ``Schema``
_SCHEMA_FIELDS = {f.metadata.get("alias", f.name): f.name for f in dataclasses.fields(Schema)}


def _schema(node: dict[str, Any], defs: dict[str, Any]) -> Schema:
    ref = node.get("$ref")
    if isinstance(ref, str):  # (msgspec's "#/$defs/Name"; a request body is inlined whole)
        return _schema(defs[ref.rsplit("/", 1)[-1]], defs)
    fields: dict[str, Any] = {}
    for key, value in node.items():
        name = _SCHEMA_FIELDS.get(key)
        if name is None:
            continue
        if key == "type":
            value = [OpenAPIType(t) for t in value] if isinstance(value, list) else OpenAPIType(value)
        elif key == "properties":
            value = {k: _schema(v, defs) for k, v in value.items()}
        elif key in ("anyOf", "oneOf", "allOf", "prefixItems"):
            value = [_schema(v, defs) for v in value]
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            value = _schema(value, defs)
        fields[name] = value
    return Schema(**fields)


def body_schema(model: Any) -> Schema:
    """The OpenAPI schema of a request body of type ``model`` (a Struct or a builtin type), from
    msgspec's JSON schema of it."""
    doc = msgspec.json.schema(model)
    return _schema(doc, doc.get("$defs", {}))


def _header(description: str, kind: OpenAPIType) -> OpenAPIHeader:
    return OpenAPIHeader(description=description, schema=Schema(type=kind))


_RESPONSE_HEADERS: dict[str, dict[str, OpenAPIHeader]] = {
    "503": {
        "Retry-After": _header(
            f"seconds to wait before trying again (usually {RETRY_AFTER_S})", OpenAPIType.INTEGER
        )
    },
    "401": {"WWW-Authenticate": _header('``Bearer realm="jetloom"``', OpenAPIType.STRING)},
}


@dataclass
class ApiOperation(Operation):
    """An operation of the control plane: its error responses carry their headers."""

    def __post_init__(self) -> None:
        for code, response in (self.responses or {}).items():
            headers = _RESPONSE_HEADERS.get(code)
            if headers and isinstance(response, OpenAPIResponse):
                response.headers = {**(response.headers or {}), **headers}


_LOCATION = {"Location": _header("The run's path (``/runs/{id}``)", OpenAPIType.STRING)}


def operation(
    body: Any = None, *, required: bool = True, description: str | None = None, location: bool = False
) -> type[Operation]:
    """The ``operation_class`` of a handler whose request body is of type ``body`` (a Struct of
    ``services.api_models``, or ``dict[str, Any]`` for a start event's fields; ``None``: no body);
    ``required`` says whether the body may be left out. ``location``: the operation's answers may
    carry a ``Location`` header (the run started)."""
    request_body = (
        RequestBody(
            content={"application/json": OpenAPIMediaType(schema=body_schema(body))},
            required=required,
            description=description,
        )
        if body is not None
        else None
    )
    if request_body is None and not location:
        return ApiOperation

    @dataclass
    class Documented(ApiOperation):
        def __post_init__(self) -> None:
            super().__post_init__()
            if request_body is not None:
                self.request_body = request_body
            for code, response in (self.responses or {}).items():
                if location and code.startswith("2") and isinstance(response, OpenAPIResponse):
                    response.headers = {**(response.headers or {}), **_LOCATION}

    return Documented


def _assets_dir() -> Path:
    return Path(str(distribution(_SIDECAR).locate_file(_SIDECAR_STATIC)))


def render_plugins() -> list[OpenAPIRenderPlugin]:
    """``/schema/swagger``, ``/schema/redoc`` (also ``/schema``), ``/schema/openapi.json`` and
    ``/schema/openapi.yaml`` (``.yml``); the pages load their assets from ``ASSETS_PATH``."""
    swagger = f"{ASSETS_PATH}/swagger-ui-dist"
    favicon = f"<link rel='icon' type='image/png' href='{swagger}/favicon-32x32.png'>"
    return [
        SwaggerRenderPlugin(
            js_url=f"{swagger}/swagger-ui-bundle.js",
            css_url=f"{swagger}/swagger-ui.css",
            standalone_preset_js_url=f"{swagger}/swagger-ui-standalone-preset.js",
            favicon=favicon,
        ),
        RedocRenderPlugin(
            js_url=f"{ASSETS_PATH}/redoc/bundles/redoc.standalone.js",
            google_fonts=False,
            path=["/redoc", "/"],
            favicon=favicon,
        ),
        JsonRenderPlugin(),
        YamlRenderPlugin(path=["/openapi.yaml", "/openapi.yml"]),
    ]


def docs_assets_router() -> Router:
    """The router serving the pages' scripts, styles and favicon under ``ASSETS_PATH``.

    Raises:
        importlib.metadata.PackageNotFoundError: ``drf-spectacular-sidecar`` is not installed.
    """
    return create_static_files_router(
        path=ASSETS_PATH, directories=[_assets_dir()], name="docs-assets", include_in_schema=False
    )
