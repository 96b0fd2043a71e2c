"""``Context``: what a step sees of its run, and how it acts on it; and, from outside the steps,
a handle on a run (``handler.ctx``, ``Context(workflow)``, ``Context.from_dict``).

Nothing a step does through the context takes effect until the step returns: state changes, sent
events, stream output and fan-in consumption are collected here and committed with the step's
completion record in one atomic append (docs/architecture.md). The state a step reads is the run's state as
of its trigger event's sequence, plus its own writes.

The run's state lives in the log as a JSON-like dict (``RunState.state``), changed by the
``{"dot.path": value}`` changes of each ``StepCompleted`` (the path ``""`` replaces the whole
state). A workflow whose steps take ``ctx: Context[MyState]`` (``MyState`` a pydantic model) has
typed state, as in llama-index-workflows: the dict is ``MyState``'s ``model_dump(mode="json")``,
rebuilt with ``MyState.model_validate`` on read, so the model's defaults are the run's initial
state. Untyped state reads as a ``DictState``; a pydantic value put in it is kept in the tagged
form of ``JsonSerializer`` and comes back as its class.

A context has one of three faces, as the reference's: *pre-run* (``Context(workflow)`` or
``Context.from_dict``: stage state, pass it to ``workflow.run(ctx=...)``), *external* (bound to a
run's handler: read its state from the log, send it events, ``to_dict``), and *internal* (inside a
step). A call the face does not allow raises ``ContextStateError``.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, Generic, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import to_jsonable_python
from typing_extensions import TypeVar

from engine.model.durations import deadline_ns
from engine.model.errors import ContextSerdeError, ContextStateError, WaitTimeoutError
from engine.model.events import Event, StartEvent, StopEvent, event_from_fields, event_name
from engine.model.records import StepSuspended
from engine.model.retry import RetryInfo
from engine.ports.log import EventLog
from engine.runtime.children import run_child
from engine.runtime.describe import fields_schema
from engine.runtime.endings import fold_run
from engine.runtime.failures import retry_info
from engine.runtime.serializers import BaseSerializer, JsonSerializer, has_models
from engine.runtime.spec import WorkflowDefinition
from engine.runtime.waits import StepWaits, Suspend
from engine.state.fold import MISSING, RunState, get_path, set_path
from engine.wire.headers import commit_key
from engine.wire.subjects import check_token

E = TypeVar("E", bound=Event)

__all__ = ["BoundRun", "Context", "DictState", "StateStore", "state_type_of"]

logger = logging.getLogger("jetloom.context")
_TAGGER = JsonSerializer()  # tags pydantic values of untyped state (any class, imported by name)
ROOT = ""  # the state path that stands for the whole state in a StepCompleted's changes


class DictState(BaseModel):
    """The state of a run without a typed state (``ctx: Context``): a pydantic model whose
    entries are its extra fields, read and written as attributes or items
    (``state.count``, ``state["count"]``), as llama-index-workflows' ``DictState``."""

    model_config = ConfigDict(extra="allow")

    def _entries(self) -> dict[str, Any]:
        return self.__pydantic_extra__ if self.__pydantic_extra__ is not None else {}

    def __getitem__(self, key: str) -> Any:
        try:
            return self._entries()[key]
        except KeyError:
            raise KeyError(key) from None

    def __setitem__(self, key: str, value: Any) -> None:
        self._entries()[key] = value

    def __delitem__(self, key: str) -> None:
        del self._entries()[key]

    def __contains__(self, key: object) -> bool:
        return key in self._entries()

    def __len__(self) -> int:
        return len(self._entries())

    def get(self, key: str, default: Any = None) -> Any:
        """The entry ``key``, or ``default``."""
        return self._entries().get(key, default)

    def keys(self) -> Any:
        return self._entries().keys()

    def values(self) -> Any:
        return self._entries().values()

    def items(self) -> Any:
        return self._entries().items()


# the state type of ``Context[S]`` / ``StateStore[S]``; untyped: ``DictState`` (as the reference)
S = TypeVar("S", bound=BaseModel, default=DictState)


def state_type_of(workflow: WorkflowDefinition | type[WorkflowDefinition]) -> type[BaseModel] | None:
    """The workflow's typed state class (``Context[MyState]`` in its steps), or ``None``."""
    for spec in workflow.steps.values():
        if spec.state_type is not None:
            return spec.state_type
    return None


