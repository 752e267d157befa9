"""Simulator history: how long writing N days of OpenMetrics history takes (the demo backfills 3).

Run: `.venv/bin/python benchmarks/bench_simulator_history.py [--days 3] [--step 15] [--repeat 3]`

Prints one table with the floor beside each figure (the demo's start-up budget for the history);
every figure is the median of `--repeat` runs. It measures, it does not pass or fail.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from slo_pipeline.devstack.simulator.history import write_history

# ~1 s on the 2-core reference machine for 3 days at 15 s; the demo's start-up should not wait
# more than this for its history.
FLOOR_SECONDS = 8.0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=float, default=3.0)
    parser.add_argument("--step", type=int, default=15, help="seconds between samples")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    times, size = [], 0
    with tempfile.TemporaryDirectory(prefix="bench-history-") as folder:
        path = Path(folder) / "history.om"
        for _ in range(args.repeat):
            began = time.perf_counter()
            write_history(path, start=0.0, end=args.days * 86_400.0, step_seconds=args.step)
            times.append(time.perf_counter() - began)
            size = path.stat().st_size
    median = statistics.median(times)
    met = "yes" if median <= FLOOR_SECONDS else "NO"
    print(f"| figure ({args.days:g} days at {args.step} s, {size / 1e6:.1f} MB) | seconds | floor | met |")
    print("|---|---|---|---|")
    print(f"| write_history | {median:.2f} | <= {FLOOR_SECONDS:g} | {met} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
