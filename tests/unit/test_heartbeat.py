"""A worker's heartbeat (services.registry) on the memory backend's registry: the process logic
without NATS."""

from __future__ import annotations

from engine.memory.backend import MemoryBackend
from engine.runtime.describe import describe
from services.registry import Heartbeat
from tests.integration.procs import eventually
from tests.workflows import Chain3


async def test_a_heartbeat_registers_refreshes_and_removes_its_process() -> None:
    backend = MemoryBackend()
    registry = await backend.registry()
    view = await registry.view()
    beats = 0

    def stats() -> dict[str, int]:
        nonlocal beats
        beats += 1
        return {"beats": beats}

    heartbeat = Heartbeat(registry, service="chain", workflows=[describe(Chain3)], ttl=1.5, stats=stats)
    await heartbeat.start()
    try:
        assert [w.name for w in await registry.workflows()] == ["Chain3"]
        (entry,) = await registry.services()
        assert entry.key == heartbeat.entry.key and entry.stats == {"beats": 1}
        assert [e.instance for e in view.serving("Chain3")] == [heartbeat.entry.instance]

        async def refreshed() -> bool:
            return [e.stats.get("beats", 0) >= 3 for e in await registry.services()] == [True]

        # every ttl/3 (0.5 s); the entry outlives the 1.5 s TTL only because it is refreshed
        await eventually(refreshed, timeout=5, what="two more beats")
    finally:
        await heartbeat.stop()
    assert await registry.services() == [] and view.serving("Chain3") == []
    assert await registry.workflow("Chain3") is not None  # the catalog outlives the process
    await backend.close()
