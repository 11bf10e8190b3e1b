"""Where a transactional message's time goes: py-spy on `web` taking single-recipient notifies,
then on one `worker` sending their backlog (the transactional dispatch row's two halves).

    python bench/profile.py            # PROFILE_N notifies (10,000); prints both summaries
    PROFILE_TOP=60 python bench/profile.py

Each process runs under `py-spy record -f raw` (sampling at 500 Hz, no change to the code);
only samples inside the event loop are counted (start-up imports are left out), and each
function is shown with the share of samples it was on the stack (inclusive) and on top (own).
An asyncio process waiting on a socket shows as `select`: its share is the time the process
waited for Postgres or Redis rather than computed.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import aiohttp
import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

N = int(os.environ.get("PROFILE_N", "10000"))
TOP = int(os.environ.get("PROFILE_TOP", "30"))
CLIENTS = 32
PY_SPY = Path(sys.executable).with_name("py-spy")


def _spied(args: list[str], env: dict[str, str], out: Path) -> subprocess.Popen[bytes]:
    command = [str(PY_SPY), "record", "-r", "500", "-f", "raw", "-o", str(out), "--"]
    command += [sys.executable, "-m", "gomflow_messaging", *args]
    return subprocess.Popen(
        command, cwd=common.ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT reaches the profiled process (py-spy passes it on) and py-spy writes its file."""
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)


def _frame(frame: str) -> str:
    name, _, where = frame.partition(" (")
    return f"{name} ({where.split(':')[0].rsplit('/', 1)[-1]})" if where else name


def summary(raw: Path, top: int = TOP) -> str:
    """The functions most often on the stack in the event loop, and most often on top."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not any("_run_once" in f for f in frames):
            continue  # start-up, not the work
        n = int(count)
        total += n
        own[_frame(frames[-1])] += n
        for name in {_frame(f) for f in frames}:
            inclusive[name] += n
    skip = ("runpy", "__main__", "cli.py", "runners.py", "base_events.py", "events.py")
    rows = [f"{total} samples in the event loop", "inclusive:"]
    rows += [
        f"  {100 * n / total:5.1f} %  {name}"
        for name, n in inclusive.most_common()
        if not any(s in name for s in skip)
    ][:top]
    rows.append("own:")
    rows += [f"  {100 * n / total:5.1f} %  {name}" for name, n in own.most_common(top // 2)]
    return "\n".join(rows)


async def _notifies(base: str) -> None:
    headers = {**common.AUTH, "Content-Type": "application/json"}
    left = N
    async with aiohttp.ClientSession(base, connector=aiohttp.TCPConnector(limit=CLIENTS)) as s:

        async def client() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                recipient = {"channel": "sandbox", "address": f"p-{left}"}
                body = {"event": "custom", "data": {"text": "profile"}, "recipients": [recipient]}
                async with s.post("/api/notify", data=json.dumps(body), headers=headers) as r:
                    if r.status != 202:
                        raise RuntimeError(f"notify answered {r.status}")

        await asyncio.gather(*(client() for _ in range(CLIENTS)))


async def main() -> None:
    if not PY_SPY.exists():
        raise SystemExit(f"py-spy is not installed beside {sys.executable} (make install)")
    database_url = await common.make_database()
    queue = f"bench-profile-{secrets.token_hex(3)}"
    out = Path(tempfile.mkdtemp(prefix="gomflow-profile-"))
    conn = await asyncpg.connect(database_url)
    try:
        port = common.free_port()
        env = common.env_for(database_url, queue, PORT=str(port), HOST="127.0.0.1")
        web = _spied(["web"], env, out / "web.raw")
        await common.wait_http(f"http://127.0.0.1:{port}/api/health")
        await _notifies(f"http://127.0.0.1:{port}")
        _stop(web)
        pending = "SELECT count(*) FROM messages WHERE status IN ('queued', 'sending')"
        worker = _spied(["worker"], common.env_for(database_url, queue), out / "worker.raw")

        async def sent() -> int:
            left: int = await conn.fetchval(pending)
            return N - left

        rate = await common.rate_between(sent, N, interval=0.05)

        async def all_sent() -> bool:
            return await sent() >= N

        await common.wait_until(all_sent, timeout=120)
        _stop(worker)
    finally:
        await conn.close()
        await common.forget_queue(queue)
        await common.drop_database(database_url)
    print(f"== web, {N} single-recipient POST /api/notify from {CLIENTS} clients")
    print(summary(out / "web.raw"))
    print(f"\n== worker, sending their backlog ({rate:.0f} messages/s under py-spy)")
    print(summary(out / "worker.raw"))
    print(f"\nraw stacks: {out}")


if __name__ == "__main__":
    asyncio.run(main())
