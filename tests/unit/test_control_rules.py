"""The control plane's rules without a server: names and ids (services.control.validation), which
errors mean NATS is unavailable (services.control.errors), API tokens (services.control.auth)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import nats.errors
import nats.js.errors
import pytest
from litestar import Litestar, get
from litestar.exceptions import NotAuthorizedException
from litestar.testing import TestClient
from nats.js.kv import VALID_KEY_RE

from engine.jetstream.retry import LogUnavailableError
from engine.model.errors import AppendError, CommitTooLargeError, LogError
from engine.wire.subjects import check_token
from services.control import validation
from services.control.auth import SCOPES, ApiAuth, resolve_auth
from services.control.errors import ApiError, nats_unavailable, unexpected_error


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "is empty"),
        ("x" * 129, "129 characters long"),
        ("a.b", "'.'"),
        ("..", "'.'"),
        ("*", "'*'"),
        (">", "'>'"),
        ("a b", "whitespace"),
        ("a\tb", "whitespace"),
        ("a\x00b", "control character (U+0000)"),
        ("a\x7fb", "control character (U+007F)"),
        ("\ufffd\ufffd", "not valid UTF-8"),
        ("a\udcffb", "not valid UTF-8"),
        ("été", "'é'"),
        ("$JS", "'$'"),
    ],
)
def test_bad_names_are_told_apart(value: str, why: str) -> None:
    assert why in (validation.problem(value) or "")
    with pytest.raises(ApiError) as info:
        validation.name(value, "run_id", "run id")
    assert info.value.status_code == 400 and info.value.extra == {"field": "run_id"}
    assert why in info.value.detail and info.value.detail.startswith("run id ")


def test_a_good_name_is_a_subject_token_and_a_kv_key() -> None:
    for value in ("a", "Chain3", "x" * 128, "0f3a-b_c", "-"):
        assert validation.name(value, "name") == value
        assert check_token(value, "x") == value and VALID_KEY_RE.match(value)
        assert re.fullmatch(validation.NAME_PATTERN, value)
    with pytest.raises(ApiError) as info:
        validation.name(3, "step")
    assert info.value.status_code == 422


@pytest.mark.parametrize(
    "exc",
    [
        nats.errors.NoRespondersError(),
        nats.errors.TimeoutError(),
        nats.errors.ConnectionClosedError(),
        nats.errors.ConnectionReconnectingError(),
        nats.js.errors.ServiceUnavailableError(),
        nats.js.errors.APIError(code=503, description="JetStream system temporarily unavailable"),
        nats.js.errors.ServerError(code=500, err_code=10118, description="stream is offline"),
        nats.js.errors.APIError(code=500, description="no suitable peers for placement"),
        LogError("direct get on JETLOOM failed: status 503 {}"),
        AppendError("append rejected: no responders"),
        TimeoutError(),
        LogUnavailableError("append to JETLOOM: no leader after 20 s"),
    ],
)
def test_errors_that_mean_nats_is_unavailable(exc: BaseException) -> None:
    assert nats_unavailable(exc) is not None


@pytest.mark.parametrize(
    "exc",
    [
        nats.js.errors.NotFoundError(code=404, description="stream not found"),
        nats.js.errors.BadRequestError(code=400, description="bad request"),
        AppendError("append rejected: wrong last sequence: 7", code=10071),
        ValueError("x"),
        nats.js.errors.InvalidKeyError(),  # a name validation missed: a bug, so a 500
    ],
)
def test_other_errors_are_not_unavailability(exc: BaseException) -> None:
    assert nats_unavailable(exc) is None


def test_the_logs_give_up_error_is_503_with_its_retry_after() -> None:
    @get("/x")
    async def fail() -> None:
        raise _unavailable(7.0)

    with TestClient(Litestar([fail], exception_handlers={Exception: unexpected_error})) as c:
        r = c.get("/x")
    assert r.status_code == 503
    assert r.headers["retry-after"] == "7"
    assert r.json()["retry_after"] == 7


def _unavailable(retry_after_s: float) -> LogUnavailableError:
    exc = LogUnavailableError("read of JETLOOM: stream is offline")
    exc.retry_after_s = retry_after_s
    return exc


def test_tokens_file_by_value_and_by_digest(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    digest = hashlib.sha256(b"s3cret").hexdigest()
    path.write_text(
        f'[[tokens]]\nname = "a"\ntoken = "v4lue"\nscopes = ["read"]\n'
        f'[[tokens]]\nname = "b"\nsha256 = "{digest.upper()}"\n'
    )
    auth = ApiAuth.from_file(path)
    assert auth.authenticate("Bearer v4lue").name == "a"
    assert auth.authenticate("bearer   s3cret ").scopes == frozenset(SCOPES)  # default: every scope
    for header in (None, "", "Bearer", "Basic v4lue", "Bearer nope", "Bearer v4lue2"):
        with pytest.raises(NotAuthorizedException):
            auth.authenticate(header)
    assert "v4lue" not in repr(auth.tokens) and digest not in repr(auth.tokens)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no [[tokens]]"),
        ("[[tokens]]\nname = 'x'\n", "exactly one of 'token' and 'sha256'"),
        ("[[tokens]]\nname = 'x'\ntoken = 'a'\nsha256 = '00'\n", "exactly one of"),
        ("[[tokens]]\nname = 'x'\nsha256 = 'zz'\n", "64 hex digits"),
        ("[[tokens]]\nname = 'x'\ntoken = ' '\n", "empty"),
        ("[[tokens]]\nname = 'x'\ntoken = 'a'\nscopes = ['write']\n", "unknown scope(s) write"),
        ("[[tokens]]\nname = 'x'\ntoken = 'a'\nrole = 'admin'\n", "role"),
        ("[[tokens]\n", "not valid TOML"),
    ],
)
def test_bad_tokens_files_name_the_problem_and_never_the_token(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "t.toml"
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        ApiAuth.from_file(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_resolve_auth_reads_the_environment(tmp_path: Path) -> None:
    assert resolve_auth(env={}) is None
    auth = resolve_auth(env={"JETLOOM_API_TOKEN": "abc"})
    assert auth is not None and auth.authenticate("Bearer abc").scopes == frozenset(SCOPES)
    path = tmp_path / "t.toml"
    path.write_text('[[tokens]]\nname = "r"\ntoken = "rrr"\nscopes = ["read"]\n')
    both = resolve_auth(env={"JETLOOM_API_TOKEN": "abc", "JETLOOM_API_TOKENS_FILE": str(path)})
    assert both is not None and {t.name for t in both.tokens} == {"r", "JETLOOM_API_TOKEN"}
    with pytest.raises(ValueError):
        resolve_auth(env={"JETLOOM_API_TOKEN": "  "})


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (nats.errors.MaxPayloadError(), 413),
        (CommitTooLargeError("a message of 9,000,000 bytes exceeds the server's max_payload"), 413),
        (nats.errors.NoRespondersError(), 503),
        (nats.js.errors.ServerError(code=500, err_code=10118, description="stream is offline"), 503),
        (RuntimeError("a bug"), 500),
    ],
)
def test_the_one_exception_handler_maps_what_escapes_a_handler(exc: Exception, status: int) -> None:
    @get("/boom", sync_to_thread=False)
    def boom() -> None:
        raise exc

    app = Litestar([boom], exception_handlers={Exception: unexpected_error}, logging_config=None)
    with TestClient(app) as http:
        resp = http.get("/boom")
    assert resp.status_code == status and resp.json()["status"] == status and resp.json()["error"]
    assert ("retry-after" in resp.headers) == (status == 503)
    assert "Traceback" not in resp.text
