"""A deployer's first hour: the CLI as typed, production's checks, and Redis going away."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

import gomflow_messaging
from gomflow_messaging.settings import PLACEHOLDER_SECRET, ConfigError, Settings, load_settings
from tests.conftest import ADMIN_URL, REDIS_URL, TEST_DB_PREFIX, drop_stale_test_databases
from tests.helpers import AUTH, SECRET, running_app

# This worktree's code, not whatever the virtualenv has installed.
SRC = str(Path(gomflow_messaging.__file__).resolve().parents[1])


def _env(**values: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return {**keep, "PYTHONPATH": SRC, "SERVICE_SECRET": SECRET, "ENVIRONMENT": "test", **values}


def cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    # cwd: an empty folder, so no developer's .env is read.
    return subprocess.run(
        [sys.executable, "-m", "gomflow_messaging", *args],
        env=_env(**env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=90,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# -- the command line ----------------------------------------------------------------------


@pytest.mark.parametrize("action", ["info", "delete", "set"])
def test_telegram_webhook_without_settings_is_one_line(tmp_path: Path, action: str) -> None:
    # As .env.example leaves them: present but empty.
    result = cli(
        "telegram-webhook", action, cwd=tmp_path, TELEGRAM_BOT_TOKEN="", TELEGRAM_WEBHOOK_SECRET=""
    )
    assert result.returncode == 1
    assert "TELEGRAM_BOT_TOKEN is not set" in one_line(result)
    assert result.stdout == ""


def test_messenger_profile_offline_says_which_host_once(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = cli(
        "messenger-profile",
        "info",
        cwd=tmp_path,
        MESSENGER_PAGE_ACCESS_TOKEN="token",
        MESSENGER_API_BASE_URL=f"http://127.0.0.1:{port}",
    )
    assert result.returncode == 1
    assert one_line(result) == (
        "gomflow-messaging: messenger-profile info: network: cannot reach 127.0.0.1"
    )


def test_doctor_exit_codes(tmp_path: Path, database_url: str) -> None:
    good = cli("doctor", cwd=tmp_path, DATABASE_URL=database_url, REDIS_URL=REDIS_URL)
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.strip().endswith("all checks passed")

    closed = f"redis://127.0.0.1:{free_port()}/0"
    bad = cli("doctor", cwd=tmp_path, DATABASE_URL=database_url, REDIS_URL=closed)
    assert bad.returncode == 1
    assert "[FAIL] redis" in bad.stdout and bad.stdout.strip().endswith("problems: redis")

    invalid = cli("doctor", cwd=tmp_path, DATABASE_URL="mysql://nope")
    assert invalid.returncode == 2
    assert "DATABASE_URL" in one_line(invalid)


def test_deleting_a_missing_whatsapp_template_fails(tmp_path: Path, database_url: str) -> None:
    result = cli(
        "whatsapp-templates",
        "delete",
        "payment_reminder",
        "ms",
        cwd=tmp_path,
        DATABASE_URL=database_url,
    )
    assert result.returncode == 1
    assert one_line(result) == (
        "gomflow-messaging: whatsapp-templates delete: no template for payment_reminder ms"
        " (see `whatsapp-templates list`)"
    )


# -- production ----------------------------------------------------------------------------


def test_production_refuses_the_placeholder_secret(tmp_path: Path) -> None:
    result = cli("serve", cwd=tmp_path, ENVIRONMENT="production", SERVICE_SECRET=PLACEHOLDER_SECRET)
    assert result.returncode == 2
    line = one_line(result)
    assert "SERVICE_SECRET" in line and "placeholder" in line
    # The same secret outside production is a developer's .env: it runs.
    assert load_settings(_env_file=None, service_secret=PLACEHOLDER_SECRET)


def test_the_placeholder_is_what_env_example_has() -> None:
    example = Path(SRC).parent / ".env.example"
    assert f"SERVICE_SECRET={PLACEHOLDER_SECRET}\n" in example.read_text()


def test_production_warns_about_the_sandbox_and_no_channel(
    tmp_path: Path, database_url: str
) -> None:
    with pytest.raises(ConfigError):
        load_settings(_env_file=None, environment="production", service_secret=PLACEHOLDER_SECRET)
    settings = load_settings(
        _env_file=None, environment="production", service_secret=SECRET, enable_sandbox=True
    )
    assert [w.split(" ")[0] for w in settings.warnings()] == ["ENABLE_SANDBOX", "no"]
    assert load_settings(_env_file=None, service_secret=SECRET).warnings() == []

    env = {
        "ENVIRONMENT": "production",
        "ENABLE_SANDBOX": "true",
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
    }
    doctor = cli("doctor", cwd=tmp_path, **env)
    assert doctor.returncode == 0, doctor.stdout
    assert "[WARN] settings: ENABLE_SANDBOX is true in production" in doctor.stdout
    assert "[WARN] settings: no channel is enabled" in doctor.stdout
    assert doctor.stdout.strip().endswith("no check failed, but 2 warnings: settings")

    # At start: the same two warnings, before anything else goes wrong.
    with served(tmp_path, PORT=str(free_port()), LOG_FORMAT="text", **env) as log:
        text = wait_for_line(log, "ready")
    assert "WARNING" in text and "ENABLE_SANDBOX is true in production" in text
    assert "no channel is enabled" in text


# -- Redis away ----------------------------------------------------------------------------


class served:
    """`gomflow-messaging serve` (or `web`) in its own process, its log in a file."""

    def __init__(self, cwd: Path, command: str = "serve", **env: str) -> None:
        self.cwd = cwd
        self.command = command
        self.env = env
        self.log = cwd / f"serve-{time.monotonic_ns()}.log"

    def __enter__(self) -> Path:
        self._out = self.log.open("w")
        # A queue of its own: no other run's jobs are taken.
        env = {"QUEUE_NAME": f"gomflow-deployer-{os.getpid()}-{time.monotonic_ns()}", **self.env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gomflow_messaging", self.command],
            env=_env(**env),
            cwd=self.cwd,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )
        return self.log

    def __exit__(self, *exc: object) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self._out.close()


def wait_for_line(log: Path, needle: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text()
        if needle in text:
            return text
        time.sleep(0.1)
    raise AssertionError(f"{needle!r} not logged within {timeout}s:\n{log.read_text()}")


def wait_for_worker(port: int, timeout: float = 60) -> None:
    """Until the served process's health says its worker is alive (instead of a fixed sleep
    after "ready": the outage should hit a worker that runs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
            if answer.json()["components"]["worker"]["ok"]:
                return
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"the worker on port {port} was not alive within {timeout}s")


