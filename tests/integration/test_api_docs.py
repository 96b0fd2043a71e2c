"""The control plane's OpenAPI pages work offline, and its document describes the API whole:
Swagger UI and ReDoc load every script, style and icon from the app itself (real uvicorn, a real
nats-server, auth on: the pages need no token, like ``/schema``); the document has the request
bodies, the answers' shapes, each operation's error codes with the error body and headers, and
``text/event-stream`` for the SSE route.

(Rendering the pages in a browser is not checked here: no Chromium and no playwright on this
machine.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from services.control.auth import ApiAuth
from services.launcher import ControlPlaneServer

TOKEN = "docs-token-2c7e"


@pytest.fixture
async def secured(nats_url: str) -> AsyncIterator[str]:
    cp = ControlPlaneServer(nats_url, port=0, shutdown_grace=1.0, auth=ApiAuth.from_token(TOKEN))
    await cp.start()
    try:
        yield cp.url
    finally:
        await cp.stop()


class Links(HTMLParser):
    """Every URL a page loads: ``src`` of scripts and images, ``href`` of links."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "img": "src", "link": "href"}.get(tag)
        for name, value in attrs:
            if name == wanted and value:
                self.urls.append(value)


@pytest.mark.parametrize("page", ["/schema/swagger", "/schema/redoc", "/schema"])
async def test_docs_pages_load_everything_from_the_app(secured: str, page: str) -> None:
    async with httpx.AsyncClient(base_url=secured, timeout=30) as http:  # (no token)
        resp = await http.get(page)
        assert resp.status_code == 200, resp.text[:300]
        assert resp.headers["content-type"].startswith("text/html")
        links = Links()
        links.feed(resp.text)
        scripts = [u for u in links.urls if u.endswith(".js")]
        assert scripts, f"{page} loads no script"
        if page == "/schema/swagger":
            assert any(u.endswith(".css") for u in links.urls), links.urls
        for url in links.urls:
            parts = urlsplit(url)
            assert not parts.scheme and not parts.netloc, f"{page} loads {url} from another host"
            asset = await http.get(urljoin(page, url))
            assert asset.status_code == 200, f"{url}: {asset.status_code}"
            assert asset.content, f"{url} is empty"
        assert "fonts.googleapis" not in resp.text and "cdn." not in resp.text


async def test_assets_follow_the_schema_rules(secured: str) -> None:
    async with httpx.AsyncClient(base_url=secured, timeout=30) as http:
        missing = await http.get("/schema/assets/swagger-ui-dist/nope.js")
        assert missing.status_code == 404
        assert (await http.get("/schema/openapi.json")).status_code == 200  # open, as before
        assert (await http.get("/runs")).status_code == 401  # the API itself is not


def operation(doc: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    op: dict[str, Any] = doc["paths"][path][method]
    return op


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref:
        resolved: dict[str, Any] = doc["components"]["schemas"][ref.rsplit("/", 1)[-1]]
        return resolved
    return schema


async def test_openapi_document_describes_bodies_codes_and_headers(secured: str) -> None:
    async with httpx.AsyncClient(base_url=secured, timeout=30) as http:
        doc = (await http.get("/schema/openapi.json")).json()

    bodies = {
        ("/runs/{run_id}/events", "post"): ({"type", "data", "step"}, {"type"}),
        ("/runs/{run_id}/rollback", "post"): ({"to_seq", "reason"}, {"to_seq"}),
        ("/runs/{run_id}/fork", "post"): ({"at_seq", "run_id"}, {"at_seq"}),
        ("/runs/{run_id}/cancel", "post"): ({"reason"}, set()),
        ("/sessions", "post"): ({"workflow", "id"}, {"workflow"}),
    }
    for (path, method), (fields, required) in bodies.items():
        body = operation(doc, path, method)["requestBody"]
        schema = resolve(doc, body["content"]["application/json"]["schema"])
        assert set(schema["properties"]) == fields, path
        assert set(schema.get("required", [])) == required, path
    for path in ("/workflows/{name}/runs", "/sessions/{session_id}/runs"):
        body = operation(doc, path, "post")["requestBody"]
        assert body["content"]["application/json"]["schema"]["type"] == "object"
        assert body["required"] is False

    start = operation(doc, "/workflows/{name}/runs", "post")
    assert {"200", "201", "202", "400", "401", "403", "404", "413", "422", "503"} <= set(start["responses"])
    answer = resolve(doc, start["responses"]["201"]["content"]["application/json"]["schema"])
    assert {"run_id", "workflow", "status", "queued", "created", "links"} <= set(answer["properties"])
    assert "Idempotency-Key" in {p["name"] for p in start["parameters"] if p["in"] == "header"}

    send = operation(doc, "/runs/{run_id}/events", "post")
    assert {"409", "422"} <= set(send["responses"])
    assert "Idempotency-Key" in {p["name"] for p in send["parameters"] if p["in"] == "header"}
    for code, header in (("503", "Retry-After"), ("401", "WWW-Authenticate")):
        assert header in send["responses"][code]["headers"], code
        error = resolve(doc, send["responses"][code]["content"]["application/json"]["schema"])
        assert {"error", "status"} <= set(error["required"])

    stream = operation(doc, "/runs/{run_id}/stream", "get")
    assert "text/event-stream" in stream["responses"]["200"]["content"]
    assert "Last-Event-ID" in {p["name"] for p in stream["parameters"] if p["in"] == "header"}

    view = resolve(doc, operation(doc, "/runs/{run_id}", "get")["responses"]["200"]["content"]["application/json"]["schema"])
    assert {"run_id", "status", "result", "error", "state", "last_seq"} <= set(view["properties"])
    assert "bearer" in doc["components"]["securitySchemes"]
    assert operation(doc, "/runs", "get")["security"] == [{"bearer": []}]
    assert {} in operation(doc, "/health", "get")["security"]  # (no token needed)
