"""Lazy re-exports for the engine's packages (PEP 562), so that importing a package loads only the
modules of the names a program uses.

A package ``__init__`` lists where each public name is defined and takes the module hooks from
``lazy_exports``; it imports the names again under ``if TYPE_CHECKING:`` so that type checkers and
IDEs see them, and keeps its literal ``__all__``::

    from typing import TYPE_CHECKING

    from engine._lazy import lazy_exports

    if TYPE_CHECKING:
        from engine.state.fold import RunState, fold

    __getattr__, __dir__ = lazy_exports(__name__, {"engine.state.fold": ("RunState", "fold")})
    __all__ = ["RunState", "fold"]

The first ``package.Name`` (or ``from package import Name``) imports the defining module and binds
the value in the package, so later look-ups are plain attribute reads. Each name is listed three
times, each for a reader of its own: the ``TYPE_CHECKING`` imports for type checkers and IDEs, the
mapping for the interpreter, and the literal ``__all__`` for ``import *`` and for checkers that
take only listed names as re-exported (mypy's ``--no-implicit-reexport``, part of ``--strict``);
``tests/unit/test_startup.py`` checks that the three agree. Only the standard library
is imported here: every layer of the engine may use it.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str,
    exports: Mapping[str, Iterable[str]],
    fallback: Callable[[str], Any] | None = None,
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of ``package`` that import each exported name
    from its module on first use.

    A name defined in the package's submodule of the same name (``engine.state`` exports the
    function ``fold`` of its submodule ``fold``) is bound at once instead: the import system sets a
    package's attribute to a submodule when that submodule is first imported, which would shadow
    a name bound later. (A package exports no other name of one of its submodules:
    ``tests/unit/test_startup.py`` checks it.)

    Args:
        package: the package's ``__name__``; it must be in ``sys.modules`` (call this from its
            ``__init__``).
        exports: defining module (absolute dotted name) → the names the package re-exports from it.
        fallback: called with a name that ``exports`` does not list, before ``AttributeError``;
            returns the value or raises ``AttributeError`` itself (default: none).

    Returns:
        ``(__getattr__, __dir__)``: ``__getattr__(name)`` returns the value or raises
        ``AttributeError("module '<package>' has no attribute '<name>'")``; ``__dir__()`` lists the
        package's bound names and every exported one, sorted.

    Raises:
        ValueError: a name is listed under two modules.
    """
    where: dict[str, str] = {}
    for module, names in exports.items():
        for name in names:
            if where.setdefault(name, module) != module:
                raise ValueError(f"{package}: {name!r} is exported from {where[name]} and {module}")
    namespace = vars(sys.modules[package])
    for name, module in where.items():
        if module == f"{package}.{name}":
            namespace[name] = getattr(importlib.import_module(module), name)

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is not None:
            value = getattr(importlib.import_module(module), name)
        elif fallback is not None:
            value = fallback(name)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}", name=name, obj=sys.modules[package])
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(namespace.keys() | where.keys())

    return __getattr__, __dir__
