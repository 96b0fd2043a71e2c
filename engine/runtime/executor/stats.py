"""``ExecutorStats``: what an executor has done since it started."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ExecutorStats"]


@dataclass
class ExecutorStats:
    """Counters of one executor (since it started).

    Attributes:
        handled: triggers whose step ran and committed (completed or failed).
        failed: of those, steps that raised.
        skipped: triggers acked without running (run ended, already handled, other target).
        duplicates: commits the log dropped as duplicates.
        dead_lettered: messages moved to the dead-letter subject.
        retried: deliveries nak'ed after an infrastructure error.
        repaired: messages of interrupted commits appended again from their copy.
        suspended: step executions that stopped to wait (``wait_for_event``, ``sleep``).
        resumed: ``Resume`` commands handled (a wait ended; the step ran again).
        retries: failed attempts recorded as ``StepRetrying`` (another attempt scheduled).
        cancelled: step executions stopped, or commits dropped, because their run had ended
            (cancelled, timed out, or ended by another record meanwhile).
        redelivered: deliveries taken that the log had delivered before (attempt > 1: a lease
            that ran out, a nak, a process that stopped before its ack).
    """

    handled: int = 0
    failed: int = 0
    skipped: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    retried: int = 0
    repaired: int = 0
    suspended: int = 0
    resumed: int = 0
    retries: int = 0
    cancelled: int = 0
    redelivered: int = 0
