"""Reading the run stream: a run's records (``Reader.read``: batched direct gets, a consumer
made for a long read, single-record gets for a short bounded read of an old run), and scans
across runs for the control plane. Every direct get goes through ``read.direct_read``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from engine.jetstream._natspy import Tap
from engine.jetstream.read import (
    FIRST_READ,
    LONG_READ,
    WALK_DISTANCE,
    WALK_MAX,
    ConsumerRead,
    ReadInbox,
    StreamHead,
    direct_read,
)
from engine.jetstream.retry import retrying
from engine.model.errors import LogError
from engine.model.records import RawRecord
from engine.wire.subjects import run_filter

__all__ = ["DIRECT_GET_BATCH", "MULTI_LAST_SUBJECTS", "Reader"]

logger = logging.getLogger("jetloom.log")

DIRECT_GET_BATCH = 1000
MULTI_LAST_SUBJECTS = 256  # subject filters per multi_last request


class Reader:
    """The reads of one log.

    Args:
        nc: the connection.
        stream: the run stream.
        prefix: the subject prefix.
        timeout: seconds to wait for a reply (from the last one: a long batch is not cut short).
        retry_for: seconds a transient failure is retried (``retry.retrying``).
        tap: the connection's fast path, or ``None`` (nats-py's public API: batched direct gets
            only).
        head: the newest stream sequence the log has seen, advanced by the reads.
    """

    def __init__(
        self,
        nc: Any,
        *,
        stream: str,
        prefix: str,
        timeout: float,
        retry_for: float,
        tap: Tap | None,
        head: StreamHead,
    ) -> None:
        self.nc = nc
        self.stream = stream
        self.prefix = prefix
        self.timeout = timeout
        self.retry_for = retry_for
        self.tap = tap
        self.head = head
        self._inbox = ReadInbox(nc, tap)  # every direct get's replies

    async def read(
        self,
        workflow: str,
        run_id: str,
        *,
        after_seq: int = 0,
        up_to_seq: int | None = None,
        expect: int | None = None,
    ) -> list[RawRecord]:
        """``EventLog.read`` (see ``JetStreamLog``)."""
        return await retrying(
            f"read of run {run_id}",
            lambda: self._read(workflow, run_id, after_seq, up_to_seq, expect),
            retry_for=self.retry_for,
        )

    async def _read(
        self, workflow: str, run_id: str, after_seq: int, up_to_seq: int | None, expect: int | None
    ) -> list[RawRecord]:
        # A short read of an old run that the caller can bound (``up_to_seq`` more than
        # WALK_DISTANCE records behind the newest sequence this log has seen, ``expect`` of at
        # most WALK_MAX) is walked one direct get per record: a batched direct get
        # on a run's wildcard filter makes the server count the matches after its start
        # (NumPending) and look past the run's end, over every message block from there on: for
        # a run in the middle of a long stream that costs the server far more than a walk of a
        # few single-record gets (nats-server 2.15.1). Near the stream's end the batch is cheap for the server and the walk's round trips cost the
        # client more (scenario (e) of ``benchmarks`` showed it in the workers' CPU per
        # transition when every short read was walked).
        subject_filter = run_filter(self.prefix, workflow, run_id)
        tap = self.tap
        if tap is None:  # nats-py's public API: batched direct gets only
            return await self.scan_stream(self.stream, subject_filter, after_seq, up_to_seq)
        out: list[RawRecord] = []
        old_part = up_to_seq is not None and self.head.seq - up_to_seq > WALK_DISTANCE
        if up_to_seq is not None and expect is not None and expect <= WALK_MAX and old_part:
            inbox = self._inbox
            while after_seq < up_to_seq:
                if len(out) == WALK_MAX:  # more than the caller thought: read the rest in batches
                    return out + await self._read_batched(subject_filter, tap, after_seq, up_to_seq)
                request = {"seq": after_seq + 1, "next_by_subj": subject_filter}
                got, _ = await direct_read(self.nc, inbox, self.stream, request, self.timeout)
                if not got or got[0].seq > up_to_seq:
                    break
                out.append(got[0])
                after_seq = got[0].seq
            return out
        out = await self._read_batched(subject_filter, tap, after_seq, up_to_seq)
        if out:
            self.head.saw(out[-1].seq)
        return out

    async def _read_batched(
        self, subject_filter: str, tap: Tap, after_seq: int, up_to_seq: int | None
    ) -> list[RawRecord]:
        # Direct gets, the first of FIRST_READ records; when its last one says more than
        # LONG_READ follow, the rest through a consumer made for this read (read.ConsumerRead:
        # less server and client CPU per record, for a few ms to set up). Replies come straight
        # from the protocol parser (_natspy.Tap).
        out: list[RawRecord] = []
        last, batch, consumer = after_seq, FIRST_READ, True
        while True:
            request = {"seq": last + 1, "next_by_subj": subject_filter, "batch": batch}
            got, pending = await direct_read(self.nc, self._inbox, self.stream, request, self.timeout)
            out.extend(got)
            if up_to_seq is not None and out and out[-1].seq >= up_to_seq:
                # (the server honours up_to_seq only with multi_last, so the bound is applied here)
                while out and out[-1].seq > up_to_seq:
                    out.pop()
                return out
            if len(got) < batch or not pending:
                return out
            last, batch = got[-1].seq, DIRECT_GET_BATCH
            if consumer and pending > LONG_READ and (up_to_seq is None or up_to_seq - last > LONG_READ):
                consumer = False
                reader = ConsumerRead(self.nc, tap, self.stream, subject_filter, last + 1, up_to_seq, self.timeout)
                try:
                    out.extend(await reader.run())
                except (LogError, TimeoutError) as exc:
                    reader.stopped = str(exc) or type(exc).__name__
                if reader.complete:
                    return out
                # (e.g. a server at its consumer limit): direct gets read the rest
                logger.info("read of %s by a consumer stopped (%s); direct gets read on", subject_filter, reader.stopped)
                last = out[-1].seq

    async def scan_stream(
        self, stream: str, subject_filter: str, after_seq: int, up_to_seq: int | None
    ) -> list[RawRecord]:
        """The records of ``stream`` (the run stream or another, e.g. the dead letters') matching
        ``subject_filter`` after ``after_seq`` (up to ``up_to_seq``), by batched direct gets of
        ``DIRECT_GET_BATCH``; not retried.

        Raises:
            LogError: the server answered a direct get with an unexpected status.
            retry.LogUnavailableError: no replica serves direct gets (503).
            TimeoutError: no reply within ``timeout``.
        """
        out: list[RawRecord] = []
        start = after_seq + 1
        while True:
            # (the server honours up_to_seq only with multi_last, so the bound is applied here)
            req = {"seq": start, "next_by_subj": subject_filter, "batch": DIRECT_GET_BATCH}
            got, _ = await direct_read(self.nc, self._inbox, stream, req, self.timeout)
            for rec in got:
                if up_to_seq is not None and rec.seq > up_to_seq:
                    return out
                out.append(rec)
            if len(got) < DIRECT_GET_BATCH:
                return out
            start = got[-1].seq + 1

    async def scan(
        self, subject_filter: str, *, after_seq: int = 0, limit: int = DIRECT_GET_BATCH
    ) -> list[RawRecord]:
        """Up to ``limit`` records matching ``subject_filter`` (wildcards allowed) with
        ``seq > after_seq``, in sequence order; one batched direct get per 1,000
        (``read.direct_read``, as every direct get of the log)."""
        return await retrying(
            f"scan of {subject_filter}",
            lambda: self._scan_records(subject_filter, after_seq, limit),
            retry_for=self.retry_for,
        )

    async def _scan_records(self, subject_filter: str, after_seq: int, limit: int) -> list[RawRecord]:
        out: list[RawRecord] = []
        start = after_seq + 1
        while len(out) < limit:
            want = min(limit - len(out), DIRECT_GET_BATCH)
            request = {"seq": start, "next_by_subj": subject_filter, "batch": want}
            got, _ = await direct_read(self.nc, self._inbox, self.stream, request, self.timeout)
            out.extend(got)
            if len(got) < want:
                break
            start = out[-1].seq + 1
        return out

    async def last_per_subject(self, subject_filters: Sequence[str]) -> list[RawRecord]:
        """The last record of every subject matching any of ``subject_filters`` (a batched
        ``multi_last`` direct get), in sequence order."""
        return await retrying(
            "last records of runs", lambda: self._last_per_subject(subject_filters), retry_for=self.retry_for
        )

    async def _last_per_subject(self, subject_filters: Sequence[str]) -> list[RawRecord]:
        out: list[RawRecord] = []
        filters = list(subject_filters)
        for i in range(0, len(filters), MULTI_LAST_SUBJECTS):
            request = {"multi_last": filters[i : i + MULTI_LAST_SUBJECTS], "batch": DIRECT_GET_BATCH}
            got, _ = await direct_read(self.nc, self._inbox, self.stream, request, self.timeout)
            out.extend(got)
        return sorted(out, key=lambda r: r.seq)
