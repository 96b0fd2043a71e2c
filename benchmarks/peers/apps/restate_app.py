"""The chain on Restate: one service whose handler runs the three steps as journaled actions
(``ctx.run_typed``), served by hypercorn (HTTP/2 cleartext) for a restate-server to invoke.

Roles: ``serve --url HOST:PORT`` (the SDK's deployment), ``drive --url INGRESS_URL ...`` (calls
``POST /Chain/run`` on the ingress and awaits each response).
"""

from __future__ import annotations

import asyncio

import restate
from drive import CHAIN_TEXT, count, drive, finish, options, parse

chain = restate.Service("Chain")


@chain.handler()
async def run(ctx: restate.Context, text: str) -> int:
    words = await ctx.run_typed("parse", parse, text=text)
    n = await ctx.run_typed("count", count, words=words)
    return await ctx.run_typed("finish", finish, n=n)


app = restate.app([chain])


def main(role: str, args: list[str]) -> None:
    url, runs, inflight, warmup = options(args)
    if role == "serve":
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        config = Config()
        config.bind = [url]
        config.accesslog = None
        print("serving", flush=True)
        asyncio.run(serve(app, config))  # type: ignore[arg-type]
        return

    import httpx

    async def go() -> None:
        limits = httpx.Limits(max_connections=inflight, max_keepalive_connections=inflight)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:

            async def one(i: int) -> int:
                r = await client.post("/Chain/run", json=CHAIN_TEXT)
                r.raise_for_status()
                return int(r.json())

            await drive(one, runs=runs, inflight=inflight, warmup=warmup)

    asyncio.run(go())
