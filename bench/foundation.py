"""Foundation benchmark: /api/notify ingest, dispatch into the sandbox, beside SAQ's no-op rate.

Everything runs in ONE invocation on this machine against the same Redis and Postgres, so the
ratios compare like with like:
- ingest: requests/s and p50/p99 of POST /api/notify against `gomflow-messaging web`
  (one uvicorn worker, a separate process), one sandbox recipient per request;
- dispatch: messages/s from the queue into the sandbox by one `gomflow-messaging worker`
  process (the backlog is enqueued first, then the worker starts);
- saq_noop: jobs/s of a SAQ worker process running a job that does nothing, same concurrency.
Rates are measured between 10 % and 90 % of completion, so process start-up is left out.
Prints JSON (and writes it to bench/results/foundation-<time>.json).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get(
    "BENCH_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/10")
SECRET = "bench-secret-bench-secret-bench-secret-01"
CONCURRENCY = int(os.environ.get("BENCH_WORKER_CONCURRENCY", "20"))
DISPATCH_N = int(os.environ.get("BENCH_DISPATCH_N", "6000"))
NOOP_N = int(os.environ.get("BENCH_NOOP_N", "6000"))
INGEST_N = int(os.environ.get("BENCH_INGEST_N", "3000"))
INGEST_CLIENTS = int(os.environ.get("BENCH_INGEST_CLIENTS", "32"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def env_for(database_url: str, queue: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
    env.update(
        ENVIRONMENT="test",
        DATABASE_URL=database_url,
        REDIS_URL=REDIS_URL,
        SERVICE_SECRET=SECRET,
        QUEUE_NAME=queue,
        ENABLE_SANDBOX="true",
        LOG_LEVEL="WARNING",
        WORKER_CONCURRENCY=str(CONCURRENCY),
        DB_POOL_SIZE=str(CONCURRENCY + 5),
        **extra,
    )
    return env


async def rate_between(count: Any, total: int, timeout: float = 300) -> float:
    """Units/s between 10 % and 90 % of ``total``, polling ``count()``."""
    low, high = total * 0.1, total * 0.9
    t_low = t_high = None
    n_low = n_high = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = await count()
        now = time.monotonic()
        if t_low is None and n >= low:
            t_low, n_low = now, n
        if n >= high:
            t_high, n_high = now, n
            break
        await asyncio.sleep(0.01)
    if t_low is None or t_high is None or t_high <= t_low:
        raise RuntimeError("did not finish in time")
    return (n_high - n_low) / (t_high - t_low)


async def make_database() -> str:
    name = f"gomflow_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{name}"))
    subprocess.run(
        [sys.executable, "-m", "gomflow_messaging", "migrate"],
        check=True,
        env=env_for(url, "unused"),
        cwd=ROOT,
        capture_output=True,
    )
    return url


async def drop_database(url: str) -> None:
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'DROP DATABASE IF EXISTS "{urlsplit(url).path[1:]}" WITH (FORCE)')
    await admin.close()


async def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                await client.get(url)
                return
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


async def bench_ingest(database_url: str) -> dict[str, Any]:
    port = free_port()
    queue = f"bench-ingest-{secrets.token_hex(3)}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gomflow_messaging", "web"],
        cwd=ROOT,
        env=env_for(database_url, queue, PORT=str(port), HOST="127.0.0.1"),
    )
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_http(base + "/api/health")
        latencies: list[float] = []
        headers = {"Authorization": f"Bearer {SECRET}"}
        body = {
            "event": "custom",
            "data": {"text": "bench"},
            "recipients": [{"channel": "sandbox", "address": "bench"}],
        }
        limits = httpx.Limits(max_connections=INGEST_CLIENTS)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
            for _ in range(50):  # warm-up: connections, caches, prepared statements
                await client.post("/api/notify", json=body, headers=headers)
            remaining = INGEST_N

            async def one_client() -> None:
                nonlocal remaining
                while remaining > 0:
                    remaining -= 1
                    started = time.perf_counter()
                    response = await client.post("/api/notify", json=body, headers=headers)
                    latencies.append(time.perf_counter() - started)
                    if response.status_code != 202:
                        raise RuntimeError(f"notify answered {response.status_code}")

            started = time.perf_counter()
            await asyncio.gather(*(one_client() for _ in range(INGEST_CLIENTS)))
            elapsed = time.perf_counter() - started
        latencies.sort()
        return {
            "requests": len(latencies),
            "clients": INGEST_CLIENTS,
            "requests_per_second": round(len(latencies) / elapsed, 1),
            "p50_ms": round(statistics.median(latencies) * 1000, 2),
            "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        redis = Redis.from_url(REDIS_URL)
        keys = [k async for k in redis.scan_iter(f"saq:{queue}:*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


async def bench_dispatch(database_url: str) -> dict[str, Any]:
    queue = f"bench-dispatch-{secrets.token_hex(3)}"
    # Enqueue the backlog through the real notify path, in batches of 1000 recipients.
    sys.path.insert(0, str(ROOT / "src"))
    from gomflow_messaging.bootstrap import build_services
    from gomflow_messaging.settings import Settings
    from gomflow_messaging.workflows import notify

    settings = Settings(
        _env_file=None,
        **{  # type: ignore[call-arg]
            "environment": "test",
            "database_url": database_url,
            "redis_url": REDIS_URL,
            "service_secret": SECRET,
            "queue_name": queue,
            "enable_sandbox": True,
        },
    )
    services = await build_services(settings)
    try:
        for start in range(0, DISPATCH_N, 1000):
            body = {
                "event": "custom",
                "data": {"text": "dispatch bench"},
                "recipients": [
                    {"channel": "sandbox", "address": f"d-{i}"}
                    for i in range(start, min(start + 1000, DISPATCH_N))
                ],
            }
            result = await notify.notify(services, body)
            await notify.enqueue(services, result)
    finally:
        await services.close()
    conn = await asyncpg.connect(database_url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gomflow_messaging", "worker"],
        cwd=ROOT,
        env=env_for(database_url, queue),
    )
    try:

        async def sent() -> int:
            n: int = await conn.fetchval(
                "SELECT count(*) FROM messages WHERE status = 'sent' AND body->>'text' = $1",
                "dispatch bench",
            )
            return n

        rate = await rate_between(sent, DISPATCH_N)
        duplicates = await conn.fetchval(
            "SELECT coalesce(sum(deliveries - 1), 0) FROM sandbox_messages"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        await conn.close()
    return {
        "messages": DISPATCH_N,
        "concurrency": CONCURRENCY,
        "messages_per_second": round(rate, 1),
        "duplicates": int(duplicates),
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
    queue = Queue.from_url(REDIS_URL, name=name)
    await queue.connect()
    redis = Redis.from_url(REDIS_URL)
    # The same job options as a delivery (key, timeout, retries, no stored result).
    for i in range(0, NOOP_N, 500):
        await asyncio.gather(
            *(
                queue.enqueue("noop", key=f"n{j}", timeout=65, retries=3, ttl=-1)
                for j in range(i, min(i + 500, NOOP_N))
            )
        )
    proc = subprocess.Popen(
        [sys.executable, "-c", NOOP_WORKER, REDIS_URL, name, str(CONCURRENCY)], cwd=ROOT
    )
    try:

        async def done() -> int:
            return int(await redis.get(name + ":done") or 0)

        rate = await rate_between(done, NOOP_N)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        keys = [k async for k in redis.scan_iter(f"saq:{name}:*")] + [name + ":done"]
        await redis.delete(*keys)
        await redis.aclose()
        await queue.disconnect()
    return {"jobs": NOOP_N, "concurrency": CONCURRENCY, "jobs_per_second": round(rate, 1)}


async def main() -> dict[str, Any]:
    database_url = await make_database()
    try:
        noop = await bench_noop()
        dispatch = await bench_dispatch(database_url)
        ingest = await bench_ingest(database_url)
    finally:
        await drop_database(database_url)
    ratio = dispatch["messages_per_second"] / noop["jobs_per_second"]
    return {
        "benchmark": "foundation",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "ingest": ingest,
        "dispatch": dispatch,
        "saq_noop": noop,
        "dispatch_vs_noop": {"ratio": round(ratio, 3), "aim": 0.5, "meets_aim": ratio >= 0.5},
    }


if __name__ == "__main__":
    report = asyncio.run(main())
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (out / f"foundation-{stamp}.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
