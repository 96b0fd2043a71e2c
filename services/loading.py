"""Loading a workflow from an import path (``package.module:WorkflowClass``), validated: a worker
process refuses a workflow whose graph is invalid when it starts, in one line, rather than
failing its runs (the checks ``Workflow.run`` makes in-process; ``Workflow.validate``)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from engine import Workflow, WorkflowConfigurationError, WorkflowValidationError

__all__ = ["load_workflow", "load_workflow_class"]


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
        ImportError: the module does not import.
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
        ImportError: the module does not import.
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
