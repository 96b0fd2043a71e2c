"""``jetloom sessions ...``: create, list, show, run in, and delete sessions over the HTTP API."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from .cli_api import (
    DEFAULT_URL,
    ApiToken,
    ApiUrl,
    AsJson,
    Debug,
    api_client,
    follow_run,
    out,
    parse_fields,
    print_json,
    watch_run,
)

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the ``sessions`` command group to ``app``."""
    sessions = typer.Typer(help="Sessions: runs of a workflow that carry their state from one to the next.")
    app.add_typer(sessions, name="sessions")

    @sessions.command("create")
    def create(
        workflow: Annotated[str, typer.Argument(help="Workflow name.")],
        session_id: Annotated[str | None, typer.Option("--id", help="Session id (default: new).")] = None,
        url: ApiUrl = DEFAULT_URL,
        token: ApiToken = None,
        debug: Debug = False,
        as_json: AsJson = False,
    ) -> None:
        """Create a session; prints its id."""
        with api_client(url, token, debug=debug) as client:
            created = client.create_session(workflow, session_id=session_id)
        if as_json:
            print_json({"id": created.id, "workflow": created.workflow})
        else:
            out.print(created.id, markup=False)

    @sessions.command("list")
    def list_(
        url: ApiUrl = DEFAULT_URL, token: ApiToken = None, as_json: AsJson = False, debug: Debug = False
    ) -> None:
        """Every session, oldest first."""
        with api_client(url, token, debug=debug) as client:
            found = client.sessions()
        if as_json:
            print_json(found)
            return
        table = Table("session", "workflow", "runs", "created")
        for s in found:
            table.add_row(s["id"], s["workflow"], str(len(s["runs"])), s["created_at"])
        out.print(table)

    @sessions.command("show")
    def show(
        session_id: Annotated[str, typer.Argument(help="Session id.")],
        url: ApiUrl = DEFAULT_URL,
        token: ApiToken = None,
        debug: Debug = False,
        as_json: AsJson = False,
    ) -> None:
        """A session's runs and their status."""
        with api_client(url, token, debug=debug) as client:
            s = client.session(session_id).info()
        if as_json:
            print_json(s)
            return
        out.print(f"session {s['id']} ({s['workflow']}, created {s['created_at']})", markup=False)
        for rid, status in zip(s["runs"], s["runs_status"], strict=False):
            out.print(f"  {rid}  {status}", markup=False)

    @sessions.command("run")
    def run(
        session_id: Annotated[str, typer.Argument(help="Session id.")],
        field: Annotated[
            list[str] | None, typer.Option("--field", "-f", help="Start event field KEY=VALUE (repeatable).")
        ] = None,
        follow: Annotated[
            bool,
            typer.Option(
                "--follow", help="Show the run's progress live, then its result (--json: every record)."
            ),
        ] = False,
        url: ApiUrl = DEFAULT_URL,
        token: ApiToken = None,
        debug: Debug = False,
        as_json: AsJson = False,
    ) -> None:
        """Start the session's next run (it starts with the state the previous run ended with)."""
        with api_client(url, token, debug=debug) as client:
            session = client.session(session_id)
            handle = session.start(**parse_fields(field or []))
            if follow and as_json:
                follow_run(url, token, handle.run_id, as_json)
                return
            if follow:
                watch_run(url, token, handle.run_id, session.workflow)
                return
        if as_json:
            print_json({"run_id": handle.run_id, "session": session_id})
        else:
            out.print(handle.run_id, markup=False)

    @sessions.command("delete")
    def delete(
        session_id: Annotated[str, typer.Argument(help="Session id.")],
        url: ApiUrl = DEFAULT_URL,
        token: ApiToken = None,
        debug: Debug = False,
        as_json: AsJson = False,
    ) -> None:
        """Forget a session (its runs stay in the log)."""
        with api_client(url, token, debug=debug) as client:
            client.session(session_id).delete()
        if as_json:
            print_json({"id": session_id, "deleted": True})
        else:
            out.print(f"deleted session {session_id}", markup=False)
