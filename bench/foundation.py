"""Foundation: /api/notify ingest against a bare endpoint; dispatch against SAQ's no-op rate.

Everything runs in ONE invocation on this machine against the same Redis and Postgres, so the
ratios compare like with like:
- ingest: requests/s and p50/p99 of POST /api/notify against `gomflow-messaging web`
  (one uvicorn worker, a separate process), one sandbox recipient per request; the limit is
  bench/bare.py, a bare Starlette endpoint doing the same insert and enqueue under the same
  uvicorn settings (our HTTP parser, h11), same client; the bare endpoint on httptools (uvicorn's
  usual parser) is measured beside it, to show what our parser costs;
- dispatch: messages/s from the queue into the sandbox (no platform limit) by one
  `gomflow-messaging worker` process, then by two (the backlog is enqueued first);
- saq_noop: jobs/s of a SAQ worker process running a job that does nothing, same concurrency
  and job options.
Rates are measured between 10 % and 90 % of completion, so process start-up is left out.
Each is run BENCH_ROUNDS times (3), interleaved, and the best round kept: the machine is shared,
and other work only ever slows a round down. Every round's figure is in the JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from typing import Any

import aiohttp
import asyncpg
from redis.asyncio import Redis

try:
    from bench import common
except ImportError:  # run as a script: bench/ is not a package on the path yet
    import common  # type: ignore[no-redef]

DISPATCH_N = int(os.environ.get("BENCH_DISPATCH_N", "4000"))
NOOP_N = int(os.environ.get("BENCH_NOOP_N", "5000"))
INGEST_N = int(os.environ.get("BENCH_INGEST_N", "4000"))
#: Each comparison is run this many times, interleaved; the best round of each is kept.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
INGEST_CLIENTS = int(os.environ.get("BENCH_INGEST_CLIENTS", "32"))


async def _load(base: str, headers: dict[str, str]) -> dict[str, Any]:
    """INGEST_N requests from INGEST_CLIENTS concurrent clients on keep-alive connections.

    aiohttp's client: it costs this process about a third of what httpx does per request,
    and on 2 cores the load generator competes with the server it measures.
    """
    latencies: list[float] = []
    body = json.dumps(
        {
            "event": "custom",
            "data": {"text": "bench"},
            "recipients": [{"channel": "sandbox", "address": "bench"}],
        }
    ).encode()
    headers = {**headers, "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=INGEST_CLIENTS)
    async with aiohttp.ClientSession(base, connector=connector) as session:

        async def post() -> None:
            async with session.post("/api/notify", data=body, headers=headers) as response:
                await response.read()
                if response.status != 202:
                    raise RuntimeError(f"notify answered {response.status}")

        for _ in range(100):  # warm-up: connections, caches, prepared statements
            await post()
        remaining = INGEST_N

        async def one_client() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                await post()
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(INGEST_CLIENTS)))
        elapsed = time.perf_counter() - started
    return {
        "requests": len(latencies),
        "clients": INGEST_CLIENTS,
        "requests_per_second": round(len(latencies) / elapsed, 1),
        **common.percentiles(latencies),
    }


async def bench_ingest(database_url: str, target: str) -> dict[str, Any]:
    """``target``: ours, bare (the limit, on our HTTP parser) or bare_httptools."""
    port = common.free_port()
    queue = f"bench-ingest-{secrets.token_hex(3)}"
    env = common.env_for(database_url, queue, PORT=str(port), HOST="127.0.0.1")
    if target == "bare_httptools":
        env["BARE_HTTP_PARSER"] = "httptools"
    args = ["web"] if target == "ours" else [str(common.ROOT / "bench" / "bare.py")]
    proc = common.start(args, env)
    try:
        base = f"http://127.0.0.1:{port}"
        if target == "ours":
            await common.wait_http(base + "/api/health")
        else:
            await common.wait_http(base + "/")
        return await _load(base, common.AUTH)
    finally:
        common.stop(proc)
        await common.forget_queue(queue)


async def bench_dispatch(database_url: str, workers: int) -> dict[str, Any]:
    queue = f"bench-dispatch-{secrets.token_hex(3)}"
    text = f"dispatch bench {queue}"
    recipients = [{"channel": "sandbox", "address": f"d-{i}"} for i in range(DISPATCH_N)]
    await common.enqueue_campaign(database_url, queue, recipients, text)
    conn = await asyncpg.connect(database_url)
    # Pending rows are counted through their partial index: a cheap poll that does not load
    # Postgres. What an earlier round left unsent stays pending, so count from here.
    pending_sql = "SELECT count(*) FROM messages WHERE status IN ('queued', 'sending')"
    initial: int = await conn.fetchval(pending_sql)
    procs = [common.start(["worker"], common.env_for(database_url, queue)) for _ in range(workers)]
    try:

        async def sent() -> int:
            pending: int = await conn.fetchval(pending_sql)
            return initial - pending

        before = common.cpu_times()
        rate = await common.rate_between(sent, DISPATCH_N, interval=0.05)
        busy = common.busy_percent(before, common.cpu_times())
        duplicates = await conn.fetchval(
            "SELECT coalesce(sum(s.deliveries - 1), 0) FROM sandbox_messages s"
            " JOIN messages m ON m.id = s.message_id WHERE m.body->>'text' = $1",
            text,
        )
    finally:
        for proc in procs:
            common.stop(proc)
        await conn.close()
        await common.forget_queue(queue)
    return {
        "messages": DISPATCH_N,
        "workers": workers,
        "concurrency": common.CONCURRENCY,
        "messages_per_second": round(rate, 1),
        "duplicates": int(duplicates),
        "machine_cpu_busy_percent": busy,
    }


NOOP_WORKER = """
import asyncio, sys
from saq import Queue, Worker
from redis.asyncio import Redis
queue = Queue.from_url(sys.argv[1], name=sys.argv[2])
counter = Redis.from_url(sys.argv[1])
async def noop(ctx):
    await counter.incr(sys.argv[2] + ":done")