def wait_for_lines(log: Path, needle: str, n: int, timeout: float = 60) -> str:
    """The log once ``needle`` is in ``n`` of its lines (a reminder repeated, say)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text()
        if sum(needle in line for line in text.splitlines()) >= n:
            return text
        time.sleep(0.1)
    raise AssertionError(f"{needle!r} not logged {n} times within {timeout}s:\n{log.read_text()}")


def assert_one_reminder_per_interval(text: str, first: str, seconds: float) -> None:
    """One line when the outage starts, then reminders at most one per 2 s interval
    (OUTAGE_WARNING_SECONDS) over the ``seconds`` watched: never one per failed attempt."""
    outage = _outage_lines(text)
    assert len([line for line in outage if first in line]) == 1, outage
    repeats = [line for line in outage if "still unreachable" in line]
    assert 2 <= len(repeats) <= seconds / 2 + 1, (seconds, outage)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[int, list[str]]]:
    """A redis-server of this test's own on a free port (no disk), and how to start it."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "no", "--dir", str(tmp_path)]
    yield port, argv
    subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"], capture_output=True)


def _outage_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "gomflow_messaging.outage" in line]


def test_serve_without_redis_logs_one_line_then_one_per_interval(
    tmp_path: Path, database_url: str
) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    env = {"DATABASE_URL": database_url, "REDIS_URL": closed, "OUTAGE_WARNING_SECONDS": "2"}
    with served(tmp_path, PORT=str(free_port()), LOG_FORMAT="text", **env) as log:
        wait_for_line(log, "Redis unreachable at")
        started = time.monotonic()
        text = wait_for_lines(log, "still unreachable", 2)
        watched = time.monotonic() - started + 2  # the first line came up to 2 s before
    assert "Traceback" not in text
    assert_one_reminder_per_interval(text, "Redis unreachable at", watched)
    assert len(text.splitlines()) < 25, text


