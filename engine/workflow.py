"""``Workflow`` and ``@step``: the programming model, shaped like llama-index-workflows so a user's
workflow moves over by changing imports.

A step's signature says what it does: the annotated event parameter is what it accepts (one type or
a union), an optional ``Context`` parameter gives it the run's context, and the return annotation
lists the events it may produce (returned or sent with ``ctx.send_event``). The graph is validated
when the class is created; errors name the step and the event.
"""

from __future__ import annotations

import inspect
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, Union, get_args, get_origin

from engine.model.errors import WorkflowValidationError
from engine.model.events import Event, HumanResponseEvent, StartEvent, StopEvent, event_name
from engine.model.records import check_token

if TYPE_CHECKING:
    from engine.ports.log import EventLog
    from engine.runtime.handler import WorkflowHandler

__all__ = ["StepSpec", "Workflow", "catch_error", "step"]

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_NUM_WORKERS = 4  # llama-index-workflows' default for @step(num_workers=...)


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

    @property
    def accepts_names(self) -> tuple[str, ...]:
        return tuple(event_name(t) for t in self.accepts)


def step(
    fn: F | None = None,
    *,
    num_workers: int = DEFAULT_NUM_WORKERS,
    retry_policy: Any = None,
    timeout: float | timedelta | None = None,
    catch_error: bool = False,
) -> Any:
    """Mark a workflow method as a step. Use bare (``@step``) or with options.

    Args:
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
    """
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
    if seconds is not None and seconds <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    if retry_policy is not None and not callable(getattr(retry_policy, "next", None)):
        raise ValueError(f"retry_policy {retry_policy!r} has no next(elapsed_time, attempts, error)")

    def mark(f: F) -> F:
        f.__jl_step__ = {  # type: ignore[attr-defined]
            "num_workers": num_workers,
            "retry_policy": retry_policy,
            "timeout": seconds,
            "catch_error": catch_error,
        }
        return f

    return mark(fn) if fn is not None else mark


def catch_error(fn: F | None = None, *, num_workers: int = DEFAULT_NUM_WORKERS) -> Any:
    """Mark a workflow method as its error handler: a step accepting ``StepFailedEvent``
    (``engine.model.retry``), called when any other step fails for good (after its retries). What it
    returns continues the run, or ends it with a ``StopEvent``; if it fails, the run fails. At most
    one per workflow. ``@catch_error`` is ``@step(catch_error=True)``."""
    return step(fn, num_workers=num_workers, catch_error=True)


def _flatten(hint: Any) -> list[Any]:
    origin = get_origin(hint)
    if origin is Union or origin is types.UnionType:
        out: list[Any] = []
        for arg in get_args(hint):
            out.extend(_flatten(arg))
        return out
    return [hint]


def _is_event(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, Event)


