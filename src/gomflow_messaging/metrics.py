"""Prometheus metrics: what this process did (counters) and what waits (gauges read at scrape).

Counters and the latency histogram count what this process handled; with several replicas,
Prometheus adds them up. Queue depth and the outbox backlog are read from Redis and Postgres
when `/metrics` is scraped, so every replica reports the same shared numbers.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    gc_collector,
    generate_latest,
    platform_collector,
    process_collector,
)

if TYPE_CHECKING:
    from gomflow_messaging.bootstrap import Services

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
process_collector.ProcessCollector(registry=REGISTRY)
platform_collector.PlatformCollector(registry=REGISTRY)
gc_collector.GCCollector(registry=REGISTRY)

MESSAGES = Counter(
    "gomflow_messages",
    "Delivery outcomes handled by this process, by channel and status "
    "(sent, failed, skipped, retry, fallback).",
    ["channel", "status"],
    registry=REGISTRY,
)
ACCEPTED = Counter(
    "gomflow_messages_accepted",
    "Messages written to the outbox by this process, by channel and initial status.",
    ["channel", "status"],
    registry=REGISTRY,
)
DELIVERY_LATENCY = Histogram(
    "gomflow_delivery_latency_seconds",
    "From the message's creation (the notify call) to the platform accepting it.",
    ["channel"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600),
    registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "gomflow_platform_rate_limited",
    "429 answers (rate limited) from a platform, by platform.",
    ["platform"],
    registry=REGISTRY,
)
RETRIES = Counter(
    "gomflow_delivery_retries",
    "Deliveries rescheduled after a transient failure, by platform and cause.",
    ["platform", "code"],
    registry=REGISTRY,
)
WEBHOOK_REJECTED = Counter(
    "gomflow_webhook_verification_failures",
    "Webhook requests refused because their signature or secret did not verify.",
    ["platform"],
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "gomflow_queue_depth",
    "Jobs in the SAQ queue (shared by every replica), by state.",
    ["state"],
    registry=REGISTRY,
)
OUTBOX_PENDING = Gauge(
    "gomflow_outbox_pending",
    "Unfinished outbox messages (queued or sending), by channel and status.",
    ["channel", "status"],
    registry=REGISTRY,
)
OUTBOX_OLDEST_DUE = Gauge(
    "gomflow_outbox_oldest_due_seconds",
    "How long the oldest due, unfinished message has been waiting.",
    registry=REGISTRY,
)
SCRAPE_ERRORS = Counter(
    "gomflow_metrics_scrape_errors",
    "Shared gauges that could not be read at scrape time (Redis or Postgres away).",
    ["source"],
    registry=REGISTRY,
)

_TIMEOUT = 2.0


async def refresh_shared(services: Services) -> None:
    """Read queue depth and the outbox backlog; a dependency that is away leaves them stale."""
    try:
        depth = await asyncio.wait_for(services.queue.depth(), _TIMEOUT)
        for state, value in depth.items():
            QUEUE_DEPTH.labels(state).set(value)
    except Exception as exc:
        SCRAPE_ERRORS.labels("redis").inc()
        log.warning("metrics: queue depth unavailable (%s)", type(exc).__name__)
    try:
        rows = await asyncio.wait_for(
            services.pool.fetch(
                """
                SELECT channel, status, count(*) AS n,
                       extract(epoch FROM now() - min(next_attempt_at)
                               FILTER (WHERE next_attempt_at <= now())) AS oldest
                  FROM messages WHERE status IN ('queued', 'sending')
                 GROUP BY channel, status
                """
            ),
            _TIMEOUT,
        )
    except Exception as exc:
        SCRAPE_ERRORS.labels("postgres").inc()
        log.warning("metrics: outbox backlog unavailable (%s)", type(exc).__name__)
        return
    OUTBOX_PENDING.clear()
    for channel in services.channels:
        for status in ("queued", "sending"):
            OUTBOX_PENDING.labels(channel, status).set(0)
    oldest = 0.0
    for row in rows:
        OUTBOX_PENDING.labels(row["channel"], row["status"]).set(row["n"])
        if row["oldest"] is not None:
            oldest = max(oldest, float(row["oldest"]))
    OUTBOX_OLDEST_DUE.set(oldest)


async def render(services: Services) -> tuple[bytes, str]:
    await refresh_shared(services)
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
