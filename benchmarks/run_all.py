"""`make bench`: run every benchmark once and print ONE table of figure, floor, ratio, target, result.

Each script still runs alone (and prints its own detail table); here each runs in its own
process with `--rows-out`, and the result rows of all of them are printed together at the end,
with the date, the machine and its load average at the start and end of the run.
Benchmarks are kept out of the test suite: timings are judged here, never in tests.

    .venv/bin/python benchmarks/run_all.py [--exporter-series 1000 10000 100000] [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from rowtable import Row, format_table, read_rows  # noqa: E402


def load_average() -> str:
    return " / ".join(f"{value:.1f}" for value in os.getloadavg())


def memory_gib() -> str:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1]) / 2**20:.0f} GiB"
    return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exporter-series", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--render-series", type=int, default=100_000)
    parser.add_argument("--webhook-requests", type=int, default=1000)
    parser.add_argument(
        "--quick", action="store_true", help="small sizes: checks the scripts, not the targets"
    )
    args = parser.parse_args(argv)
    exporter_series = [str(n) for n in ([200, 2000] if args.quick else args.exporter_series)]
    render_series = str(2000 if args.quick else args.render_series)
    plan = [
        ("bench_exporter_memory.py", ["--series", *exporter_series, "--cycles", "3"]),
        ("bench_exporter.py", ["--series", "--render-series", render_series]),
        ("bench_training.py", ["--series", "100"] if args.quick else []),
        (
            "bench_webhook.py",
            ["--requests", "100" if args.quick else str(args.webhook_requests), "--concurrency", "1,8"],
        ),
        # --quick: one fault kind (Prometheus), which still checks the whole browser path.
        ("bench_ui.py", ["--services", "Prometheus", "--warm-loads", "1"] if args.quick else []),
    ]
    began = datetime.now(UTC)
    loads = [load_average()]
    rows: list[Row] = []
    failed = []
    with tempfile.TemporaryDirectory(prefix="bench-rows-") as tmp:
        for script, script_args in plan:
            out = Path(tmp) / f"{script}.json"
            print(f"\n=== {script} {' '.join(script_args)} (load average {load_average()}) ===", flush=True)
            command = [sys.executable, str(HERE / script), *script_args, "--rows-out", str(out)]
            if subprocess.run(command, check=False, cwd=HERE).returncode != 0:
                failed.append(script)
            rows.extend(read_rows(out))
            loads.append(load_average())
    minutes = (datetime.now(UTC) - began).total_seconds() / 60
    print(
        f"\n## make bench, {began:%Y-%m-%d %H:%M} UTC, {minutes:.0f} min; {platform.node()}: "
        f"{os.cpu_count()} cores, {memory_gib()}, Python {platform.python_version()}"
    )
    print(f"load average (1/5/15 min) before each script and at the end: {'; '.join(loads)}\n")
    print(format_table(rows))
    if failed:
        print(f"\nbenchmarks that failed (their rows may be missing): {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
