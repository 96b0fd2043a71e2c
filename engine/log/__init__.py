"""Event logs: the ``EventLog`` port and its implementations."""

from .base import AppendResult, DeadLetter, Delivery, EventLog
from .memory import MemoryLog

__all__ = ["AppendResult", "DeadLetter", "Delivery", "EventLog", "MemoryLog"]
