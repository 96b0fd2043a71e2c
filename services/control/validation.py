"""The rules every name and id from outside meets before it reaches NATS, in one place.

A name or id (workflow, run id, session id, event type, step, and ``Idempotency-Key`` on a start,
where it becomes the run id) is 1 to ``NAME_MAX`` (128) characters of ``A-Z a-z 0-9 _ -``. That
is the engine's subject-token rule (``engine.wire.subjects.check_token``), which keeps every subject
token free of ``.``, ``*``, ``>``, whitespace, control characters and NUL, is a subset of nats-py's
KV key rule (``nats.js.kv``: ``[-/_=.a-zA-Z0-9]+``), and keeps a subject built from three of them
far below nats-server's 4,096-byte control line (a longer line gets ``-ERR`` and nats-py closes the
connection for good). An ``Idempotency-Key`` sent with an event is 1 to ``IDEMPOTENCY_KEY_MAX``
(256) printable ASCII characters (it goes into a ``Nats-Msg-Id`` header, not a subject). Stream
sequences (``cursor``, ``after``, ``at``, ``Last-Event-ID``) are integers from 0 to ``SEQ_MAX``.

Path, query and header parameters are declared with the ``Annotated`` types below: Litestar checks
them before the handler runs (400 naming the field) and the OpenAPI document shows each rule.
Body fields are checked with ``name`` (400, or 422 when not a string). Invalid UTF-8 in a path
is decoded by Litestar to U+FFFD and fails the same rules.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any

from litestar import Request, Response
from litestar.exceptions import ValidationException
from litestar.params import HeaderParameter, PathParameter, QueryParameter
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_422_UNPROCESSABLE_ENTITY

from engine.wire.subjects import NAME_MAX, TOKEN_PATTERN

from .errors import ApiError, error_body

__all__ = [
    "IDEMPOTENCY_KEY_MAX",
    "NAME_MAX",
    "SEQ_MAX",
    "EventIdempotencyKey",
    "LastEventId",
    "Name",
    "OptionalName",
    "Seq",
    "StartIdempotencyKey",
    "name",
    "parameter_error",
    "problem",
]

IDEMPOTENCY_KEY_MAX = 256  # characters of an Idempotency-Key sent with an event
SEQ_MAX = 2**63 - 1  # the largest stream sequence accepted (JetStream's are uint64)

NAME_PATTERN = TOKEN_PATTERN  # (with NAME_MAX: the engine's rule, one source)
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]+$"  # printable ASCII, no space
SEQ_PATTERN = r"^[0-9]{1,19}$"

NAME_RULE = f"names and ids are 1 to {NAME_MAX} characters of A-Z a-z 0-9 _ -"
IDEMPOTENCY_KEY_RULE = f"an Idempotency-Key is 1 to {IDEMPOTENCY_KEY_MAX} printable ASCII characters"
SEQ_RULE = f"a stream sequence is an integer from 0 to {SEQ_MAX}"

_NAME = re.compile(NAME_PATTERN)
# What a parameter is called in error bodies when its Python name differs (headers).
_FIELD_NAMES = {"last_event_id": "Last-Event-ID", "idempotency_key": "Idempotency-Key"}
# The rule quoted after Litestar's own message for each declared parameter.
_RULES = {
    "name": NAME_RULE,
    "run_id": NAME_RULE,
    "session_id": NAME_RULE,
    "workflow": NAME_RULE,
    "idempotency_key": f"on a start it becomes the run id: {NAME_RULE}; with an event, {IDEMPOTENCY_KEY_RULE}",
    "last_event_id": SEQ_RULE,
    "cursor": SEQ_RULE,
    "after": SEQ_RULE,
    "at": SEQ_RULE,
}


def _name_param(kind: Any, description: str, **kw: Any) -> Any:
    return kind(
        pattern=NAME_PATTERN, min_length=1, max_length=NAME_MAX, description=f"{description} ({NAME_RULE})", **kw
    )


Name = Annotated[str, _name_param(PathParameter, "a workflow name, run id or session id")]
"""A path parameter naming a workflow, run or session."""
OptionalName = Annotated[str | None, _name_param(QueryParameter, "a name or id")]
"""An optional query parameter naming a workflow or run."""
Seq = Annotated[int, QueryParameter(ge=0, le=SEQ_MAX, description=SEQ_RULE)]
"""A stream sequence (``cursor``, ``after``)."""
OptionalSeq = Annotated[int | None, QueryParameter(ge=0, le=SEQ_MAX, description=SEQ_RULE)]
"""An optional stream sequence (``after``, ``at``)."""
LastEventId = Annotated[
    str | None,
    HeaderParameter(name="Last-Event-ID", pattern=SEQ_PATTERN, required=False, description=SEQ_RULE),
]
"""The SSE ``Last-Event-ID`` header: the last stream sequence the client has."""
StartIdempotencyKey = Annotated[
    str | None,
    _name_param(
        HeaderParameter, "makes the start idempotent; it becomes the run id", name="Idempotency-Key", required=False
    ),
]
"""``Idempotency-Key`` on a start: it becomes the run id, so it follows the name rule."""
EventIdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        pattern=IDEMPOTENCY_KEY_PATTERN,
        min_length=1,
        max_length=IDEMPOTENCY_KEY_MAX,
        required=False,
        description=f"makes a retried send append once ({IDEMPOTENCY_KEY_RULE})",
    ),
]
"""``Idempotency-Key`` on an event sent to a run."""


def parameter_error(request: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    """Litestar's 400 for a parameter that breaks its rule, as ``{"error", "status", "field",
    "errors"}``: ``field`` is the parameter's name on the wire (``Last-Event-ID`` for a header) and
    the error quotes the rule."""
    body = error_body(exc)
    if isinstance(exc.extra, list) and exc.extra:
        first = exc.extra[0]
        if isinstance(first, dict):
            key = str(first.get("key"))
            field = _FIELD_NAMES.get(key, key)
            rule = _RULES.get(key)
            body["field"] = field
            body["error"] = f"invalid {field}: {first.get('message')}" + (f" ({rule})" if rule else "")
        body["errors"] = exc.extra
    return Response(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))


def problem(value: str) -> str | None:
    """What makes ``value`` unusable as a name or id, or ``None`` if it is fine."""
    if not value:
        return "is empty"
    if len(value) > NAME_MAX:
        return f"is {len(value)} characters long (at most {NAME_MAX})"
    if _NAME.search(value):
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    for ch in value:
        if _NAME.match(ch):
            continue
        if ch in ".*>":
            return f"contains {ch!r} (a NATS subject separator or wildcard)"
        if ch == "\ufffd":
            return "is not valid UTF-8"
        if ch.isspace():
            return f"contains whitespace ({ch!r})"
        if unicodedata.category(ch).startswith("C"):
            return f"contains a control character (U+{ord(ch):04X})"
        return f"contains {ch!r}"
    return None  # pragma: no cover - every character matched one by one


def name(value: Any, field: str, what: str | None = None) -> str:
    """Return ``value`` if it is a usable name or id (see the module docstring); ``field`` is the
    body field it came from, ``what`` what to call it in the message (default: ``field``).

    Raises:
        ApiError: 422 when ``value`` is not a string, 400 naming ``field``, the value's problem and
            the rule otherwise.
    """
    if not isinstance(value, str):
        raise ApiError(
            status_code=HTTP_422_UNPROCESSABLE_ENTITY,
            detail=f"{field!r} must be a string, not {type(value).__name__}",
            extra={"field": field},
        )
    why = problem(value)
    if why is not None:
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise ApiError(
            status_code=HTTP_400_BAD_REQUEST,
            detail=f"{what or field} {shown!r} {why}; {NAME_RULE}",
            extra={"field": field},
        )
    return value