def test_web_without_redis_says_so_once_at_start(tmp_path: Path, database_url: str) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    env = {"DATABASE_URL": database_url, "REDIS_URL": closed}
    with served(tmp_path, "web", PORT=str(free_port()), LOG_FORMAT="text", **env) as log:
        text = wait_for_line(log, "Redis unreachable at")
        time.sleep(2)  # an absence needs a window: no second line within it
        text = log.read_text()
    assert "Traceback" not in text
    assert len([line for line in text.splitlines() if "Redis unreachable at" in line]) == 1


def test_redis_stopped_under_serve_then_back(
    tmp_path: Path, database_url: str, private_redis: tuple[int, list[str]]
) -> None:
    port, argv = private_redis
    redis = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "OUTAGE_WARNING_SECONDS": "2",
    }
    web_port = free_port()
    with served(tmp_path, PORT=str(web_port), LOG_FORMAT="text", **env) as log:
        wait_for_line(log, "ready")
        wait_for_worker(web_port)
        redis.terminate()
        redis.wait(10)
        wait_for_line(log, "Redis unreachable at")
        started = time.monotonic()
        wait_for_lines(log, "still unreachable", 2)
        redis = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        text = wait_for_line(log, "Redis reachable again")
        watched = time.monotonic() - started + 2
    redis.terminate()
    redis.wait(10)
    assert "Traceback" not in text
    assert_one_reminder_per_interval(text, "Redis unreachable at", watched)
    assert len(text.splitlines()) < 30, text


# -- make dev's services -------------------------------------------------------------------

ROOT = Path(SRC).parent
SYSTEM_CONFIGS = sorted(Path("/etc/postgresql").glob("*/*/*.conf"))


def _needs_servers() -> None:
    has_pg_ctl = shutil.which("pg_ctl") or list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if shutil.which("redis-server") is None or not has_pg_ctl:
        pytest.skip("Postgres or Redis programs are not installed")


def _services_env(data: Path, pg_port: int, redis_url: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")},
        "GOMFLOW_DATA_DIR": str(data / "data"),
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{pg_port}/gomflow_private",
        "REDIS_URL": redis_url,
        "PY": sys.executable,
    }


def _script(name: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # cwd without a .env: the environment's URLs are used
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / name)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _data_dir() -> Path:
    # Postgres runs as the postgres user when we are root: a folder it can reach.
    data = Path(tempfile.mkdtemp(prefix="gomflow-services-", dir="/tmp"))
    data.chmod(0o755)
    return data


def test_serve_with_postgres_stopped_logs_one_line_then_one_per_interval(tmp_path: Path) -> None:
    _needs_servers()
    data, pg_port = _data_dir(), free_port()
    env = _services_env(data, pg_port, REDIS_URL)
    try:
        started = _script("ensure-services.sh", env, tmp_path)
        assert started.returncode == 0, started.stdout + started.stderr
        migrate = cli("migrate", cwd=tmp_path, DATABASE_URL=env["DATABASE_URL"])
        assert migrate.returncode == 0, migrate.stderr
        serve_env = {
            "DATABASE_URL": env["DATABASE_URL"],
            "REDIS_URL": REDIS_URL,
            "OUTAGE_WARNING_SECONDS": "2",
        }
        web_port = free_port()
        with served(tmp_path, PORT=str(web_port), LOG_FORMAT="text", **serve_env) as log:
            wait_for_line(log, "ready")
            wait_for_worker(web_port)
            assert _script("stop-services.sh", env, tmp_path).returncode == 0
            wait_for_line(log, "Postgres unreachable at")
            started = time.monotonic()
            text = wait_for_lines(log, "still unreachable", 2)
            watched = time.monotonic() - started + 2
    finally:
        _script("stop-services.sh", env, tmp_path)
        shutil.rmtree(data, ignore_errors=True)
    assert "Traceback" not in text, text
    assert_one_reminder_per_interval(text, "Postgres unreachable at", watched)
    assert len(text.splitlines()) < 30, text


