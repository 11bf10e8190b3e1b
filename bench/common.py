"""What the benchmarks share: databases of their own, processes of the checkout, polling.

Benchmarks use Redis database 10 (BENCH_REDIS_URL) and create a Postgres database per run,
dropped at the end. Processes run this checkout's code (`src/` first on PYTHONPATH) with
the settings given here, and are always stopped by their own pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parents[1]
for entry in (str(ROOT / "src"), str(ROOT)):
    if entry not in sys.path:
        sys.path.insert(0, entry)

ADMIN_URL = os.environ.get(
    "BENCH_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/10")
SECRET = "bench-secret-bench-secret-bench-secret-01"
AUTH = {"Authorization": f"Bearer {SECRET}"}
CONCURRENCY = int(os.environ.get("BENCH_WORKER_CONCURRENCY", "20"))


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_gb = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = Path("/proc/meminfo").read_text().split("\n")[0].split()[1]
        memory_gb = round(int(kb) / 1024 / 1024, 1)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": memory_gb,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def env_for(database_url: str, queue: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    env.update(
        PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}",
        ENVIRONMENT="test",
        DATABASE_URL=database_url,
        REDIS_URL=REDIS_URL,
        SERVICE_SECRET=SECRET,
        QUEUE_NAME=queue,
        ENABLE_SANDBOX="true",
        LOG_LEVEL="WARNING",
        LOG_FORMAT="text",
        WORKER_CONCURRENCY=str(CONCURRENCY),
        DB_POOL_SIZE=str(CONCURRENCY + 5),
    )
    env.update(extra)
    return env


def start(args: list[str], env: dict[str, str], log: Path | None = None) -> subprocess.Popen[bytes]:
    """A process of this checkout (``gomflow-messaging ARGS`` unless ARGS is a script)."""
    command = [sys.executable, *args] if args[0].endswith(".py") or args[0] == "-c" else None
    command = command or [sys.executable, "-m", "gomflow_messaging", *args]
    out = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


async def astop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """`stop` without blocking the event loop (which may be proxying the process's traffic)."""
    await asyncio.to_thread(stop, proc, timeout)


@contextlib.contextmanager
def running(*procs: subprocess.Popen[bytes]) -> Iterator[None]:
    try:
        yield
    finally:
        for proc in procs:
            stop(proc)


def cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_percent(before: tuple[float, float], after: tuple[float, float]) -> float:
    """How busy all cores were between two `cpu_times()` (100 = every core, all the time)."""
    total = after[1] - before[1]
    return round(100 * (after[0] - before[0]) / total, 1) if total else 0.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmRSS")


async def make_database(seed: bool = False) -> str:
    name = f"gomflow_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{name}"))
    for command in ["migrate", *(["seed-demo"] if seed else [])]:
        subprocess.run(
            [sys.executable, "-m", "gomflow_messaging", command],
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


async def forget_queue(queue: str) -> None:
    redis = Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in redis.scan_iter(f"saq:{queue}:*")]
        keys += [k async for k in redis.scan_iter(f"gomflow:{queue}:*")]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


async def wait_http(url: str, timeout: float = 60, status: int | None = None) -> float:
    """Seconds until ``url`` answers (with ``status``, when given)."""
    started = time.monotonic()
    deadline = started + timeout
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() < deadline:
            try:
                response = await client.get(url)
                if status is None or response.status_code == status:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not come up within {timeout}s")


async def wait_until(
    check: Callable[[], Awaitable[Any]], timeout: float, interval: float = 0.05
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(interval)
    raise RuntimeError(f"not done within {timeout}s")


async def rate_between(
    count: Callable[[], Awaitable[int]], total: int, timeout: float = 300, interval: float = 0.01
) -> float:
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
        await asyncio.sleep(interval)
    if t_low is None or t_high is None or t_high <= t_low:
        raise RuntimeError("did not finish in time")
    return (n_high - n_low) / (t_high - t_low)


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[max(int(len(ordered) * 0.99) - 1, 0)] * 1000, 2),
    }


def services_settings(database_url: str, queue: str, **values: Any) -> Any:
    from gomflow_messaging.settings import Settings

    return Settings(
        _env_file=None,
        **{  # type: ignore[arg-type]
            "environment": "test",
            "database_url": database_url,
            "redis_url": REDIS_URL,
            "service_secret": SECRET,
            "queue_name": queue,
            "enable_sandbox": True,
            **values,
        },
    )


async def enqueue_campaign(
    database_url: str, queue: str, recipients: list[dict[str, str]], text: str, **settings: Any
) -> None:
    """Write and enqueue messages through the real notify path, 1000 recipients a request."""
    from gomflow_messaging.bootstrap import build_services
    from gomflow_messaging.workflows import notify

    services = await build_services(services_settings(database_url, queue, **settings))
    try:
        for i in range(0, len(recipients), 1000):
            body = {
                "event": "custom",
                "data": {"text": text},
                "recipients": recipients[i : i + 1000],
            }
            result = await notify.notify(services, body)
            await notify.enqueue(services, result)
    finally:
        await services.close()
