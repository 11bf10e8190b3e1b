"""`make bench`: every benchmark in one run; JSON and a chart under bench/results/.

    python bench/run.py                  # all of them (see the README for how long)
    python bench/run.py drills           # only some: foundation campaign webhook footprint
                                         # flood idle receipts drills timing console
    python bench/run.py --latest ...     # also copy the run to bench/latest.json and latest.png,
                                         # and its JSON to bench/runs/bench-<start>.json
    python bench/run.py --report bench/latest.json   # the README table of a saved run

Each figure is compared with a limit measured in the same run on the same machine, or with a
configured constant (the table says which). The
summary printed at the end is the table of the README's benchmark section.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench import chart, common  # noqa: E402

BENCHMARKS = [
    "foundation",
    "campaign",
    "webhook",
    "footprint",
    "flood",
    "idle",
    "receipts",
    "drills",
    "timing",
    "console",
]


def campaign_runs(campaign: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The campaign's runs, of this layout or of older saved runs (ours, peer, ours_at_300)."""
    if "runs" in campaign:
        return list(campaign["runs"].items())
    return [(k, campaign[k]) for k in ("ours", "peer", "ours_at_300") if campaign.get(k)]


def rounds_of(run: dict[str, Any]) -> str:
    """`(rounds: a, b, c)` of a best-of figure; nothing for a run saved before rounds."""
    rounds = run.get("rounds")
    if not isinstance(rounds, list) or len(rounds) < 2:
        return ""
    return " (rounds: " + ", ".join(str(r) for r in rounds) + ")"


