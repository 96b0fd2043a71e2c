"""The blocking SDK cannot drift from the async one: every public method of ``Client``,
``RunHandle`` and ``SessionHandle`` has a twin on ``SyncClient``, ``SyncRunHandle`` and
``SyncSessionHandle`` with the same parameters (names, kinds, defaults, annotations), the blocking
twin of its return type, its docstring, and a body that passes every argument on."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from services.client import (
    Client,
    RunHandle,
    SessionHandle,
    SyncClient,
    SyncRunHandle,
    SyncSessionHandle,
)

PAIRS = [(Client, SyncClient), (RunHandle, SyncRunHandle), (SessionHandle, SyncSessionHandle)]
# what a return annotation of the async side reads as on the blocking side
TWIN_TYPES = {"AsyncIterator[": "Iterator[", "RunHandle": "SyncRunHandle", "SessionHandle": "SyncSessionHandle"}
# methods whose blocking side is its own (the portal's life), not a forward
OWN = {"close"}


def public_methods(cls: type) -> dict[str, Callable[..., Any]]:
    return {
        name: fn
        for name, fn in vars(cls).items()
        if not name.startswith("_") and inspect.isfunction(fn) and name not in OWN
    }


def blocking_annotation(annotation: Any) -> Any:
    if not isinstance(annotation, str):
        return annotation
    for async_name, sync_name in TWIN_TYPES.items():
        annotation = annotation.replace(async_name, sync_name)
    return annotation


@pytest.mark.parametrize(("async_cls", "sync_cls"), PAIRS, ids=lambda c: c.__name__)
def test_same_public_methods(async_cls: type, sync_cls: type) -> None:
    assert sorted(public_methods(sync_cls)) == sorted(public_methods(async_cls))


def method_pairs() -> list[tuple[str, Callable[..., Any], Callable[..., Any]]]:
    out = []
    for async_cls, sync_cls in PAIRS:
        sync = public_methods(sync_cls)
        for name, fn in public_methods(async_cls).items():
            if name in sync:
                out.append((f"{sync_cls.__name__}.{name}", fn, sync[name]))
    return out


@pytest.mark.parametrize(("name", "async_fn", "sync_fn"), method_pairs(), ids=lambda x: x if isinstance(x, str) else "")
def test_same_signature_and_doc(name: str, async_fn: Callable[..., Any], sync_fn: Callable[..., Any]) -> None:
    a, s = inspect.signature(async_fn), inspect.signature(sync_fn)
    assert [(p.name, p.kind, p.default, p.annotation) for p in s.parameters.values()] == [
        (p.name, p.kind, p.default, p.annotation) for p in a.parameters.values()
    ], name
    assert s.return_annotation == blocking_annotation(a.return_annotation), name
    assert sync_fn.__twin_of__ is async_fn, name  # type: ignore[attr-defined]
    assert sync_fn.__doc__ == async_fn.__doc__, name


def test_constructor_takes_the_async_options() -> None:
    a = inspect.signature(Client.__init__).parameters
    s = inspect.signature(SyncClient.__init__).parameters
    assert [p for p in a if p != "http"] == list(s)  # (an httpx.AsyncClient is the async side's)
    assert all(a[n].default == s[n].default for n in s)


class Recorder:
    """Stands for the async twin and the portal: records each forwarded call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def method(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            return None

        return method

    # the portal's side: run what is forwarded at once
    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    def iterate(self, agen: Any) -> Any:
        return agen

    def run_handle(self, handle: Any) -> Any:
        return handle


def sample(param: inspect.Parameter, i: int) -> Any:
    return f"<{param.name}:{i}>"


@pytest.mark.parametrize(("name", "async_fn", "sync_fn"), method_pairs(), ids=lambda x: x if isinstance(x, str) else "")
def test_every_argument_is_passed_on(name: str, async_fn: Callable[..., Any], sync_fn: Callable[..., Any]) -> None:
    params = list(inspect.signature(sync_fn).parameters.values())[1:]  # (self)
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for i, p in enumerate(params):
        if p.kind is p.POSITIONAL_OR_KEYWORD:
            args.append(sample(p, i))
        elif p.kind is p.KEYWORD_ONLY:
            kwargs[p.name] = sample(p, i)
        elif p.kind is p.VAR_KEYWORD:
            kwargs["extra_field"] = sample(p, i)
    twin = object.__new__(_sync_class(name))
    recorder = Recorder()
    twin._async = recorder  # type: ignore[attr-defined]
    twin._portal = recorder  # type: ignore[attr-defined]
    sync_fn(twin, *args, **kwargs)
    forwarded = [c for c in recorder.calls if c[0] == async_fn.__name__]
    assert forwarded, f"{name} does not call {async_fn.__name__}"
    _, f_args, f_kwargs = forwarded[0]
    bound = inspect.signature(async_fn).bind(None, *f_args, **f_kwargs)
    bound.apply_defaults()
    given = inspect.signature(sync_fn).bind(None, *args, **kwargs)
    given.apply_defaults()
    assert dict(bound.arguments) | {"self": None} == dict(given.arguments) | {"self": None}, name


def _sync_class(name: str) -> type:
    return {"SyncClient": SyncClient, "SyncRunHandle": SyncRunHandle, "SyncSessionHandle": SyncSessionHandle}[
        name.split(".")[0]
    ]
