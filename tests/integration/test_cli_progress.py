"""``jetloom run --follow`` shows progress, ``--wait`` / ``--run-timeout``, and ``jetloom runs``
(issue 19, item 4): real CLI processes (stdout a pipe: plain lines, one per change) against a
real control plane and worker processes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from services.client import Client
from services.launcher import WorkerProcess

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "COLUMNS": "80"}


async def jetloom(api: str, *args: str) -> tuple[int, str, str]:
    """Run ``python -m services.cli ARGS --url API`` to its end; (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", *args, "--url", api,
        cwd=ROOT, env=ENV, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(90):
        out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_follow_shows_steps_events_and_the_result_as_plain_lines(
    api: str, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    await start_worker("tests.workflows:Chain3")
    code, out, err = await jetloom(api, "run", "Chain3", "-f", "text=a b c", "--follow")
    assert code == 0, err
    assert "\x1b" not in out  # not a terminal: no escape codes
    lines = out.splitlines()
    rid = re.match(r"run (\w+) started \(Chain3\)$", lines[0])[1]  # type: ignore[index]
    expected = [
        "step parse running (on StartEvent, trigger 2)",
        "step parse done (trigger 2, ",
        "step count running (on Parsed, trigger ",
        "step count done (trigger ",
        "step finish running (on Counted, trigger ",
        "step finish done (trigger ",
        f"run {rid} (Chain3): completed",
        '  result: {"n": 3, "source": "a b c"}',
    ]
    assert 'event Progress {"stage":"parsed"}' in lines and 'event Progress {"stage":"counted"}' in lines
    at = 0
    for want in expected:  # in this order, other lines between
        at = next((i for i in range(at, len(lines)) if lines[i].startswith(want)), -1)
        assert at >= 0, (want, out)
    done = [line for line in lines if re.match(r"step \w+ done \(trigger \d+", line)]
    assert [d.split()[1] for d in done] == ["parse", "count", "finish"], out


async def test_follow_shows_retries_and_a_failure_in_two_lines(
    api: str, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    await start_worker("tests.retry_workflows:Flaky")
    key = uuid.uuid4().hex
    code, out, err = await jetloom(api, "run", "Flaky", "-f", f"key={key}", "-f", "fail_times=2", "--follow")
    assert code == 0, err
    retries = [line for line in out.splitlines() if line.startswith("step go retrying")]
    assert len(retries) == 2, out
    assert retries[0].startswith("step go retrying (attempt 1 failed: ConnectionError: attempt 1 failed; attempt 2 in ")
    assert '  result: {"attempts": 3}' in out.splitlines()

    code, out, err = await jetloom(api, "run", "Flaky", "-f", f"key={key}-x", "-f", "fail_times=9", "--follow")
    assert code == 1, (out, err)
    lines = out.splitlines()
    assert sum(line.startswith("step go retrying") for line in lines) == 4, out
    assert any(line.startswith("step go failed (attempt 5): ConnectionError: attempt 5 failed") for line in lines)
    tail = lines[lines.index(next(line for line in lines if line.endswith("(Flaky): failed"))) :]
    errors = [line for line in tail if line.startswith("  error: ")]
    assert len(errors) == 1 and "StepFailedError" in errors[0] and "attempt 5 failed" in errors[0], out
    assert "Traceback" not in out and "Traceback" not in err


async def test_a_waiting_run_shows_waiting_in_follow_runs_and_its_view(
    api: str, client: Client, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    await start_worker("tests.workflows:Interview")
    follower = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "run", "Interview", "-f", 'people=["ann"]', "--follow",
        "--url", api, cwd=ROOT, env=ENV, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert follower.stdout is not None
        seen: list[str] = []
        async with asyncio.timeout(60):
            while not (seen and seen[-1].startswith("step ask waiting for Reply")):
                line = (await follower.stdout.readline()).decode()
                assert line, seen
                seen.append(line.rstrip())
        rid = re.match(r"run (\w+) started", seen[0])[1]  # type: ignore[index]
        assert 'event Question {"who":"ann","prompt":"ann, your name?"}' in seen

        code, out, err = await jetloom(api, "runs", "--status", "waiting")
        assert code == 0, err
        assert [line.split()[:3] for line in out.splitlines()] == [[rid, "Interview", "waiting"]]
        view = await client.handle(rid).status()
        assert view["status"] == "waiting" and [w["event"] for w in view["waiting_for"]] == ["Reply"]

        await client.handle(rid).send_event(type="Reply", data={"who": "ann", "text": "Ann"})
        async with asyncio.timeout(60):
            rest, err = await follower.communicate()
        assert follower.returncode == 0, err
        rest_lines = rest.decode().splitlines()
        assert rest_lines[0].startswith("step ask resumed (event, trigger ")
        assert '  result: {"ann": "Ann"}' in rest_lines
    finally:
        if follower.returncode is None:
            follower.kill()
            await follower.wait()


async def test_wait_and_run_timeout(api: str, start_worker: Callable[..., Awaitable[WorkerProcess]]) -> None:
    await start_worker("tests.workflows:Chain3")
    await start_worker("tests.workflows:Gate")
    code, out, err = await jetloom(api, "run", "Chain3", "-f", "text=x y", "--wait")
    assert code == 0, err
    assert out.splitlines()[0].endswith("(Chain3): completed") and '  result: {"n": 2, "source": "x y"}' in out
    code, out, err = await jetloom(api, "run", "Chain3", "-f", "text=x", "--wait", "--json")
    assert code == 0 and json.loads(out)["result"] == {"n": 1, "source": "x"}, err

    code, out, err = await jetloom(api, "run", "Gate", "--run-timeout", "0.5", "--wait")
    assert code == 1, (out, err)
    assert out.splitlines()[0].endswith("(Gate): failed")
    (error,) = [line for line in out.splitlines() if line.startswith("  error: ")]
    assert error.startswith("  error: WorkflowTimeoutError: "), out

    code, _, err = await jetloom(api, "run", "Gate", "--wait", "--follow")
    assert code == 2 and "exclude each other" in err


async def test_runs_lists_full_ids_newest_first(
    api: str, client: Client, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    await start_worker("tests.workflows:Chain3")
    await start_worker("tests.workflows:Gate")
    ids = []
    for text in ("a", "b", "c"):
        handle = await client.start("Chain3", text=text)
        await handle.result()
        ids.append(handle.run_id)
    gate = await client.start("Gate")
    code, out, err = await jetloom(api, "runs", "--limit", "3")
    assert code == 0, err
    rows = [line.split() for line in out.splitlines()]
    assert [r[0] for r in rows] == [gate.run_id, ids[2], ids[1]]  # full ids (32 characters), never cut
    assert all(len(r[0]) == 32 for r in rows) and rows[1][1:3] == ["Chain3", "completed"]
    assert "more: --cursor" in err
    code, out, err = await jetloom(api, "runs", "--workflow", "Chain3", "--oldest")
    assert [line.split()[0] for line in out.splitlines()] == ids
    code, out, err = await jetloom(api, "runs", "--status", "completed", "--workflow", "Gate")
    assert code == 0 and out == "", (out, err)
    code, _, err = await jetloom(api, "runs", "--status", "sleeping")
    assert code == 2 and "sleeping" in err


async def test_a_session_run_follows_with_progress_too(
    api: str, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    await start_worker("tests.sessionflows:Accumulate")
    code, out, err = await jetloom(api, "sessions", "create", "Accumulate", "--json")
    assert code == 0, err
    sid = json.loads(out)["id"]
    code, out, err = await jetloom(api, "sessions", "run", sid, "-f", "add=4", "--follow")
    assert code == 0, err
    lines = out.splitlines()
    assert re.match(r"run \w+ started \(Accumulate\)$", lines[0]) and "  result: 4" in lines, out


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # (a shell's background job would ignore it)


async def test_ctrl_c_stops_following_in_one_line_and_the_run_goes_on(
    api: str, client: Client, start_worker: Callable[..., Awaitable[WorkerProcess]]
) -> None:
    await start_worker("tests.workflows:Gate")
    for args in (["run", "Gate", "--follow"], ["run", "Gate", "--wait"], ["run", "Gate", "--follow", "--json"]):
        follower = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.cli", *args, "--url", api,
            cwd=ROOT, env=ENV, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            preexec_fn=_default_sigint,
        )  # fmt: skip
        try:
            async with asyncio.timeout(60):  # until the run is there and its stream is read
                while not (found := (await client.runs(workflow="Gate", status="running", limit=1))[0]):
                    await asyncio.sleep(0.1)
                rid = found[0]["run_id"]
                while (await client.handle(rid).status())["steps_completed"] < 1:
                    await asyncio.sleep(0.1)
            follower.send_signal(signal.SIGINT)
            async with asyncio.timeout(30):
                _, err = await follower.communicate()
        finally:
            if follower.returncode is None:
                follower.kill()
                await follower.wait()
        assert follower.returncode == 130, (args, err)
        assert err.decode().splitlines() == [f"stopped following run {rid}; it goes on (jetloom events {rid} --follow)"]
        assert (await client.handle(rid).status())["status"] in ("running", "waiting")
        await client.handle(rid).cancel("done with it")
