"""``WorkflowHandler``: a started run, followed through its log.

The same handler serves a run executed in this process and one executed by remote workers: it
follows the run's ``sys`` records into an ``EndProjection`` (not the whole fold: a waiter needs
the end only) and resolves when a terminal record lands. Its ``out`` records (the stream output)
are followed too when ``stream_events()`` is called before the follow begins (right after the
run is started, as llama-index-workflows users do); a later call follows them on its own, from
the run's first record. A handler that is only awaited so receives none of its run's events.

A run started under a new id (nobody else can have appended to it) is followed by callback
(``EventLog.follow_callback``, set up before the start commit is appended): each record goes from
the log's delivery path into the end projection, and the one that ends the run resolves the
handler there. Any other run, and a new run that ``send_event`` or ``cancel_run`` wrote to before
its follow began, is followed with ``EventLog.follow`` (its stored records, then the new ones).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Mapping
from typing import Any, overload

from engine.model.errors import (
    DeadLetteredError,
    LastSeqMismatchError,
    StepFailedError,
    WorkflowCancelledError,
    WorkflowRuntimeError,
    WorkflowTimeoutError,
)
from engine.model.events import (
    Event,
    StopEvent,
    WorkflowCancelledEvent,
    WorkflowFailedEvent,
    WorkflowTimedOutEvent,
    encode_checked,
    event_from_fields,
    event_name,
)
from engine.model.records import OutMessage, RawRecord, RunFailed, StepFailed
from engine.ports.log import EventLog
from engine.runtime.commands import append_cancel, append_event
from engine.runtime.context import Context
from engine.runtime.endings import after_end, fold_run
from engine.runtime.failures import rebuilt_error
from engine.runtime.spec import WorkflowDefinition
from engine.state.ending import ENDING_KINDS, FOLLOWED_KINDS, EndProjection
from engine.state.fold import RunState, fold
from engine.wire.codec import decode_record, encode
from engine.wire.headers import H_RUN, H_TYPE
from engine.wire.subjects import check_token, run_subject

__all__ = ["WorkflowHandler", "outcome"]

_TIMEOUT_ATTEMPTS = 5  # reads and checked appends of a timeout before it appends unchecked

logger = logging.getLogger("jetloom.handler")

_END = object()


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("a handler's cleanup failed", exc_info=task.exception())


# where the run's id and start are decided when the follow begins (``Workflow.run(ctx=...)``):
# returns the run id, the start to append (``None``: the run exists) and whether the id is new
Choice = tuple[str, "Callable[[], Awaitable[None]] | None", bool]


# RunFailed.error_type -> the error awaiting the run raises (others: WorkflowRuntimeError)
_RUN_FAILED_ERRORS: dict[str, type[WorkflowRuntimeError]] = {
    "WorkflowTimeoutError": WorkflowTimeoutError,
    "DeadLetteredError": DeadLetteredError,
}


def outcome(
    state: RunState | EndProjection, events: Mapping[str, type[Event]]
) -> tuple[StopEvent | None, BaseException | None]:
    """The StopEvent of a completed run, or the error of a failed or cancelled one (from the whole
    fold or from the end projection: both name the same fields)."""
    if state.status == "completed" and state.result is not None:
        cls = events.get(state.result.event_type)
        if cls is not None and issubclass(cls, StopEvent):
            return event_from_fields(cls, state.result.event), None  # type: ignore[return-value]  # event_from_fields builds the class asked for
        return StopEvent(result=state.result.event.get("result")), None
    if state.status == "cancelled":
        return None, WorkflowCancelledError(f"run {state.run_id} was cancelled", run_id=state.run_id)
    err = state.error
    if isinstance(err, StepFailed):
        return None, StepFailedError(
            step=err.step,
            error_type=err.error_type,
            error_message=err.message,
            traceback=err.traceback,
            run_id=state.run_id,
            seq=err.trigger,
        )
    if isinstance(err, RunFailed):
        cls_err = _RUN_FAILED_ERRORS.get(err.error_type, WorkflowRuntimeError)
        step = err.dead_letter.step if err.dead_letter is not None else None
        return None, cls_err(err.message, run_id=state.run_id, step=step)
    return None, WorkflowRuntimeError(f"run {state.run_id} ended as {state.status}", run_id=state.run_id)


class WorkflowHandler:
    """A run in progress. ``await handler`` gives the result; ``handler.stream_events()`` yields
    what the steps wrote to the stream, then the StopEvent (or, for a run that failed, timed out
    or was cancelled, a ``WorkflowFailedEvent``, ``WorkflowTimedOutEvent`` or
    ``WorkflowCancelledEvent``, as llama-index-workflows; the stream does not raise).

    The awaited value follows llama-index-workflows: the ``result`` of a plain ``StopEvent``, or the
    event itself for a ``StopEvent`` subclass. Results travel through the log as JSON, so tuples
    come back as lists.

    Raises (when awaited):
        StepFailedError: a step raised.
        WorkflowTimeoutError: the run did not finish within ``timeout`` seconds.
        WorkflowCancelledError: the run was cancelled.

    Construction raises ``ValueError`` when ``workflow`` or ``run_id`` is not a subject token
    (``engine.wire.subjects.check_token``).

    Attributes:
        ctx: the run's ``Context`` (external face): ``await handler.ctx.store.get(...)`` reads the
            run's state from its log, ``handler.ctx.send_event(ev)``, ``handler.ctx.to_dict()``.
        run_id: the run's id (for a handler of ``workflow.run(ctx=...)``, final once the follow
            has begun: ``await handler.wait_ready()``).
    """

    def __init__(
        self,
        *,
        log: EventLog,
        workflow: str,
        run_id: str,
        events: Mapping[str, type[Event]],
        timeout: float | None,
        prepare: Callable[[], Awaitable[None]] | None = None,
        cleanup: Callable[[], Awaitable[None]] | None = None,
        fresh: bool = False,
        definition: WorkflowDefinition | type[WorkflowDefinition] | None = None,
        choose: Callable[[], Awaitable[Choice]] | None = None,
        ctx: Context[Any] | None = None,
    ) -> None:
        # (names become subject tokens: a bad one fails here, before the server refuses it)
        self.run_id = check_token(run_id, "run id")
        check_token(workflow, "workflow")
        self._definition = definition
        self._choose = choose
        self._ready = asyncio.Event()
        self._ctx = ctx
        self._track_state = ctx is not None  # fold the final state when the run ends (to_dict)
        self._final_state: dict[str, Any] | None = None
        if ctx is not None:
            ctx.bind_handler(self)
        self._fresh = fresh  # ``prepare`` starts a run whose id nobody else has: no stored records
        self.workflow = workflow
        self._log = log
        self._events = events
        self._timeout = timeout
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._stop_event: StopEvent | None = None
        self.state = EndProjection(run_id)  # how the run ended, as far as followed
        # the kinds followed: set when the follow begins, or earlier by stream_events()
        self._kinds: tuple[str, ...] | None = None
        self._task = asyncio.create_task(self._follow(prepare, cleanup), name=f"jetloom:run:{run_id}")

    async def _follow(
        self,
        prepare: Callable[[], Awaitable[None]] | None,
        cleanup: Callable[[], Awaitable[None]] | None,
    ) -> None:
        if self._kinds is None:  # (stream_events() called before this sets the kinds it streams)
            self._kinds = ENDING_KINDS
        if self._choose is not None:
            try:
                self.run_id, prepare, self._fresh = await self._choose()
            except BaseException as exc:
                self._ready.set()
                if not self._future.done():
                    self._future.set_exception(exc)
                self._queue.put_nowait(_END)
                if cleanup is not None:
                    await cleanup()
                return
            if prepare is None:
                self._ready.set()
        else:
            self._ready.set()
        if prepare is not None and self._fresh:
            await self._begin_new_run(prepare, cleanup)
            return
        try:
            try:
                async with asyncio.timeout(self._timeout):
                    await self._consume_log(prepare)
            except TimeoutError:
                if not self.state.terminal:
                    await self._fail_timeout()
                    await self._consume_log()  # whichever terminal record landed first decides
            if self._track_state:
                await self._fetch_final_state()
            self._finish()
        except asyncio.CancelledError:
            if not self._future.done():
                self._future.cancel()
            raise
        except BaseException as exc:  # surfaced to whoever awaits the handler
            if not self._future.done():
                self._future.set_exception(exc)
        finally:
            self._ready.set()
            self._queue.put_nowait(_END)
            if cleanup is not None:
                await cleanup()

    def _finish(self) -> None:
        """Resolve the handler from the end projection (once)."""
        if self._future.done():
            return
        stop, error = outcome(self.state, self._events)
        if error is not None:
            self._future.set_exception(error)
        else:
            self._stop_event = stop
            self._future.set_result(stop if type(stop) is not StopEvent else stop.result)

    async def _consume_log(self, prepare: Callable[[], Awaitable[None]] | None = None) -> None:
        if self.state.terminal:
            return
        records = self._log.follow(self.workflow, self.run_id, after_seq=self.state.seq, kinds=self._kinds)
        async with contextlib.aclosing(records):  # type: ignore[type-var]  # the log's read iterator has aclose, not declared by the port
            if prepare is not None:
                # Set up the follow (a consumer on JetStream: one round trip) while ``prepare``
                # appends the start commit; the follow delivers from the start of the run's log.
                first = asyncio.ensure_future(anext(records))
                try:
                    await prepare()
                except BaseException:
                    first.cancel()
                    with contextlib.suppress(BaseException):
                        await first
                    raise
                finally:
                    self._ready.set()
                if self._apply(await first):
                    return
            async for raw in records:
                if self._apply(raw):
                    return
        raise WorkflowRuntimeError(
            f"the log stopped delivering run {self.run_id} before it ended (connection closed?)",
            run_id=self.run_id,
        )

    # ---- a run under a new id: followed by callback ------------------------------------------
    # Its records are handed to ``_take`` by the log as they land (``EventLog.follow_callback``,
    # set up before ``prepare`` appends the start commit, so nothing stored is read), and the
    # record that ends the run resolves the handler there and then: no queue, generator or turn
    # of a task between the log and the caller, and this handler's task ends once the start commit
    # is appended. The timeout is a timer that appends the run's ``RunFailed``; the first terminal
    # record to land decides, as on the other path.

    _over = False  # the follow by callback has ended
    _unfollow: Callable[[], None] | None = None
    _timer: asyncio.TimerHandle | None = None
    _cleanup: Callable[[], Awaitable[None]] | None = None
    _timing_out: asyncio.Future[None] | None = None  # the timeout's append
    _cleaning: asyncio.Future[None] | None = None

    async def _begin_new_run(
        self, prepare: Callable[[], Awaitable[None]], cleanup: Callable[[], Awaitable[None]] | None
    ) -> None:
        self._cleanup = cleanup
        try:
            self._unfollow = await self._log.follow_callback(self.workflow, self.run_id, self._take, kinds=self._kinds)
            if self._timeout is not None:
                self._timer = asyncio.get_running_loop().call_later(self._timeout, self._on_timeout)
            await prepare()
        except asyncio.CancelledError:
            self._close(cancel=True)
            raise
        except BaseException as exc:  # surfaced to whoever awaits the handler
            self._close(exc)
        finally:
            self._ready.set()

    def _take(self, raw: RawRecord) -> None:
        """One record of the run, in log order, from the log's delivery path."""
        if self._over or raw.seq <= self.state.seq:
            return
        try:
            ended = self._apply(raw)
        except Exception as exc:  # (a record the projection cannot take: the handler fails with it)
            self._close(exc)
            return
        if ended:
            self._close()

    def _on_timeout(self) -> None:
        self._timer = None
        if not self._over:
            self._timing_out = asyncio.ensure_future(self._fail_timeout())
            self._timing_out.add_done_callback(self._timed_out)

    def _timed_out(self, task: asyncio.Future[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._close(task.exception())

    def _close(self, error: BaseException | None = None, *, cancel: bool = False) -> None:
        """End the follow by callback: resolve the handler (from the end projection, or with
        ``error``, or cancelled), stop following and the timer, end ``stream_events``, run the
        cleanup."""
        if self._over:
            return
        self._over = True
        if self._unfollow is not None:
            self._unfollow()
            self._unfollow = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if cancel:
            self._future.cancel()
        elif error is not None:
            if not self._future.done():
                self._future.set_exception(error)
        elif self._track_state:
            # (the final state is read before the handler resolves, so to_dict after it has it)
            fetching = asyncio.ensure_future(self._fetch_final_state())
            fetching.add_done_callback(lambda _: self._finish())
            self._fetch_task = fetching
        else:
            self._finish()
        self._queue.put_nowait(_END)
        if self._cleanup is not None:
            self._cleaning = asyncio.ensure_future(self._cleanup())
            self._cleaning.add_done_callback(_log_failure)

    def _apply(self, raw: RawRecord) -> bool:
        """Apply one record to the end projection; true once the run has ended."""
        out = self.state.apply(raw, self._events)
        if out is not None:
            self._queue.put_nowait(out.body)
        return self.state.terminal

    async def _fail_timeout(self) -> None:
        """Append the run's ``RunFailed(WorkflowTimeoutError)``, unless the run has ended: the
        append carries the check that the run ends where the read did, so an end stored
        meanwhile (not yet followed here) is never followed by this record."""
        body = RunFailed(
            error_type="WorkflowTimeoutError",
            message=f"run {self.run_id} did not complete within {self._timeout}s",
        )
        msg = OutMessage(
            run_subject(self._log.prefix, self.workflow, self.run_id, "sys", "RunFailed"),
            encode(body),
            {H_RUN: self.run_id, H_TYPE: "RunFailed"},
        )
        for _ in range(_TIMEOUT_ATTEMPTS):
            raws = await self._log.read(self.workflow, self.run_id)
            if fold(decode_record(r) for r in raws).terminal:
                return  # it ended: the follow brings the end to this handler
            last = raws[-1].seq if raws else 0
            try:
                await self._log.append([msg], idempotency_key=f"{self.run_id}:timeout", expected_last_seq=last)
                break
            except LastSeqMismatchError:
                continue  # the run moved on meanwhile: read it again
        else:  # (a run that keeps moving: the fold keeps the first terminal record anyway)
            await self._log.append([msg], idempotency_key=f"{self.run_id}:timeout")
        await after_end(self._log, self.workflow, self.run_id)

    async def _fetch_final_state(self) -> None:
        try:
            self._final_state = (await fold_run(self._log, self.workflow, self.run_id)).state
        except Exception:  # (the result matters more than the state copy of to_dict)
            logger.warning("could not read the final state of run %s", self.run_id, exc_info=True)

    _fetch_task: asyncio.Future[None] | None = None

    @property
    def log(self) -> EventLog:
        """The event log the run is in."""
        return self._log

    @property
    def final_state(self) -> dict[str, Any] | None:
        """The run's state (as in the log) when it ended, if it was read then (``ctx``)."""
        return self._final_state

    async def wait_ready(self) -> None:
        """Wait until the run's id is settled and its start appended (at once for a handler not
        made by ``workflow.run(ctx=...)`` once its follow has begun)."""
        await self._ready.wait()

    @property
    def ctx(self) -> Context[Any]:
        """The run's context (external face; see ``engine.runtime.context.Context``). Taken before
        the run ends, the handler also reads the run's final state when it ends, for ``to_dict``."""
        if self._ctx is None:
            definition: Any = self._definition
            if definition is None:
                definition = _Unknown(self.workflow)
            self._ctx = Context(definition)
            self._ctx.bind_handler(self)
            if not self.done():
                self._track_state = True
        return self._ctx

    def __await__(self) -> Generator[Any, None, Any]:
        return self._future.__await__()

    def done(self) -> bool:
        return self._future.done()

    @overload
    def result(self) -> Any: ...

    @overload
    def result(self, *, timeout: float) -> Awaitable[Any]: ...

    def result(self, *, timeout: float | None = None) -> Any:
        """The run's result.

        Without ``timeout``: the result of a finished run, at once (``asyncio.Future.result``
        semantics, as llama-index-workflows' handler, an ``asyncio.Future``). With ``timeout``:
        an awaitable, ``await handler.result(timeout=5)``, that waits at most ``timeout``
        seconds for the run to end (as the HTTP SDK's ``RunHandle.result``).

        Raises:
            asyncio.InvalidStateError: without ``timeout``, the run has not ended.
            TimeoutError: (awaited) the run had not ended after ``timeout`` seconds; it keeps
                running and the handler stays usable.
            StepFailedError / WorkflowTimeoutError / WorkflowCancelledError: how the run ended.
        """
        if timeout is None:
            return self._future.result()
        return self._result_within(timeout)

    async def _result_within(self, timeout: float) -> Any:
        # (asyncio.wait leaves the future alone when the time is up: the follow goes on)
        await asyncio.wait([self._future], timeout=timeout)
        if not self._future.done():
            raise TimeoutError(f"run {self.run_id} has not ended after {timeout} s; it keeps running")
        return self._future.result()

    def exception(self) -> BaseException | None:
        return self._future.exception()

    async def stream_events(self) -> AsyncIterator[Event | dict[str, Any]]:
        """Yield each event written with ``ctx.write_event_to_stream`` as it is committed (typed
        when its class is known here, else a dict), then the event that ends the run: its
        StopEvent, or, as llama-index-workflows publishes them, a ``WorkflowFailedEvent`` (a step
        failed for good, or the run failed otherwise), ``WorkflowTimedOutEvent`` (its timeout) or
        ``WorkflowCancelledEvent`` (cancelled). The stream then ends without raising; awaiting the
        handler raises the run's error.

        Called before the handler's follow begins (right after the run was started, before the
        caller's next ``await``), it streams what that follow takes in; called later, it follows
        the run's ``sys`` and ``out`` records on its own, from the run's first record.
        """
        if self._kinds is None:
            self._kinds = FOLLOWED_KINDS
        if self._kinds is FOLLOWED_KINDS:
            while True:
                item = await self._queue.get()
                if item is _END:
                    break
                yield item
        else:
            async for item in self._stream_on_its_own():
                yield item
        await asyncio.wait([self._future])
        if self._future.cancelled():
            return
        error = self._future.exception()
        if error is not None:
            ending = await self._ending_event(error)
            if ending is not None:
                yield ending
            return
        if self._stop_event is not None:
            yield self._stop_event

    async def _ending_event(self, error: BaseException) -> StopEvent | None:
        """The event the stream ends with for a run that did not complete (``error``: what
        awaiting the handler raises), from the run's terminal record; ``None`` when the handler
        ended without one (its log stopped)."""
        if isinstance(error, WorkflowCancelledError):
            return WorkflowCancelledEvent()
        err = self.state.error
        if isinstance(err, StepFailed):
            return WorkflowFailedEvent(
                step_name=err.step,
                exception=rebuilt_error(err.error_type, err.message),
                attempts=err.attempt,
                elapsed_seconds=err.duration_ms / 1e3 if err.attempt == 1 else None,
            )
        if not isinstance(err, RunFailed):
            return None
        if err.error_type == WorkflowTimeoutError.__name__:
            st = await fold_run(self._log, self.workflow, self.run_id)
            timeout = self._timeout
            if timeout is None:  # (timed out by whoever scheduled the run's timeout)
                ends, began = st.timeout_at_ns, st.started_ns
                timeout = (ends - began) / 1e9 if ends and began else 0.0
            # (steps waiting or due a retry: the log records when a step ends, not when it starts)
            active = {step for (_, step, _) in st.waits} | {step for (_, step) in st.retrying}
            return WorkflowTimedOutEvent(timeout=timeout, active_steps=sorted(active))
        step = err.dead_letter.step if err.dead_letter is not None else ""
        return WorkflowFailedEvent(step_name=step, exception=error if isinstance(error, Exception) else Exception(str(error)))

    async def _stream_on_its_own(self) -> AsyncIterator[Any]:
        """The run's ``out`` events that count, in log order, from a follow of its own; ends with
        the run's end, or when the handler ends without one (its log stopped)."""
        proj = EndProjection(self.run_id)
        records = self._log.follow(self.workflow, self.run_id, kinds=FOLLOWED_KINDS)
        async with contextlib.aclosing(records):  # type: ignore[type-var]  # the log's read iterator has aclose, not declared by the port
            nxt: asyncio.Future[RawRecord] | None = None
            try:
                while not proj.terminal:
                    nxt = asyncio.ensure_future(anext(records))
                    if not self._future.done():
                        await asyncio.wait([nxt, self._future], return_when=asyncio.FIRST_COMPLETED)
                    if not nxt.done() and not self.state.terminal:
                        return  # the handler ended without the run's end (its log stopped)
                    try:
                        raw = await nxt
                    except StopAsyncIteration:
                        return
                    out = proj.apply(raw, self._events)
                    if out is not None:
                        yield out.body
            finally:
                # A read still pending (the handler ended, or the caller gave up on this stream:
                # ``asyncio.wait_for(anext(stream), t)`` cancelled it) is cancelled and awaited
                # before ``records`` is closed: closing a generator that is still running raises.
                if nxt is not None and not nxt.done():
                    nxt.cancel()
                    with contextlib.suppress(BaseException):
                        await nxt

    async def send_event(
        self, event: Event, *, step: str | None = None, idempotency_key: str | None = None
    ) -> None:
        """Send ``event`` to the run from outside (e.g. a ``HumanResponseEvent`` a step waits for
        with ``ctx.wait_for_event``), optionally to one ``step`` only. With an
        ``idempotency_key``, a repeated call appends once.

        Raises:
            EventValidationError: a field of ``event`` does not match its annotation (nothing is
                appended).
        """
        payload = encode_checked(event)  # (checked before it reaches the run: see encode_checked)
        if self._choose is not None:
            await self._ready.wait()  # (the run id is decided when the follow begins)
        self._fresh = False  # (the run has a record now: a follow not begun yet must read it)
        await append_event(
            self._log,
            self.workflow,
            self.run_id,
            event_name(type(event)),
            payload,
            target=step,
            idempotency_key=idempotency_key,
        )

    async def cancel_run(self, reason: str = "") -> None:
        """Record that the run is cancelled; steps not yet started will not run."""
        if self._choose is not None:
            await self._ready.wait()  # (as in send_event)
        self._fresh = False  # (as in send_event)
        await append_cancel(self._log, self.workflow, self.run_id, reason)
        await asyncio.wait([self._future])
        if not self._future.cancelled():
            self._future.exception()  # the caller asked for the cancel; the error is expected


class _Unknown:
    """The definition of a workflow known only by name (``NatsClient.attach("name", ...)``)."""

    steps: dict[str, Any] = {}

    def __init__(self, name: str) -> None:
        self.workflow_name = name
