"""Bearer-token authentication of the control plane's HTTP API.

Tokens come from ``JETLOOM_API_TOKEN`` (one token with every scope) and/or a tokens file (TOML;
``jetloom control-plane --api-tokens FILE``, env ``JETLOOM_API_TOKENS_FILE``, deployment TOML
``[control_plane] api_tokens = "FILE"``)::

    [[tokens]]
    name = "ci"                      # shown in 403s and logs (never the token)
    sha256 = "9f86d081884c7d65..."   # hex SHA-256 of the token (or: token = "the value")
    scopes = ["read", "run"]

Scopes (independent: a token has exactly the ones it lists):

- ``read``: every ``GET``, the SSE stream included;
- ``run``: start runs, send events to runs;
- ``admin``: cancel, retry, rollback, fork, and creating, running in and deleting sessions.

A request without a token, or with one that matches no entry, gets 401 with
``WWW-Authenticate: Bearer``; a known token without the scope an endpoint needs gets 403. Both
have the JSON error body. ``/health``, ``/ready`` and the OpenAPI pages (``/schema``) stay open.
The presented token is hashed with SHA-256 and compared with every stored digest with
``hmac.compare_digest`` (the time taken depends on neither the token nor which entry matches);
only digests are kept in memory; tokens are never logged.

Each handler names its scope in ``opt`` (``needs("read")``); a handler that names none needs
``admin`` unless it is marked ``PUBLIC`` (fail closed). With no token configured there is no
guard and the API is open (``create_app`` logs one warning line at start).

The web UI (``services.control.ui``): a browser sends no bearer header, so ``/ui/login`` keeps
the token in an HttpOnly, ``SameSite=Strict`` cookie (``COOKIE``; ``Secure`` over https). Pages
(``needs_page``) read the token from that cookie; without a valid one they raise
``LoginRequired``, which the UI answers with a redirect to ``/ui/login``. The JSON API accepts
the cookie too, but only from a request with the header ``HX-Request: true`` and no
``Authorization`` header: htmx sets it on the requests the UI makes, and a cross-site form or
link cannot set a header (a cross-site script cannot send one without a CORS preflight, which
the API does not answer), so another site cannot use a logged-in browser's cookie (CSRF).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.spec import Components, SecurityRequirement, SecurityScheme

__all__ = [
    "COOKIE",
    "ENV_TOKEN",
    "ENV_TOKENS_FILE",
    "OPEN_WARNING",
    "PUBLIC",
    "cookie_value",
    "SCOPES",
    "ApiAuth",
    "ApiToken",
    "LoginRequired",
    "needs",
    "needs_page",
    "resolve_auth",
]

SCOPES = ("read", "run", "admin")
ENV_TOKEN = "JETLOOM_API_TOKEN"
ENV_TOKENS_FILE = "JETLOOM_API_TOKENS_FILE"
OPEN_WARNING = "the HTTP API is open: no token configured; set JETLOOM_API_TOKEN or --api-tokens"
PUBLIC: dict[str, Any] = {"public": True}
"""``opt`` of a handler anyone may call (``/health``, ``/ready``)."""
SCHEME = "bearer"  # the OpenAPI security scheme's name
COOKIE = "jetloom_token"
"""The cookie of the web UI's login: the token itself (HttpOnly, never readable by scripts)."""
HTMX_HEADER = "hx-request"  # htmx sets ``HX-Request: true`` on every request it makes
_HEX = frozenset("0123456789abcdef")


