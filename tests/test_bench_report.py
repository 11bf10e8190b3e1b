"""The README's benchmark table is printed from saved runs: every kept run must still print."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench.run import summary

BENCH = Path(__file__).resolve().parents[1] / "bench"
SAVED = sorted([BENCH / "latest.json", *(BENCH / "runs").glob("*.json")])


@pytest.mark.parametrize("path", SAVED, ids=lambda p: p.name)
def test_every_kept_run_prints_its_table(path: Path) -> None:
    table = summary(json.loads(path.read_text()))
    assert table.startswith("| Figure | Measured | Limit | Ratio | Aim |")
    # Each row has the header's five cells (the drills' table its own four).
    for line in table.splitlines():
        if line.startswith("| ") and "| Drill |" not in line:
            assert line.count(" | ") in (3, 4), line


def test_each_limit_says_whether_it_was_measured_or_is_a_constant() -> None:
    table = summary(json.loads((BENCH / "latest.json").read_text()))
    main = table.split("\n\n")[0].splitlines()[2:]
    assert main
    for row in main:
        limit = row.split(" | ")[2]
        assert limit.startswith(("measured: ", "constant: ")), row
