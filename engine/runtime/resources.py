"""Resources: values a step gets by declaring them in its signature, as llama-index-workflows'
``workflows.resource``.

A step parameter annotated ``Annotated[T, Resource(factory)]`` receives ``factory()``'s value
(awaited if the factory is async); ``Annotated[M, ResourceConfig("cfg.json")]`` receives the
pydantic model ``M`` validated from that JSON file. A factory may itself declare resource
parameters the same way. Everything needed to resolve a resource is in the step's signature, so a
worker process that imports the workflow's module resolves it as the process that defined it does.

Lifetimes, as in llama-index-workflows:

- ``Resource(factory)`` (``cache=True``, the default): made once per ``ResourceManager``. Every
  ``Workflow`` instance has one (``Workflow(resource_manager=...)`` shares one between instances);
  a worker process serves one workflow instance, so a cached resource is made once per worker
  process and shared by all its runs and steps.
- ``Resource(factory, cache=False)``: made afresh for each step call; within one call, every
  parameter (and factory parameter) asking for it gets the same value.
- ``ResourceConfig(...)``: always cached; the file is read once per process.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import typing
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Protocol, get_args, get_origin, runtime_checkable

__all__ = [
    "Resource",
    "ResourceConfig",
    "ResourceDefinition",
    "ResourceDescriptor",
    "ResourceManager",
    "config_errors",
    "manager_for",
    "resolution_errors",
    "resource_definitions",
]


@runtime_checkable
class ResourceDescriptor(Protocol):
    """What ``Resource(...)`` and ``ResourceConfig(...)`` return, and what a custom resource kind
    implements (llama-index-workflows' ``ResourceDescriptor``).

    Attributes:
        name: the key the value is cached under in a ``ResourceManager`` (a factory's
            ``__qualname__``; a config's file path plus its ``path_selector``).
        cache: keep the value in the manager (``True``) or make it for each step call.
    """

    @property
    def name(self) -> str: ...

    @property
    def cache(self) -> bool: ...

    async def resolve(self, manager: ResourceManager) -> Any:
        """Make the value (resolving its own dependencies through ``manager``)."""
        ...

    def set_type_annotation(self, type_annotation: Any) -> None:
        """Told the ``T`` of ``Annotated[T, descriptor]`` before it resolves."""
        ...

    def set_localns(self, localns: dict[str, Any] | None) -> None:
        """Told the names local to where the step was defined, for string annotations."""
        ...

    def get_dependencies(self) -> list[tuple[str, ResourceDescriptor, Any]]:
        """``(parameter name, descriptor, annotated type)`` of the resources it needs."""
        ...


def _annotated_resource(annotation: Any) -> tuple[Any, ResourceDescriptor] | None:
    """``(T, descriptor)`` of ``Annotated[T, ..., descriptor, ...]``, else ``None``."""
    if get_origin(annotation) is not Annotated:
        return None
    inner, *meta = get_args(annotation)
    for m in meta:
        if isinstance(m, ResourceDescriptor):
            return inner, m
    return None


def _hints(fn: Callable[..., Any], localns: dict[str, Any] | None) -> dict[str, Any]:
    """``fn``'s annotations with ``Annotated`` kept; names local to its definition are looked up
    in ``localns`` when its module does not define them."""
    scope = {k: v for k, v in (localns or {}).items() if k not in getattr(fn, "__globals__", {})}
    try:
        return typing.get_type_hints(fn, localns=scope, include_extras=True)
    except (NameError, TypeError):
        # (a callable object, or an annotation naming something out of reach: use what is there)
        target = fn if inspect.isfunction(fn) or inspect.ismethod(fn) else getattr(fn, "__call__", fn)  # noqa: B004
        return dict(getattr(target, "__annotations__", {}) or {})


class _Factory:
    """A resource made by calling a factory (what ``Resource`` returns)."""

    def __init__(self, factory: Callable[..., Any], cache: bool) -> None:
        if not callable(factory):
            raise TypeError(f"Resource takes a callable factory, got {type(factory).__name__}")
        self.factory = factory
        self._name: str = getattr(factory, "__qualname__", None) or type(factory).__qualname__
        self._cache = cache
        call = factory if inspect.isroutine(factory) else getattr(factory, "__call__", factory)  # noqa: B004
        self.is_async = inspect.iscoroutinefunction(call)
        self._localns: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def cache(self) -> bool:
        return self._cache

    def __repr__(self) -> str:
        return f"Resource({self._name}, cache={self._cache})"

    def set_type_annotation(self, type_annotation: Any) -> None:
        return None

    def set_localns(self, localns: dict[str, Any] | None) -> None:
        self._localns = localns

    def get_dependencies(self) -> list[tuple[str, ResourceDescriptor, Any]]:
        hints = _hints(self.factory, self._localns)
        deps: list[tuple[str, ResourceDescriptor, Any]] = []
        for p in inspect.signature(self.factory).parameters.values():
            found = _annotated_resource(hints.get(p.name, p.annotation))
            if found is not None:
                deps.append((p.name, found[1], found[0]))
        return deps

    async def resolve(self, manager: ResourceManager) -> Any:
        kwargs: dict[str, Any] = {}
        for param, dep, annotated in self.get_dependencies():
            dep.set_type_annotation(annotated)
            dep.set_localns(self._localns)
            kwargs[param] = await manager.get(dep)
        value = self.factory(**kwargs)
        if self.is_async or inspect.isawaitable(value):
            value = await typing.cast(Awaitable[Any], value)
        return value


@functools.lru_cache(maxsize=128)
def _read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class _Config:
    """A pydantic model read from a JSON file (what ``ResourceConfig`` returns)."""

    def __init__(
        self,
        config_file: str,
        path_selector: str | None = None,
        cls_factory: Any = None,
        label: str | None = None,
        description: str | None = None,
    ) -> None:
        if Path(config_file).suffix != ".json":
            raise ValueError(f"ResourceConfig reads JSON files only, got {config_file!r}")
        self.config_file = config_file
        self.path_selector = path_selector
        self.cls_factory = cls_factory
        self.label = label
        self.description = description

    @property
    def name(self) -> str:
        return self.config_file if self.path_selector is None else f"{self.config_file}.{self.path_selector}"

    @property
    def cache(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"ResourceConfig({self.name!r})"

    def set_type_annotation(self, type_annotation: Any) -> None:
        if self.cls_factory is None:
            self.cls_factory = type_annotation

    def set_localns(self, localns: dict[str, Any] | None) -> None:
        return None

    def get_dependencies(self) -> list[tuple[str, ResourceDescriptor, Any]]:
        return []

    def load(self) -> Any:
        """The model, validated from the file (pydantic's ``ValidationError`` if it does not fit).

        Raises:
            FileNotFoundError: no such file (relative paths are taken from the working directory).
            ValueError: the selected path is not a JSON object, or no model class is known.
        """
        path = Path(self.config_file)
        if not path.is_file():
            raise FileNotFoundError(f"ResourceConfig: no such file: {self.config_file}")
        data = _read_json(str(path.resolve()))
        walked: list[str] = []
        for key in self.path_selector.split(".") if self.path_selector else []:
            walked.append(key)
            data = data.get(key) if isinstance(data, dict) else None
            if not isinstance(data, dict):
                raise ValueError(
                    f"ResourceConfig: {self.config_file} has no JSON object at {'.'.join(walked)!r}"
                )
        validate = getattr(self.cls_factory, "model_validate", None)
        if validate is None:
            raise ValueError(
                f"ResourceConfig({self.config_file!r}) needs a pydantic model: annotate the "
                f"parameter Annotated[Model, ResourceConfig(...)] (got {self.cls_factory!r})"
            )
        return validate(data)

    async def resolve(self, manager: ResourceManager) -> Any:
        return self.load()


def Resource(factory: Callable[..., Any], cache: bool = True) -> ResourceDescriptor:  # noqa: N802
    """A resource for ``Annotated[T, Resource(factory)]`` step (or factory) parameters, as
    llama-index-workflows' ``Resource``.

    Args:
        factory: called with no arguments, or with the resources its own parameters declare;
            may be ``async``. Its ``__qualname__`` is the cache key (``ResourceManager.set``
            under that name replaces it).
        cache: ``True`` (default): made once per ``ResourceManager`` (once per workflow instance,
            so once per worker process). ``False``: made for each step call.

    Raises:
        TypeError: ``factory`` is not callable.
    """
    return _Factory(factory, cache)


def ResourceConfig(  # noqa: N802
    config_file: str,
    path_selector: str | None = None,
    label: str | None = None,
    description: str | None = None,
) -> ResourceDescriptor:
    """A pydantic model read from a JSON file, for ``Annotated[Model, ResourceConfig(...)]``
    parameters, as llama-index-workflows' ``ResourceConfig``. Always cached; the file is read when
    the workflow is validated (``run()``, a worker's start) and the first time a step needs it.

    Args:
        config_file: path of a ``.json`` file (relative paths: from the working directory).
        path_selector: dotted path of the JSON object to read (``"models.classifier"``); default:
            the whole file.
        label / description: for displays; not used by the engine.

    Raises:
        ValueError: ``config_file`` does not end in ``.json``.
    """
    return _Config(config_file, path_selector, label=label, description=description)


@dataclass(frozen=True)
class ResourceDefinition:
    """A resource parameter of a step, as llama-index-workflows' ``ResourceDefinition``.

    Attributes:
        name: the parameter's name.
        resource: its descriptor.
        type_annotation: the ``T`` of ``Annotated[T, descriptor]``.
    """

    name: str
    resource: ResourceDescriptor
    type_annotation: Any = None


def resource_definitions(
    params: Iterable[tuple[str, Any]], localns: dict[str, Any] | None = None
) -> dict[str, ResourceDefinition]:
    """The resource parameters among ``(name, annotation)`` pairs (annotations with ``Annotated``
    kept), by name. ``localns``: names local to where the step was defined, handed to factories
    whose own annotations need them."""
    out: dict[str, ResourceDefinition] = {}
    for name, annotation in params:
        found = _annotated_resource(annotation)
        if found is not None:
            found[1].set_localns(localns)
            out[name] = ResourceDefinition(name=name, resource=found[1], type_annotation=found[0])
    return out


class ResourceManager:
    """Makes and keeps resources, as llama-index-workflows' ``ResourceManager``.

    Cached values live in ``resources`` (by descriptor name) for the manager's life. Concurrent
    step calls asking for the same cached resource wait for one making of it. Values for
    ``cache=False`` are kept only for the step call being resolved (``resolve_step``).

    Attributes:
        resources: ``{name: value}`` of the cached resources made (or ``set``) so far.
    """

    def __init__(self) -> None:
        self.resources: dict[str, Any] = {}
        self._making: dict[str, asyncio.Future[Any]] = {}

    async def set(self, name: str, val: Any) -> None:
        """Use ``val`` for resource ``name`` from now on (a factory's ``__qualname__``)."""
        self.resources[name] = val

    def get_all(self) -> dict[str, Any]:
        """The cached values made (or set) so far, by name."""
        return self.resources

    async def get(self, resource: ResourceDescriptor) -> Any:
        """The value of ``resource``: the cached one, or newly made.

        Raises:
            ValueError: resources depend on each other in a circle (the message names it).
            Exception: what the factory (or the config's validation) raised.
        """
        return await self._get(resource, (), {})

    async def resolve_step(self, definitions: Iterable[ResourceDefinition]) -> dict[str, Any]:
        """``{parameter: value}`` for one call of a step with these resource parameters; an
        uncached resource is made once for the whole call."""
        scope: dict[str, Any] = {}
        out: dict[str, Any] = {}
        for d in definitions:
            d.resource.set_type_annotation(d.type_annotation)
            out[d.name] = await self._get(d.resource, (), scope)
        return out

    async def _get(self, resource: ResourceDescriptor, chain: tuple[str, ...], scope: dict[str, Any]) -> Any:
        name = resource.name
        if name in chain:
            raise ValueError("circular resource dependency: " + " -> ".join((*chain, name)))
        if resource.cache and name in self.resources:
            return self.resources[name]
        if not resource.cache and name in scope:
            return scope[name]
        if not resource.cache:
            value = await resource.resolve(_Scoped(self, (*chain, name), scope))
            scope[name] = value
            return value
        pending = self._making.get(name)
        if pending is not None and pending.get_loop() is asyncio.get_running_loop():
            return await asyncio.shield(pending)
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._making[name] = done
        try:
            value = await resource.resolve(_Scoped(self, (*chain, name), scope))
        except Exception as exc:
            done.set_exception(exc)
            done.exception()  # (retrieved: only the waiters re-raise it)
            raise
        except BaseException:
            done.cancel()
            raise
        finally:
            if self._making.get(name) is done:
                del self._making[name]
        self.resources[name] = value
        done.set_result(value)
        return value


class _Scoped(ResourceManager):
    """The manager as a factory's dependencies see it: the chain resolved so far (for cycles) and
    the step call's uncached values. Shares the cache of the manager it wraps."""

    def __init__(self, base: ResourceManager, chain: tuple[str, ...], scope: dict[str, Any]) -> None:
        self.resources = base.resources
        self._making = base._making
        self._chain = chain
        self._scope = scope

    async def get(self, resource: ResourceDescriptor) -> Any:
        return await self._get(resource, self._chain, self._scope)


def manager_for(owner: object) -> ResourceManager:
    """``owner.resource_manager`` if it is a ``ResourceManager`` (a ``Workflow`` instance's), else
    a new one kept on ``owner`` for its life."""
    found = getattr(owner, "resource_manager", None)
    if isinstance(found, ResourceManager):
        return found
    made = ResourceManager()
    try:
        owner.resource_manager = made  # type: ignore[attr-defined]
    except AttributeError:
        pass
    return made


def config_errors(definitions: Iterable[tuple[str, ResourceDefinition]]) -> list[str]:
    """Read and validate the file of every ``ResourceConfig`` among ``(step, definition)`` pairs:
    one line per failure (missing file, bad JSON, a model that does not validate)."""
    errors: list[str] = []
    for step_name, d in definitions:
        if isinstance(d.resource, _Config):
            d.resource.set_type_annotation(d.type_annotation)
            try:
                d.resource.load()
            except Exception as exc:  # (whatever reading or validating raises is reported)
                errors.append(f"step {step_name!r}, parameter {d.name!r}: {type(exc).__name__}: {exc}")
    return errors


async def resolution_errors(
    manager: ResourceManager, definitions: Iterable[tuple[str, ResourceDefinition]]
) -> list[str]:
    """Make every resource among ``(step, definition)`` pairs through ``manager`` (cached ones
    stay cached): one line per failure, circular dependencies included."""
    errors: list[str] = []
    for step_name, d in definitions:
        try:
            await manager.resolve_step([d])
        except Exception as exc:  # (a factory may raise anything: each is reported)
            errors.append(f"step {step_name!r}, parameter {d.name!r}: {type(exc).__name__}: {exc}")
    return errors
