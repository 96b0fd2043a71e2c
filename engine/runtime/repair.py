"""Completing a commit a crash interrupted (``engine.wire.commit``, step 4): the trigger's
redelivery re-appends the messages the fold has not seen, from the copy the commit's head carries."""

from __future__ import annotations

from engine.ports.log import EventLog
from engine.state.fold import RunState

__all__ = ["complete_commit"]


async def complete_commit(log: EventLog, state: RunState, key: str) -> int:
    """Append the messages of commit ``key`` that ``state`` (a fold of the run's log) has not
    seen, from the copy its first record carries, under their original idempotency ids.

    Returns:
        how many messages the log stored (0 when the commit was already whole, or when every
        re-appended message turned out to be a duplicate).

    Raises:
        AppendError: the log rejected a message.
    """
    pending = state.incomplete.get(key)
    if pending is None:
        return 0
    indices, messages = pending.missing(log.prefix, state.workflow, state.run_id)
    if not messages:
        return 0
    result = await log.append(messages, idempotency_key=key, indices=indices)
    return result.count
