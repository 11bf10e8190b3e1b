"""The `gomflow-messaging` command: thin subcommands over the app, the worker and workflows."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import gc
import json
import logging
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

import asyncpg
from redis.exceptions import RedisError

from gomflow_messaging import __version__
from gomflow_messaging.channels import registry
from gomflow_messaging.settings import ConfigError, Settings, load_settings

log = logging.getLogger("gomflow_messaging")

PROG = "gomflow-messaging"


class CommandError(Exception):
    """A failure the user can act on: printed as one line, exit code 1."""


def _configure_logging(settings: Settings) -> None:
    from gomflow_messaging import logs

    logs.configure(settings.log_level, settings.log_format or "text", sys.stderr)


def run(coro: Awaitable[Any]) -> Any:
    async def wrapper() -> Any:
        return await coro

    return asyncio.run(wrapper())


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from gomflow_messaging import db

    applied = run(db.migrate(settings.database_url))
    print(f"applied: {', '.join(applied)}" if applied else "database schema is up to date")
    return 0


def _listen(host: str, port: int) -> socket.socket:
    """Bind the port once before anything starts, so a port already taken is one line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise CommandError(
                f"port {port} on {host} is taken (is another `gomflow-messaging serve` or "
                "`make dev` running?): stop it, or set PORT to another port"
            ) from None
        raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _serve(settings: Settings, mode: Literal["serve", "web"]) -> int:
    import uvicorn

    from gomflow_messaging.api.connections import protocol
    from gomflow_messaging.app import create_app
    from gomflow_messaging.bootstrap import build_services
    from gomflow_messaging.worker import new_worker_id

    # A probe, closed at once: uvicorn binds the port itself. Handing it this socket
    # (`serve(sockets=...)`) halved `/api/notify` throughput (bench ingest: 0.36 of the bare
    # endpoint instead of 0.9).
    _listen(settings.host, settings.port).close()

    async def main() -> bool:
        # Connect before uvicorn starts, so an unreachable database is one line, not a trace.
        services = await build_services(settings, worker_id=new_worker_id())
        try:
            app = create_app(settings, mode=mode, services=services)
            h11 = settings.http_parser == "h11"
            server = uvicorn.Server(
                uvicorn.Config(
                    app,
                    host=settings.host,
                    port=settings.port,
                    lifespan="on",
                    log_config=None,
                    access_log=False,
                    proxy_headers=True,
                    forwarded_allow_ips="*",
                    timeout_graceful_shutdown=settings.shutdown_grace_seconds,
                    # Bodies are bounded by api/limits.py; connections and request heads by
                    # api/connections.py (h11), which counts requests, not idle sockets.
                    limit_concurrency=None if h11 else settings.http_limit_concurrency,
                    timeout_keep_alive=settings.http_keep_alive_seconds,
                    http=protocol(settings) if h11 else settings.http_parser,
                    h11_max_incomplete_event_size=settings.http_max_header_bytes,
                )
            )
            log.info("listening on http://%s:%d", settings.host, settings.port)
            # What start-up built (modules, catalogues, settings, the channels) stays for the
            # process's life: frozen out of the collector's full passes, which otherwise walk
            # it all each time (one took 330 ms in a process that had served a while).
            gc.collect()
            gc.freeze()
            await server.serve()
            return bool(server.started)
        finally:
            await services.close()

    return 0 if run(main()) else 1


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    return _serve(settings, "serve")


def cmd_web(settings: Settings, args: argparse.Namespace) -> int:
    return _serve(settings, "web")


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from gomflow_messaging.bootstrap import build_services
    from gomflow_messaging.worker import WorkerRunner, new_worker_id

    async def main() -> None:
        services = await build_services(settings, blocking_queue=True, worker_id=new_worker_id())
        runner = WorkerRunner(services)
        gc.collect()
        gc.freeze()  # as in _serve: start-up's objects out of the collector's full passes
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await runner.start()
        log.info(
            "worker %s started on queue %s", services.dispatcher.worker_id, settings.queue_name
        )
        waiter = asyncio.create_task(runner.wait())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        log.info("worker stopping: finishing in-flight jobs")
        stopper.cancel()
        await runner.stop()
        await services.close()
        log.info("worker stopped")

    run(main())
    return 0


def cmd_seed_demo(settings: Settings, args: argparse.Namespace) -> int:
    from gomflow_messaging import db, demo

    async def main() -> dict[str, Any]:
        conn = await db.connect(settings.database_url)
        try:
            return await demo.seed(conn)
        finally:
            await conn.close()

    print(json.dumps(run(main()), indent=2))
    return 0


