"""Entry point of the peers' processes: ``python peer_main.py ENGINE ROLE [ARGS...]``.

Imports ``<engine>_app`` from this directory by its module name (Temporal's workflow sandbox
re-imports a workflow's module by name, which ``__main__`` would not allow) and calls its
``main(role, args)``. Runs in the peers' venv (``.peers/venv``), never in the project's.
"""

from __future__ import annotations

import importlib
import sys

if __name__ == "__main__":
    engine, role, *args = sys.argv[1:]
    importlib.import_module(f"{engine}_app").main(role, args)
