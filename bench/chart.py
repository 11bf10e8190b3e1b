"""The chart of one `make bench` run: each ratio beside its aim, latencies, memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

GOOD, SHORT, AIM = "#2e7d32", "#ef6c00", "#b71c1c"


def ratios(report: dict[str, Any]) -> list[tuple[str, float, float]]:
    rows: list[tuple[str, float, float]] = []
    foundation = report.get("foundation")
    if foundation:
        rows.append(("ingest / bare endpoint", foundation["ingest"]["vs_bare"]["ratio"], 0.8))
        dispatch = foundation["dispatch"]
        rows.append(("campaign dispatch / SAQ no-op", dispatch["vs_noop"]["ratio"], 1.0))
        if "transactional_vs_noop" in dispatch:
            ratio = dispatch["transactional_vs_noop"]["ratio"]
            rows.append(("transactional dispatch / SAQ no-op", ratio, 1.0))
    campaign = report.get("campaign")
    if campaign:
        from bench.run import campaign_runs

        for key, run in campaign_runs(campaign):
            who = "ours" if key.startswith("ours") else "PTB"
            label = f"{run['messages']} chats / cap {run['cap_per_second']:.0f}/s ({who})"
            rows.append((label, run["rate_vs_cap"], 0.95))
    return rows


def partial_run(report: dict[str, Any]) -> str:
    """A later run of some benchmarks merged into this report, named in the title."""
    later = report.get("issue_14_run")
    if not later:
        return ""
    load = later["machine"]["load_average_at_start"]
    return f"\ningest, dispatch and campaign: {later['at']}, load at start {load}"


def draw(report: dict[str, Any], path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.5), gridspec_kw={"width_ratios": [1.5, 1, 0.8]})
    ax = axes[0]
    rows = ratios(report)
    names = [r[0] for r in rows][::-1]
    values = [r[1] for r in rows][::-1]
    aims = [r[2] for r in rows][::-1]
    colors = [GOOD if v >= a else SHORT for v, a in zip(values, aims, strict=True)]
    ax.barh(names, values, color=colors)
    for y, (value, aim) in enumerate(zip(values, aims, strict=True)):
        ax.plot([aim, aim], [y - 0.4, y + 0.4], color=AIM, linewidth=2)
        ax.text(value + 0.02, y, f"{value:.3f} (aim {aim})", va="center", fontsize=9)
    ax.set_xlim(0, max([*values, *aims, 1.0]) * 1.35)  # 1.0: a run with no ratio at all
    ax.set_title("Ratios measured in one run (red: aim)")

    ax = axes[1]
    latency: list[tuple[str, dict[str, float]]] = []
    if "foundation" in report:
        latency.append(("notify", report["foundation"]["ingest"]["ours"]))
        latency.append(("bare endpoint", report["foundation"]["ingest"]["bare_endpoint"]))
    if "webhook" in report:
        latency.append(("webhook → Bot API", report["webhook"]["to_first_reply_at_bot_api"]))
        latency.append(("webhook, in response", report["webhook"]["answered_in_response"]))
    labels = [name for name, _ in latency]
    xs = range(len(latency))
    ax.bar([x - 0.2 for x in xs], [v["p50_ms"] for _, v in latency], 0.4, label="p50")
    ax.bar([x + 0.2 for x in xs], [v["p99_ms"] for _, v in latency], 0.4, label="p99")
    ax.set_xticks(list(xs), labels, rotation=15, fontsize=9)
    ax.set_ylabel("ms")
    ax.legend()
    ax.set_title("Latency")

    ax = axes[2]
    footprint = report.get("footprint")
    if footprint:
        items = [
            ("sandbox only", footprint["sandbox_only"]),
            ("all channels", footprint["all_channels"]),
        ]
        for x, (_name, data) in enumerate(items):
            ok = data["idle_rss_mb"] < data["rss_aim_mb"]
            ax.bar(x, data["idle_rss_mb"], color=GOOD if ok else SHORT)
            ax.plot([x - 0.4, x + 0.4], [data["rss_aim_mb"]] * 2, color=AIM, linewidth=2)
            ax.text(
                x,
                data["idle_rss_mb"] + 5,
                f"{data['idle_rss_mb']:.0f} MB\nhealthy in {data['start_to_healthy_s']:.1f} s",
                ha="center",
                fontsize=9,
            )
        ax.set_xticks([0, 1], [name for name, _ in items])
        ax.set_ylim(0, 300)
        ax.set_ylabel("idle RSS, MB")
        ax.set_title("Footprint (red: aim)")

    machine = report.get("machine", {})
    fig.suptitle(
        f"gomflow-messaging `make bench`, {report.get('at', '')} — {machine.get('cpus')} cores "
        f"({machine.get('cpu_model', '')}), {machine.get('memory_gb')} GB, "
        f"Python {machine.get('python')}, load at start {machine.get('load_average_at_start')}"
        + partial_run(report),
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