def _encode_untyped(value: Any) -> Any:
    """A value for the untyped state in the log: pydantic values in tagged form."""
    return _TAGGER.serialize_value(value) if has_models(value) else value


def _decode_untyped(value: Any) -> Any:
    """A copy of a value of the untyped state, tagged values rebuilt."""
    if isinstance(value, dict | list):
        return _TAGGER.deserialize_value(value)
    return value


def _step_into(obj: Any, seg: str) -> Any:
    if isinstance(obj, dict):
        return obj[seg]
    if isinstance(obj, list | tuple):
        return obj[int(seg)]
    if isinstance(obj, DictState):
        return obj[seg]
    if isinstance(obj, BaseModel):
        if seg in type(obj).model_fields or seg in (obj.__pydantic_extra__ or {}):
            return getattr(obj, seg)
        raise AttributeError(seg)
    return getattr(obj, seg)


def _assign(obj: Any, seg: str, value: Any) -> None:
    if isinstance(obj, dict):
        obj[seg] = value
    elif isinstance(obj, list):
        obj[int(seg)] = value
    else:
        setattr(obj, seg, value)


class StateStore(Generic[S]):
    """The run's state (``ctx.store``), as llama-index-workflows' state store: addressed by dot
    paths (``"a.b.c"``, through dicts, list indices and model fields) or as a whole model.

    In a step, changes are the step's own until it returns, then committed with its completion
    record; reads see the state as of the step's trigger plus the step's own writes. Values of an
    untyped state must be JSON-like, msgspec-encodable or pydantic models (an unencodable value
    fails the step when it commits); a typed state's values are whatever its model accepts.

    Attributes:
        state_type: the state's model (``DictState`` for an untyped state).
    """

    def __init__(
        self,
        base: dict[str, Any],
        state_type: type[S] | None = None,
        *,
        loader: Callable[[], Awaitable[dict[str, Any]]] | None = None,
        writable: bool = True,
    ) -> None:
        self._base = base
        self._local: dict[str, Any] | None = None
        self._changes: dict[str, Any] = {}
        self._typed = state_type
        self.state_type: type[Any] = state_type if state_type is not None else DictState
        self._loader = loader
        self._writable = writable
        self._editing = False

    def _view(self) -> dict[str, Any]:
        return self._local if self._local is not None else self._base

    async def _read(self) -> dict[str, Any]:
        if self._loader is not None:
            self._base = await self._loader()
        return self._view()

    def _model_of(self, data: dict[str, Any]) -> Any:
        if self._typed is None:
            return DictState(**{k: _decode_untyped(v) for k, v in data.items()})
        return self._typed.model_validate(data)

    def _check_write(self) -> None:
        if not self._writable:
            raise ContextStateError(
                "the state of a started run changes only through its steps (ctx.store in a step); "
                "stage state on a Context before workflow.run(ctx=...)"
            )
        if self._editing:
            raise RuntimeError("writer called inside edit_state: mutate the yielded state instead")

    def _record(self, path: str, value: Any) -> None:
        if self._local is None:
            self._local = copy.deepcopy(self._base)
        if path == ROOT:
            self._local = dict(value)
            self._changes.clear()
        else:
            set_path(self._local, path, value)
            self._changes.pop(path, None)
        self._changes[path] = value

    def _replace_all(self, new: dict[str, Any]) -> None:
        """Record ``new`` as the whole state, as per-key changes where that says the same."""
        old = self._view() if self._typed is None else self._dump(self._model_of(self._view()))
        if any(k not in new for k in old) or any("." in k or not k for k in new):
            self._record(ROOT, new)
            return
        for k, v in new.items():
            if k not in old or old[k] != v:
                self._record(k, v)

    def _dump(self, state: Any) -> dict[str, Any]:
        if self._typed is None:
            entries = state.items() if isinstance(state, DictState | dict) else state.model_dump().items()
            return {k: _encode_untyped(v) for k, v in entries}
        return state.model_dump(mode="json")

    async def get(self, path: str, default: Any = MISSING) -> Any:
        """The value at ``path`` (a copy: mutating it changes nothing until ``set``).

        Raises:
            ValueError: ``path`` is absent and no ``default`` was given (as in llama-index-workflows).
        """
        view = await self._read()
        try:
            if self._typed is None:
                return _decode_untyped(get_path(view, path))
            value: Any = self._typed.model_validate(view)
            for seg in path.split(".") if path else ():
                value = _step_into(value, seg)
            return value
        except (KeyError, IndexError, AttributeError, ValueError, TypeError):
            if default is MISSING:
                raise ValueError(f"Path '{path}' not found in state") from None
            return default

    async def set(self, path: str, value: Any) -> None:
        """Set ``path`` to ``value``, creating dicts on the way; committed with the step.

        Raises:
            ValueError: an empty ``path``, or (typed state) a first segment that is not a field.
            RuntimeError: called inside ``edit_state``.
            ContextStateError: the store is a started run's, read from outside its steps.
        """
        self._check_write()
        if not path:
            raise ValueError("Path cannot be empty")
        if self._typed is None:
            self._record(path, _encode_untyped(value))
            return
        head, *rest = path.split(".")
        model = self._typed.model_validate(self._view())
        if head not in type(model).model_fields and head not in (model.__pydantic_extra__ or {}):
            if not rest:
                setattr(model, head, value)  # pydantic decides: extra fields, or ValueError
            else:
                raise ValueError(f"{self._typed.__name__} has no field {head!r}")
        if rest:
            node = getattr(model, head)
            for seg in rest[:-1]:
                try:
                    node = _step_into(node, seg)
                except (KeyError, IndexError, AttributeError, ValueError):
                    child: dict[str, Any] = {}
                    _assign(node, seg, child)
                    node = child
            _assign(node, rest[-1], value)
        else:
            setattr(model, head, value)
        self._record(head, to_jsonable_python(getattr(model, head)))

    async def get_state(self) -> S:
        """A copy of the whole state: a ``state_type`` instance (``DictState`` when untyped)."""
        return self._model_of(await self._read())

    async def set_state(self, state: S) -> None:
        """Replace the state with ``state`` (its type, or a subclass); a model of a parent type of
        the state type is merged into it, as llama-index-workflows' ``set_state``.

        Raises:
            ValueError: ``state`` is of an unrelated type.
        """
        self._check_write()
        current = self.state_type
        if isinstance(state, current):
            self._replace_all(self._dump(state))
        elif isinstance(state, BaseModel) and issubclass(current, type(state)):
            merged = current.model_validate({**self._view(), **state.model_dump(mode="json")})
            self._replace_all(self._dump(merged))
        else:
            raise ValueError(
                f"State must be of type {current.__name__} or a parent type, got {type(state).__name__}"
            )

    async def clear(self) -> None:
        """Reset the state to its type's defaults (an empty ``DictState`` when untyped).

        Raises:
            ValueError: the state type has a field without a default.
        """
        self._check_write()
        try:
            fresh = self.state_type()
        except ValidationError:
            raise ValueError("State must have defaults for all fields") from None
        self._record(ROOT, self._dump(fresh))

    @asynccontextmanager
    async def edit_state(self) -> AsyncIterator[S]:
        """``async with ctx.store.edit_state() as state:`` edit a copy of the state; the edits are
        taken when the block exits without an error (and committed with the step). Other writers
        (``set``, ``set_state``, ``clear``, another ``edit_state``) raise ``RuntimeError`` inside."""
        self._check_write()
        state = await self.get_state()
        self._editing = True
        try:
            yield state
        finally:
            self._editing = False
        self._replace_all(self._dump(state))

    @property
    def changes(self) -> dict[str, Any]:
        """The paths the step set, each with its last value, in the order last set (the
        ``state`` of its ``StepCompleted``; ``""``: the whole state)."""
        return self._changes

    async def to_dict(self, serializer: BaseSerializer | None = None) -> dict[str, Any]:
        """With no ``serializer``, a copy of the whole state as kept in the log (a JSON-like dict);
        with one, the portable payload ``Context.to_dict`` carries (``payload``)."""
        view = await self._read()
        if serializer is None:
            return copy.deepcopy(view)
        return self.payload(serializer)

    def payload(self, serializer: BaseSerializer | None = None) -> dict[str, Any]:
        """The state as llama-index-workflows writes a state store in a context dict:
        ``{"store_type": "in_memory", "state_type", "state_module", "state_data"}``, where
        ``state_data`` is ``{"_data": {key: serialized value}}`` for an untyped state and the
        serialized model for a typed one (``serializer``: default ``JsonSerializer()``)."""
        ser = serializer if serializer is not None else JsonSerializer()
        model = self._model_of(self._view())
        if self._typed is None:
            data: Any = {"_data": {k: ser.serialize(v) for k, v in model.items()}}
        else:
            data = ser.serialize(model)
        return {
            "store_type": "in_memory",
            "state_type": type(model).__name__,
            "state_module": type(model).__module__,
            "state_data": data,
        }


