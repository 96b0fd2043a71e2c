"""examples/llamarag: a llama-index-core program (pydantic events carrying ``Document``,
``TextNode``, ``NodeWithScore`` and ``ChatMessage``, a typed state, ``MockLLM``) run on
llama-index-workflows, on jetloom in one process, over two worker processes on a real nats-server,
and through the control plane over HTTP; the answers must be the reference's, to the score.

The reference's copy of the workflow is the example's source with its import lines rewritten
(``from engine`` -> ``from workflows``), the mechanical change docs/migration.md describes in the
other direction: that both copies run is the claim that only the imports differ.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import subprocess
import sys
import types
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from llama_index.core import Document

from examples.llamarag.documents import load_documents
from examples.llamarag.workflow import Embedded, RagStart, RagWorkflow
from services.client import Client
from services.launcher import WorkerProcess
from services.nats_client import NatsClient
from tests.integration.test_docindex import completions_of

ROOT = Path(__file__).resolve().parents[2]
TARGET = "examples.llamarag.workflow:RagWorkflow"
SOURCE = ROOT / "examples" / "llamarag" / "workflow.py"

# question -> the file the best chunks must come from (the corpus has one file per topic)
QUESTIONS = {
    "How do honeybees tell each other where the flowers are?": "honeybees.txt",
    "Why are the tides highest at full moon and new moon?": "tides.txt",
    "What makes sourdough bread taste sour?": "sourdough.txt",
}
BEES = next(iter(QUESTIONS))
# chunks per file: a chunk is at most 80 words, paragraphs kept whole when they fit
CHUNKS_OF = {"honeybees.txt": 2, "sourdough.txt": 1, "tides.txt": 2, "volcanoes.txt": 1}
FILES = sorted(CHUNKS_OF)
CHUNKS = sum(CHUNKS_OF.values())


# ---- the reference's copy, and no network ----------------------------------------------------


def reference_module() -> types.ModuleType:
    """examples/llamarag/workflow.py with ``from engine...`` imports turned into
    ``from workflows...`` ones, loaded as a module of its own (llama-index-workflows 2.26)."""
    name = "llamarag_on_reference"
    if name in sys.modules:
        return sys.modules[name]
    text, n = re.subn(
        r"^from engine(\.\w+)? import", r"from workflows\1 import", SOURCE.read_text(), flags=re.M
    )
    assert n == 2, "the example should import from engine in exactly two lines"
    assert "engine" not in re.sub(r"#.*|\"\"\"[\s\S]*?\"\"\"", "", text), "engine is used beyond its imports"
    module = types.ModuleType(name)
    module.__file__ = str(SOURCE)
    sys.modules[name] = module  # pydantic resolves the events' annotations through it
    exec(compile(text, str(SOURCE), "exec"), module.__dict__)
    return module


def test_the_documented_rewrite_gives_the_example_back(tmp_path: Path) -> None:
    """docs/migration.md's sed command, run on the reference's copy, gives examples/llamarag back."""
    doc = (ROOT / "docs" / "migration.md").read_text()
    exprs = re.findall(r"^\s*-e '([^']+)'", doc, flags=re.M)
    assert len(exprs) == 2, exprs
    text = SOURCE.read_text()
    ported = re.sub(r"^from engine(\.\w+)? import", r"from workflows\1 import", text, flags=re.M)
    ported = ported.replace(  # the same program as llama-index-core's re-export would import it
        "from workflows import Context, Workflow, step",
        "from llama_index.core.workflow import Context, Workflow, step",
    )
    assert ported != text
    target = tmp_path / "workflow.py"
    target.write_text(ported)
    sed = [a for e in exprs for a in ("-e", e)]
    subprocess.run(["sed", "-E", "-i", *sed, str(target)], check=True)
    assert target.read_text() == text


_OFFLINE: list[bool] = []


def _guard(event: str, args: tuple[Any, ...]) -> None:
    if not _OFFLINE or event not in ("socket.connect", "socket.getaddrinfo"):
        return
    target = args[1] if event == "socket.connect" else args
    host = target[0] if isinstance(target, tuple) and target else target
    if isinstance(host, bytes):
        host = host.decode()
    if not isinstance(host, str) or host in ("localhost", ""):
        return  # a unix socket path is a str too, but never a dotted address
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        if "/" in host:
            return  # a unix socket
    raise OSError(f"network access while the example must be offline: {event} {host}")


sys.addaudithook(_guard)  # inert unless a test is inside offline()


@contextmanager
def offline() -> Iterator[None]:
    """Fails any connection (and name lookup) to a host other than this machine's loopback."""
    _OFFLINE.append(True)
    try:
        yield
    finally:
        _OFFLINE.pop()


