"""Which records of a run count, for readers that do not fold every record: the orphans of a
pipelined commit (see ``engine.wire.commit``, step 3) do not."""

from __future__ import annotations

from engine.model.records import RawRecord
from engine.wire.headers import H_COMMIT, parse_commit_tag

__all__ = ["OrphanFilter"]


class OrphanFilter:
    """Tells a run's orphans (``engine.wire.commit``, step 3) from the records that count, for readers
    that do not fold every record: the control plane's record listing and SSE stream, and the
    end projection (``engine.state.ending``).

    Feed it the records of one run in log order from the run's first record (``counts`` answers
    for each as it comes). The rule is the fold's: a message of a pipelined commit counts when the
    first head of its commit seen was of the same execution; a later head of another execution
    does not count. With ``repeats=False``, a second copy of an index does not count either, as in
    the fold (readers that list records show such a repair duplicate, which can only come after
    the log's duplicate window). ``roll_back(to_seq)`` forgets what records after ``to_seq`` said
    of commits, as the fold's refold after a ``RolledBack`` does. Memory: one entry per
    multi-message commit of the run.
    """

    __slots__ = ("_heads", "_repeats")

    def __init__(self, *, repeats: bool = True) -> None:
        self._repeats = repeats
        # commit key -> (execution of the head that stands, {index seen: its seq})
        self._heads: dict[str, tuple[str, dict[int, int]]] = {}

    def counts(self, record: RawRecord) -> bool:
        tag = record.headers.get(H_COMMIT)
        return True if tag is None else self.counts_tag(tag, record.seq)

    def counts_tag(self, tag: str, seq: int) -> bool:
        """``counts`` for a record's ``Jl-Commit`` value ``tag`` at stream sequence ``seq``."""
        parsed = parse_commit_tag(tag)
        if parsed is None:
            return True
        key, index, execution = parsed
        if execution is None:  # (no execution id: an atomic commit)
            return True
        head = self._heads.get(key)
        if index == 0:
            if head is None:
                self._heads[key] = (execution, {0: seq})
                return True
            return head[0] == execution
        if head is None or head[0] != execution:
            return False
        if not self._repeats:
            if index in head[1]:
                return False
            head[1][index] = seq
        return True

    def roll_back(self, to_seq: int) -> None:
        """Forget what the records after ``to_seq`` said of commits (the fold's refold)."""
        for key, (execution, seen) in list(self._heads.items()):
            kept = {i: s for i, s in seen.items() if s <= to_seq}
            if 0 in kept:
                self._heads[key] = (execution, kept)
            else:
                del self._heads[key]