def _state_from_payload(
    payload: Any, state_type: type[BaseModel] | None, serializer: BaseSerializer
) -> dict[str, Any]:
    """The log form of a context dict's ``state`` (``StateStore.payload``; also the reference's).

    Raises:
        ContextSerdeError: it does not decode, or not to the workflow's state type.
    """
    if not payload:
        return {}
    if not isinstance(payload, dict):
        raise ContextSerdeError(f"a context dict's state is a dict, got {type(payload).__name__}")
    if payload.get("store_type", "in_memory") != "in_memory":
        raise ContextSerdeError(f"state store type {payload.get('store_type')!r} is not supported")
    data = payload.get("state_data")
    try:
        if data is None:
            return {}
        if isinstance(data, str):
            value: Any = serializer.deserialize(data)
            if isinstance(value, dict) and "_data" in value:
                data = value
        if isinstance(data, dict):
            entries = data.get("_data", data)
            if not isinstance(entries, dict):
                raise ValueError("'_data' is not a dict")
            plain = {
                k: serializer.deserialize(v) if isinstance(v, str) else v for k, v in entries.items()
            }
            if state_type is None:
                return {k: _encode_untyped(v) for k, v in plain.items()}
            value = state_type.model_validate(plain)
        if not isinstance(value, BaseModel):
            raise ValueError(f"state data decodes to {type(value).__name__}, not a model")
        if state_type is None:
            if isinstance(value, DictState):
                return {k: _encode_untyped(v) for k, v in value.items()}
            raise ValueError(f"a {type(value).__name__} state for a workflow with untyped state")
        if not isinstance(value, state_type):
            value = state_type.model_validate(value.model_dump())
        return value.model_dump(mode="json")
    except (ValueError, TypeError, ValidationError) as e:
        raise ContextSerdeError(f"Context dict specified in an invalid format: {e}") from e