def _resolve_hints(fn: Callable[..., Any], localns: dict[str, Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn, localns=localns)
    except NameError as exc:
        raise WorkflowValidationError(
            f"step {fn.__name__!r}: cannot resolve its annotations ({exc}); define the event "
            "classes at module level or before the workflow class",
            step=fn.__name__,
        ) from exc


def _spec(name: str, fn: Callable[..., Any], localns: dict[str, Any]) -> StepSpec:
    from engine.runtime.context import Context

    opts = fn.__jl_step__  # type: ignore[attr-defined]
    hints = _resolve_hints(fn, localns)
    params = list(inspect.signature(fn).parameters.values())[1:]  # drop self
    event_param = ctx_param = None
    accepts: list[type[Event]] = []
    for p in params:
        hint = hints.get(p.name)
        if hint is Context or (isinstance(hint, type) and issubclass(hint, Context)):
            ctx_param = p.name
            continue
        flat = _flatten(hint) if hint is not None else []
        if flat and all(_is_event(t) for t in flat):
            if event_param is not None:
                raise WorkflowValidationError(
                    f"step {name!r} has two event parameters ({event_param!r}, {p.name!r}); "
                    "accept a union instead",
                    step=name,
                )
            event_param, accepts = p.name, flat
            continue
        raise WorkflowValidationError(
            f"step {name!r}: parameter {p.name!r} must be annotated with an Event type "
            f"(or a union of them) or Context, got {hint!r}",
            step=name,
        )
    if event_param is None:
        raise WorkflowValidationError(
            f"step {name!r} has no parameter annotated with an Event type", step=name
        )
    if "return" not in hints:
        raise WorkflowValidationError(
            f"step {name!r} has no return annotation; declare the events it produces "
            "(e.g. `-> MyEvent | None`)",
            step=name,
        )
    produces: list[type[Event]] = []
    for t in _flatten(hints["return"]):
        if t is type(None) or t is None:
            continue
        if not _is_event(t):
            raise WorkflowValidationError(
                f"step {name!r}: return annotation lists {t!r}, which is not an Event type",
                step=name,
            )
        produces.append(t)
    return StepSpec(
        name=_token(name, "step name", step=name),
        fn=fn,
        accepts=tuple(accepts),
        produces=tuple(produces),
        event_param=event_param,
        ctx_param=ctx_param,
        num_workers=opts["num_workers"],
        is_async=inspect.iscoroutinefunction(fn),
        retry_policy=opts.get("retry_policy"),
        timeout=opts.get("timeout"),
        catch_error=opts.get("catch_error", False),
    )


def _caller_locals() -> dict[str, Any]:
    # Event classes defined in the same function as the workflow (common in tests and notebooks)
    # are only reachable through the frame that runs the class statement.
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_name == "__init_subclass__":
        frame = frame.f_back
    return dict(frame.f_locals) if frame is not None else {}


def _external(t: type[Event]) -> bool:
    """Events that come from outside the step graph (a start, human input, a step failure)."""
    from engine.model.retry import StepFailedEvent

    return issubclass(t, StartEvent | HumanResponseEvent | StepFailedEvent)


def _check_catch_error(name: str, steps: dict[str, StepSpec]) -> None:
    from engine.model.retry import StepFailedEvent

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


def validate(name: str, steps: dict[str, StepSpec]) -> tuple[type[StartEvent], dict[str, type[Event]]]:
    """Check the step graph; return the start event class and the registry of event types.

    Raises:
        WorkflowValidationError: naming the step and event at fault.
    """
    for s in steps.values():
        for t in s.accepts:
            if issubclass(t, StopEvent):
                raise WorkflowValidationError(
                    f"step {s.name!r} accepts {event_name(t)}, a StopEvent; a StopEvent ends the "
                    "run and is never delivered to a step",
                    step=s.name,
                )
    starts = {t for s in steps.values() for t in s.accepts if issubclass(t, StartEvent)}
    if not starts:
        raise WorkflowValidationError(f"workflow {name!r}: no step accepts a StartEvent")
    if len(starts) > 1:
        names = ", ".join(sorted(event_name(t) for t in starts))
        raise WorkflowValidationError(
            f"workflow {name!r}: steps accept different start events ({names}); use one"
        )
    (start,) = starts
    produced = {t for s in steps.values() for t in s.produces}
    if not any(issubclass(t, StopEvent) for t in produced):
        raise WorkflowValidationError(
            f"workflow {name!r}: no step produces a StopEvent, so no run could ever finish"
        )
    consumed = {t for s in steps.values() for t in s.accepts}
    _check_catch_error(name, steps)
    for s in steps.values():
        for t in s.produces:
            if not issubclass(t, StopEvent) and t not in consumed:
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
    registry: dict[str, type[Event]] = {}
    for t in (*consumed, *produced, start):
        n = _token(event_name(t), f"workflow {name!r}: event class name")
        if registry.get(n, t) is not t:
            raise WorkflowValidationError(
                f"workflow {name!r}: two event classes are named {n!r}; names must be unique "
                "because they are subjects in the log"
            )
        registry[n] = t
    return start, registry


def _token(value: str, what: str, *, step: str | None = None) -> str:
    """``value`` if it is usable in subjects (``check_token``), else ``WorkflowValidationError``
    naming ``what``: a name that would make nats-server refuse the subject fails at class creation,
    not in the first run."""
    try:
        return check_token(value, what)
    except ValueError as e:
        raise WorkflowValidationError(str(e), step=step) from None


class Workflow:
    """Base class of workflows. Subclass it and add ``@step`` methods.

    Class attributes set at class creation:
        workflow_name: the name used in subjects (default: the class name; override it by
            assigning ``workflow_name = "..."`` in the class body).
        steps: ``{name: StepSpec}``.
        events: ``{event name: class}`` of every event the graph accepts or produces.
        start_event_class: the StartEvent (sub)class the workflow starts with.

    A class without steps (a base meant to be subclassed) is not validated.

    Args:
        timeout: seconds a run may take before it fails with ``WorkflowTimeoutError``
            (default 45.0, as in llama-index-workflows; ``None`` waits forever).
        log: the event log runs go to (default: a private ``MemoryLog``). Pass a
            ``JetStreamLog`` for durable in-process runs.
        verbose: accepted for compatibility; logging goes through the ``jetloom`` logger.
    """

    workflow_name: ClassVar[str]
    steps: ClassVar[dict[str, StepSpec]] = {}
    events: ClassVar[dict[str, type[Event]]] = {}
    start_event_class: ClassVar[type[StartEvent]] = StartEvent

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "workflow_name" not in cls.__dict__:
            cls.workflow_name = cls.__name__
        _token(cls.workflow_name, f"workflow class {cls.__qualname__}: workflow name")
        found: dict[str, Callable[..., Any]] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                if callable(value) and hasattr(value, "__jl_step__"):
                    found[attr] = value
        if not found:
            return
        localns = {**_caller_locals(), **vars(cls)}
        steps = {attr: _spec(attr, fn, localns) for attr, fn in found.items()}
        cls.start_event_class, cls.events = validate(cls.workflow_name, steps)
        cls.steps = steps

    def __init__(
        self,
        timeout: float | timedelta | None = 45.0,
        *,
        log: EventLog | None = None,
        verbose: bool = False,
    ) -> None:
        if not type(self).steps:
            raise WorkflowValidationError(f"workflow {type(self).__name__!r} has no steps")
        self.timeout = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        self.verbose = verbose
        self._log = log
        self._runtime: Any = None

    def run(
        self, *, start_event: StartEvent | None = None, run_id: str | None = None, **fields: Any
    ) -> WorkflowHandler:
        """Start a run in this process and return its handler (await it for the result, or
        iterate ``handler.stream_events()``). Must be called with an event loop running.

        Args:
            start_event: the start event; if omitted, one is built from ``fields``.
            run_id: the run's id (default: a new random id); a subject token.
            **fields: fields of the start event.
        """
        from engine.runtime.inprocess import run_in_process

        return run_in_process(self, start_event=start_event, run_id=run_id, fields=fields)