def test_ensure_services_starts_private_servers_and_stop_stops_them(tmp_path: Path) -> None:
    _needs_servers()
    data, pg_port, redis_port = _data_dir(), free_port(), free_port()
    env = _services_env(data, pg_port, f"redis://127.0.0.1:{redis_port}/0")
    before = {p: p.read_bytes() for p in SYSTEM_CONFIGS}

    def script(name: str) -> subprocess.CompletedProcess[str]:
        return _script(name, env, tmp_path)

    try:
        started = script("ensure-services.sh")
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"starting the private cluster on 127.0.0.1:{pg_port}" in started.stdout
        assert f"private server on 127.0.0.1:{redis_port}" in started.stdout
        assert "created database gomflow_private" in started.stdout
        ping = subprocess.run(
            ["redis-cli", "-p", str(redis_port), "ping"], capture_output=True, text=True
        )
        assert ping.stdout.strip() == "PONG"
        query = [sys.executable, "-c", _SELECT_ONE, env["DATABASE_URL"]]
        assert subprocess.run(query, capture_output=True, text=True).stdout.strip() == "1"

        again = script("ensure-services.sh")
        assert again.returncode == 0 and "reachable" in again.stdout, again.stderr

        stopped = script("stop-services.sh")
        assert stopped.returncode == 0, stopped.stderr
        assert "stopped the private cluster" in stopped.stdout
        assert "stopped the private server" in stopped.stdout
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", pg_port), 1).close()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", redis_port), 1).close()
        assert "nothing to stop" in script("stop-services.sh").stdout
    finally:
        script("stop-services.sh")
        shutil.rmtree(data, ignore_errors=True)
    # The machine's own cluster: not a byte of its configuration changed.
    assert {p: p.read_bytes() for p in SYSTEM_CONFIGS} == before


_SELECT_ONE = """
import asyncio, sys, asyncpg
async def main():
    conn = await asyncpg.connect(sys.argv[1])
    print(await conn.fetchval("SELECT 1"))
    await conn.close()
asyncio.run(main())
"""


# -- test databases of killed runs ---------------------------------------------------------


async def test_killed_runs_databases_are_dropped_and_live_ones_kept() -> None:
    gone = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await gone.wait()
    alive = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import time; time.sleep(60)"
    )
    stale = f"{TEST_DB_PREFIX}{gone.pid}_dead01"
    running = f"{TEST_DB_PREFIX}{alive.pid}_live01"
    other = f"{TEST_DB_PREFIX}notapid"
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        for name in (stale, running, other):
            await admin.execute(f'CREATE DATABASE "{name}"')
        dropped = await drop_stale_test_databases(admin)
        left = {r[0] for r in await admin.fetch("SELECT datname FROM pg_database")}
        assert stale in dropped and stale not in left
        assert running in left and other in left
    finally:
        alive.kill()
        await alive.wait()
        for name in (stale, running, other):
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.close()


# -- the sandbox bot as the README shows it ------------------------------------------------


async def test_sandbox_bot_walkthrough_of_the_readme(
    settings: Settings, demo: Any, conn: asyncpg.Connection
) -> None:
    async with running_app(settings) as client:

        async def say(body: dict[str, Any]) -> list[dict[str, Any]]:
            response = await client.post("/api/sandbox/inbound", headers=AUTH, json=body)
            assert response.status_code == 200, response.text
            replies: list[dict[str, Any]] = response.json()["replies"]
            return replies

        address = f"readme-{time.monotonic_ns()}"
        listed = await say({"address": address, "name": "Ana", "text": "/orders"})
        press = listed[1]["buttons"][0][0]
        assert press["label"] == "Join this order" and press["action"].startswith("submit ")
        # Pressing a button is sending its action as the text; supports_forms asks at once.
        asked = await say({"address": address, "supports_forms": True, "text": press["action"]})
        form = asked[0]["form"]
        assert [f["id"] for f in form["fields"]][:4] == ["name", "phone", "quantity", "address"]
        values = {
            "name": "Ana Cruz",
            "phone": "+639171112222",
            "quantity": "1",
            "address": "12 Maginhawa St, QC",
        }
        # A form's answers need no text beside them.
        joined = await say({"address": address, "form": {"id": form["id"], "values": values}})
        assert "Payment reference: PH-" in joined[0]["text"]
        # The demo order is shared by the session's tests: leave its buyers as they were.
        reference = joined[0]["text"].split("Payment reference: ")[1].split()[0]
        await conn.execute("DELETE FROM submissions WHERE payment_reference = $1", reference)

        gom = await say({"address": "demo-gom", "text": "/manage"})
        assert any(
            b["action"].startswith("remind ") for r in gom for row in r["buttons"] for b in row
        )
        buyer = await say({"address": "demo-buyer-3", "text": "/status"})
        assert "MY-DEMO0003" in buyer[0]["text"]  # Nur Aisyah, in Malay
