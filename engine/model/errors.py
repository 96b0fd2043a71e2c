"""The jetloom error tree.

::

    JetloomError
    ├── WorkflowValidationError      a step signature (at class creation) or the step graph (at ``run()``) is invalid
    ├── WorkflowConfigurationError   the workflow cannot run at all: no steps, no start or no stop event
    ├── WorkflowRuntimeError         a run could not proceed
    │   ├── StepFailedError          a step raised; carries the step, run id, error type and traceback
    │   ├── WorkflowTimeoutError     the run did not finish within its timeout
    │   ├── WorkflowCancelledError   the run was cancelled
    │   │   └── WorkflowCancelledByUser  what every cancellation is (the reference's name)
    │   ├── WaitTimeoutError         ``ctx.wait_for_event`` got no event within its timeout
    │   ├── DeadLetteredError        a trigger of the run did not decode and was dead-lettered
    │   ├── ChildWorkflowError       a child run (``ctx.run_workflow``) failed, was cancelled or timed out
    │   └── WorkflowStepDoesNotExistError  an event was addressed to a step the workflow lacks
    ├── ContextSerdeError            a context dict (``Context.from_dict``) does not fit the workflow
    ├── ContextStateError            a ``Context`` was used where its run does not allow it
    ├── WorkflowDone                 a run has ended (llama-index-workflows' internal signal; kept for its name)
    ├── RunNotFoundError             no log records for that run id
    ├── InvalidSequenceError         a rollback/fork/state point is not a usable sequence of the run
    ├── RunConflictError             the run cannot take that command now (e.g. a fork's id exists)
    ├── WorkflowVersionError         a run's log does not match the workflow class replaying it
    ├── EventDecodeError             a record's payload does not decode to its declared type
    │   └── EventValidationError     an event a step emits does not match its type's fields
    └── LogError                     the event log refused or failed an operation
        └── AppendError              an append was rejected (carries the server's error code)
            ├── CommitTooLargeError  a commit is larger than the log accepts at once
            └── LastSeqMismatchError the run had records after the sequence the append expected

Every error carries ``run_id``, ``seq`` and ``step`` where they are known (``None`` otherwise).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AppendError",
    "ChildWorkflowError",
    "CommitTooLargeError",
    "ContextSerdeError",
    "ContextStateError",
    "DeadLetteredError",
    "EventDecodeError",
    "EventValidationError",
    "InvalidSequenceError",
    "JetloomError",
    "JetloomWarning",
    "LastSeqMismatchError",
    "LogError",
    "NoLiveWorkerWarning",
    "RunConflictError",
    "RunNotFoundError",
    "StepFailedError",
    "WaitTimeoutError",
    "WorkflowCancelledByUser",
    "WorkflowCancelledError",
    "WorkflowConfigurationError",
    "WorkflowDone",
    "WorkflowRuntimeError",
    "WorkflowStepDoesNotExistError",
    "WorkflowTimeoutError",
    "WorkflowValidationError",
    "WorkflowVersionError",
]


class JetloomError(Exception):
    """Root of every error jetloom raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        run_id: str | None = None,
        seq: int | None = None,
        step: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.run_id = run_id
        self.seq = seq
        self.step = step


class WorkflowValidationError(JetloomError):
    """A workflow definition is invalid; the message names the step and event at fault.

    A step's signature is checked when its class is created (or when ``add_step`` adds it); the
    step graph when a run starts (``Workflow.run``), when a worker loads the workflow, or when
    ``Workflow.validate()`` is called, as llama-index-workflows does."""


class WorkflowConfigurationError(JetloomError):
    """The workflow cannot run at all: it has no steps, no step accepts a ``StartEvent`` (or steps
    accept different ones), or no step produces a ``StopEvent``. Raised when the workflow is
    instantiated and when it is validated, as llama-index-workflows' ``WorkflowConfigurationError``,
    with the same base there (a plain ``Exception``, here ``JetloomError``): it is not a
    ``WorkflowValidationError``, so code catching one of the two as the reference's does the
    same here."""

    def __init__(self, message: str = "the workflow is not configured to run", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)


class WorkflowRuntimeError(JetloomError):
    """A run failed or could not continue."""


