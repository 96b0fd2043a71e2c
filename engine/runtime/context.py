"""``Context``: what a step sees of its run, and how it acts on it.

Nothing a step does through the context takes effect until the step returns: state changes, sent
events, stream output and fan-in consumption are collected here and committed with the step's
completion record in one atomic append (docs/architecture.md). The state a step reads is the run's state as
of its trigger event's sequence, plus its own writes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from engine.model.durations import deadline_ns
from engine.model.errors import WaitTimeoutError
from engine.model.events import Event, StartEvent, StopEvent, event_from_fields, event_name
from engine.model.records import StepSuspended
from engine.runtime.children import run_child
from engine.runtime.describe import fields_schema
from engine.runtime.spec import WorkflowDefinition
from engine.runtime.waits import StepWaits, Suspend
from engine.state.fold import MISSING, RunState, get_path, set_path
from engine.wire.headers import commit_key

E = TypeVar("E", bound=Event)

__all__ = ["Context", "StateStore"]


class StateStore:
    """The run's key-value state (``ctx.store``), addressed by dot paths (``"a.b.c"``).

    Values must be encodable by msgspec (JSON-like values, Structs, dates); an unencodable value
    fails the step when it commits.
    """

    __slots__ = ("_base", "_local", "_changes")

    def __init__(self, base: dict[str, Any]) -> None:
        self._base = base
        self._local: dict[str, Any] | None = None
        self._changes: dict[str, Any] = {}

    def _view(self) -> dict[str, Any]:
        return self._local if self._local is not None else self._base

    async def get(self, path: str, default: Any = MISSING) -> Any:
        """The value at ``path`` (a copy: mutating it changes nothing until ``set``).

        Raises:
            ValueError: ``path`` is absent and no ``default`` was given (as in llama-index).
        """
        try:
            value = get_path(self._view(), path)
        except KeyError:
            if default is MISSING:
                raise ValueError(f"state path {path!r} not found") from None
            return default
        return copy.deepcopy(value) if isinstance(value, dict | list) else value

    async def set(self, path: str, value: Any) -> None:
        """Set ``path`` to ``value``; committed with the step."""
        if self._local is None:
            self._local = copy.deepcopy(self._base)
        set_path(self._local, path, value)
        self._changes.pop(path, None)
        self._changes[path] = value

    @property
    def changes(self) -> dict[str, Any]:
        """The paths the step set, each with its last value, in the order last set (the
        ``state`` of its ``StepCompleted``)."""
        return self._changes

    async def to_dict(self) -> dict[str, Any]:
        """A copy of the whole state."""
        return copy.deepcopy(self._view())


class Context:
    """The run context handed to a step (``ctx: Context`` in its signature).

    Attributes:
        run_id: the run's id.
        store: the run's state (``await ctx.store.get/set``).
        idempotency_key: ``<run_id>:<trigger_seq>:<step>``, the key of this step's commit for
            its trigger. Steps run at least once (a crash before the commit runs the step
            again on the same trigger, with the same key); give it to external systems as the
            de-duplication key of a side effect (an upsert, a payment id) to make the effect
            happen once.
    """

    def __init__(
        self,
        *,
        run_id: str,
        step: str,
        trigger_seq: int,
        state: dict[str, Any],
        collector: Callable[[Sequence[str]], tuple[list[int], list[Event]] | None],
        known_events: dict[str, type[Event]],
        run: RunState | None = None,
        attempt: int = 1,
    ) -> None:
        self.run_id = run_id
        self.step_name = step
        self.trigger_seq = trigger_seq
        self.idempotency_key = commit_key(run_id, trigger_seq, step)
        self.store = StateStore(state)
        self._collector = collector
        self._known = known_events
        self.emitted: list[tuple[Event, str | None]] = []
        self.streamed: list[Event] = []
        self.consumed: list[int] = []
        self._waits = StepWaits(run_id=run_id, step=step, trigger=trigger_seq, attempt=attempt, run=run)

    # llama-index-workflows 0.x style state access, kept for users moving over
    async def get(self, key: str, default: Any = MISSING) -> Any:
        """Same as ``await ctx.store.get(key, default)``."""
        return await self.store.get(key, default)

    async def set(self, key: str, value: Any) -> None:
        """Same as ``await ctx.store.set(key, value)``."""
        await self.store.set(key, value)

    def send_event(self, event: Event, step: str | None = None) -> None:
        """Emit ``event`` (committed when the step returns). With ``step``, only that step gets it.

        Raises:
            TypeError: ``event`` is not an Event.
            ValueError: no step of the workflow accepts its type.
        """
        if not isinstance(event, Event):
            raise TypeError(f"send_event takes an Event, got {type(event).__name__}")
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
        got = self._collector([event_name(t) for t in expected])
        if got is None:
            return None
        seqs, events = got
        self.consumed.extend(seqs)
        return events