class BoundRun(Protocol):
    """What an external context needs of a run's handler (``WorkflowHandler``)."""

    workflow: str
    run_id: str

    @property
    def log(self) -> EventLog: ...

    @property
    def final_state(self) -> dict[str, Any] | None: ...

    def done(self) -> bool: ...

    async def wait_ready(self) -> None: ...

    async def send_event(self, event: Event, *, step: str | None = None) -> None: ...

    def stream_events(self) -> AsyncIterator[Any]: ...


_PRE, _EXTERNAL, _INTERNAL = "pre", "external", "internal"
CONTEXT_DICT_VERSION = 1  # the ``version`` of the dicts ``to_dict`` writes


class Context(Generic[S]):
    """The run context. In a step (``ctx: Context`` or ``ctx: Context[MyState]`` in its
    signature) it acts on the run; outside the steps it is a handle on a run, as
    llama-index-workflows' ``Context``:

    - ``Context(workflow)``: not bound to a run yet; ``ctx.store`` stages the initial state;
      ``workflow.run(ctx=ctx)`` starts a run with it and binds the context to that run;
    - ``handler.ctx``: the run's context; ``await ctx.store.get(...)`` reads the run's state as
      folded from its log, ``ctx.send_event(ev)`` sends the run an event, ``ctx.to_dict()``;
    - ``Context.from_dict(workflow, data)``: a context from a ``to_dict`` dict. Passed to
      ``workflow.run(ctx=...)`` it re-attaches to its run if that run is still going (e.g. waiting
      for human input), else starts a new run whose initial state is that run's final state.

    Args:
        workflow: the workflow (instance or class) the context is for.
        previous_context: a dict from ``to_dict`` (same as ``Context.from_dict``).
        serializer: the value serializer of ``to_dict`` / ``from_dict`` (default ``JsonSerializer()``).

    Attributes:
        run_id: the run's id (``None`` for a context not bound to a run).
        store: the run's state (``await ctx.store.get/set``, ``get_state``, ``edit_state``).
        idempotency_key: (in a step) ``<run_id>:<trigger_seq>:<step>``, the key of this step's
            commit for its trigger. Steps run at least once (a crash before the commit runs the
            step again on the same trigger, with the same key); give it to external systems as
            the de-duplication key of a side effect (an upsert, a payment id) to make the effect
            happen once.

    Raises:
        ContextSerdeError: ``previous_context`` does not fit the workflow.
        TypeError: neither a workflow nor a step's arguments were given.
    """

    def __init__(
        self,
        workflow: WorkflowDefinition | type[WorkflowDefinition] | None = None,
        previous_context: dict[str, Any] | None = None,
        serializer: BaseSerializer | None = None,
        *,
        run_id: str | None = None,
        step: str | None = None,
        trigger_seq: int = 0,
        state: dict[str, Any] | None = None,
        collector: Callable[[Sequence[str]], tuple[list[int], list[Event]] | None] | None = None,
        known_events: dict[str, type[Event]] | None = None,
        run: RunState | None = None,
        attempt: int = 1,
        state_type: type[Any] | None = None,
    ) -> None:
        if step is None:
            if workflow is None:
                raise TypeError("Context(workflow): give the workflow the context is for")
            self._init_pre(workflow, previous_context, serializer)
            return
        # a step's context (built by the executor for each step it runs)
        self._face = _INTERNAL
        self._run_id = run_id
        self.step_name = step
        self.trigger_seq = trigger_seq
        self.idempotency_key = commit_key(run_id or "", trigger_seq, step)
        self.store: StateStore[Any] = StateStore(state if state is not None else {}, state_type)
        self._collector = collector
        self._known = known_events or {}
        self.emitted: list[tuple[Event, str | None]] = []
        self.streamed: list[Event] = []
        self.consumed: list[int] = []
        self._waits = StepWaits(run_id=run_id or "", step=step, trigger=trigger_seq, attempt=attempt, run=run)
        self._run_state = run
        self._attempt = attempt

    # ---- outside the steps -----------------------------------------------------------------

    def _init_pre(
        self,
        workflow: WorkflowDefinition | type[WorkflowDefinition],
        data: dict[str, Any] | None,
        serializer: BaseSerializer | None,
    ) -> None:
        self._face = _PRE
        self._workflow = workflow
        self._workflow_name = workflow.workflow_name
        self._serializer = serializer if serializer is not None else JsonSerializer()
        self._handler: BoundRun | None = None
        self._was_running = False
        self._run_id = None
        state_type = state_type_of(workflow)
        state: dict[str, Any] = {}
        if data is not None:
            if not isinstance(data, dict):
                raise ContextSerdeError(f"a context dict is a dict, got {type(data).__name__}")
            name = data.get("workflow_name")
            if name is not None and name != self._workflow_name:
                raise ContextSerdeError(
                    f"the context dict is of workflow {name!r}, not {self._workflow_name!r}"
                )
            rid = data.get("run_id")
            if rid is not None:
                try:
                    self._run_id = check_token(rid, "run id")
                except (ValueError, TypeError) as e:
                    raise ContextSerdeError(f"Context dict specified in an invalid format: {e}") from e
            self._was_running = bool(data.get("is_running", False))
            state = _state_from_payload(data.get("state"), state_type, self._serializer)
        self.store = StateStore(state, state_type)

    def bind_handler(self, handler: BoundRun) -> None:
        """Bind the context to a run's handler (external face): ``workflow.run(ctx=...)`` and
        ``handler.ctx`` call this."""
        self._face = _EXTERNAL
        self._handler = handler
        seed = self.store._view() if isinstance(self.store, StateStore) else {}
        state_type = self.store._typed

        async def load() -> dict[str, Any]:
            await handler.wait_ready()
            return (await fold_run(handler.log, handler.workflow, handler.run_id)).state

        self.store = StateStore(seed, state_type, loader=load, writable=False)

    @classmethod
    def bound(
        cls,
        workflow: WorkflowDefinition | type[WorkflowDefinition],
        handler: BoundRun,
        serializer: BaseSerializer | None = None,
    ) -> Context[Any]:
        """The external context of a run (``handler.ctx``)."""
        ctx: Context[Any] = cls(workflow, serializer=serializer)
        ctx.bind_handler(handler)
        return ctx

    @classmethod
    def from_dict(
        cls,
        workflow: WorkflowDefinition | type[WorkflowDefinition],
        data: dict[str, Any],
        serializer: BaseSerializer | None = None,
    ) -> Context[Any]:
        """A context from a ``to_dict`` dict (also one llama-index-workflows wrote: its state is
        taken, with no run of its own). See the class docstring for ``workflow.run(ctx=...)``.

        Raises:
            ContextSerdeError: ``data`` is not a dict of this form, names another workflow, or its
                state does not decode to the workflow's state type.
        """
        try:
            return cls(workflow, previous_context=data, serializer=serializer)
        except (KeyError, AttributeError) as e:
            raise ContextSerdeError(f"Context dict specified in an invalid format: {e}") from e

    def to_dict(
        self, serializer: BaseSerializer | None = None, *, include_state: bool = True
    ) -> dict[str, Any]:
        """The context as a JSON-ready dict (``json.dumps(ctx.to_dict())`` works): ``version``,
        ``workflow_name``, ``run_id`` (``None`` before a run), ``is_running`` and ``state`` (as
        ``StateStore.payload``; ``{}`` without ``include_state``). The run's log stays the source
        of truth: a context restored from the dict re-attaches to the run by its id; the state
        copy seeds a new run when the log no longer has the run. The state copy of a bound
        context is the run's final state once its handler has ended (a run started with
        ``ctx=``, or whose ``handler.ctx`` was taken before it ended), else the state last read
        through ``ctx.store``.

        Raises:
            ContextStateError: called inside a step.
        """
        if self._face == _INTERNAL:
            raise ContextStateError("to_dict is only available from handler code, not from within steps.")
        handler = self._handler
        running = self._was_running
        if handler is not None:
            running = not handler.done()
            final = handler.final_state
            if final is not None:
                self.store._base = final
        return {
            "version": CONTEXT_DICT_VERSION,
            "workflow_name": self._workflow_name,
            "run_id": self.run_id,
            "is_running": running,
            "state": self.store.payload(serializer or self._serializer) if include_state else {},
        }

    @property
    def run_id(self) -> str | None:
        handler = getattr(self, "_handler", None)
        return handler.run_id if handler is not None else self._run_id

    @property
    def is_running(self) -> bool:
        """Whether the context's run is going (in a step: always)."""
        if self._face == _INTERNAL:
            return True
        if self._handler is not None:
            return not self._handler.done()
        return self._was_running

    @property
    def workflow_name(self) -> str:
        return self._workflow_name

    @property
    def handler(self) -> BoundRun | None:
        """The handler of the run an external context is bound to."""
        return getattr(self, "_handler", None)

    def stream_events(self) -> AsyncIterator[Any]:
        """The run's stream (``handler.stream_events()``) of a bound context.

        Raises:
            ContextStateError: the context is not bound to a run.
        """
        if self._face != _EXTERNAL or self._handler is None:
            raise ContextStateError("stream_events requires a running workflow. Call workflow.run() first.")
        return self._handler.stream_events()

    @property
    def step_context(self) -> bool:
        """Whether this is a step's context (internal face)."""
        return self._face == _INTERNAL

    def state_copy(self) -> dict[str, Any]:
        """A copy of the state the context knows without reading the log, as kept in the log:
        staged (pre-run), the run's final state once its handler read it, or as last read."""
        handler = getattr(self, "_handler", None)
        final = handler.final_state if handler is not None else None
        return copy.deepcopy(final if final is not None else self.store._view())

    def retry_info(self) -> RetryInfo:
        """Where this step execution stands in its retries, as llama-index-workflows'
        ``Context.retry_info()``: ``RetryInfo(retry_number=0, elapsed_seconds=0.0,
        last_exception=None, last_failed_at=None)`` on the first attempt; on a retry, the retry's
        number (1 for the first retry), the seconds since the first failure on this trigger, and
        the previous attempt's error and failure time, read from the run's log.

        ``last_exception`` is an instance of the error's class, rebuilt from its recorded type and
        message (any worker may run the retry), without its traceback; a class that does not
        import gives a plain ``Exception`` naming it.

        Raises:
            ContextStateError: called outside a step.
        """
        self._require_step("retry_info")
        return retry_info(self._run_state, self.trigger_seq, self.step_name, self._attempt)

    def _require_step(self, fn: str) -> None:
        if self._face != _INTERNAL:
            where = "Call workflow.run() first." if self._face == _PRE else "It is only available in steps."
            raise ContextStateError(f"{fn} requires a running step. {where}")

    # llama-index-workflows 0.x style state access, kept for users moving over
    async def get(self, key: str, default: Any = MISSING) -> Any:
        """Same as ``await ctx.store.get(key, default)``."""
        return await self.store.get(key, default)

    async def set(self, key: str, value: Any) -> None:
        """Same as ``await ctx.store.set(key, value)``."""
        await self.store.set(key, value)

    def send_event(self, event: Event, step: str | None = None) -> Any:
        """Emit ``event`` (committed when the step returns). With ``step``, only that step gets it.

        Outside the steps (``handler.ctx.send_event``), sends ``event`` into the bound run, as
        ``WorkflowHandler.send_event`` does, in the background (as llama-index-workflows does);
        the task is returned, so it may be awaited.

        Raises:
            TypeError: ``event`` is not an Event.
            ValueError: no step of the workflow accepts its type.
            ContextStateError: the context is not bound to a run yet.
        """
        if not isinstance(event, Event):
            raise TypeError(f"send_event takes an Event, got {type(event).__name__}")
        if self._face != _INTERNAL:
            return self._send_from_outside(event, step)
        if isinstance(event, StopEvent):
            self.emitted.append((event, None))
            return
        if event_name(type(event)) not in self._known:
            raise ValueError(
                f"no step of this workflow accepts {event_name(type(event))}; "
                "add it to a step's signature"
            )
        self.emitted.append((event, step))

    def write_event_to_stream(self, event: Event | None) -> None:
        """Publish ``event`` to the run's output stream (``handler.stream_events()``, the ``out``
        subjects); committed with the step. ``None`` is ignored."""
        self._require_step("write_event_to_stream")
        if event is None:
            return
        if not isinstance(event, Event):
            raise TypeError(f"write_event_to_stream takes an Event, got {type(event).__name__}")
        self.streamed.append(event)

    async def wait_for_event(
        self,
        event_type: type[E],
        requirements: dict[str, Any] | None = None,
        timeout: float | timedelta | None = 2000.0,
        waiter_event: Event | None = None,
        waiter_id: str | None = None,
    ) -> E:
        """Wait, durably, for an event of ``event_type`` (usually a ``HumanResponseEvent``) sent to
        the run after this step's trigger, whose fields equal ``requirements``.

        No worker holds the step while it waits: the step is recorded as suspended and runs again
        from its start when the event arrives, maybe days later and in another process; waits it
        already passed then return at once. So a step must make its waits in the same order every
        time (as in Temporal workflow code). ``waiter_event`` (e.g. an ``InputRequiredEvent``) is
        written to the stream once, when the wait begins. Signature as in llama-index-workflows.

        Args:
            timeout: seconds (or a timedelta) to wait, default 2000 (llama's); ``None``: forever.
            waiter_id: names the wait (default ``w<n>`` for the n-th wait of the step).

        Raises:
            WaitTimeoutError: no matching event within ``timeout``.
        """
        self._require_step("wait_for_event")
        wait = self._waits.next_id(waiter_id)
        resolved, suspended = self._waits.lookup(wait)
        if resolved is not None:
            if resolved.event is not None:
                return event_from_fields(event_type, resolved.event.data)  # type: ignore[return-value]  # event_from_fields builds the class asked for
            raise WaitTimeoutError(
                f"step {self.step_name!r} waited {timeout}s for {event_name(event_type)} in vain",
                run_id=self.run_id,
                step=self.step_name,
            )
        fire_at = deadline_ns(timeout, suspended.fire_at_ns if suspended is not None else None)
        raise Suspend(
            StepSuspended(
                step=self.step_name,
                trigger=self.trigger_seq,
                wait=wait,
                kind="event",
                event_type=event_name(event_type),
                requirements=dict(requirements or {}),
                fire_at_ns=fire_at,
                event_schema=fields_schema(event_type),
                attempt=self._waits.attempt,
            ),
            waiter_event if suspended is None else None,
        )

    async def sleep(self, delay: float | timedelta, *, timer_id: str | None = None) -> None:
        """Sleep durably: a timer in the log (a JetStream message schedule), not in this process.

        The step is suspended and no worker holds it; when the timer fires, the step runs again
        from its start and this call returns at once (see ``wait_for_event`` on replay). A sleep
        survives restarts of every worker and of the NATS server.

        Args:
            delay: seconds, or a timedelta.
            timer_id: names the timer (default ``w<n>`` for the n-th wait of the step).
        """
        wait = self._waits.next_id(timer_id)
        resolved, suspended = self._waits.lookup(wait)
        if resolved is not None:
            return
        fire_at = deadline_ns(delay, suspended.fire_at_ns if suspended is not None else None)
        raise Suspend(
            StepSuspended(
                step=self.step_name,
                trigger=self.trigger_seq,
                wait=wait,
                kind="timer",
                fire_at_ns=fire_at,
                attempt=self._waits.attempt,
            )
        )

    async def run_workflow(
        self,
        workflow: type[WorkflowDefinition] | str,
        *,
        timeout: float | timedelta | None = None,
        retries: int = 0,
        run_id: str | None = None,
        start_event: StartEvent | str | None = None,
        in_process: bool = True,
        **fields: Any,
    ) -> Any:
        """Run another workflow as a child of this run and return its result, durably: the step
        is suspended while the child runs (no worker holds it) and runs again from its start
        when the child ends, so, as with ``wait_for_event``, it must make its waits and child
        calls in the same order every time. See ``engine.runtime.children``.

        Args:
            workflow: the child's class (runs in this process unless ``in_process=False``; its
                result comes back typed), or its name (runs on whatever workers serve it, e.g.
                another service; its result comes back as JSON values).
            timeout: seconds (or a timedelta) to wait for each attempt (default ``None``:
                forever); a child that takes longer is cancelled.
            retries: further attempts, each a new child run, after a child fails or times out
                (default 0). A cancelled child is not retried.
            run_id: the child's run id (attempt n > 0 adds ``-r<n>``); default: derived from this
                run, trigger, step and call, so a replay never starts a second child.
            start_event: the child's start event, or, with a name, its start event's name
                (default ``"StartEvent"``); else ``**fields`` are the start event's fields.

        Returns:
            the ``result`` of the child's plain ``StopEvent``, or the event itself for a
            ``StopEvent`` subclass of a child given as a class.

        Raises:
            ChildWorkflowError: the child failed (``error_type``/``error_message`` of the child
                step's exception), was cancelled, or timed out (``status``), after ``retries``.
            ValueError: a workflow name or ``run_id`` that is not a subject token (1 to 128
                characters of ``A-Z a-z 0-9 _ -``, the retry suffix ``-r<n>`` included).
        """
        return await run_child(
            self._waits,
            workflow,
            timeout=timeout,
            retries=retries,
            run_id=run_id,
            start_event=start_event,
            in_process=in_process,
            fields=fields,
        )

    def collect_events(
        self, ev: Event, expected: Sequence[type[Event]]
    ) -> list[Event] | None:
        """Fan-in: the events of the ``expected`` types (one per entry, in that order) once all
        have arrived, else ``None``. Exactly one of the triggers that could complete a collection
        gets it, whichever process handles it (see ``RunState.collect``).
        """
        self._require_step("collect_events")
        assert self._collector is not None  # (a step's context always has one)
        got = self._collector([event_name(t) for t in expected])
        if got is None:
            return None
        seqs, events = got
        self.consumed.extend(seqs)
        return events

    def _send_from_outside(self, event: Event, step: str | None) -> asyncio.Task[None]:
        handler = self._handler
        if self._face != _EXTERNAL or handler is None:
            raise ContextStateError("send_event() called before workflow started. Call workflow.run() first.")
        task = asyncio.ensure_future(handler.send_event(event, step=step))
        _SENDS.add(task)
        task.add_done_callback(_sent)
        return task


_SENDS: set[asyncio.Task[None]] = set()  # sends from outside in flight (kept from the collector)


def _sent(task: asyncio.Task[None]) -> None:
    _SENDS.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.error("sending an event to a run failed", exc_info=task.exception())