def summary(report: dict[str, Any]) -> str:
    """The README's table: each figure beside its limit (measured in the same run, or a
    configured constant: each cell says which) and its aim."""
    rows = ["| Figure | Measured | Limit | Ratio | Aim |", "|---|---|---|---|---|"]

    def add(*cells: Any) -> None:
        rows.append("| " + " | ".join(str(c) for c in cells) + " |")

    if "foundation" in report:
        foundation = report["foundation"]
        ingest, dispatch = foundation["ingest"], foundation["dispatch"]
        ours, bare = ingest["ours"], ingest["bare_endpoint"]
        httptools = ingest.get("bare_endpoint_httptools")
        add(
            f"`/api/notify` ingest ({ours['clients']} clients)",
            f"{ours['requests_per_second']} req/s{rounds_of(ours)}, p50 {ours['p50_ms']} ms, "
            f"p99 {ours['p99_ms']} ms",
            f"measured: bare Starlette insert + enqueue{' (h11, as ours)' if httptools else ''}: "
            f"{bare['requests_per_second']} req/s, p50 {bare['p50_ms']} ms, "
            f"p99 {bare['p99_ms']} ms"
            + (f"; on httptools {httptools['requests_per_second']} req/s" if httptools else ""),
            ingest["vs_bare"]["ratio"],
            "≥ 0.8",
        )
        one, two, noop = dispatch["one_worker"], dispatch["two_workers"], dispatch["saq_noop"]
        # Saved runs before "divides" counted the no-op jobs with a Redis INCR in each job.
        incr = "" if "divides" in dispatch else ", each doing a Redis INCR"
        limit = (
            f"measured: SAQ no-op jobs (1 worker, same concurrency and job options{incr}): "
            f"{noop['jobs_per_second']} jobs/s{rounds_of(noop)}"
        )

        def sent(run: dict[str, Any]) -> str:
            of = f"{run['sent']:,}/{run['messages']:,} sent, " if "sent" in run else ""
            return f"{of}{run['duplicates']} duplicates"

        add(
            "campaign dispatch into the sandbox (1,000 recipients a notify), 1 worker process",
            f"{one['messages_per_second']} msg/s{rounds_of(one)}, {sent(one)}",
            limit,
            f"{dispatch['vs_noop']['ratio']} (msg/s ÷ jobs/s)",
            "≥ 1.0",
        )
        tx = dispatch.get("transactional")
        if tx:
            add(
                f"transactional dispatch: {tx['messages']:,} single-recipient notifies (each its "
                "own POST to `web` alone), then 1 worker process",
                f"{tx['messages_per_second']} msg/s{rounds_of(tx)}, {sent(tx)}",
                limit,
                f"{dispatch['transactional_vs_noop']['ratio']} (msg/s ÷ jobs/s)",
                "≥ 1.0",
            )
        add(
            "campaign dispatch, 2 worker processes",
            f"{two['messages_per_second']} msg/s{rounds_of(two)}, {sent(two)}",
            f"measured: 1 worker: {one['messages_per_second']} msg/s",
            dispatch["two_vs_one"]["ratio"],
            f"≥ {aim}"
            if (aim := dispatch["two_vs_one"]["aim"])
            else f"none (cores busy: {one['machine_cpu_busy_percent']} % with 1 worker, "
            f"{two['machine_cpu_busy_percent']} % with 2)",
        )
        latency = foundation.get("latency")
        if latency:
            to = latency["to_sandbox"]
            add(
                f"one notify on an idle `web` + 1 worker → in the sandbox ({latency['notifies']} "
                f"one at a time, polled every {latency['poll_every_ms']:g} ms)",
                f"p50 {to['p50_ms']} ms, p95 {to['p95_ms']} ms, max {to['max_ms']} ms "
                f"(the POST's answer: p50 {latency['post_answered']['p50_ms']} ms)",
                f"constant: aim p95 {latency['aim_p95_ms']} ms",
                round(to["p95_ms"] / latency["aim_p95_ms"], 2),
                "≤ 1.0",
            )
    if "campaign" in report:
        for key, run in campaign_runs(report["campaign"]):
            who = "python-telegram-bot AIORateLimiter"
            if key.startswith("ours"):
                who = f"{run['workers']} worker(s)" if "workers" in run else "one `serve` process"
            cloud = "whatsapp_cloud" in key
            if cloud:
                who = f"WhatsApp Cloud API, {who}"
            steady = f" (steady {run['steady_per_second']}/s)" if "steady_per_second" in run else ""
            refused = "130429s" if cloud else "429s"
            rounds = run.get("rounds")
            each = ""
            if isinstance(rounds, list) and len(rounds) > 1:
                each = f"; {len(rounds)} rounds (rate/cap, {refused}, lost, dup): " + ", ".join(
                    f"{r['rate_vs_cap']}/{r['responses_429']}/{r['lost']}/{r['duplicated']}"
                    for r in rounds
                )
            cpu = ""
            if "cpu_s" in run:
                cpu = f"; the peer's process used {run['cpu_s']} s of CPU in {run['elapsed_s']} s"
            add(
                f"campaign, {run['messages']:,} chats at {run['cap_per_second']:.0f}/s, {who}",
                f"{run['accepted_per_second']}/s{steady}, "
                f"{refused} {run['responses_429']} ({run['share_429'] * 100:.2f} %), "
                f"lost {run['lost']}, duplicated {run['duplicated']}{each}{cpu}",
                f"constant: fake {'Graph' if cloud else 'Bot'} API cap "
                f"{run['cap_per_second']:.0f}/s (sliding 1 s window)",
                run["rate_vs_cap"],
                "≥ 0.95, 429s < 1 %, lost 0, dup 0",
            )
    if "webhook" in report:
        webhook = report["webhook"]
        first, inline = webhook["to_first_reply_at_bot_api"], webhook["answered_in_response"]
        add(
            "Telegram webhook → reply at the Bot API (`/orders`)",
            f"p50 {first['p50_ms']} ms, p99 {first['p99_ms']} ms",
            f"measured: answer in the webhook response (`/help`): p50 {inline['p50_ms']} ms, "
            f"p99 {inline['p99_ms']} ms",
            "",
            "",
        )
    if "footprint" in report:
        for key in ("sandbox_only", "all_channels"):
            data = report["footprint"][key]
            # Saved runs before "channels" had Telegram, WhatsApp (Twilio) and Discord on.
            default = ["sandbox"] if key == "sandbox_only" else ["telegram", "whatsapp", "discord"]
            channels = data.get("channels", default)
            label = "sandbox only" if key == "sandbox_only" else ", ".join(channels)
            add(
                f"`serve`, {label}",
                f"healthy in {data['start_to_healthy_s']} s, idle RSS {data['idle_rss_mb']} MB",
                f"constant: {data['rss_aim_mb']} MB",
                round(data["idle_rss_mb"] / data["rss_aim_mb"], 2),
                f"< {data['rss_aim_mb']} MB",
            )
    if "flood" in report:
        flood = report["flood"]
        channels = flood.get("channels", ["telegram", "whatsapp", "discord"])
        add(
            f"{flood['body_mib']} MiB unsigned to each webhook ({flood['requests']} requests; "
            f"`serve` with {', '.join(channels)})",
            f"answers {flood['answers']}, at most {flood['max_sent_mib']} MiB sent, "
            f"peak RSS +{flood['peak_rss_growth_mb']} MB",
            f"constant: {flood['limit_mb']} MB",
            round(flood["peak_rss_growth_mb"] / flood["limit_mb"], 2),
            f"< {flood['limit_mb']} MB",
        )
    if "receipts" in report:
        flood = report["receipts"]
        answers = ", ".join(f"{k} {v}" for k, v in sorted(flood["answers"].items()))
        add(
            f"Receipt flood: {flood['people']} people x {flood['uploads_each']} uploads x "
            f"{flood['file_mb']} MB at once (Telegram webhook, Smart Agent on)",
            f"{answers}; {flood['downloads']} downloads, {flood['agent_calls']} agent calls; "
            f"peak RSS +{flood['peak_rss_growth_mb']} MB",
            f"constant: {flood['limit_mb']} MB",
            round(flood["peak_rss_growth_mb"] / flood["limit_mb"], 2),
            f"< {flood['limit_mb']} MB",
        )
    if "idle" in report:
        idle = report["idle"]
        held, free = idle["health_with_idle"], idle["health_without"]
        add(
            f"`/api/health` while {idle['idle_sockets']:,} sockets send no request head "
            f"({idle['requests']} requests)",
            f"p50 {held['p50_ms']} ms, p95 {held['p95_ms']} ms, {held['not_200']} not 200; "
            f"all closed after {idle['all_closed_after_s']} s",
            f"measured: no idle sockets: p50 {free['p50_ms']} ms, p95 {free['p95_ms']} ms",
            idle["ratio_p95"],
            f"0 not 200, closed by {idle['header_timeout_s']:.0f} s + 2 s",
        )
    if "timing" in report:
        timing = report["timing"]
        pace, retry, down = timing["pacing"], timing["retry_after"], timing["notify_redis_down"]
        add(
            "3 pacer waits at 5/s, one scope",
            f"{pace['three_waits_at_5_per_s_s']} s",
            f"measured: asyncio.sleep of the schedule: {pace['sleep_of_the_schedule_s']} s",
            pace["ratio"],
            "≥ 0.95 (never early)",
        )
        add(
            "Telegram 429 retry_after 1 s → next try",
            f"{retry['retry_gap_s']} s",
            f"constant: retry_after {retry['retry_after_s']} s",
            retry["ratio"],
            "≥ 0.99",
        )
        add(
            "`/api/notify` answered while Redis is cut",
            f"{down['redis_down_s']} s",
            f"measured: Redis up: {down['redis_up_s']} s",
            round(down["redis_down_s"] / max(down["redis_up_s"], 0.001), 1),
            f"< {down['aim_s']} s",
        )
    if "console" in report:
        page = report["console"]
        add(
            f"console order page, {page['buyers']} buyers (server time, in-process)",
            f"p50 {page['p50_ms']} ms, p95 {page['p95_ms']} ms ({page['page_kib']} KiB); "
            f"CPU {page['cpu_p50_ms']} ms a page, load average {page['load_average']}",
            f"constant: aim p95 {page['aim_p95_ms']} ms",
            round(page["p95_ms"] / page["aim_p95_ms"], 2),
            "≤ 1.0",
        )
        queries = page["queries"]
        add(
            "console order page: queries on the wire",
            f"{queries['buyers_1000']} with 1,000 buyers",
            f"measured: {queries['buyers_10']} with 10 buyers",
            round(queries["buyers_1000"] / max(queries["buyers_10"], 1), 2),
            "= 1.0 (no query per buyer)",
        )
    if "drills" in report:
        rows += drill_rows(report["drills"])
    for name, why in (report.get("failed") or {}).items():
        rows.append(f"\n{name} failed in this run: {why}")
    return "\n".join(rows)