class ContextSerdeError(JetloomError):
    """A context dict given to ``Context.from_dict`` (or ``Context(workflow, previous_context)``)
    does not fit: not a dict, a state payload of another shape, or a state that does not validate
    against the workflow's state type. Named as llama-index-workflows' ``ContextSerdeError``."""


class ContextStateError(JetloomError):
    """A ``Context`` was used in a way its stage does not allow: a step-only call made from
    outside a step (or before the run started), or a handler-only call made inside a step. Named
    as llama-index-workflows' ``ContextStateError``."""


class StepFailedError(WorkflowRuntimeError):
    """A step raised while handling an event, and the run failed with it.

    Attributes:
        step: the step's name.
        error_type: qualified name of the exception class the step raised (``"builtins.ValueError"``).
        error_message: ``str()`` of that exception.
        traceback: the formatted traceback, as recorded in the ``StepFailed`` log record.
    """

    def __init__(
        self,
        *,
        step: str,
        error_type: str,
        error_message: str,
        traceback: str = "",
        run_id: str | None = None,
        seq: int | None = None,
    ) -> None:
        super().__init__(
            f"step {step!r} failed: {error_type}: {error_message}",
            run_id=run_id,
            seq=seq,
            step=step,
        )
        self.error_type = error_type
        self.error_message = error_message
        self.traceback = traceback


class WorkflowTimeoutError(WorkflowRuntimeError):
    """The run did not complete within its timeout."""


class WorkflowCancelledError(WorkflowRuntimeError):
    """The run was cancelled before it completed (by ``handler.cancel_run()``, ``jetloom cancel``,
    the HTTP API, or its parent's end); awaiting its handler raises it.

    Every instance is a ``WorkflowCancelledByUser`` (constructing this class makes one), so
    ``except`` with either name catches every cancellation, and the error's type name is
    llama-index-workflows' one."""

    def __new__(cls, *args: Any, **kwargs: Any) -> WorkflowCancelledError:
        return super().__new__(WorkflowCancelledByUser if cls is WorkflowCancelledError else cls, *args)

    def __init__(self, message: str = "the run was cancelled", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)


class WorkflowCancelledByUser(WorkflowCancelledError):
    """A cancelled run, named as llama-index-workflows' ``WorkflowCancelledByUser`` (there a
    plain ``Exception``); what awaiting a cancelled run raises. See ``WorkflowCancelledError``."""


class WorkflowStepDoesNotExistError(WorkflowRuntimeError):
    """An event was addressed to a step the workflow does not have (``ctx.send_event(ev,
    step="nope")``); the step that sent it fails with this error. Named as llama-index-workflows'
    ``WorkflowStepDoesNotExistError`` (which raises a ``WorkflowRuntimeError`` there: this is one)."""


class WorkflowDone(JetloomError):
    """A run has ended. llama-index-workflows raises it inside its own loop to stop its workers;
    jetloom never raises it (a run ends with its terminal record) and keeps it so that code
    naming it imports."""

    def __init__(self, message: str = "the run is done", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)


class DeadLetteredError(WorkflowRuntimeError):
    """A trigger of the run could not be handled (its payload does not decode into its event type)
    and was moved to the dead-letter stream; the run failed with it (``sys.RunFailed`` with
    ``error_type="DeadLetteredError"`` and a ``dead_letter`` naming the subject, step and reason)."""


class WaitTimeoutError(WorkflowRuntimeError, TimeoutError):
    """``ctx.wait_for_event`` got no matching event within its ``timeout`` (raised in the step,
    which may catch it; also a ``TimeoutError``)."""


