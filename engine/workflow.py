"""``Workflow`` and ``@step``: the programming model, shaped like llama-index-workflows so a user's
workflow moves over by changing imports.

A step's signature says what it does: the annotated event parameter is what it accepts (one type or
a union), an optional ``Context`` parameter gives it the run's context, and the return annotation
lists the events it may produce (returned or sent with ``ctx.send_event``). The graph is validated
when the class is created; errors name the step and the event.

What a class declares (``StepSpec``, the ``@step`` options, the graph checks) lives in
``engine.runtime.spec``, which the runtime types against; this module reads step signatures into
it (it needs ``Context`` for that) and runs workflows in this process (``Workflow.run``).
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from datetime import timedelta
from typing import Any, ClassVar, Union, get_args, get_origin

from engine.memory.log import MemoryLog
from engine.model.errors import WorkflowValidationError
from engine.model.events import Event, StartEvent
from engine.ports.log import EventLog
from engine.runtime.context import Context
from engine.runtime.handler import WorkflowHandler
from engine.runtime.inprocess import InProcessRuntime
from engine.runtime.spec import STEP_MARK, StepSpec, catch_error, check_name, step, validate

__all__ = ["StepSpec", "Workflow", "catch_error", "step"]


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
    opts = getattr(fn, STEP_MARK)
    hints = _resolve_hints(fn, localns)
    params = list(inspect.signature(fn).parameters.values())[1:]  # drop self
    event_param = ctx_param = None
    state_type: type | None = None
    accepts: list[type[Event]] = []
    for p in params:
        hint = hints.get(p.name)
        if get_origin(hint) is Context:  # Context[MyState]: the run's typed state
            ctx_param, (state_type,) = p.name, get_args(hint)
            continue
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
        name=check_name(name, "step name", step=name),
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
        state_type=state_type,
    )


def _caller_locals() -> dict[str, Any]:
    # Event classes defined in the same function as the workflow (common in tests and notebooks)
    # are only reachable through the frame that runs the class statement.
    here = inspect.currentframe()
    frame = here.f_back if here is not None else None
    while frame is not None and frame.f_code.co_name == "__init_subclass__":
        frame = frame.f_back
    return dict(frame.f_locals) if frame is not None else {}


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
        check_name(cls.workflow_name, f"workflow class {cls.__qualname__}: workflow name")
        found: dict[str, Callable[..., Any]] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                if callable(value) and hasattr(value, STEP_MARK):
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
        self._runtime: InProcessRuntime | None = None  # made by the first run()

    def run(
        self,
        *,
        start_event: StartEvent | None = None,
        run_id: str | None = None,
        ctx: Context[Any] | None = None,
        **fields: Any,
    ) -> WorkflowHandler:
        """Start a run in this process and return its handler (await it for the result, or
        iterate ``handler.stream_events()``). Must be called with an event loop running.

        Args:
            start_event: the start event; if omitted, one is built from ``fields``.
            run_id: the run's id (default: a new random id); a subject token.
            ctx: a ``Context`` of this workflow, as in llama-index-workflows: a fresh one
                (``Context(wf)``) starts a run with the state staged on it; one of a run still
                going (e.g. waiting for human input; from ``Context.from_dict``) re-attaches to
                that run; one of an ended run starts a new run with that run's final state. The
                context is then ``handler.ctx`` (see ``engine.runtime.inprocess.start_run``).
            **fields: fields of the start event.

        Raises:
            ContextStateError: ``ctx`` is a step's context.
            ContextSerdeError: ``ctx`` is another workflow's.
        """
        if self._runtime is None:
            self._runtime = InProcessRuntime(self, self._log or MemoryLog())
        return self._runtime.start(
            start_event=start_event, run_id=run_id, fields=fields, timeout=self.timeout, ctx=ctx
        )