def cmd_console_link(settings: Settings, args: argparse.Namespace) -> int:
    from gomflow_messaging import db
    from gomflow_messaging.workflows import console_links

    async def main() -> str:
        pool = await db.create_pool(settings.database_url, max_size=2)
        try:
            if not await pool.fetchval("SELECT 1 FROM profiles WHERE id = $1", args.gom):
                raise CommandError(f"no GOM profile with id {args.gom}")
            return await console_links.issue(
                pool, settings.public_base_url, args.gom, datetime.now(UTC)
            )
        finally:
            await pool.close()

    print(run(main()))
    return 0


def _profile_id(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a profile id (a UUID)") from None


def cmd_doctor(settings: Settings, args: argparse.Namespace) -> int:
    from gomflow_messaging import doctor

    findings = run(doctor.run(settings))
    print(doctor.report(findings))
    return 0 if all(f.ok for f in findings) else 1


def cmd_run_job(settings: Settings, args: argparse.Namespace) -> int:
    from gomflow_messaging.bootstrap import build_services
    from gomflow_messaging.schedule import JOBS

    job = JOBS[args.name]
    at = args.at or datetime.now(UTC)

    async def main() -> dict[str, Any]:
        services = await build_services(settings)
        try:
            return await job.run(services, at)
        finally:
            await services.close()

    result = run(main())
    print(json.dumps({"job": job.name, "at": at.isoformat(), "result": result}, default=str))
    return 0


def _moment(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an ISO-8601 time such as 2026-12-01T09:00:00+08:00"
        ) from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError("give a time zone offset, e.g. +08:00 or Z")
    return moment


def build_parser() -> argparse.ArgumentParser:
    from gomflow_messaging.schedule import JOBS

    platforms = [p.title for p in registry.plugins() if not p.local]
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=f"GOMFLOW messaging: {', '.join(platforms[:-1])} and {platforms[-1]} for "
        "GOMs and buyers. Settings come from the environment and .env (see README).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, func: Callable[..., int], help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    add("migrate", cmd_migrate, "Apply the SQL migrations in order (safe with replicas).")
    add("serve", cmd_serve, "Run the web API and the worker in one process (Railway default).")
    add("web", cmd_web, "Run only the web API (scale out beside `worker` replicas).")
    add("worker", cmd_worker, "Run only the delivery worker, sweeper and scheduled jobs.")
    add(
        "seed-demo",
        cmd_seed_demo,
        "Create a demo GOM, two open orders (PHP, MYR), submissions and demo chat contacts.",
    )
    add(
        "doctor",
        cmd_doctor,
        "Check settings, Postgres, Redis and every enabled channel. Exit 0: all good; "
        "1: a check failed; 2: the configuration itself is invalid.",
    )
    link = add(
        "console-link",
        cmd_console_link,
        "Print a one-time sign-in link to the web console for a GOM (one use, 10 minutes).",
    )
    link.add_argument("--gom", type=_profile_id, required=True, help="the GOM's profile id")
    for plugin in registry.plugins():
        if plugin.cli is not None:
            plugin.cli(add)
    job_list = "; ".join(f"{j.name}: {j.help.rstrip('.')}" for j in JOBS.values())
    run_job = add("run-job", cmd_run_job, f"Run one scheduled job now. Jobs: {job_list}")
    run_job.add_argument("name", choices=sorted(JOBS), help="the job to run")
    run_job.add_argument(
        "--at", type=_moment, default=None, help="act as if the clock read this ISO-8601 moment"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    _configure_logging(settings)
    if args.command in ("serve", "web", "worker"):
        for warning in settings.warnings():
            log.warning("%s", warning)
    try:
        code: int = args.func(settings, args)
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except CommandError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, RedisError) as exc:
        from gomflow_messaging.doctor import where

        target = (
            where(settings.redis_url)
            if isinstance(exc, RedisError)
            else where(settings.database_url)
        )
        print(
            f"{PROG}: cannot reach {target}: {type(exc).__name__}: {str(exc)[:200]}",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # A bug of ours still ends in one line; the trace is there for whoever asks for it.
        log.debug("%s failed", args.command, exc_info=True)
        print(
            f"{PROG}: {args.command} failed: {type(exc).__name__}: {str(exc)[:200]}"
            " (LOG_LEVEL=DEBUG shows where)",
            file=sys.stderr,
        )
        return 1
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    return code
