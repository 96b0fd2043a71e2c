"""The chain on Restate: one service whose handler runs the three steps as journaled actions
(``ctx.run_typed``), served by hypercorn (HTTP/2 cleartext) for a restate-server to invoke.

Roles: ``serve --url HOST:PORT`` (the SDK's deployment), ``drive --url INGRESS_URL ...`` (calls
``POST /Chain/run`` on the ingress with aiohttp and awaits each response). The driver is aiohttp,
not httpx (what the SDK's own client uses): with 100 requests in flight httpx's connection pool cost
6.3 ms of CPU per run, more than restate-server itself, and capped Restate at 60-80 runs/s;
aiohttp costs 0.3 ms and Restate then does about 250 (2026-12-04, 1 round each).
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

    import aiohttp

    async def go() -> None:
        connector = aiohttp.TCPConnector(limit=inflight)
        async with aiohttp.ClientSession(url, connector=connector) as session:

            async def one(i: int) -> int:
                async with session.post("/Chain/run", json=CHAIN_TEXT) as r:
                    r.raise_for_status()
                    return int(await r.json())

            await drive(one, runs=runs, inflight=inflight, warmup=warmup)

    asyncio.run(go())
