"""The ``jetloom`` commands that talk to the control plane over HTTP (through ``SyncClient``):
``run``, ``runs``, ``events``, ``send``, ``cancel``, ``retry``, ``services``, ``workflows``, and
the time travel commands ``state``, ``rollback``, ``fork``.

Output is for people by default (rich tables, a live progress line while following a run) and
JSON with ``--json`` (one JSON document, or one JSON line per record when following).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import httpx
import orjson
import typer
from rich.console import Console
from rich.table import Table

from engine import NoLiveWorkerWarning

from .cli_progress import ProgressDisplay, RunProgress
from .client import DEFAULT_URL, ApiError, Client, SyncClient, run_error

__all__ = [
    "DEFAULT_URL",
    "ApiToken",
    "ApiUrl",
    "AsJson",
    "Debug",
    "api_client",
    "await_run",
    "follow_run",
    "out",
    "parse_fields",
    "print_json",
    "register",
    "watch_run",
]

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

ApiUrl = Annotated[
    str, typer.Option("--url", envvar="JETLOOM_URL", help="Control plane URL.")
]
ApiToken = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="JETLOOM_API_TOKEN",
        help="API token (sent as 'Authorization: Bearer'; never printed).",
        show_default=False,
        show_envvar=True,
    ),
]


class RunStatus(enum.StrEnum):
    """A run's status, as ``GET /runs?status=`` takes it."""

    running = "running"
    waiting = "waiting"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"


AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


Debug = Annotated[bool, typer.Option("--debug", help="Show the traceback of a failure too.")]

#: Exit code when the control plane does not answer (as the process commands' for NATS).
EXIT_UNREACHABLE = 2


