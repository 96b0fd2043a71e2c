"""What a start loads, not how long it takes (that is benchmark (s)): ``import engine`` loads none
of the layers, every public name of every package still imports in a fresh process (each package
re-exports lazily, ``engine._lazy``), and a worker process imports only what its flags ask for."""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import engine
import engine.state
from services.supervisor import python_env
from tests.integration.procs import WorkerProcess

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = [
    "engine",
    "engine.jetstream",
    "engine.memory",
    "engine.model",
    "engine.ports",
    "engine.runtime",
    "engine.runtime.executor",
    "engine.state",
    "engine.wire",
]
#: What ``import engine`` must not load: the NATS client, the web framework, the codecs and
#: models of the layers, the runtime's executor.
HEAVY = ["nats", "litestar", "msgspec", "pydantic", "engine.model", "engine.jetstream", "engine.runtime"]


def _fresh(code: str) -> dict[str, object]:
    """Run ``code`` in a new interpreter from the repository root; it ends by printing one JSON
    document, returned."""
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=python_env(ROOT), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _loaded(modules: object, prefix: str) -> list[str]:
    assert isinstance(modules, list)
    return [m for m in modules if m == prefix or m.startswith(prefix + ".")]


def test_import_engine_loads_none_of_the_layers() -> None:
    seen = _fresh("import json, sys; import engine; print(json.dumps({'modules': sorted(sys.modules)}))")
    for heavy in HEAVY:
        assert _loaded(seen["modules"], heavy) == [], heavy


def test_the_users_import_loads_no_nats() -> None:
    seen = _fresh(
        "import json, sys\n"
        "from engine import Context, Event, StartEvent, StopEvent, Workflow, step\n"
        "print(json.dumps({'modules': sorted(sys.modules)}))"
    )
    assert _loaded(seen["modules"], "engine.workflow")  # (it did load what it names)
    for heavy in ("nats", "litestar", "engine.jetstream"):
        assert _loaded(seen["modules"], heavy) == [], heavy


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_imports_in_a_fresh_process(package: str) -> None:
    seen = _fresh(
        "import importlib, json\n"
        f"p = importlib.import_module({package!r})\n"
        "missing = [n for n in p.__all__ if getattr(p, n, None) is None]\n"
        "undir = sorted(set(p.__all__) - set(dir(p)))\n"
        f"exec('from {package} import *', star := {{}})\n"
        "print(json.dumps({'missing': missing, 'undir': undir, 'star': sorted(set(p.__all__) - set(star))}))"
    )
    assert seen == {"missing": [], "undir": [], "star": []}


def _checked_names(package: str) -> set[str]:
    """The names the package's ``__init__`` imports under ``if TYPE_CHECKING:``."""
    tree = ast.parse(Path(importlib.import_module(package).__file__ or "").read_text(encoding="utf-8"))
    blocks = [n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"]
    return {a.asname or a.name for b in blocks for n in b.body if isinstance(n, ast.ImportFrom) for a in n.names}


@pytest.mark.parametrize("package", PACKAGES)
def test_type_checkers_see_every_exported_name(package: str) -> None:
    # the three listings of a lazy package agree: the imports type checkers read, ``__all__``, and
    # (test_every_public_name_imports_in_a_fresh_process) the modules the names load from
    assert _checked_names(package) == set(importlib.import_module(package).__all__)


def test_from_engine_import_each_name() -> None:
    for name in engine.__all__:
        namespace: dict[str, object] = {}
        exec(f"from engine import {name}", namespace)  # noqa: S102 - the user's statement, verbatim
        assert namespace[name] is getattr(engine, name), name


@pytest.mark.parametrize("module", [engine, engine.state])
def test_an_unknown_name_raises_attribute_error(module: object) -> None:
    name = getattr(module, "__name__")  # noqa: B009 - (typed as object here)
    with pytest.raises(AttributeError, match=re.escape(f"module {name!r} has no attribute 'NoSuchName'")):
        getattr(module, "NoSuchName")  # noqa: B009
    assert not hasattr(module, "NoSuchName")
    with pytest.raises(ImportError):
        exec(f"from {name} import NoSuchName", {})  # noqa: S102


def test_a_name_that_is_also_a_submodule_stays_the_name() -> None:
    seen = _fresh(
        "import json\n"
        "import engine.state.fold, engine.runtime.describe\n"
        "from engine.state import fold\n"
        "import engine.runtime\n"
        "print(json.dumps({'fold': callable(fold) and fold.__name__, "
        "'describe': callable(engine.runtime.describe) and engine.runtime.describe.__name__}))"
    )
    assert seen == {"fold": "fold", "describe": "describe"}


@pytest.mark.parametrize("package", PACKAGES)
def test_no_exported_name_is_another_submodules_name(package: str) -> None:
    # (a submodule, once imported, is bound in its package under its name: an exported name equal
    # to it must come from that very submodule, which engine._lazy binds at once)
    module = importlib.import_module(package)
    submodules = {info.name for info in pkgutil.iter_modules(module.__path__)}
    for name in set(module.__all__) & submodules:
        assert getattr(module, name).__module__ == f"{package}.{name}", name


def _imported(worker: WorkerProcess) -> set[str]:
    """The modules a worker imported before it was ready (``PYTHONPROFILEIMPORTTIME`` lines)."""
    return {m.group(1) for line in worker.lines if (m := re.match(r"import time:.*\|\s*(\S+)$", line))}


def test_a_worker_imports_prometheus_only_with_a_metrics_port(
    nats_url: str, workers: Callable[..., WorkerProcess]
) -> None:
    profiled = {"PYTHONPROFILEIMPORTTIME": "1"}
    plain = _imported(workers("tests.workflows:Chain3", nats_url, env=profiled))
    metrics = _imported(workers("tests.workflows:Chain3", nats_url, "--metrics-port", "0", env=profiled))
    assert "engine.runtime.executor" in plain  # (the lines were read)
    assert "prometheus_client" in metrics
    # neither the metrics, nor the HTTP API commands' client, the launcher's web server, the
    # control plane's framework or its schema checks
    for module in ("prometheus_client", "httpx", "uvicorn", "litestar", "jsonschema", "services.launcher"):
        assert module not in plain, module
