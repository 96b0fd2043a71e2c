"""What the executor does with a failed step attempt: retry it later, route it to the workflow's
error handler, or fail the run; and the keys that keep each attempt's commit apart.

- **Attempts.** The fold counts a step's failed attempts on a trigger (``RunState.attempts``).
  Attempt 1 commits under the step's usual key ``<run>:<trigger>:<step>``; attempt ``n > 1`` under
  ``<run>:<trigger>:<step>:a<n>``, so a later attempt's commit (after a retry, or a retry-from-
  failure long after the log's duplicate window) is never dropped as a duplicate of an earlier
  one, while a redelivery of the same attempt still is.
- **Retry.** ``StepRetrying`` (the error, the delay) is appended under the failed attempt's key,
  and a ``Resume(reason="retry", attempt=n + 1)`` is scheduled (``EventLog.schedule``) under
  ``<that key>:retry``. A trigger redelivered meanwhile re-schedules it (idempotent) and is acked.
- **Error handler.** With retries exhausted, if the workflow has a ``@catch_error`` step, the
  commit is ``StepFailed(handled_by=<handler>)`` plus a ``StepFailedEvent`` addressed to the
  handler; the fold then does not fail the run.
"""

from __future__ import annotations

import time
import traceback as tb
from datetime import UTC, datetime

import msgspec

from engine.model.events import Event, encode_event, event_fields, event_name
from engine.model.records import OutMessage, StepFailed, StepRetrying
from engine.model.retry import RetryInfo, StepFailedEvent
from engine.ports.log import EventLog
from engine.runtime import tracing
from engine.runtime.serializers import import_qualified
from engine.runtime.spec import StepSpec
from engine.state.fold import RunState
from engine.wire.codec import sys_message
from engine.wire.commit import copy_of, tag_commit
from engine.wire.headers import H_RUN, H_STEP, H_TARGET, H_TRIGGER, H_TYPE, commit_key
from engine.wire.subjects import parse_subject, run_subject

__all__ = ["Failed", "attempt_key", "rebuilt_error", "retry_info", "run_of"]


def attempt_key(run_id: str, trigger_seq: int, step: str, attempt: int, epoch: int = 0) -> str:
    """The idempotency key of attempt ``attempt`` (1-based) of ``step`` on a trigger, after the
    run's ``epoch``-th rollback (``commit_key``)."""
    key = commit_key(run_id, trigger_seq, step, epoch)
    return key if attempt <= 1 else f"{key}:a{attempt}"


def run_of(subject: str) -> str | None:
    """The run id in a run subject (``None`` for other subjects)."""
    parts = parse_subject(subject)
    return parts.run_id if parts is not None else None


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    return f"{cls.__module__}.{cls.__qualname__}"


def rebuilt_error(error_type: str, message: str) -> Exception:
    """An exception standing for one the log recorded as ``error_type`` (``"<module>.<Class>"``)
    with ``message`` (its ``str()``): an instance of that class, made with ``message`` as its only
    argument, where the class imports and is an ``Exception``; otherwise a plain ``Exception``
    whose message names the original type. Its traceback is not rebuilt."""
    try:
        cls = import_qualified(error_type)
    except ValueError:
        cls = None
    if cls is not None and issubclass(cls, Exception):
        try:
            return cls(message)
        except Exception:  # (a constructor that needs other arguments: the instance, args set)
            try:
                exc = cls.__new__(cls)
                exc.args = (message,)
                return exc
            except Exception:
                pass
    return Exception(f"{error_type}: {message}")


def retry_info(run: RunState | None, trigger: int, step: str, attempt: int) -> RetryInfo:
    """Where attempt ``attempt`` (1-based) of ``step`` on trigger ``trigger`` stands in its
    retries, from the run's fold (as llama-index-workflows' ``Context.retry_info()``).

    ``retry_number`` counts the attempts since the first (or since the last retry-from-failure,
    as the retry policy counts them); ``last_exception`` / ``last_failed_at`` come from the
    ``StepRetrying`` record of the previous attempt (``rebuilt_error``); ``elapsed_seconds`` is
    measured from the first failure the log recorded on this trigger (the log records when an
    attempt fails, not when it starts).
    """
    key = (trigger, step)
    since = run.retried_from.get(key, 0) if run is not None else 0
    number = max(0, attempt - 1 - since)
    if number == 0 or run is None:
        return RetryInfo(retry_number=number, elapsed_seconds=0.0, last_exception=None, last_failed_at=None)
    last = run.retrying.get(key)
    first_ns = run.first_failed_ns.get(key)
    elapsed = 0.0 if first_ns is None else max(0.0, (time.time_ns() - first_ns) / 1e9)
    if last is None:
        return RetryInfo(retry_number=number, elapsed_seconds=elapsed, last_exception=None, last_failed_at=None)
    failed_ns = last.retry_at_ns - int(last.delay_ms * 1e6)
    return RetryInfo(
        retry_number=number,
        elapsed_seconds=elapsed,
        last_exception=rebuilt_error(last.error_type, last.message),
        last_failed_at=datetime.fromtimestamp(failed_ns / 1e9, tz=UTC),
    )