def drill_rows(drills: dict[str, Any]) -> list[str]:
    """The drills' table: each round's figures (runs saved before rounds had one)."""
    rows = ["", "| Drill | Sent | Lost | Duplicated |", "|---|---|---|---|"]

    def add(*cells: Any) -> None:
        rows.append("| " + " | ".join(str(c) for c in cells) + " |")

    def each(runs: list[dict[str, Any]], key: str) -> str:
        return ", ".join(str(r[key]) for r in runs)

    def alike(texts: list[str], sep: str = ", ") -> str:
        """Each round's text, or one text "in every round" when they are all the same."""
        if len(texts) > 1 and len(set(texts)) == 1:
            return f"{texts[0]}, in every round"
        return sep.join(texts)

    for name, run in drills.items():
        if not isinstance(run, dict):
            continue
        runs = run["rounds"] if isinstance(run.get("rounds"), list) else [run]
        if "seconds_to_all_sent" not in runs[0]:
            continue
        seconds = [r["seconds_to_all_sent"] for r in runs]
        took = f"{min(seconds)} to {max(seconds)} s" if len(runs) > 1 else f"{seconds[0]} s"
        add(
            f"{name.replace('_', ' ')}" + (f" ({len(runs)} rounds)" if len(runs) > 1 else ""),
            ", ".join(f"{r['sent']}/{r['expected']}" for r in runs) + f" (all in {took})",
            each(runs, "lost"),
            each(runs, "duplicated"),
        )
    hooks = drills.get("webhooks_delivered_3x")
    if hooks:

        def rounds(kind: str) -> list[dict[str, Any]]:
            value = hooks.get(kind)
            if not value:
                return []
            rounds: list[dict[str, Any]] = value.get("rounds", [value])
            return rounds

        for kind, label in (
            ("telegram_update_x3", "Telegram update delivered 3 times"),
            ("whatsapp_cloud_wamid_x3", "WhatsApp Cloud API wamid delivered 3 times"),
            ("messenger_event_x3", "Messenger mid delivered 3 times"),
        ):
            runs = rounds(kind)
            if runs:
                add(
                    label + (f" ({len(runs)} rounds)" if len(runs) > 1 else ""),
                    "handled once: "
                    + alike([f"{r['distinct']} distinct replies of {r['replies']}" for r in runs]),
                    ", ".join("0" for _ in runs),
                    each(runs, "duplicated"),
                )
        runs = rounds("twilio_message_x3")
        if runs:
            add(
                "Twilio MessageSid delivered 3 times"
                + (f" ({len(runs)} rounds)" if len(runs) > 1 else ""),
                alike([f"{r['answered']} answer" for r in runs]),
                ", ".join("0" for _ in runs),
                each(runs, "duplicated"),
            )
    for channel, lost in (drills.get("accepted_but_answer_lost") or {}).items():
        runs = lost["rounds"]
        add(
            f"{channel}: accepted, answer lost ({lost['answers_lost']} of "
            f"{runs[0]['expected']}, {len(runs)} rounds)",
            ", ".join(f"{r['sent']}/{r['expected']}" for r in runs),
            each(runs, "lost"),
            each(runs, "duplicated") + f" ({lost['remains']})",
        )
    key = drills.get("notify_x50_one_key")
    if key:
        runs = key.get("rounds", [key])
        add(
            "50 concurrent `/api/notify`, one Idempotency-Key"
            + (f" ({len(runs)} rounds)" if len(runs) > 1 else ""),
            alike(
                [
                    f"{r['notifications']} notification, {r['sent']} message, answers "
                    + ", ".join(f"{n} x {code}" for code, n in sorted(r["answers"].items()))
                    for r in runs
                ],
                "; ",
            ),
            each(runs, "lost"),
            each(runs, "duplicated"),
        )
    return rows