def needs(scope: str) -> dict[str, Any]:
    """``opt`` of a handler that needs ``scope`` (``read``, ``run`` or ``admin``)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; scopes are {', '.join(SCOPES)}")
    return {"scope": scope}


def needs_page(scope: str = "read") -> dict[str, Any]:
    """``opt`` of a web UI handler that needs ``scope``: its token comes from the login cookie,
    and a request without a valid one raises ``LoginRequired`` (the UI redirects to its login
    page) rather than a JSON 401."""
    return {**needs(scope), "page": True}


class LoginRequired(NotAuthorizedException):
    """A web UI page was asked for without a valid login cookie (the UI redirects to
    ``/ui/login``)."""


class ApiToken(msgspec.Struct, frozen=True, kw_only=True):
    """One accepted token: its ``name``, the SHA-256 ``digest`` of its value, its ``scopes``."""

    name: str
    digest: bytes
    scopes: frozenset[str]

    def __repr__(self) -> str:  # the digest is not the token, but there is no need to show it
        return f"ApiToken(name={self.name!r}, scopes={sorted(self.scopes)})"


class _FileToken(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str | None = None
    token: str | None = None
    sha256: str | None = None
    scopes: list[str] = msgspec.field(default_factory=lambda: list(SCOPES))


class _TokensFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    tokens: list[_FileToken] = []


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


class ApiAuth:
    """The tokens the control plane accepts, and the Litestar guard that checks them.

    Args:
        tokens: the accepted tokens (at least one).

    Raises:
        ValueError: no tokens, or a token with an unknown scope.
    """

    def __init__(self, tokens: Iterable[ApiToken]) -> None:
        self.tokens = tuple(tokens)
        if not self.tokens:
            raise ValueError("no API token configured")
        for t in self.tokens:
            unknown = set(t.scopes) - set(SCOPES)
            if unknown:
                raise ValueError(
                    f"token {t.name!r}: unknown scope(s) {', '.join(sorted(unknown))}; scopes are {', '.join(SCOPES)}"
                )

    @classmethod
    def from_token(cls, token: str, *, name: str = ENV_TOKEN) -> ApiAuth:
        """One token with every scope.

        Raises:
            ValueError: an empty token.
        """
        return cls([_single(token, name)])

    @classmethod
    def from_file(cls, path: str | Path) -> ApiAuth:
        """The ``[[tokens]]`` of a TOML file (see the module docstring).

        Raises:
            FileNotFoundError: no such file.
            ValueError: not TOML, an unknown key, an entry with neither or both of ``token`` and
                ``sha256``, a ``sha256`` that is not 64 hex digits, an unknown scope, no entries
                (the message names the file and the entry, never a token).
        """
        return cls(_load_file(Path(path)))

    @property
    def components(self) -> Components:
        """The OpenAPI components declaring the bearer scheme."""
        return Components(
            security_schemes={
                SCHEME: SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description=f"an API token; scopes: {', '.join(SCOPES)}",
                )
            }
        )

    @property
    def security(self) -> list[SecurityRequirement]:
        """The OpenAPI security requirement of every operation."""
        return [{SCHEME: []}]

    def authenticate(self, authorization: str | None) -> ApiToken:
        """The token an ``Authorization`` header value presents.

        Raises:
            NotAuthorizedException: no header, not ``Bearer <token>``, or no such token (401).
        """
        scheme, _, presented = (authorization or "").strip().partition(" ")
        presented = presented.strip()
        if scheme.lower() != "bearer" or not presented:
            raise _unauthorized("an API token is required: send 'Authorization: Bearer <token>'")
        # the header came in as latin-1: back to its bytes, whatever the client encoded
        digest = _digest(presented.encode("latin-1", "replace"))
        found: ApiToken | None = None
        for t in self.tokens:  # every entry, so the time taken does not tell which one matched
            if hmac.compare_digest(digest, t.digest) and found is None:
                found = t
        if found is None:
            raise _unauthorized("the API token is not valid")
        return found

    def guard(self, connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        """Litestar guard: 401 without a valid token, 403 when the token lacks the handler's scope.

        Handlers marked ``PUBLIC`` and those left out of the OpenAPI document (its own pages at
        ``/schema``, static files) pass, web UI pages (``needs_page``) excepted; a handler without a
        scope needs ``admin``. A page takes the token from the login cookie (``LoginRequired``
        without a valid one); the API from the ``Authorization`` header, or from the cookie when
        the request has ``HX-Request: true`` and no ``Authorization`` header (module docstring)."""
        opt = handler.opt or {}
        page = bool(opt.get("page"))
        in_schema = getattr(handler, "resolve_include_in_schema", None)
        if opt.get("public") or (not page and in_schema is not None and not in_schema()):
            return
        scope = opt.get("scope", "admin")
        if page:
            token = self.from_cookie(connection.cookies.get(COOKIE))
            if token is None:
                raise LoginRequired(detail="log in to see this page")
        else:
            authorization = connection.headers.get("authorization")
            cookie = connection.cookies.get(COOKIE)
            if authorization is None and cookie and connection.headers.get(HTMX_HEADER) == "true":
                authorization = f"Bearer {_cookie_token(cookie) or ''}"
            token = self.authenticate(authorization)
        if scope not in token.scopes:
            raise PermissionDeniedException(
                detail=f"token {token.name!r} lacks the {scope!r} scope this endpoint needs",
                extra={"scope": scope, "token": token.name},
            )
        connection.scope["user"] = token.name  # who made the request, for handlers that log it

    def from_cookie(self, value: str | None) -> ApiToken | None:
        """The token a login cookie (``cookie_value``) holds, or ``None`` for no cookie, a
        malformed one or an unknown token (compared as ``authenticate`` does)."""
        token = _cookie_token(value)
        if token is None:
            return None
        try:
            return self.authenticate(f"Bearer {token}")
        except NotAuthorizedException:
            return None


def cookie_value(token: str) -> str:
    """The login cookie's value for ``token``: its UTF-8 bytes in URL-safe base64 without
    padding (any token fits a cookie that way, unquoted)."""
    return base64.urlsafe_b64encode(token.strip().encode()).decode("ascii").rstrip("=")


def _cookie_token(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return base64.urlsafe_b64decode(value.encode("ascii") + b"=" * (-len(value) % 4)).decode("latin-1")
    except (ValueError, UnicodeEncodeError):
        return None


def _unauthorized(reason: str) -> NotAuthorizedException:
    return NotAuthorizedException(detail=reason, headers={"WWW-Authenticate": 'Bearer realm="jetloom"'})


def _single(token: str, name: str) -> ApiToken:
    if not token.strip():
        raise ValueError(f"{name}: the token is empty")
    return ApiToken(name=name, digest=_digest(token.strip().encode()), scopes=frozenset(SCOPES))


def _load_file(path: Path) -> list[ApiToken]:
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    try:
        parsed = msgspec.convert(raw, _TokensFile)
    except msgspec.ValidationError as exc:
        raise ValueError(f"{path}: {exc}") from None
    if not parsed.tokens:
        raise ValueError(f"{path}: no [[tokens]] entries")
    out = []
    for i, entry in enumerate(parsed.tokens, 1):
        name = entry.name or f"token {i}"
        where = f"{path}: token {name!r}"
        if (entry.token is None) == (entry.sha256 is None):
            raise ValueError(f"{where}: give exactly one of 'token' and 'sha256'")
        if entry.token is not None:
            if not entry.token.strip():
                raise ValueError(f"{where}: the token is empty")
            digest = _digest(entry.token.strip().encode())
        else:
            hexed = (entry.sha256 or "").strip().lower()
            if len(hexed) != 64 or not set(hexed) <= _HEX:
                raise ValueError(f"{where}: 'sha256' must be 64 hex digits")
            digest = bytes.fromhex(hexed)
        unknown = set(entry.scopes) - set(SCOPES)
        if unknown:
            raise ValueError(f"{where}: unknown scope(s) {', '.join(sorted(unknown))}; scopes are {', '.join(SCOPES)}")
        out.append(ApiToken(name=name, digest=digest, scopes=frozenset(entry.scopes)))
    return out


def resolve_auth(
    tokens_file: str | Path | None = None,
    *,
    token: str | None = None,
    env: Mapping[str, str] | None = None,
) -> ApiAuth | None:
    """The API's tokens from a tokens file and a single token, each falling back to the
    environment (``JETLOOM_API_TOKENS_FILE``, ``JETLOOM_API_TOKEN``); both may be given, and their
    tokens are all accepted. ``None`` when there is neither (the API is open).

    Raises:
        FileNotFoundError / ValueError: as ``ApiAuth.from_file``; an empty token.
    """
    env = os.environ if env is None else env
    tokens_file = tokens_file or env.get(ENV_TOKENS_FILE) or None
    token = token if token is not None else env.get(ENV_TOKEN) or None
    tokens: list[ApiToken] = []
    if tokens_file:
        tokens += _load_file(Path(tokens_file))
    if token is not None:
        tokens.append(_single(token, ENV_TOKEN))
    return ApiAuth(tokens) if tokens else None
