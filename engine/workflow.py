"""``Workflow`` and ``@step``: the programming model, shaped like llama-index-workflows so a user's
workflow moves over by changing imports.

A step's signature says what it does: the annotated event parameter is what it accepts (one type or
a union), an optional ``Context`` parameter gives it the run's context, and the return annotation
lists the events it may produce (returned or sent with ``ctx.send_event``); a parameter annotated
``Annotated[T, Resource(factory)]`` gets a resource (``engine.runtime.resources``). Signatures are
checked when the class is created; the graph when a run starts (``Workflow.validate``), as in
llama-index-workflows, so a class may be completed with free-function steps (``add_step``) first.
Errors name the step and the event.

What a class declares (``StepSpec``, the ``@step`` options, the graph checks) lives in
``engine.runtime.spec``, which the runtime types against; this module reads step signatures into
it (it needs ``Context`` for that) and runs workflows in this process (``Workflow.run``).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import types
import typing
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any, ClassVar, Union, get_args, get_origin

from engine.memory.log import MemoryLog
from engine.model.errors import WorkflowValidationError
from engine.model.events import Event, HumanResponseEvent, InputRequiredEvent, StartEvent
from engine.ports.log import EventLog
from engine.runtime.context import Context
from engine.runtime.handler import WorkflowHandler
from engine.runtime.inprocess import InProcessRuntime
from engine.runtime.resources import (
    ResourceDefinition,
    ResourceManager,
    config_errors,
    resolution_errors,
    resource_definitions,
)
from engine.runtime.spec import (
    STEP_MARK,
    StepSpec,
    catch_error,
    check_configured,
    check_name,
    graph,
    step,
    validate,
)

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
        return typing.get_type_hints(fn, localns=localns, include_extras=True)
    except NameError as exc:
        raise WorkflowValidationError(
            f"step {fn.__name__!r}: cannot resolve its annotations ({exc}); define the event "
            "classes at module level or before the workflow class",
            step=fn.__name__,
        ) from exc


def _plain(hint: Any) -> Any:
    """``T`` of ``Annotated[T, ...]`` (metadata that is not a resource is ignored, as in
    llama-index-workflows); other hints as they are."""
    return get_args(hint)[0] if get_origin(hint) is Annotated else hint


def _spec(name: str, fn: Callable[..., Any], localns: dict[str, Any], *, bound: bool = True) -> StepSpec:
    opts = getattr(fn, STEP_MARK)
    hints = _resolve_hints(fn, localns)
    params = list(inspect.signature(fn).parameters.values())[1 if bound else 0 :]  # drop self
    resources = resource_definitions(((p.name, hints.get(p.name)) for p in params), localns)
    event_param = ctx_param = None
    state_type: type | None = None
    accepts: list[type[Event]] = []
    for p in params:
        if p.name in resources:
            continue
        hint = _plain(hints.get(p.name))
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
    for t in _flatten(_plain(hints["return"])):
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
        resources=tuple(resources.values()),
        bound=bound,
    )


def _caller_locals() -> dict[str, Any]:
    # Event classes defined in the same function as the workflow (common in tests and notebooks)
    # are only reachable through the frame that runs the class statement.
    here = inspect.currentframe()
    frame = here.f_back if here is not None else None
    while frame is not None and frame.f_code.co_name == "__init_subclass__":
        frame = frame.f_back
    return dict(frame.f_locals) if frame is not None else {}


def _make_all(manager: ResourceManager, defs: list[tuple[str, ResourceDefinition]]) -> list[str]:
    """Make every resource of ``defs`` (``(step, definition)``) through ``manager``: the failures,
    one line each. Runs on a thread of its own when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(resolution_errors(manager, defs))
    out: list[list[str]] = []
    thread = threading.Thread(target=lambda: out.append(asyncio.run(resolution_errors(manager, defs))))
    thread.start()
    thread.join()
    return out[0] if out else ["resources could not be made (see the log)"]


