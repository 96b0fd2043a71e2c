"""The public names of the engine and of each of its packages, pinned: a name added to or dropped
from an ``__all__`` must be added or dropped here too, on purpose; and every name listed resolves."""

from __future__ import annotations

import importlib

import pytest

import engine
from engine.model import errors

EXPORTS: dict[str, list[str]] = {
    "engine": [
        "AppendError",
        "ChildWorkflowError",
        "CommitTooLargeError",
        "ConstantDelayRetryPolicy",
        "Context",
        "DeadLetteredError",
        "Event",
        "EventDecodeError",
        "EventLog",
        "EventValidationError",
        "ExponentialBackoffRetryPolicy",
        "HumanResponseEvent",
        "InputRequiredEvent",
        "InvalidSequenceError",
        "JetStreamLog",
        "JetloomError",
        "LastSeqMismatchError",
        "LogError",
        "LogUnavailableError",
        "MemoryLog",
        "NatsConnectError",
        "RetryPolicy",
        "RunConflictError",
        "RunNotFoundError",
        "RunNotRetryableError",
        "RunState",
        "StartEvent",
        "StepFailedError",
        "StepFailedEvent",
        "StepTimeoutError",
        "StopEvent",
        "WaitTimeoutError",
        "Workflow",
        "WorkflowCancelledError",
        "WorkflowHandler",
        "WorkflowRuntimeError",
        "WorkflowTimeoutError",
        "WorkflowValidationError",
        "WorkflowVersionError",
        "catch_error",
        "fold",
        "step",
    ],
    "engine.model": [
        "AppendError",
        "ChildOutcome",
        "ChildWorkflowError",
        "CommitMessage",
        "CommitTooLargeError",
        "ConstantDelayRetryPolicy",
        "DeadLetterRef",
        "DeadLetteredError",
        "Event",
        "EventDecodeError",
        "EventMeta",
        "EventValidationError",
        "ExponentialBackoffRetryPolicy",
        "HumanResponseEvent",
        "InputRequiredEvent",
        "InvalidSequenceError",
        "JetloomError",
        "LastSeqMismatchError",
        "LogError",
        "OutMessage",
        "ParentRef",
        "RawRecord",
        "Record",
        "Resume",
        "ResumeEvent",
        "RetryPolicy",
        "RolledBack",
        "RunCancelled",
        "RunCompleted",
        "RunConflictError",
        "RunFailed",
        "RunForked",
        "RunNotFoundError",
        "RunStarted",
        "SYS_TYPES",
        "StartEvent",
        "StepCompleted",
        "StepFailed",
        "StepFailedError",
        "StepFailedEvent",
        "StepRetrying",
        "StepSuspended",
        "StepTimeoutError",
        "StopEvent",
        "TAG_FIELD",
        "WaitTimeoutError",
        "WorkflowCancelledError",
        "WorkflowRuntimeError",
        "WorkflowTimeoutError",
        "WorkflowValidationError",
        "WorkflowVersionError",
        "class_path",
        "completed_step",
        "deadline_ns",
        "decode_event",
        "encode_checked",
        "encode_event",
        "event_fields",
        "event_from_fields",
        "event_name",
        "is_one_message_commit",
        "known_event",
        "registry",
        "seconds",
    ],
    "engine.wire": [
        "DEFAULT_PREFIX",
        "H_ATTEMPT",
        "H_CLASS",
        "H_COMMIT",
        "H_LENGTH",
        "H_NEW_RUN",
        "H_RUN",
        "H_STEP",
        "H_TARGET",
        "H_TRIGGER",
        "H_TYPE",
        "H_WORKER",
        "KINDS",
        "Kind",
        "NAME_MAX",
        "SubjectParts",
        "TOKEN_PATTERN",
        "check_run",
        "check_token",
        "commit_key",
        "commit_tag",
        "copy_of",
        "decode_record",
        "encode",
        "execution_of",
        "message_id",
        "new_execution_id",
        "one_message_commit",
        "parse_commit_tag",
        "parse_subject",
        "run_filter",
        "run_subject",
        "subject_parts",
        "sys_message",
        "tag_commit",
    ],
    "engine.state": [
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
        "MemorySnapshots",
        "OrphanFilter",
        "PENDING",
        "PendingCommit",
        "RUNNING",
        "RunState",
        "SNAPSHOT_VERSION",
        "SnapshotStore",
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
    ],
    "engine.ports": [
        "AppendResult",
        "DeadLetter",
        "Delivery",
        "EventLog",
        "Followers",
        "event_consumers",
        "hand_over",
    ],
    "engine.memory": [
        "MemoryLog",
    ],
    "engine.jetstream": [
        "DEFAULT_URL",
        "JetStreamLog",
        "KvSnapshots",
        "LogUnavailableError",
        "NatsConnectError",
        "NatsConnectionClosed",
        "NatsSettings",
        "open_connection",
    ],
    "engine.runtime": [
        "CachedRun",
        "Context",
        "Executor",
        "ExecutorStats",
        "ForkResult",
        "InProcessRuntime",
        "RollbackResult",
        "RunCache",
        "RunNotRetryableError",
        "StateStore",
        "StepSpec",
        "WorkflowDefinition",
        "WorkflowHandler",
        "WorkflowInfo",
        "append_cancel",
        "append_event",
        "append_start",
        "describe",
        "fork",
        "new_run_id",
        "retry_run",
        "rollback",
        "schedule_run_timeout",
        "start_run",
        "validate",
    ],
    "engine.runtime.executor": [
        "Executor",
        "ExecutorStats",
        "commit_id",
    ],
}

# Errors a user catches that are defined outside engine.model.errors, named in the docs.
OTHER_ERRORS = [
    "LogUnavailableError",
    "NatsConnectError",
    "RunNotRetryableError",
    "StepTimeoutError",
]


@pytest.mark.parametrize("package", sorted(EXPORTS))
def test_all_is_pinned_and_sorted(package: str) -> None:
    module = importlib.import_module(package)
    assert sorted(module.__all__) == EXPORTS[package]
    assert len(set(module.__all__)) == len(module.__all__)


@pytest.mark.parametrize("package", sorted(EXPORTS))
def test_every_exported_name_resolves(package: str) -> None:
    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name, None) is not None, f"{package}.{name}"


def test_every_error_class_is_importable_from_engine() -> None:
    defined = [
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, BaseException) and value.__module__ == errors.__name__
    ]
    assert defined
    for name in [*defined, *OTHER_ERRORS]:
        assert name in engine.__all__, name
        assert isinstance(getattr(engine, name), type), name


def test_engine_exports_are_its_own_classes_and_functions() -> None:
    for name in engine.__all__:  # each a class or function of the engine itself, under its own name
        obj = getattr(engine, name)
        assert callable(obj) and obj.__module__.startswith("engine."), name
        assert obj.__name__ == name, name