@contextlib.contextmanager
def api_client(url: str, token: str | None = None, *, debug: bool = False) -> Iterator[SyncClient]:
    """A client sending ``token`` (if any). An API error becomes one line and exit code 1; a
    control plane that does not answer, one line with the cause, a hint line, and exit code 2;
    Ctrl-C, one line and exit code 130. With ``debug``, the traceback is printed first."""
    try:
        with SyncClient(url, token=token or None) as client:
            yield client
    except ApiError as exc:
        if debug:
            traceback.print_exc()
        if exc.status in (401, 403):
            hint = " (pass --token or set JETLOOM_API_TOKEN)" if exc.status == 401 else ""
            err.print(f"[red]error:[/] {exc.reason}{hint} [dim](HTTP {exc.status})[/]", soft_wrap=True)
            raise typer.Exit(1) from None
        field = exc.body.get("field")
        where = f" (field {field!r})" if field and repr(field) not in exc.reason else ""
        err.print(f"[red]error:[/] {exc.reason}{where} [dim](HTTP {exc.status})[/]", soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        raise typer.Exit(130) from None
    except httpx.TransportError as exc:
        if debug:
            traceback.print_exc()
        cause = " ".join(str(exc).split()) or type(exc).__name__
        err.print(f"[red]error:[/] cannot reach the control plane at {url}: {cause}", soft_wrap=True, markup=True)
        err.print(
            "  hint: is it running? `jetloom dev` or `jetloom control-plane` starts one; "
            "--url or JETLOOM_URL names another",
            soft_wrap=True,
            markup=False,
        )
        raise typer.Exit(EXIT_UNREACHABLE) from None


def print_json(value: Any) -> None:
    """``value`` as indented JSON on stdout (``--json``)."""
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def parse_fields(pairs: list[str]) -> dict[str, Any]:
    """``k=v`` pairs; ``v`` is read as JSON when it parses (``n=3``, ``tags=["a"]``), else text."""
    fields: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--field")
        try:
            fields[key] = json.loads(value)
        except json.JSONDecodeError:
            fields[key] = value
    return fields


def _summary(record: dict[str, Any]) -> str:
    data = json.dumps(record.get("data"), separators=(",", ":"), default=str)
    if len(data) > 100:
        data = data[:97] + "..."
    step = f" step={record['step']}" if "step" in record else ""
    return f"{record['seq']:>8} {record['time'][11:23]} {record['kind']}.{record['type']}{step} {data}"


def _until_end(
    url: str,
    token: str | None,
    run_id: str,
    workflow: str | None,
    on_record: Callable[[dict[str, Any]], None] | None,
    *,
    after: int = 0,
    live: bool | None = None,
) -> dict[str, Any]:
    """Read a run's records (after ``after``) until the one that ends it, passing each to
    ``on_record`` (None: progress, ``services.cli_progress``, for ``workflow``), then return its
    view. The stream is read on an asyncio ``Client`` in this thread, so Ctrl-C ends it cleanly:
    one line on stderr and exit code 130 (the run goes on)."""

    async def follow() -> dict[str, Any]:
        async with Client(url, token=token or None) as http:
            run = http.handle(run_id, workflow)
            if on_record is not None:
                async for record in run.records(after=after):
                    on_record(record)
                return await run.status()
            assert workflow is not None
            try:
                steps = (await http.workflow(workflow))["steps"]
                accepts: dict[str, list[str]] | None = {s["name"]: s["accepts"] for s in steps}
            except ApiError:
                accepts = None
            with ProgressDisplay(RunProgress(run_id, workflow, accepts), out, live=live) as display:
                async for record in run.records(after=after):
                    display.show(record)
            return await run.status()

    try:
        return asyncio.run(follow())
    except KeyboardInterrupt:
        err.print(
            f"stopped following run {run_id}; it goes on (jetloom events {run_id} --follow)",
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(130) from None


def follow_run(url: str, token: str | None, run_id: str, as_json: bool, after: int = 0) -> None:
    """Print each record as it is committed (one JSON line each with ``as_json``, else a summary
    line), then the outcome; exit 1 if the run did not complete, 130 on Ctrl-C."""

    def show(record: dict[str, Any]) -> None:
        sys.stdout.write((orjson.dumps(record).decode() if as_json else _summary(record)) + "\n")
        sys.stdout.flush()

    view = _until_end(url, token, run_id, None, show, after=after)
    if not as_json:
        _show_run(view)
    if view["status"] != "completed":
        raise typer.Exit(1)


def watch_run(url: str, token: str | None, run_id: str, workflow: str, *, live: bool | None = None) -> None:
    """Show a run's progress (``services.cli_progress``) until it ends, then its outcome; exit 1
    if it did not complete, 130 on Ctrl-C (the run goes on). Which steps each event starts comes
    from the workflow's description (none when it cannot be read: steps then appear as records
    name them)."""
    view = _until_end(url, token, run_id, workflow, None, live=live)
    _show_run(view)
    if view["status"] != "completed":
        raise typer.Exit(1)


def await_run(url: str, token: str | None, run_id: str, as_json: bool) -> None:
    """Wait for a run to end and print its outcome (its view with ``as_json``); exit 1 if it did
    not complete, 130 on Ctrl-C."""
    view = _until_end(url, token, run_id, None, lambda _record: None)
    if as_json:
        print_json(view)
    else:
        _show_run(view)
    if view["status"] != "completed":
        raise typer.Exit(1)


def _show_run(view: dict[str, Any]) -> None:
    style = {"completed": "green", "failed": "red", "cancelled": "yellow"}.get(view["status"], "cyan")
    out.print(f"run [bold]{view['run_id']}[/] ({view['workflow']}): [{style}]{view['status']}[/]")
    if view.get("duration_ms") is not None:
        out.print(f"  took {view['duration_ms']:.1f} ms, {view['steps_completed']} steps")
    if view["status"] == "completed":
        out.print("  result: " + json.dumps(view.get("result"), default=str), markup=False)
    error = run_error(view)
    if error is not None:
        text = " ".join(str(error).split("\n", 1)[0].split())  # its first line: no traceback
        out.print(f"  error: {type(error).__name__}: {text}", markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add the HTTP API commands to ``app``."""

    @app.command()
    def run(
        workflow: Annotated[str, typer.Argument(help="Workflow name.")],
        field: Annotated[
            list[str] | None, typer.Option("--field", "-f", help="Start event field KEY=VALUE (repeatable).")
        ] = None,
        follow: Annotated[
            bool,
            typer.Option(
                "--follow",
                help="Show the run's progress live (steps done, running, waiting, retrying; streamed "
                "events), then its result. Plain lines when stdout is not a terminal; with --json, "
                "every record as a JSON line.",
            ),
        ] = False,
        wait: Annotated[
            bool, typer.Option("--wait", help="Wait for the run to end and print its result (no live view).")
        ] = False,
        run_timeout: Annotated[
            float | None,
            typer.Option(
                "--run-timeout",
                min=0.001,
                help="Seconds after which the run fails (WorkflowTimeoutError) unless it has ended.",
                show_default=False,
            ),
        ] = None,
        run_id: Annotated[str | None, typer.Option(help="Run id (idempotent start).")] = None,
        url: ApiUrl = DEFAULT_URL,
        token: ApiToken = None,
        debug: Debug = False,
        as_json: AsJson = False,
    ) -> None:
        """Start a run. Prints its id; with --follow, its progress until it ends; with --wait, its
        result once it ends. Exits 1 if a followed or awaited run did not complete."""
        if follow and wait:
            raise typer.BadParameter("--follow and --wait exclude each other", param_hint="--wait")
        fields = parse_fields(field or [])
        with api_client(url, token, debug=debug) as client:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NoLiveWorkerWarning)  # said below, in its own words
                handle = client.start(workflow, run_id=run_id, run_timeout=run_timeout, **fields)
            queued = " (queued: no live worker serves it yet; it starts when one does)" if handle.queued else ""
            if not (follow or wait):
                if as_json:
                    print_json({"run_id": handle.run_id, "workflow": workflow, "queued": handle.queued})
                else:
                    out.print(f"{handle.run_id}{queued}", markup=False)
                return
            if queued and not as_json:
                err.print(f"run {handle.run_id}{queued}", markup=False, soft_wrap=True)
            if follow and as_json:
                follow_run(url, token, handle.run_id, as_json=True)
            elif follow:
                watch_run(url, token, handle.run_id, workflow)
            else:
                await_run(url, token, handle.run_id, as_json)

    @app.command()
    def runs(
        workflow: Annotated[str | None, typer.Option(help="Only runs of this workflow.")] = None,
        status: Annotated[
            RunStatus | None,
            typer.Option(help="Only runs in this status ('waiting': a step waits for an event)."),
        ] = None,
        limit: Annotated[int, typer.Option(min=1, max=1000, help="Runs per page.")] = 50,
        cursor: Annotated[int, typer.Option(min=0, help="Page cursor (from a previous page).")] = 0,
        oldest: Annotated[bool, typer.Option("--oldest", help="Oldest first (default: newest first).")] = False,
        url: ApiUrl = DEFAULT_URL,
        token: ApiToken = None,
        debug: Debug = False,
        as_json: AsJson = False,
    ) -> None:
        """List runs, newest first: full run ids, workflow, status, start and end times. On a
        terminal a table; otherwise one run per line, columns separated by two spaces."""
        with api_client(url, token, debug=debug) as client:
            found, nxt = client.runs(
                workflow=workflow,
                status=status.value if status else None,
                limit=limit,
                cursor=cursor,
                order="oldest" if oldest else "newest",
            )
        if as_json:
            print_json({"runs": found, "next_cursor": nxt})
            return
        rows = [
            (r["run_id"], r["workflow"], r["status"], r["started_at"] or "-", r["ended_at"] or "-") for r in found
        ]
        if out.is_terminal:
            table = Table("run id", "workflow", "status", "started (UTC)", "ended (UTC)")
            table.columns[0].no_wrap = True  # a run id is never cut (it is pasted into other commands)
            table.columns[0].min_width = max((len(r[0]) for r in rows), default=6)
            for run, wf, st, started, ended in rows:  # times to the second on a terminal
                table.add_row(run, wf, st, started[:19].replace("T", " "), ended[:19].replace("T", " "))
            out.print(table)
        else:
            widths = [max((len(r[i]) for r in rows), default=0) for i in range(5)]
            for row in rows:
                sys.stdout.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n")
        if nxt is not None:
            err.print(f"[dim]more: --cursor {nxt}[/]")

    @app.command()
    def events(
        run_id: Annotated[str, typer.Argument(help="Run id.")],
        follow: Annotated[bool, typer.Option("--follow", help="Keep streaming until the run ends.")] = False,
        after: Annotated[int, typer.Option(min=0, help="Only records after this sequence.")] = 0,
        url: ApiUrl = DEFAULT_URL,
        token: ApiToken = None,
        debug: Debug = False,
        as_json: AsJson = False,
    ) -> None:
        """Print a run's records (its event log)."""
        with api_client(url, token, debug=debug) as client:
            handle = client.handle(run_id)
            if follow:
                follow_run(url, token, run_id, as_json, after)
                return
            records = handle.events(after=after)
        if as_json:
            print_json(records)
            return
        for record in records:
            sys.stdout.write(_summary(record) + "\n")

    @app.command()
    def send(
        run_id: Annotated[str, typer.Argument(help="Run id.")],
        event: Annotated[
            str, typer.Argument(help='The event as JSON: {"type": "Name", "data": {...}}.')
        ],
        step: Annotated[str | None, typer.Option(help="Deliver to this step only.")] = None,
        idempotency_key: Annotated[
            str | None, typer.Option(help="Makes a retried send append once.")
        ] = None,
        url: ApiUrl = DEFAULT_URL,
        token: ApiToken = None,
        debug: Debug = False,
        as_json: AsJson = False,
    ) -> None:
        """Send an event to a run (e.g. human input)."""
        try:
            body = json.loads(event)
        except json.JSONDecodeError as exc:
            raise typer.BadParameter(f"not JSON: {exc}", param_hint="EVENT") from None
        if not isinstance(body, dict) or not isinstance(body.get("type"), str):
            raise typer.BadParameter('expected {"type": "Name", "data": {...}}', param_hint="EVENT")
        with api_client(url, token, debug=debug) as client:
            res = client.handle(run_id).send_event(
                type=body["type"], data=body.get("data") or {}, step=step, idempotency_key=idempotency_key
            )
        if as_json:
            print_json(res)
        else:
            dup = " (duplicate, not appended again)" if res.get("duplicate") else ""
            out.print(f"sent {res['type']} to {run_id} at seq {res['seq']}{dup}", markup=False)

    @app.command()
    def cancel(
        run_id: Annotated[str, typer.Argument(help="Run id.")],
        reason: Annotated[str, typer.Option(help="Recorded with the cancel.")] = "",
        url: ApiUrl = DEFAULT_URL,
        token: ApiToken = None,
        debug: Debug = False,
        as_json: AsJson = False,
    ) -> None:
        """Cancel a run: no step of it starts afterwards."""
        with api_client(url, token, debug=debug) as client:
            res = client.handle(run_id).cancel(reason)
        if as_json:
            print_json(res)
        else:
            out.print(f"cancelled {run_id}", markup=False)

    @app.command()
    def state(
        run_id: Annotated[str, typer.Argument(help="Run id.")],
        at: Annotated[int | None, typer.Option("--at", min=0, help="Fold up to this stream sequence.")] = None,
        url: ApiUrl = DEFAULT_URL,
        token: ApiToken = None,
        debug: Debug = False,
        as_json: AsJson = False,
    ) -> None:
        """A run's context as of a sequence (time travel): status, state, done and pending steps."""
        with api_client(url, token, debug=debug) as client:
            view = client.handle(run_id).state(at=at)
        if as_json:
            print_json(view)
            return
        _show_run(view)
        out.print(f"  as of seq {view['at'] if view['at'] is not None else view['last_seq']}", markup=False)
        out.print("  state: " + json.dumps(view["state"], default=str), markup=False)
        out.print("  done: " + ", ".join(f"{s}@{t}" for t, s in view["done"]), markup=False)
        out.print("  pending: " + ", ".join(f"{s}@{t}" for t, s in view["pending"]), markup=False)

    @app.command()
    def rollback(
        run_id: Annotated[str, typer.Argument(help="Run id.")],
        to: Annotated[int, typer.Option("--to", min=1, help="The last stream sequence that still counts.")],
        reason: Annotated[str, typer.Option(help="Recorded with the rollback.")] = "",
        url: ApiUrl = DEFAULT_URL,
        token: ApiToken = None,
        debug: Debug = False,
        as_json: AsJson = False,
    ) -> None:
        """Roll a run back to a sequence: what came after no longer counts; pending steps rerun."""
        with api_client(url, token, debug=debug) as client:
            res = client.handle(run_id).rollback(to, reason=reason)
        if as_json:
            print_json(res)
            return
        rerun = ", ".join(f"{r['step']}@{r['trigger']}" for r in res["resumed"]) or "nothing"
        out.print(f"rolled {run_id} back to seq {to} (marker at {res['marker_seq']}); rerunning {rerun}", markup=False)

    @app.command()
    def fork(
        run_id: Annotated[str, typer.Argument(help="Run id.")],
        at: Annotated[int, typer.Option("--at", min=1, help="The last stream sequence to copy.")],
        new_run_id: Annotated[str | None, typer.Option("--run-id", help="The new run's id.")] = None,
        url: ApiUrl = DEFAULT_URL,
        token: ApiToken = None,
        debug: Debug = False,
        as_json: AsJson = False,
    ) -> None:
        """Fork a run at a sequence: a new run continuing from that point; prints its id."""
        with api_client(url, token, debug=debug) as client:
            handle = client.handle(run_id).fork(at, run_id=new_run_id)
        if as_json:
            print_json({"run_id": handle.run_id, "workflow": handle.workflow, "forked_from": run_id, "at_seq": at})
        else:
            out.print(handle.run_id, markup=False)

    @app.command()
    def retry(
        run_id: Annotated[str, typer.Argument(help="Id of a failed run.")],
        url: ApiUrl = DEFAULT_URL,
        token: ApiToken = None,
        debug: Debug = False,
        as_json: AsJson = False,
    ) -> None:
        """Retry a failed run from the step that failed (after a fix and a worker restart)."""
        with api_client(url, token, debug=debug) as client:
            res = client.handle(run_id).retry()
        if as_json:
            print_json(res)
        else:
            out.print(f"retrying {run_id} from step {res['step']} (attempt {res['attempt']})", markup=False)

    @app.command()
    def services(
        url: ApiUrl = DEFAULT_URL, token: ApiToken = None, as_json: AsJson = False, debug: Debug = False
    ) -> None:
        """Live worker processes (from the registry)."""
        with api_client(url, token, debug=debug) as client:
            entries = client.services()
        if as_json:
            print_json(entries)
            return
        table = Table("service", "instance", "host", "pid", "workflows", "since", "handled")
        for e in entries:
            table.add_row(
                e["service"],
                e["instance"],
                e["host"],
                str(e["pid"]),
                ", ".join(w["name"] for w in e["workflows"]),
                e["started_at"],
                str(e.get("stats", {}).get("handled", "")),
            )
        out.print(table)

    @app.command()
    def workflows(
        url: ApiUrl = DEFAULT_URL, token: ApiToken = None, as_json: AsJson = False, debug: Debug = False
    ) -> None:
        """Workflows in the catalog, with their steps and live instances."""
        with api_client(url, token, debug=debug) as client:
            found = client.workflows()
        if as_json:
            print_json(found)
            return
        table = Table("workflow", "start event", "steps", "instances")
        for w in found:
            steps = ", ".join(f"{s['name']}({'|'.join(s['accepts'])})" for s in w["steps"])
            table.add_row(w["name"], w["start_event"], steps, str(w["instances"]))
        out.print(table)
