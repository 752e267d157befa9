"""CLI: `slo-pipeline demo` — the whole stack on loopback with a simulated service."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="run the whole stack on loopback with a simulated service",
        description="Backfill history for a simulated service, train the first models and start "
        "Prometheus, Alertmanager, exporter, webhook, worker and the UI on free loopback ports. "
        "Injects an incident every few minutes; Ctrl-C stops everything it started.",
        epilog="""examples:
  slo-pipeline demo                               three days of history, UI included
  slo-pipeline demo --days 1 --no-ui              quicker start, no Streamlit
  slo-pipeline demo --incident-every 0            no injected incidents""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--data-dir", default=None, help="state folder (default: .data/demo in the repo)")
    demo.add_argument("--days", type=float, default=3.0, help="days of backfilled history")
    demo.add_argument(
        "--incident-every", type=float, default=300.0, help="seconds between injected incidents (0: none)"
    )
    demo.add_argument("--no-ui", action="store_true", help="do not start the Streamlit app")
    demo.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from slo_pipeline.devstack.demo import run_demo

    return run_demo(
        data_dir=args.data_dir, days=args.days, incident_every=args.incident_every, with_ui=not args.no_ui
    )