class ChildWorkflowError(WorkflowRuntimeError):
    """A child run started with ``ctx.run_workflow`` did not complete; raised in the parent step,
    which may catch it.

    Attributes:
        child_workflow / child_run_id: the child run.
        status: ``"failed"``, ``"cancelled"`` or ``"timed_out"`` (no result within the call's
            ``timeout``; the child is then cancelled).
        error_type: for a failed child, the qualified name of the exception its step raised
            (``"builtins.ValueError"``), or the RunFailed record's type; else ``None``.
        error_message: that exception's message (or the cancel reason).
        child_step: the child's step that raised, when a step raised.
        traceback: the child step's traceback, as recorded in its ``StepFailed``.
        run_id / step: the parent run and the parent step that made the call.
    """

    def __init__(
        self,
        *,
        child_workflow: str,
        child_run_id: str,
        status: str,
        error_type: str | None = None,
        error_message: str = "",
        child_step: str | None = None,
        traceback: str = "",
        run_id: str | None = None,
        step: str | None = None,
    ) -> None:
        what = f"{error_type}: {error_message}" if error_type else error_message or status
        super().__init__(
            f"child workflow {child_workflow} run {child_run_id} {status}: {what}",
            run_id=run_id,
            step=step,
        )
        self.child_workflow = child_workflow
        self.child_run_id = child_run_id
        self.status = status
        self.error_type = error_type
        self.error_message = error_message
        self.child_step = child_step
        self.traceback = traceback


class RunNotFoundError(JetloomError):
    """No records exist for the run id."""


class InvalidSequenceError(JetloomError, ValueError):
    """A stream sequence given for a rollback, fork or state query is not usable for that run
    (not one of its records, undone by an earlier rollback, before its start, or inside a
    commit); the message says which, ``seq`` holds it."""


class RunConflictError(JetloomError):
    """The run is in no state to take the command (nothing to roll back, the fork's run id is
    taken, a fork still being copied)."""


class WorkflowVersionError(JetloomError):
    """Replaying a run with a workflow class that does not match its log (nondeterminism).

    Attributes:
        missing_steps: steps the log names that the class lacks.
        unknown_events: event types in the log that the class neither accepts nor produces.
        undecodable: ``(seq, event type, decode error)`` of events the class's types no longer
            decode (a field changed).
    """

    def __init__(
        self,
        message: str,
        *,
        run_id: str | None = None,
        missing_steps: list[str] | None = None,
        unknown_events: list[str] | None = None,
        undecodable: list[tuple[int, str, str]] | None = None,
    ) -> None:
        super().__init__(message, run_id=run_id)
        self.missing_steps = missing_steps or []
        self.unknown_events = unknown_events or []
        self.undecodable = undecodable or []


class EventDecodeError(JetloomError, ValueError):
    """A payload does not decode to the event or record type it claims to be."""


class EventValidationError(EventDecodeError):
    """An event does not match its type: a field holds a value of another type than its
    annotation (msgspec Structs do not check on construction). The message names the event type
    and the field (msgspec's path, ``$.count``). Raised where an event enters a run: a step that
    emits it fails (its retry policy applies), and an event sent from outside is refused."""


class LogError(JetloomError):
    """The event log failed an operation."""


class AppendError(LogError):
    """The log rejected an append.

    Attributes:
        code: the server's JetStream error code (``err_code``), e.g. 10071 for a wrong last sequence.
    """

    def __init__(self, message: str, *, code: int | None = None, run_id: str | None = None) -> None:
        super().__init__(message, run_id=run_id)
        self.code = code


class CommitTooLargeError(AppendError):
    """A step's commit is larger than the log takes: for JetStream, more messages than one atomic
    batch holds (``commit="batch"``; ``jetstream.limits.batch.max_msgs`` in the server config,
    1,000 by default), or a first record (which carries a copy of the commit) over the server's
    ``max_payload`` (1 MB by default; ``nats.conf`` sets 8 MB). Retrying cannot help, so the step
    fails with this error."""


class LastSeqMismatchError(AppendError):
    """An append made with ``expected_last_seq`` found other records of the run after that
    sequence (JetStream ``err_code`` 10071); nothing was stored."""


class JetloomWarning(UserWarning):
    """Root of every warning jetloom emits (``warnings.warn``): something works, but likely not
    as the caller expects."""


class NoLiveWorkerWarning(JetloomWarning):
    """A run was started (or awaited) for a workflow that no live worker serves: it waits in
    JetStream until a worker serving the workflow starts, and awaiting it waits until then.

    Args:
        workflow / run_id: the run (kept as attributes of the same names).
    """

    def __init__(self, workflow: str, run_id: str) -> None:
        super().__init__(
            f"no live worker serves workflow {workflow!r}: run {run_id} waits in JetStream "
            "until a worker serving it starts"
        )
        self.workflow = workflow
        self.run_id = run_id
