"""Loading a workflow from an import path (``package.module:WorkflowClass``), validated: a worker
process refuses a workflow whose graph is invalid when it starts, in one line, rather than
failing its runs (the checks ``Workflow.run`` makes in-process; ``Workflow.validate``)."""

from __future__ import annotations

import importlib
import sys
import traceback
from pathlib import Path

from engine import Workflow, WorkflowConfigurationError, WorkflowValidationError

__all__ = ["WorkflowImportError", "load_workflow", "load_workflow_class"]


class WorkflowImportError(ImportError):
    """A workflow's module did not import: it was not found on the import path, or running it
    raised. The message is one line (the module tried, the target and the cause); ``hint`` is a
    second line saying what to do.

    Attributes:
        target: the ``module:attribute`` asked for.
        module: the module path tried.
        cwd: the working directory at the time (the first entry of the import path).
        hint: one line: where to look or what to change.
    """

    def __init__(self, target: str, module: str, cwd: str, cause: BaseException) -> None:
        self.target, self.module, self.cwd = target, module, cwd
        missing = getattr(cause, "name", None) if isinstance(cause, ModuleNotFoundError) else None
        if missing is not None and (module == missing or module.startswith(missing + ".")):
            text = f"cannot import {module!r} (for {target}): no such module in {cwd} or on PYTHONPATH"
            self.hint = "run from the project directory or set PYTHONPATH to the directory holding it"
        elif missing is not None:
            text = f"cannot import {module!r} (for {target}): it imports {missing!r}, which is not installed"
            self.hint = f"install {missing.split('.')[0]!r} in the environment of {sys.executable}"
        else:
            where = _where(cause)
            text = f"cannot import {module!r} (for {target}): {type(cause).__name__}: {cause}{where}"
            self.hint = f"fix the module (imported from {cwd}); --debug shows the traceback"
        super().__init__(" ".join(text.split()), name=module)


def _where(exc: BaseException) -> str:
    """`` at FILE:LINE`` of the innermost frame that raised ``exc`` (a SyntaxError's own place)."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" at {exc.filename}:{exc.lineno}"
    frames = traceback.extract_tb(exc.__traceback__)
    user = [f for f in frames if "importlib" not in f.filename]
    return f" at {user[-1].filename}:{user[-1].lineno}" if user else ""


def _resolve(target: str) -> object:
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"expected MODULE:ATTRIBUTE (e.g. examples.docindex.workflow:DocIndex), got {target!r}")
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except (WorkflowValidationError, WorkflowConfigurationError) as exc:  # (a step signature is checked at class creation)
        raise ValueError(f"{target}: {exc}") from None
    except Exception as exc:  # whatever the module's own code raised, or not found
        raise WorkflowImportError(target, module_name, cwd, exc) from exc
    try:
        obj: object = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise ValueError(f"{module_name!r} has no attribute {attr!r}") from None
    return obj


def load_workflow_class(target: str) -> type[Workflow]:
    """The Workflow subclass named by ``target`` (or the class of the instance it names).

    Raises:
        ValueError: ``target`` is malformed or names something else.
        WorkflowImportError: the module does not import.
    """
    obj = _resolve(target)
    if isinstance(obj, Workflow):
        return type(obj)
    if isinstance(obj, type) and issubclass(obj, Workflow):
        return obj
    raise ValueError(f"{target!r} is not a Workflow subclass or instance")


def load_workflow(target: str) -> Workflow:
    """A validated workflow instance from ``target``: a Workflow instance, a subclass
    (instantiated with no arguments) or a factory function returning an instance.

    Raises:
        ValueError: ``target`` is malformed, does not lead to a Workflow, or the workflow is not
            valid (``Workflow.validate``: its graph, its ``ResourceConfig`` files); the message is
            one line naming ``target`` and the fault.
        WorkflowImportError: the module does not import.
    """
    try:
        workflow = _instance(target)
        workflow.validate()
    except (WorkflowValidationError, WorkflowConfigurationError) as exc:
        raise ValueError(f"{target}: {exc}") from None
    return workflow


def _instance(target: str) -> Workflow:
    obj = _resolve(target)
    if isinstance(obj, type) and issubclass(obj, Workflow):
        return obj()
    if isinstance(obj, Workflow):
        return obj
    if callable(obj):
        made = obj()
        if isinstance(made, Workflow):
            return made
    raise ValueError(f"{target!r} is not a Workflow subclass, instance or factory")
