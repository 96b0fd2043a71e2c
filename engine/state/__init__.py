"""What the log means: the fold of a run, how a run ends, snapshots of folds, orphans."""

from typing import TYPE_CHECKING

from engine._lazy import lazy_exports

if TYPE_CHECKING:
    from engine.state.ending import (
        CANCELLED,
        COMPLETED,
        ENDING_KINDS,
        ENDING_STATUS,
        ENDING_TYPES,
        FAILED,
        FINAL_TYPES,
        FOLLOWED_KINDS,
        PENDING,
        RUNNING,
        TERMINAL,
        EndProjection,
        ends_run,
    )
    from engine.state.fold import (
        KEEP_EVENTS,
        MISSING,
        DroppedEvents,
        HistoryNeeded,
        HorizonDone,
        PendingCommit,
        RunState,
        compact,
        fold,
        get_path,
        set_path,
    )
    from engine.state.orphans import (
        OrphanFilter,
    )
    from engine.state.snapshots import (
        DEFAULT_SNAPSHOT_EVERY,
        HANDLED_SLOTS,
        SNAPSHOT_VERSION,
        UnsupportedState,
        decode_snapshot,
        encode_snapshot,
        snapshot_seq,
    )
else:  # (imported on first use: engine._lazy)
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "engine.state.ending": (
                "CANCELLED",
                "COMPLETED",
                "ENDING_KINDS",
                "ENDING_STATUS",
                "ENDING_TYPES",
                "FAILED",
                "FINAL_TYPES",
                "FOLLOWED_KINDS",
                "PENDING",
                "RUNNING",
                "TERMINAL",
                "EndProjection",
                "ends_run",
            ),
            "engine.state.fold": (
                "KEEP_EVENTS",
                "MISSING",
                "DroppedEvents",
                "HistoryNeeded",
                "HorizonDone",
                "PendingCommit",
                "RunState",
                "compact",
                "fold",
                "get_path",
                "set_path",
            ),
            "engine.state.orphans": ("OrphanFilter",),
            "engine.state.snapshots": (
                "DEFAULT_SNAPSHOT_EVERY",
                "HANDLED_SLOTS",
                "SNAPSHOT_VERSION",
                "UnsupportedState",
                "decode_snapshot",
                "encode_snapshot",
                "snapshot_seq",
            ),
        },
    )

__all__ = [
    "CANCELLED",
    "COMPLETED",
    "DEFAULT_SNAPSHOT_EVERY",
    "DroppedEvents",
    "ENDING_KINDS",
    "ENDING_STATUS",
    "ENDING_TYPES",
    "EndProjection",
    "FAILED",
    "FINAL_TYPES",
    "FOLLOWED_KINDS",
    "HANDLED_SLOTS",
    "HistoryNeeded",
    "HorizonDone",
    "KEEP_EVENTS",
    "MISSING",
    "OrphanFilter",
    "PENDING",
    "PendingCommit",
    "RUNNING",
    "RunState",
    "SNAPSHOT_VERSION",
    "TERMINAL",
    "UnsupportedState",
    "compact",
    "decode_snapshot",
    "encode_snapshot",
    "ends_run",
    "fold",
    "get_path",
    "set_path",
    "snapshot_seq",
]
