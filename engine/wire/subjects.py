"""Subjects of the log, and the names that become their tokens.

Subject layout, prefix configurable (default ``jetloom``)::

    <prefix>.run.<workflow>.<run_id>.evt.<EventType>    user events; what steps consume
    <prefix>.run.<workflow>.<run_id>.sys.<RecordType>   engine records (RunStarted, StepCompleted, ...)
    <prefix>.run.<workflow>.<run_id>.out.<EventType>    write_event_to_stream output
    <prefix>.run.<workflow>.<run_id>.cmd.<step>         commands to a step (Resume)
    <prefix>.run.<workflow>.<run_id>.sch.<name>         pending message schedules (durable timers)
"""

from __future__ import annotations

import re
from typing import Final, Literal

import msgspec

__all__ = [
    "DEFAULT_PREFIX",
    "KINDS",
    "Kind",
    "NAME_MAX",
    "SubjectParts",
    "TOKEN_PATTERN",
    "check_run",
    "check_token",
    "parse_subject",
    "run_filter",
    "run_subject",
]

DEFAULT_PREFIX: Final = "jetloom"

Kind = Literal["evt", "sys", "out", "cmd", "sch"]
#: ``cmd.<step>``: a command to a step (``Resume``), delivered by the step's commands consumer;
#: ``sch.<id>``: a pending message schedule (a durable timer), removed by the server when it fires.
KINDS: Final = ("evt", "sys", "out", "cmd", "sch")

NAME_MAX: Final = 128
"""The most characters a name or id that becomes a subject token may have (workflow, run id,
session id, step, event type). Three of them and the fixed parts of a subject stay far below
nats-server's 4,096-byte control line: a longer line gets ``-ERR`` and nats-py closes the
connection for good. The control plane's HTTP rules use the same limit."""

TOKEN_PATTERN: Final = r"^[A-Za-z0-9_-]+$(?!\n)"
"""A subject token's characters, as a regex for ``re.search`` and JSON Schema alike (the
``(?!\n)``: Python's ``$`` also matches before a trailing newline, which is no token character)."""

_TOKEN = re.compile(TOKEN_PATTERN)


def check_token(value: str, what: str) -> str:
    """Return ``value`` if it is usable as one subject token: 1 to ``NAME_MAX`` characters of
    ``A-Z a-z 0-9 _ -``.

    Raises:
        ValueError: naming ``what`` and the bad value (cut to 40 characters).
    """
    if isinstance(value, str) and 0 < len(value) <= NAME_MAX and _TOKEN.search(value):
        return value
    shown = value if not isinstance(value, str) or len(value) <= 40 else value[:40] + "..."
    size = f" ({len(value)} characters)" if isinstance(value, str) and len(value) > NAME_MAX else ""
    raise ValueError(
        f"{what} {shown!r}{size} must be 1 to {NAME_MAX} characters of [A-Za-z0-9_-] "
        "to be a NATS subject token"
    )


def run_subject(prefix: str, workflow: str, run_id: str, kind: Kind, type_name: str) -> str:
    """The subject a record of ``type_name`` of run ``run_id`` is appended on."""
    return f"{prefix}.run.{workflow}.{run_id}.{kind}.{type_name}"


def run_filter(prefix: str, workflow: str, run_id: str) -> str:
    """The subject filter matching every record of one run."""
    return f"{prefix}.run.{workflow}.{run_id}.>"


def check_run(workflow: str, run_id: str) -> None:
    """Names from outside become subject tokens: a bad one must fail here, not make the server
    answer ``-ERR`` (and nats-py close the connection).

    Raises:
        ValueError: ``workflow`` or ``run_id`` is not a subject token (``check_token``).
    """
    check_token(workflow, "workflow")
    check_token(run_id, "run id")


class SubjectParts(msgspec.Struct, frozen=True, gc=False):
    workflow: str
    run_id: str
    kind: str
    type: str


def parse_subject(subject: str) -> SubjectParts | None:
    """Split a run subject into its parts; ``None`` if it is not a run subject."""
    parts = subject.rsplit(".", 5)
    if len(parts) != 6 or parts[1] != "run" or parts[4] not in KINDS:
        return None
    return SubjectParts(parts[2], parts[3], parts[4], parts[5])
