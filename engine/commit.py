"""The ordered idempotent commit: how a step's effects reach the log, and how a commit that a
crash interrupted is completed.

A commit is the messages one step execution (or one run start) appends: its first record
(``sys.StepCompleted`` / ``sys.RunStarted``), then the events it emitted, its stream output and
``sys.RunCompleted``. Its idempotency key is ``<run_id>:<trigger_seq>:<step>`` (``<run_id>:start``
for a start). On a log whose appends are not atomic (``EventLog.atomic`` false: the pipelined
``JetStreamLog``, ``MemoryLog``):

1. The first record carries a copy of every other message of the commit (``CommitMessage``:
   kind, type, the headers it does not imply, the payload as raw JSON). Every message carries
   ``Jl-Commit: <key>/<index>``; message ``i`` is appended under the id ``message_id(key, i)``.
2. The first record is appended and its ack awaited. If the log reports a duplicate, another
   execution's commit stands: nothing of this execution is sent, and the stored commit is
   completed from its own copy (step 4). So two executions' outputs never mix.
3. The other messages are appended pipelined (sent without waiting for each ack); the trigger is
   acked only after every ack.
4. A crash in step 3 leaves a prefix of the commit in the log. The fold tracks, per commit, the
   indices it has seen and keeps the copy while some are missing (``RunState.incomplete``); the
   trigger's redelivery finds the completion in the fold and re-appends exactly the missing
   messages from the copy, under their original ids, so any that landed meanwhile are dropped as
   duplicates (and after the log's duplicate window, the fold's knowledge decides).

On an atomic log (``JetStreamLog(commit="batch")``) the copy is left out: a commit is stored
whole or not at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec

from .fold import RunState
from .log.base import EventLog
from .records import H_COMMIT, H_TYPE, CommitMessage, OutMessage

__all__ = ["complete_commit", "copy_of", "tag_commit"]


def copy_of(messages: Sequence[OutMessage], base: Mapping[str, str]) -> list[CommitMessage]:
    """The copy of ``messages`` that a commit's first record carries: subject kind and type, the
    headers beyond ``base`` and ``Jl-Type``, and the payload (which must be JSON)."""
    out = []
    for m in messages:
        kind, type_name = m.subject.rsplit(".", 2)[1:]
        extra = {k: v for k, v in m.headers.items() if k not in base and k != H_TYPE}
        out.append(CommitMessage(kind=kind, type=type_name, data=msgspec.Raw(m.data), headers=extra))
    return out


def tag_commit(messages: Sequence[OutMessage], key: str) -> list[OutMessage]:
    """``messages`` with ``Jl-Commit: <key>/<index>`` added; a single message is left as is (its
    idempotency id alone identifies it)."""
    if len(messages) < 2:
        return list(messages)
    return [
        OutMessage(m.subject, m.data, {**m.headers, H_COMMIT: f"{key}/{i}"})
        for i, m in enumerate(messages)
    ]


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