class Failed:
    """A step attempt that raised ``error``; ``t0`` is its ``time.perf_counter()`` start."""

    __slots__ = ("error", "t0")

    def __init__(self, error: Exception, t0: float) -> None:
        self.error = error
        self.t0 = t0

    def next_delay(self, spec: StepSpec, st: RunState, seq: int, attempt: int) -> float | None:
        """Seconds until the next attempt, as the step's retry policy decides; ``None``: no more.
        The policy counts attempts since the last retry-from-failure, and ``elapsed_time`` from
        the first recorded failure of this trigger (0 at the first). A policy that raises (or
        returns what is not a number) ends the retries: the attempt fails for good with the
        policy's error."""
        policy = spec.retry_policy
        if policy is None:
            return None
        since = st.retried_from.get((seq, spec.name), 0)
        first_ns = st.first_failed_ns.get((seq, spec.name))
        elapsed = 0.0 if first_ns is None else max(0.0, (time.time_ns() - first_ns) / 1e9)
        try:
            delay = policy.next(elapsed, attempt - since, self.error)
            return None if delay is None else max(0.0, float(delay))
        except Exception as exc:
            # A broken policy ends the retries with its own error (the step's kept as its
            # context), as in llama-index-workflows; the run must not wait on it.
            exc.__context__ = exc.__context__ or self.error
            self.error = exc
            return None

    def retrying(self, step: str, seq: int, attempt: int, delay: float, worker: str) -> StepRetrying:
        """The ``StepRetrying`` record of this failure, the next attempt ``delay`` seconds away."""
        return StepRetrying(
            step=step,
            trigger=seq,
            attempt=attempt,
            error_type=_type_name(self.error),
            message=str(self.error),
            traceback="".join(tb.format_exception(self.error)),
            delay_ms=delay * 1e3,
            retry_at_ns=time.time_ns() + int(delay * 1e9),
            duration_ms=(time.perf_counter() - self.t0) * 1e3,
            worker=worker,
        )

    def routed(
        self,
        log: EventLog,
        workflow: str,
        step: str,
        run_id: str,
        seq: int,
        attempt: int,
        event: Event,
        record: OutMessage,
        handler: str,
        epoch: int = 0,
    ) -> list[OutMessage]:
        """The commit (on ``log``, run ``run_id`` of ``workflow``) handing this failure to the
        error handler step ``handler``:
        ``StepFailed(handled_by=handler)`` (with a copy of the rest of the commit), then a
        ``StepFailedEvent`` addressed to the handler."""
        failed = msgspec.json.decode(record.data, type=StepFailed)
        base = {H_RUN: run_id, H_STEP: step, H_TRIGGER: str(seq)}
        if tracing.traced():  # (the handler's span: a child of the failed step's)
            tracing.inject(base)
        ev = StepFailedEvent(
            step_name=step,
            trigger=seq,
            error_type=failed.error_type,
            message=failed.message,
            attempts=attempt,
            event_type=event_name(type(event)),
            event=event_fields(event),
            traceback=failed.traceback,
        )
        name = event_name(StepFailedEvent)
        out = [
            OutMessage(
                run_subject(log.prefix, workflow, run_id, "evt", name),
                encode_event(ev),
                {**base, H_TYPE: name, H_TARGET: handler},
            )
        ]
        head = msgspec.structs.replace(
            failed, handled_by=handler, messages=[] if log.atomic else copy_of(out, base)
        )
        first = sys_message(log.prefix, workflow, run_id, "StepFailed", head, base)
        return tag_commit([first, *out], attempt_key(run_id, seq, step, attempt, epoch), pipelined=not log.atomic)
