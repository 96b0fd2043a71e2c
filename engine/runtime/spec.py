"""What a workflow class declares, as the runtime reads it: its steps (``StepSpec``, made from
the ``@step`` marks), its event types and its start event (``WorkflowDefinition``), and the
checks of its step graph (``validate``).

``engine.workflow.Workflow`` reads a class's step signatures into ``StepSpec`` when the class is
created (or a free-function step is added to it), and validates the graph (``validate``) when a run
starts, as llama-index-workflows does; ``graph`` reads an unvalidated graph. The runtime (executor,
children, time travel, description) types against ``WorkflowDefinition`` here, so it never imports
the ``Workflow`` class above it.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, ClassVar, Protocol, TypeVar

from engine.model.errors import WorkflowConfigurationError, WorkflowValidationError
from engine.model.events import (
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StopEvent,
    event_name,
)
from engine.model.retry import StepFailedEvent
from engine.runtime.resources import ResourceDefinition
from engine.wire.subjects import check_token

__all__ = [
    "DEFAULT_NUM_WORKERS",
    "STEP_MARK",
    "StepSpec",
    "WorkflowDefinition",
    "catch_error",
    "check_configured",
    "check_name",
    "graph",
    "is_free_function",
    "step",
    "validate",
    "validate_class",
]

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_NUM_WORKERS = 4  # llama-index-workflows' default for @step(num_workers=...)
STEP_MARK = "__jl_step__"  # the attribute ``@step`` sets on a method: its options, as a dict


@dataclass(frozen=True)
class StepSpec:
    """A validated step.

    Attributes:
        name: the method name; also the step's consumer name.
        fn: the function (called with ``self``, and ``ctx`` / the event by keyword).
        accepts: event classes it handles.
        produces: event classes its return annotation declares.
        event_param / ctx_param: parameter names (``ctx_param`` is ``None`` if it takes no context).
        num_workers: concurrent handlers of this step per process (default 4).
        is_async: ``async def`` (a plain ``def`` runs in a worker thread).
        retry_policy: decides retries of a failed attempt (``engine.model.retry``); ``None``: none.
        timeout: seconds one attempt may run before it fails with ``StepTimeoutError``.
        catch_error: this is the workflow's error handler (``@catch_error``).
        state_type: the pydantic model of the run's typed state (``ctx: Context[MyState]``);
            after ``validate``, every step of a workflow carries the workflow's one state type
            (``None``: untyped, dict state).
        resources: its ``Annotated[T, Resource(...)]`` parameters (``engine.runtime.resources``).
        bound: ``fn`` is a method, called with the workflow instance first; ``False`` for a
            free-function step (``@step(workflow=...)``, ``Workflow.add_step``).
    """

    name: str
    fn: Callable[..., Any]
    accepts: tuple[type[Event], ...]
    produces: tuple[type[Event], ...]
    event_param: str
    ctx_param: str | None
    num_workers: int
    is_async: bool
    retry_policy: Any = None
    timeout: float | None = None
    catch_error: bool = False
    state_type: type | None = None
    resources: tuple[ResourceDefinition, ...] = ()
    bound: bool = True

    @property
    def accepts_names(self) -> tuple[str, ...]:
        return tuple(event_name(t) for t in self.accepts)


class WorkflowDefinition(Protocol):
    """What the runtime reads from a workflow (class or instance): ``engine.workflow.Workflow``
    sets these when a subclass is created.

    Attributes:
        workflow_name: the name used in subjects.
        steps: ``{step name: StepSpec}``.
        events: ``{event name: class}`` of every event the graph accepts or produces.
        start_event_class: the StartEvent (sub)class the workflow starts with.
    """

    workflow_name: ClassVar[str]
    steps: ClassVar[dict[str, StepSpec]]
    events: ClassVar[dict[str, type[Event]]]
    start_event_class: ClassVar[type[StartEvent]]


def is_free_function(fn: Callable[..., Any]) -> bool:
    """``fn`` is defined at module level or inside a function, not in a class body (from its
    ``__qualname__``: ``f`` or ``outer.<locals>.f``, not ``Cls.f``)."""
    parts = getattr(fn, "__qualname__", "").split(".")
    return len(parts) == 1 or parts[-2] == "<locals>"


def _locals_of(depth: int) -> dict[str, Any]:
    frame = inspect.currentframe()
    try:
        for _ in range(depth + 1):
            frame = frame.f_back if frame is not None else None
        return dict(frame.f_locals) if frame is not None else {}
    finally:
        del frame


def step(
    fn: F | None = None,
    *,
    workflow: Any = None,
    num_workers: int = DEFAULT_NUM_WORKERS,
    retry_policy: Any = None,
    timeout: float | timedelta | None = None,
    catch_error: bool = False,
) -> Any:
    """Mark a workflow method as a step. Use bare (``@step``) or with options.

    On a free function (module level or local to a function), name its workflow:
    ``@step(workflow=MyWorkflow)`` adds it to that class (``MyWorkflow.add_step``), as in
    llama-index-workflows. It is then called without ``self``.

    Args:
        workflow: the ``Workflow`` subclass a free-function step belongs to (ignored for methods).
        num_workers: how many triggers of this step one process handles at once (default 4,
            as in llama-index-workflows). Across processes, every replica adds as many.
        retry_policy: an ``engine.model.retry.RetryPolicy`` (``next(elapsed_time, attempts, error)``,
            llama-index-workflows' protocol) deciding whether, and after how many seconds, a failed
            attempt is tried again; each attempt is a record in the log (default: no retries).
        timeout: seconds (or a timedelta) one attempt may run; a longer one is cancelled and fails
            with ``engine.model.retry.StepTimeoutError`` (default: no limit). A plain ``def`` step's
            thread cannot be stopped: its attempt fails, the thread runs on.
        catch_error: make this step the workflow's error handler (same as ``@catch_error``): it
            accepts ``StepFailedEvent`` and gets one whenever another step fails for good.

    Raises:
        ValueError: ``num_workers`` < 1, a ``timeout`` <= 0, or a ``retry_policy`` without ``next``.
        WorkflowValidationError: a free function without ``workflow=``, or one its workflow
            refuses (see ``Workflow.add_step``).
    """
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
    if seconds is not None and seconds <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    if retry_policy is not None and not callable(getattr(retry_policy, "next", None)):
        raise ValueError(f"retry_policy {retry_policy!r} has no next(elapsed_time, attempts, error)")

    def mark(f: F, localns: dict[str, Any]) -> F:
        options = {
            "num_workers": num_workers,
            "retry_policy": retry_policy,
            "timeout": seconds,
            "catch_error": catch_error,
            "localns": localns,  # the names where it was defined (for a free function's annotations)
        }
        setattr(f, STEP_MARK, options)
        if is_free_function(f):
            if workflow is None:
                raise WorkflowValidationError(
                    f"step {getattr(f, '__name__', f)!r} is a free function: name its workflow "
                    "with @step(workflow=MyWorkflow)"
                )
            workflow.add_step(f)
        return f

    if fn is not None:
        return mark(fn, _locals_of(1) if is_free_function(fn) else {})
    return lambda f: mark(f, _locals_of(1) if is_free_function(f) else {})


def catch_error(fn: F | None = None, *, num_workers: int = DEFAULT_NUM_WORKERS) -> Any:
    """Mark a workflow method as its error handler: a step accepting ``StepFailedEvent``
    (``engine.model.retry``), called when any other step fails for good (after its retries). What it
    returns continues the run, or ends it with a ``StopEvent``; if it fails, the run fails. At most
    one per workflow. ``@catch_error`` is ``@step(catch_error=True)``."""
    return step(fn, num_workers=num_workers, catch_error=True)


def _external(t: type[Event]) -> bool:
    """Events that come from outside the step graph (a start, human input, a step failure)."""
    return issubclass(t, StartEvent | HumanResponseEvent | InputRequiredEvent | StepFailedEvent)


def _leaves(t: type[Event]) -> bool:
    """Events that may leave the graph with no step accepting them: the run's end, and a request
    for human input (it goes to the run's output stream), as in llama-index-workflows."""
    return issubclass(t, StopEvent | InputRequiredEvent | HumanResponseEvent)


def graph(steps: dict[str, StepSpec]) -> tuple[type[StartEvent], dict[str, type[Event]]]:
    """The start event class and the ``{event name: class}`` registry of ``steps``, unchecked
    (``StartEvent`` when no single start event is accepted; the first class of a name wins).
    ``validate`` says what is wrong with a graph."""
    starts = {t for s in steps.values() for t in s.accepts if issubclass(t, StartEvent)}
    start = next(iter(starts)) if len(starts) == 1 else StartEvent
    registry: dict[str, type[Event]] = {}
    for s in steps.values():
        for t in (*s.accepts, *s.produces):
            registry.setdefault(event_name(t), t)
    registry.setdefault(event_name(start), start)
    return start, registry


def _check_catch_error(name: str, steps: dict[str, StepSpec]) -> None:
    handlers = [s for s in steps.values() if s.catch_error]
    if len(handlers) > 1:
        names = ", ".join(repr(s.name) for s in handlers)
        raise WorkflowValidationError(f"workflow {name!r} has more than one @catch_error step ({names})")
    for s in steps.values():
        takes = any(issubclass(t, StepFailedEvent) for t in s.accepts)
        if s.catch_error and not takes:
            raise WorkflowValidationError(
                f"step {s.name!r} is marked catch_error but does not accept StepFailedEvent",
                step=s.name,
            )
        if takes and not s.catch_error:
            raise WorkflowValidationError(
                f"step {s.name!r} accepts StepFailedEvent; mark it @catch_error", step=s.name
            )


def _check_state_type(name: str, steps: dict[str, StepSpec]) -> None:
    """The steps' ``Context[State]`` types must lie on one line of inheritance; the most derived
    is the workflow's state type (as llama-index-workflows infers it), set on every step."""
    types = {s.state_type for s in steps.values() if s.state_type is not None}
    if not types:
        return
    for t in types:
        if not (isinstance(t, type) and hasattr(t, "model_validate")):
            raise WorkflowValidationError(
                f"workflow {name!r}: Context[{t!r}] is not a pydantic model type; typed state "
                "is a pydantic BaseModel whose defaults are the run's initial state"
            )
    most = [t for t in types if all(issubclass(t, o) for o in types)]
    if not most:
        listed = ", ".join(sorted(t.__name__ for t in types))
        raise WorkflowValidationError(
            f"workflow {name!r}: steps take different state types ({listed}); a run has one "
            "state, so use one type (or types that subclass one another)"
        )
    for key, s in steps.items():
        if s.state_type is not most[0]:
            steps[key] = replace(s, state_type=most[0])


def check_configured(name: str, steps: dict[str, StepSpec]) -> type[StartEvent]:
    """The start event class of workflow ``name``, if it can run at all: it has steps, exactly one
    start event class, and a step producing a ``StopEvent`` (llama-index-workflows checks this when
    a workflow is instantiated).

    Raises:
        WorkflowConfigurationError: saying which of these is missing.
    """
    if not steps:
        raise WorkflowConfigurationError(
            f"workflow {name!r} has no steps: mark methods with @step, or add free functions "
            "with @step(workflow=...)"
        )
    starts = {t for s in steps.values() for t in s.accepts if issubclass(t, StartEvent)}
    if not starts:
        raise WorkflowConfigurationError(f"workflow {name!r}: no step accepts a StartEvent")
    if len(starts) > 1:
        names = ", ".join(sorted(event_name(t) for t in starts))
        raise WorkflowConfigurationError(
            f"workflow {name!r}: steps accept different start events ({names}); use one"
        )
    if not any(issubclass(t, StopEvent) for s in steps.values() for t in s.produces):
        raise WorkflowConfigurationError(
            f"workflow {name!r}: no step produces a StopEvent, so no run could ever finish"
        )
    (start,) = starts
    return start


def validate(name: str, steps: dict[str, StepSpec]) -> tuple[type[StartEvent], dict[str, type[Event]]]:
    """Check the step graph; return the start event class and the registry of event types.

    Sets the workflow's state type on every step (``StepSpec.state_type``; see
    ``_check_state_type``). As llama-index-workflows' checks: exactly one start event class, some
    step producing a ``StopEvent``, every produced event accepted by a step (an
    ``InputRequiredEvent`` or ``HumanResponseEvent`` may leave the graph), every accepted event produced (events from outside
    excepted), no step accepting a ``StopEvent``; and jetloom's: at most one ``@catch_error``, and
    event names unique and usable in subjects.

    Raises:
        WorkflowConfigurationError: no steps, no (or more than one) start event, no StopEvent.
        WorkflowValidationError: naming the step and event at fault.
    """
    start = check_configured(name, steps)
    for s in steps.values():
        for t in s.accepts:
            if issubclass(t, StopEvent):
                raise WorkflowValidationError(
                    f"step {s.name!r} accepts {event_name(t)}, a StopEvent; a StopEvent ends the "
                    "run and is never delivered to a step",
                    step=s.name,
                )
    produced = {t for s in steps.values() for t in s.produces}
    consumed = {t for s in steps.values() for t in s.accepts}
    _check_catch_error(name, steps)
    for s in steps.values():
        for t in s.produces:
            if not _leaves(t) and t not in consumed:
                raise WorkflowValidationError(
                    f"step {s.name!r} produces {event_name(t)} but no step accepts it",
                    step=s.name,
                )
        for t in s.accepts:
            if not _external(t) and t not in produced:
                raise WorkflowValidationError(
                    f"step {s.name!r} accepts {event_name(t)} but no step produces it, "
                    "so the step can never run",
                    step=s.name,
                )
    _check_state_type(name, steps)
    registry: dict[str, type[Event]] = {}
    for t in (*consumed, *produced, start):
        n = check_name(event_name(t), f"workflow {name!r}: event class name")
        if registry.get(n, t) is not t:
            raise WorkflowValidationError(
                f"workflow {name!r}: two event classes are named {n!r}; names must be unique "
                "because they are subjects in the log"
            )
        registry[n] = t
    return start, registry


def check_name(value: str, what: str, *, step: str | None = None) -> str:
    """``value`` if it is usable in subjects (``check_token``), else ``WorkflowValidationError``
    naming ``what``: a name that would make nats-server refuse the subject fails at class creation
    (workflow and step names) or validation (event names), not in the middle of a run."""
    try:
        return check_token(value, what)
    except ValueError as e:
        raise WorkflowValidationError(str(e), step=step) from None


_VALIDATED: weakref.WeakKeyDictionary[type, dict[str, StepSpec]] = weakref.WeakKeyDictionary()


def validate_class(cls: type[WorkflowDefinition]) -> None:
    """``validate`` the graph of workflow class ``cls``, once per version of its steps
    (``add_step`` gives a class a new ``steps`` dict, which is checked again). For the callers
    that run a class they did not instantiate: a child workflow class, ``NatsClient.start``.

    Raises:
        WorkflowConfigurationError / WorkflowValidationError: as ``validate``.
    """
    if _VALIDATED.get(cls) is not cls.steps:
        validate(cls.workflow_name, cls.steps)
        _VALIDATED[cls] = cls.steps