class Workflow:
    """Base class of workflows. Subclass it and add ``@step`` methods.

    Class attributes set at class creation (and updated by ``add_step``):
        workflow_name: the name used in subjects (default: the class name; override it by
            assigning ``workflow_name = "..."`` in the class body).
        steps: ``{name: StepSpec}``: its ``@step`` methods (inherited ones included) and the
            free-function steps added to this class (not inherited by subclasses, as in
            llama-index-workflows).
        events: ``{event name: class}`` of every event the graph accepts or produces.
        start_event_class: the StartEvent (sub)class the workflow starts with.

    Step signatures are checked when the class is created; the graph when the workflow is
    instantiated (``WorkflowConfigurationError``: no steps, start or stop event) and when a run
    starts or a worker loads it (``validate()``), as in llama-index-workflows.

    Args:
        timeout: seconds a run may take before it fails with ``WorkflowTimeoutError``
            (default 45.0, as in llama-index-workflows; ``None`` waits forever).
        log: the event log runs go to (default: a private ``MemoryLog``). Pass a
            ``JetStreamLog`` for durable in-process runs.
        verbose: accepted for compatibility; logging goes through the ``jetloom`` logger.
        disable_validation: ``run()`` skips the graph checks (``validate()`` still runs them), as
            llama-index-workflows' option.
        resource_manager: where this instance's steps get their resources (default: a new
            ``ResourceManager``; pass one to share cached resources between instances).

    Raises:
        WorkflowConfigurationError: the class has no steps, no step accepting a StartEvent, or
            no step producing a StopEvent.
    """

    workflow_name: ClassVar[str]
    steps: ClassVar[dict[str, StepSpec]] = {}
    events: ClassVar[dict[str, type[Event]]] = {}
    start_event_class: ClassVar[type[StartEvent]] = StartEvent
    _method_steps: ClassVar[dict[str, StepSpec]] = {}
    _free_steps: ClassVar[dict[str, StepSpec]] = {}
    _steps_version: ClassVar[int] = 0
    _validated: int  # (per instance, set in __init__)
    _ran_version: int
    _disable_validation: bool

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
        localns = {**_caller_locals(), **vars(cls)} if found else {}
        cls._method_steps = {attr: _spec(attr, fn, localns) for attr, fn in found.items()}
        cls._free_steps = {}
        cls._steps_version = 0
        cls._update_graph()

    @classmethod
    def _update_graph(cls) -> None:
        cls.steps = {**cls._method_steps, **cls._free_steps}
        cls.start_event_class, cls.events = graph(cls.steps)
        cls._steps_version += 1

    @classmethod
    def add_step(cls, func: Callable[..., Any]) -> None:
        """Add a free function marked ``@step`` to this class as a step, as llama-index-workflows'
        ``Workflow.add_step`` (``@step(workflow=cls)`` calls it). The function is called without
        ``self``: ``async def f(ev: E, ctx: Context) -> F``. Instances made before see it too, up
        to their first ``run()`` (one that has run refuses to run again: make a new instance); the
        graph is checked at the next ``run()``. Worker processes see it when importing the module
        that adds it: add it in the module the worker loads (or one that module imports).

        Raises:
            WorkflowValidationError: ``func`` is not marked ``@step``, the class already has a step
                of that name, or its signature is not a step's.
        """
        opts = getattr(func, STEP_MARK, None)
        name = getattr(func, "__name__", repr(func))
        if opts is None:
            raise WorkflowValidationError(f"step function {name!r} is missing the @step decorator", step=name)
        if name in cls.steps:
            raise WorkflowValidationError(
                f"workflow {cls.workflow_name!r} already has a step {name!r}; choose another name", step=name
            )
        cls._free_steps = {**cls._free_steps, name: _spec(name, func, dict(opts.get("localns") or {}), bound=False)}
        cls._update_graph()

    def validate(self, *, validate_resource_configs: bool = True, validate_resources: bool = False) -> bool:
        """Check the workflow's step graph (``engine.runtime.spec.validate``) and, by default, the
        files of its ``ResourceConfig`` resources, as llama-index-workflows' ``Workflow.validate``.
        ``run()`` calls it (once per version of the class's steps); worker processes call it when
        they load the workflow. Callable early, e.g. in a test.

        Args:
            validate_resource_configs: read and validate every ``ResourceConfig`` file (default).
            validate_resources: also make every resource (``Resource`` factories are called,
                through this instance's resource manager, so cached ones are kept); finds
                circular dependencies. Default ``False``: factories may need the environment.

        Returns:
            ``True`` if the workflow takes human input (produces an ``InputRequiredEvent`` or
            accepts a ``HumanResponseEvent``).

        Raises:
            WorkflowConfigurationError: no steps, no (or two) start event classes, no StopEvent.
            WorkflowValidationError: what else is wrong, naming the step and event.
        """
        cls = type(self)
        validate(cls.workflow_name, cls.steps)
        defs = [(s.name, d) for s in cls.steps.values() for d in s.resources]
        errors = config_errors(defs) if validate_resource_configs else []
        if validate_resources and defs:
            errors.extend(_make_all(self.resource_manager, defs))
        if errors:
            raise WorkflowValidationError("resource validation failed: " + "; ".join(errors))
        self._validated = cls._steps_version
        return any(
            issubclass(t, InputRequiredEvent) for s in cls.steps.values() for t in s.produces
        ) or any(issubclass(t, HumanResponseEvent) for s in cls.steps.values() for t in s.accepts)

    def _validate(self) -> None:
        """``validate()`` unless done for the class's current steps (or ``disable_validation``).

        Raises:
            WorkflowValidationError: the graph is invalid, or steps were added to the class
                after this instance started running (its runtime has the steps it started with).
        """
        version = type(self)._steps_version
        if self._runtime is not None and self._ran_version != version:
            raise WorkflowValidationError(
                f"steps were added to workflow {type(self).workflow_name!r} after this instance "
                "started running; make a new instance to run with them"
            )
        self._ran_version = version
        if not self._disable_validation and self._validated != version:
            self.validate()

    def __init__(
        self,
        timeout: float | timedelta | None = 45.0,
        *,
        log: EventLog | None = None,
        verbose: bool = False,
        disable_validation: bool = False,
        resource_manager: ResourceManager | None = None,
    ) -> None:
        check_configured(type(self).workflow_name, type(self).steps)
        self._disable_validation = disable_validation
        self._validated = -1  # the class's _steps_version last validated
        self._ran_version = -1  # the class's _steps_version when run() was last called
        self.resource_manager: ResourceManager = resource_manager or ResourceManager()
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
        self._validate()
        if self._runtime is None:
            self._runtime = InProcessRuntime(self, self._log or MemoryLog())
        return self._runtime.start(
            start_event=start_event, run_id=run_id, fields=fields, timeout=self.timeout, ctx=ctx
        )