async def run_reference(question: str, documents: list[Document]) -> tuple[dict[str, Any], list[Any]]:
    ref = reference_module()
    handler = ref.RagWorkflow(timeout=60).run(
        start_event=ref.RagStart(question=question, documents=documents, top_k=2)
    )
    streamed = [ev async for ev in handler.stream_events()]
    return await handler, streamed


def check_answer(result: dict[str, Any], question: str) -> None:
    """The answer is built from the right file's chunks, best first, and the mock LLM saw them."""
    expected = QUESTIONS[question]
    sources = result["sources"]
    files = [s["file"] for s in sources]
    assert len(files) == 2 and files[: CHUNKS_OF[expected]] == [expected] * min(2, CHUNKS_OF[expected]), sources
    assert sources[0]["score"] > sources[1]["score"] > 0
    assert result["chunks"] == CHUNKS
    answer = result["answer"]  # MockLLM answers with its prompt: the chat messages, in order
    assert answer.startswith("system: Answer the question from the context only.")
    assert f"\nuser: Context:\n[{expected}] {sources[0]['text']}" in answer
    assert answer.rstrip().endswith(f"Question: {question}\nassistant:")
    for other in FILES:
        assert (f"[{other}]" in answer) == (other in files), other


def embedded(streamed: list[Any]) -> dict[str, int]:
    """Streamed ``Embedded`` events as ``{source: chunks}`` (one per document)."""
    got = [ev for ev in streamed if type(ev).__name__ == "Embedded"]
    counts = {ev.source: ev.chunks for ev in got}
    assert len(got) == len(counts) == len(FILES)
    return counts


@pytest.fixture(scope="module")
def documents() -> list[Document]:
    return load_documents()


@pytest.fixture(scope="module")
def reference(documents: list[Document]) -> dict[str, tuple[dict[str, Any], dict[str, int]]]:
    """Each question's result and streamed chunk counts on llama-index-workflows, offline."""
    out = {}
    with offline():
        for question in QUESTIONS:
            result, streamed = asyncio.run(run_reference(question, documents))
            out[question] = (result, embedded(streamed))
    return out


# ---- in one process -------------------------------------------------------------------------


def test_the_reference_answers_offline(
    reference: dict[str, tuple[dict[str, Any], dict[str, int]]],
) -> None:
    """The example as a llama-index-workflows program (the guard is live: a download would fail
    the fixture) retrieves the right chunks for each question."""
    for question, (result, counts) in reference.items():
        check_answer(result, question)
        assert counts == CHUNKS_OF


def test_offline_guard_refuses_the_network() -> None:
    with offline(), pytest.raises(OSError, match="must be offline"):
        socket.create_connection(("192.0.2.1", 9), timeout=1)  # TEST-NET-1: never routed


async def test_in_process_matches_the_reference(
    documents: list[Document], reference: dict[str, tuple[dict[str, Any], dict[str, int]]]
) -> None:
    with offline():
        for question, (expected, counts) in reference.items():
            handler = RagWorkflow(timeout=60).run(
                start_event=RagStart(question=question, documents=documents, top_k=2)
            )
            streamed = [ev async for ev in handler.stream_events()]
            assert await handler == expected
            assert embedded(streamed) == counts
            assert all(isinstance(ev, Embedded) for ev in streamed[:-1])


