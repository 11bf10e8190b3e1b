"""`make bench`: run every benchmark in bench/ and print their JSON reports."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

BENCHMARKS = ["foundation.py"]

if __name__ == "__main__":
    here = Path(__file__).parent
    for name in sys.argv[1:] or BENCHMARKS:
        print(f"== {name}", flush=True)
        runpy.run_path(str(here / name), run_name="__main__")