async def run(names: list[str]) -> dict[str, Any]:
    report: dict[str, Any] = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": common.machine(),
        "seconds": {},
    }
    for name in names:
        print(f"== {name}", flush=True)
        started = time.monotonic()
        module = __import__(f"bench.{name}", fromlist=["main"])
        try:
            report[name] = await module.main()
        except Exception as exc:  # the other benchmarks' figures are still worth writing
            traceback.print_exc()
            report.setdefault("failed", {})[name] = f"{type(exc).__name__}: {exc}"
            continue
        finally:
            report["seconds"][name] = round(time.monotonic() - started, 1)
        print(json.dumps(report[name], indent=2), flush=True)
    report["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help=f"some of: {' '.join(BENCHMARKS)}")
    parser.add_argument(
        "--latest", action="store_true", help="copy to bench/latest.json and bench/latest.png"
    )
    parser.add_argument(
        "--report", metavar="JSON", help="run nothing: print the summary of a saved run"
    )
    args = parser.parse_args()
    if args.report:
        print(summary(json.loads(Path(args.report).read_text())))
        return
    unknown = set(args.names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    report = asyncio.run(run(args.names or BENCHMARKS))
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    json_path, png_path = out / f"bench-{stamp}.json", out / f"bench-{stamp}.png"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    chart.draw(report, png_path)
    if args.latest:
        shutil.copy(json_path, HERE / "latest.json")
        shutil.copy(png_path, HERE / "latest.png")
        # Kept under the moment it started, so the README can cite it after the next run.
        started = datetime.fromisoformat(report["at"]).strftime("%Y%m%dT%H%M%SZ")
        (HERE / "runs").mkdir(exist_ok=True)
        shutil.copy(json_path, HERE / "runs" / f"bench-{started}.json")
    print(f"\nwrote {json_path} and {png_path}\n")
    print(summary(report))
    if report.get("failed"):
        sys.exit(1)


if __name__ == "__main__":
    main()
