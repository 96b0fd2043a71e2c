"""The ordered idempotent commit: how a step's effects reach the log, and how a commit that a
crash interrupted is completed.

A commit is the messages one step execution (or one run start) appends: its first record, the
*head* (``sys.StepCompleted`` / ``sys.RunStarted``), then the events it emitted, its stream output
and ``sys.RunCompleted``. Its idempotency key is ``<run_id>:<trigger_seq>:<step>`` (``<run_id>:start``
for a start). On a log whose appends are not atomic (``EventLog.atomic`` false: the pipelined
``JetStreamLog``, ``MemoryLog``):

1. Every message carries ``Jl-Commit: <key>/<index>:<execution>``, where ``execution`` is an id
   drawn for this execution of the step (``new_execution_id``). The head carries a copy of every
   other message of the commit (``CommitMessage``: kind, type, the headers it does not imply, the
   payload as raw JSON).
2. All messages are sent at once (pipelined, one write); the head under the id ``<key>``, message
   ``i`` under its own tag. The trigger is acked only after every ack.
3. The head decides whose commit stands: of two executions of one commit (a redelivery racing a
   slow worker), the server stores one head and reports the other as a duplicate. The fold counts
   a message of a commit only if the head it folded is of the same execution; the other
   execution's messages that were stored (*orphans*) are history only: never folded, never run as
   triggers (``RunState.orphans``). So two executions' outputs never mix, without waiting for the
   head's ack before sending the rest (which cost a round trip per step).
4. A crash in step 2 leaves a prefix of the commit in the log. The fold tracks, per commit, the
   indices it has seen and keeps the copy while some are missing (``RunState.incomplete``); the
   trigger's redelivery finds the completion in the fold and re-appends (``engine.runtime.repair``) exactly the missing
   messages from the copy, under their original ids, so any that landed meanwhile are dropped as
   duplicates (and after the log's duplicate window, the fold's knowledge decides).

On an atomic log (``JetStreamLog(commit="batch")``) the copy and the execution id are left out: a
commit is stored whole or not at all.

**One-message commits.** Most steps emit one event, or end the run, and nothing else. Their
commit is that event (or the ``RunCompleted``) alone, tagged ``<key>/0``
(``one_message_commit``): it is its own head, de-duplicated under ``<key>`` and checked against
the run's expected last sequence like any head, and the fold takes an ``evt`` record or a
``RunCompleted`` tagged as message 0 of a commit, with its ``Jl-Step`` and ``Jl-Trigger``, as the
completion of that step on that trigger (``RunState.apply``; ``records.is_one_message_commit``). A single message is stored or
not, so such a commit needs no copy, no execution id and no repair. It costs one message, one
publish ack and one stored record per step instead of two; what it leaves out of the log is the
step's ``attempt`` (always 1 here) and ``duration_ms``; the worker is a header (``Jl-Worker``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence

import msgspec

from engine.model.records import CommitMessage, OutMessage
from engine.wire.headers import H_COMMIT, H_TYPE, H_WORKER, commit_tag

__all__ = ["copy_of", "new_execution_id", "one_message_commit", "tag_commit"]

_PROCESS = os.urandom(4).hex()  # execution ids: this process's random prefix and a counter
_COUNTER = itertools.count(1)


def new_execution_id() -> str:
    """A short id unique to one execution of one commit: 8 hex digits of this process, then a
    counter (``"3fa85f64-1c"``)."""
    return f"{_PROCESS}-{next(_COUNTER):x}"


def copy_of(messages: Sequence[OutMessage], base: Mapping[str, str]) -> list[CommitMessage]:
    """The copy of ``messages`` that a commit's first record carries: subject kind and type, the
    headers beyond ``base`` and ``Jl-Type``, and the payload (which must be JSON)."""
    out = []
    for m in messages:
        kind, type_name = m.subject.rsplit(".", 2)[1:]
        extra = {k: v for k, v in m.headers.items() if k not in base and k != H_TYPE}
        out.append(CommitMessage(kind=kind, type=type_name, data=msgspec.Raw(m.data), headers=extra))
    return out


def tag_commit(messages: Sequence[OutMessage], key: str, *, pipelined: bool = True) -> list[OutMessage]:
    """``messages`` with ``Jl-Commit`` added: ``<key>/<index>:<execution>`` with a fresh execution
    id when ``pipelined`` (the log's appends are not atomic), else ``<key>/<index>``. A single
    message is left as is (its idempotency id alone identifies it)."""
    if len(messages) < 2:
        return list(messages)
    execution = new_execution_id() if pipelined else None
    return [
        OutMessage(m.subject, m.data, {**m.headers, H_COMMIT: commit_tag(key, i, execution)})
        for i, m in enumerate(messages)
    ]


def one_message_commit(message: OutMessage, key: str, worker: str) -> OutMessage:
    """The one event a step emitted, or the ``RunCompleted`` of its ``StopEvent``, as the whole
    commit of that step: ``Jl-Commit: <key>/0``, so the message is its own head (stored under
    the id ``<key>``, with the run's expected last sequence when the executor sends it) and the
    fold reads the step's completion from it (its ``Jl-Step`` and ``Jl-Trigger``); ``Jl-Worker``
    names the ``worker`` that ran the step. For a step that sets no state, consumes no
    collection, streams nothing, emits nothing else and succeeds at its first attempt."""
    headers = {**message.headers, H_COMMIT: commit_tag(key, 0), H_WORKER: worker}
    return OutMessage(message.subject, message.data, headers)
