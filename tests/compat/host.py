"""One worker process serving every workflow of the generated compat package.

``python -m tests.compat.host PACKAGE --nats URL`` imports each module of ``PACKAGE`` (the
programs of tests/compat/programs with their imports rewritten to ``engine``), and runs
``services.worker.serve`` for every ``Workflow`` subclass with steps defined there, all in this
one process and event loop: the worker CLI serves one workflow per process, and 45 programs times
two processes of it would cost more than the suite itself.

It prints ``compat host targets=<n>`` first, then, per workflow, ``jetloom worker ready ...``
(from ``serve``) or ``compat host skipped <target>: <reason>`` (the workflow cannot be served:
a module that does not import, a class that does not instantiate or validate). SIGTERM stops
every workflow's workers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import pkgutil
import signal

from engine import Workflow
from services.worker import serve


def targets(package: str) -> tuple[list[str], list[str]]:
    """``MODULE:Class`` of every workflow class defined in the modules of ``package``, and one
    line per module that did not import."""
    found: list[str] = []
    broken: list[str] = []
    pkg = importlib.import_module(package)
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        name = f"{package}.{info.name}"
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # an import failure is reported, the other modules still served
            broken.append(f"{name}: {type(exc).__name__}: {exc}".splitlines()[0])
            continue
        for attr, obj in sorted(vars(module).items()):
            if (
                isinstance(obj, type)
                and issubclass(obj, Workflow)
                and obj.__module__ == name
                and obj.steps
            ):
                found.append(f"{name}:{attr}")
    return found, broken


async def _serve_one(target: str, url: str, stop: asyncio.Event) -> None:
    try:
        await serve(target, url, stop=stop, grace=2.0)
    except Exception as exc:  # a workflow the engine refuses is skipped, the others keep serving
        print(f"compat host skipped {target}: {type(exc).__name__}: {exc}".splitlines()[0], flush=True)


async def main(package: str, url: str) -> None:
    found, broken = targets(package)
    print(f"compat host targets={len(found)}", flush=True)
    for line in broken:
        print(f"compat host import failed {line}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    tasks = [asyncio.create_task(_serve_one(t, url, stop)) for t in found]
    for sig in (signal.SIGINT, signal.SIGTERM):  # (after every serve() put its own handler in)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await asyncio.gather(*tasks)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package")
    parser.add_argument("--nats", required=True)
    args = parser.parse_args()
    asyncio.run(main(args.package, args.nats))
