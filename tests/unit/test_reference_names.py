"""Every public name of llama-index-workflows (the installed reference) is importable from jetloom
under the same path with ``workflows`` replaced by ``engine``, so migrating a program is a rewrite
of its import lines: ``workflows`` -> ``engine`` and ``workflows.<m>`` -> ``engine.<m>`` for the
modules ``events``, ``errors``, ``retry_policy``, ``resource`` and ``context``.

"Public" here: the names in a module's ``__all__`` where it has one (``workflows``,
``workflows.context``); otherwise the names a module defines itself at its top level (classes,
functions and assignments in its own source, such as ``time_unit_type`` or ``EventType``), leaving
out names starting with ``_``, what it imports (``Protocol``, pydantic's ``BaseModel``, ...) and
its ``TypeVar``s. The set is computed from the reference each run, so a name the reference adds is
a failure here until jetloom has it.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
import typing
from types import ModuleType
from typing import Any

import pytest

import engine

# module of the reference -> the jetloom module that holds the same names
MODULES = {
    "workflows": "engine",
    "workflows.events": "engine.events",
    "workflows.errors": "engine.errors",
    "workflows.retry_policy": "engine.retry_policy",
    "workflows.resource": "engine.resource",
    "workflows.context": "engine.context",
}



def public_names(module: ModuleType) -> list[str]:
    """The public names of a reference module, as the module docstring defines them."""
    listed = getattr(module, "__all__", None)
    if listed is not None:
        return sorted(listed)
    names: set[str] = set()
    for node in ast.parse(inspect.getsource(module)).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return sorted(
        name
        for name in names
        if not name.startswith("_") and not isinstance(getattr(module, name), typing.TypeVar)
    )


def _cases() -> list[Any]:
    cases = []
    for ref_module, ours in MODULES.items():
        for name in public_names(importlib.import_module(ref_module)):
            cases.append(pytest.param(ref_module, ours, name, id=f"{ours}.{name}"))
    return cases


def test_the_public_names_are_what_the_docstring_says() -> None:
    errors = importlib.import_module("workflows.errors")
    assert "WorkflowDone" in public_names(errors)
    policy = importlib.import_module("workflows.retry_policy")
    names = public_names(policy)
    assert "time_unit_type" in names and "retry_policy" in names
    assert not {"Protocol", "dataclass", "random", "T"} & set(names)
    assert public_names(importlib.import_module("workflows")) == ["Context", "Workflow", "catch_error", "step"]


@pytest.mark.parametrize(("ref_module", "ours", "name"), _cases())
def test_importable_from_engine_and_its_module(ref_module: str, ours: str, name: str) -> None:
    theirs = getattr(importlib.import_module(ref_module), name)
    module = importlib.import_module(ours)
    value = getattr(module, name)  # `from engine.<m> import name`
    assert value is not None
    if name == "retry_policy":
        # `engine.retry_policy` is the module, as `workflows.retry_policy` is; the function is in it
        assert engine.retry_policy is module and callable(value)
    else:
        assert getattr(engine, name) is value  # `from engine import name`
    if inspect.isclass(theirs) and issubclass(theirs, BaseException):
        assert inspect.isclass(value) and issubclass(value, Exception), name
    elif callable(theirs):
        assert callable(value), name


@pytest.mark.parametrize("ours", sorted(set(MODULES.values()) - {"engine"}))
def test_each_module_lists_exactly_the_reference_names(ours: str) -> None:
    ref_module = next(ref for ref, mine in MODULES.items() if mine == ours)
    assert sorted(importlib.import_module(ours).__all__) == public_names(importlib.import_module(ref_module))


def test_an_unknown_name_is_an_attribute_error() -> None:
    for module in (engine, *(importlib.import_module(m) for m in MODULES.values())):
        with pytest.raises(AttributeError):
            module.NotAName  # noqa: B018
    with pytest.raises(ImportError):
        exec("from engine.events import NotAName", {})


def test_import_engine_stays_light() -> None:
    """``import engine`` loads neither the reference-path modules nor nats-py; they load on use."""
    code = (
        "import sys, engine\n"
        "print(sorted(m for m in sys.modules if m in {'engine.events', 'engine.errors', 'engine.context',"
        " 'engine.resource', 'engine.retry_policy'} or m.split('.')[0] in {'nats', 'workflows'}))\n"
        "from engine import RetryInfo, retry_policy\n"
        "print(retry_policy.__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split("\n")[:2] == ["[]", "engine.retry_policy"]