worker = Worker(queue, functions=[noop], concurrency=int(sys.argv[3]), dequeue_timeout=1.0)
asyncio.run(worker.start())
"""


async def bench_noop() -> dict[str, Any]:
    from saq import Queue

    name = f"bench-noop-{secrets.token_hex(3)}"
    queue = Queue.from_url(common.REDIS_URL, name=name)
    await queue.connect()
    redis = Redis.from_url(common.REDIS_URL)
    # The same job options as a delivery (key, timeout, retries, no stored result).
    for i in range(0, NOOP_N, 500):
        await asyncio.gather(
            *(
                queue.enqueue("noop", key=f"n{j}", timeout=65, retries=3, ttl=-1)
                for j in range(i, min(i + 500, NOOP_N))
            )
        )
    env = common.env_for("postgresql://unused/unused", name)
    proc = common.start(["-c", NOOP_WORKER, common.REDIS_URL, name, str(common.CONCURRENCY)], env)
    try:

        async def done() -> int:
            return int(await redis.get(name + ":done") or 0)

        before = common.cpu_times()
        rate = await common.rate_between(done, NOOP_N)
        busy = common.busy_percent(before, common.cpu_times())
    finally:
        common.stop(proc)
        keys = [k async for k in redis.scan_iter(f"saq:{name}:*")] + [name + ":done"]
        await redis.delete(*keys)
        await redis.aclose()
        await queue.disconnect()
    return {
        "jobs": NOOP_N,
        "concurrency": common.CONCURRENCY,
        "jobs_per_second": round(rate, 1),
        "machine_cpu_busy_percent": busy,
    }


def ratio(value: float, limit: float, aim: float | None) -> dict[str, Any]:
    r = value / limit if limit else 0.0
    return {"ratio": round(r, 3), "aim": aim, "meets_aim": None if aim is None else r >= aim}


def best(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The fastest of interleaved rounds (noise on a shared machine only slows a run down),
    with every round's rate kept beside it."""
    top = max(runs, key=lambda r: r[key])
    return {**top, "rounds": [r[key] for r in runs]}


async def main() -> dict[str, Any]:
    database_url = await common.make_database()
    runs: dict[str, list[dict[str, Any]]] = {}
    try:
        for _ in range(ROUNDS):
            runs.setdefault("noop", []).append(await bench_noop())
            runs.setdefault("one", []).append(await bench_dispatch(database_url, 1))
            runs.setdefault("two", []).append(await bench_dispatch(database_url, 2))
        for _ in range(ROUNDS):
            for target in ("bare", "bare_httptools", "ours"):
                runs.setdefault(target, []).append(await bench_ingest(database_url, target))
    finally:
        await common.drop_database(database_url)
    noop = best(runs["noop"], "jobs_per_second")
    one, two = best(runs["one"], "messages_per_second"), best(runs["two"], "messages_per_second")
    bare, ours = (
        best(runs["bare"], "requests_per_second"),
        best(runs["ours"], "requests_per_second"),
    )
    httptools = best(runs["bare_httptools"], "requests_per_second")
    return {
        "rounds": ROUNDS,
        "ingest": {
            "ours": ours,
            "bare_endpoint": bare,
            "bare_endpoint_httptools": httptools,
            "vs_bare": ratio(ours["requests_per_second"], bare["requests_per_second"], 0.8),
        },
        "dispatch": {
            "one_worker": one,
            "two_workers": two,
            "saq_noop": noop,
            "vs_noop": ratio(one["messages_per_second"], noop["jobs_per_second"], 1.0),
            # Not an aim: on 2 cores one worker, Postgres and Redis already fill them.
            "two_vs_one": ratio(two["messages_per_second"], one["messages_per_second"], None),
        },
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main()), indent=2))
