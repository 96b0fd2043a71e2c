"""Decoding raw log messages into records, with the decoders built once (msgspec perf tips), and
encoding engine records as messages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from engine.model.errors import EventDecodeError
from engine.model.events import Event, decode_event, known_event
from engine.model.records import SYS_TYPES, OutMessage, RawRecord, Record, Resume
from engine.wire.headers import H_CLASS, H_COMMIT, H_STEP, H_TARGET, H_TRIGGER, H_TYPE
from engine.wire.subjects import SubjectParts, parse_subject, run_subject

__all__ = ["decode_record", "encode", "subject_parts", "sys_message"]

_SYS_DECODERS = {name: msgspec.json.Decoder(t) for name, t in SYS_TYPES.items()}
_ANY_DECODER = msgspec.json.Decoder(dict[str, Any])
_RESUME_DECODER = msgspec.json.Decoder(Resume)
_encoder = msgspec.json.Encoder()
# The parts of the subjects decoded lately: a run's records use a handful of subjects.
_SUBJECTS: dict[str, SubjectParts] = {}
_SUBJECTS_MAX = 4096

encode = _encoder.encode


def subject_parts(subject: str) -> SubjectParts | None:
    """``parse_subject``, remembered for the last few thousand subjects (a run's records use a
    handful); ``None`` for a subject that is not a run subject."""
    parts = _SUBJECTS.get(subject)
    if parts is None:
        parts = parse_subject(subject)
        if parts is None:
            return None
        if len(_SUBJECTS) >= _SUBJECTS_MAX:
            _SUBJECTS.clear()
        _SUBJECTS[subject] = parts
    return parts


def decode_record(
    raw: RawRecord, events: Mapping[str, type[Event]] | None = None, *, typed: bool = True
) -> Record:
    """Decode one raw message of a run subject.

    Events whose type is in ``events`` decode to their class; other events decode to plain dicts.
    With ``typed=False`` every event decodes to a plain dict (its fields and ``$type``), whatever
    classes this process knows.
    A payload that does not decode yields a record with ``body=None`` and ``error`` set, never an
    exception, so one bad message cannot stop a reader.
    """
    subject = raw.subject
    parts = _SUBJECTS.get(subject) or subject_parts(subject)
    if parts is None:
        return Record(raw.seq, "?", "?", "?", "?", raw.time_ns, None, error=f"not a run subject: {subject}")
    h = raw.headers
    kind = parts.kind
    body: Any = None
    error: str | None = None
    try:
        if kind == "sys":
            dec = _SYS_DECODERS.get(parts.type)
            if dec is None:
                raise EventDecodeError(f"unknown engine record type {parts.type!r}")
            body = dec.decode(raw.data)
        elif kind == "cmd":
            body = _RESUME_DECODER.decode(raw.data)
        elif kind != "sch":  # (sch: a pending timer; the record it becomes when it fires counts)
            cls = (
                ((events.get(parts.type) if events else None) or known_event(parts.type, h.get(H_CLASS)))
                if typed
                else None
            )
            body = decode_event(cls, raw.data) if cls is not None else _ANY_DECODER.decode(raw.data)
    except (EventDecodeError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        error = str(exc)
    trigger = h.get(H_TRIGGER)
    if trigger is not None:
        try:
            trigger_seq: int | None = int(trigger)
        except ValueError:
            trigger_seq = None
    else:
        trigger_seq = None
    # (positional: msgspec builds a struct from keywords more slowly)
    return Record(
        raw.seq,
        kind,
        parts.type,
        parts.workflow,
        parts.run_id,
        raw.time_ns,
        body,
        h.get(H_STEP),
        trigger_seq,
        h.get(H_TARGET),
        error,
        h.get(H_COMMIT),
    )


def sys_message(
    prefix: str, workflow: str, run_id: str, name: str, body: msgspec.Struct, base: Mapping[str, str]
) -> OutMessage:
    """Engine record ``body`` (type ``name``, e.g. ``"StepCompleted"``) as a message on the run's
    ``sys.<name>`` subject, with the headers ``base`` plus ``Jl-Type``.

    Raises:
        TypeError: ``body`` does not encode (a field holds a value msgspec cannot encode).
    """
    try:
        data = encode(body)
    except (TypeError, msgspec.EncodeError) as exc:
        raise TypeError(f"{name} record does not encode: {exc}") from exc
    return OutMessage(run_subject(prefix, workflow, run_id, "sys", name), data, {**base, H_TYPE: name})