# ---- two worker processes on NATS -----------------------------------------------------------


async def test_two_worker_processes(
    nats_url: str,
    start_worker: Callable[..., Awaitable[WorkerProcess]],
    documents: list[Document],
    reference: dict[str, tuple[dict[str, Any], dict[str, int]]],
) -> None:
    """The three questions at once over two ``jetloom worker`` processes: the reference's answers,
    each step once per trigger, and both processes did part of the work."""
    procs = [await start_worker(TARGET), await start_worker(TARGET)]
    client = await NatsClient.connect(nats_url)
    try:

        async def ask(question: str) -> tuple[str, dict[str, Any], list[Any]]:
            start = RagStart(question=question, documents=documents, top_k=2)
            handler = await client.start(RagWorkflow, start_event=start, timeout=120)
            streamed = [ev async for ev in handler.stream_events()]
            return handler.run_id, await handler, streamed

        answers = await asyncio.gather(*(ask(q) for q in QUESTIONS))
        done = []
        for question, (run_id, result, streamed) in zip(QUESTIONS, answers, strict=True):
            expected, counts = reference[question]
            assert result == expected
            assert embedded(streamed) == counts
            done += await completions_of(client.log, RagWorkflow, run_id)
    finally:
        await client.close()
    assert all(w.proc.returncode is None for w in procs)

    keys = Counter((c.run, c.trigger, c.step) for c in done)
    assert max(keys.values()) == 1, f"a step ran twice on one trigger: {keys.most_common(2)}"
    steps = Counter(c.step for c in done)
    runs = len(QUESTIONS)
    assert steps["ingest"] == steps["compose"] == steps["answer"] == runs, steps
    assert steps["embed"] == runs * len(FILES), steps
    assert runs <= steps["retrieve"] <= runs * len(FILES), steps  # one per batch; one fans in
    pids = Counter(c.pid for c in done)
    assert set(pids) == {str(w.pid) for w in procs}, pids


# ---- through the control plane (HTTP) -------------------------------------------------------


async def test_through_the_control_plane(
    api: str,
    client: Client,
    start_worker: Callable[..., Awaitable[WorkerProcess]],
    documents: list[Document],
    reference: dict[str, tuple[dict[str, Any], dict[str, int]]],
) -> None:
    """The SDK starts a run with a typed start event and streams typed events back; a plain JSON
    POST (what curl would send: documents as dicts) gets the same answer with ``wait=true``."""
    await start_worker(TARGET)
    await start_worker(TARGET)

    expected, counts = reference[BEES]
    handle = await client.start(
        RagWorkflow, start_event=RagStart(question=BEES, documents=documents, top_k=2)
    )
    streamed = [ev async for ev in handle.stream()]
    assert await handle.result() == expected
    assert embedded(streamed) == counts
    assert all(isinstance(ev, Embedded) for ev in streamed if type(ev).__name__ == "Embedded")

    question = "Why are the tides highest at full moon and new moon?"
    body = {
        "question": question,
        "top_k": 2,
        "documents": [
            {
                "id_": d.id_,
                "text": d.text,
                "metadata": {"file_name": d.metadata["file_name"]},
                "excluded_embed_metadata_keys": ["file_name"],
            }
            for d in documents
        ],
    }
    async with httpx.AsyncClient(base_url=api, timeout=120) as http:
        answer = await http.post(
            "/workflows/RagWorkflow/runs", params={"wait": "true", "timeout": 90}, json=body
        )
        assert answer.status_code == 200, answer.text
        view = answer.json()
        assert view["status"] == "completed", view
        assert view["result"] == reference[question][0]

        # documents that are not a list: 422 naming the field, nothing started
        bad = await http.post(
            "/workflows/RagWorkflow/runs", json={"question": "q", "documents": "none"}
        )
        assert bad.status_code == 422, bad.text
        assert "documents" in bad.text
