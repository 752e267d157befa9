"""`slo-pipeline simulator serve|history`: the simulated service the demo detectors watch."""

from __future__ import annotations

import argparse
import sys

from slo_pipeline.adapters.listen_address import parse_listen


def listen_argument(value: str) -> tuple[str, int]:
    """`HOST:PORT` (e.g. `0.0.0.0:8000`, `127.0.0.1:0`) for argparse."""
    try:
        return parse_listen(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def parse_label(value: str) -> tuple[str, str]:
    name, separator, label_value = value.partition("=")
    if not separator or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {value!r}")
    return name, label_value


def positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from err
    if not number > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {value!r}")
    return number


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    simulator = subparsers.add_parser("simulator", help="the simulated HTTP service used by the demo")
    commands = simulator.add_subparsers(dest="simulator_command", metavar="ACTION", required=True)

    serve = commands.add_parser("serve", help="serve /metrics, /incidents and /healthz")
    serve.add_argument("--listen", type=listen_argument, default=("127.0.0.1", 8000), metavar="HOST:PORT")
    serve.add_argument(
        "--auto-incident-every",
        type=positive_float,
        default=None,
        metavar="SECONDS",
        help="start a random incident this often (each lasts half of it)",
    )
    serve.add_argument("--seed", type=int, default=None, help="random seed (default: unpredictable)")
    serve.add_argument(
        "--counting-since",
        type=float,
        default=None,
        metavar="UNIX_SECONDS",
        help="count traffic from this time (the end of a backfilled history), not from start-up",
    )
    serve.set_defaults(handler=run_serve)

    history = commands.add_parser("history", help="write past metrics as OpenMetrics for backfilling")
    history.add_argument("--out", required=True, metavar="FILE")
    history.add_argument("--days", type=positive_float, required=True)
    history.add_argument("--step", type=positive_float, default=15.0, metavar="SECONDS")
    history.add_argument("--seed", type=int, default=0)
    history.add_argument(
        "--label",
        type=parse_label,
        action="append",
        default=None,
        metavar="NAME=VALUE",
        help="label on every series (repeatable; default job=demo-service instance=simulator:8000)",
    )
    history.set_defaults(handler=run_history)


def run_serve(args: argparse.Namespace) -> int:
    import logging
    import signal
    import threading

    from slo_pipeline.devstack.simulator.server import SimulatedService, make_server, run_auto_incidents

    logger = logging.getLogger("slo_pipeline.devstack.simulator")
    host, port = args.listen
    try:
        service = SimulatedService(seed=args.seed, counting_since=args.counting_since)
    except ValueError as err:
        logger.error("%s", err)
        return 2
    try:
        server = make_server(service, host, port)
    except OSError as err:
        logger.error("could not listen on %s:%s: %s", host, port, err)
        return 1

    def stop_on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # unwinds serve_forever like Ctrl-C does

    signal.signal(signal.SIGTERM, stop_on_sigterm)
    stop = threading.Event()
    if args.auto_incident_every:
        threading.Thread(
            target=run_auto_incidents,
            args=(service, args.auto_incident_every, stop, args.seed),
            name="auto-incidents",
            daemon=True,
        ).start()
    bound_host, bound_port = server.server_address[:2]
    logger.info("simulated service listening on http://%s:%s", bound_host, bound_port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        logger.info("stopping")
    finally:
        stop.set()
        server.server_close()
    return 0


def run_history(args: argparse.Namespace) -> int:
    import logging
    import time
    from pathlib import Path

    from tqdm import tqdm

    from slo_pipeline.devstack.simulator.history import STAGES, write_history

    end = time.time() // args.step * args.step
    # On a terminal only: tqdm turns itself off when stderr is not a TTY.
    with tqdm(total=len(STAGES), desc="history", unit="stage", disable=None, file=sys.stderr) as bar:

        def stage_done(name: str) -> None:
            bar.set_postfix_str(name)
            bar.update(1)

        write_history(
            Path(args.out),
            start=end - args.days * 86_400,
            end=end,
            step_seconds=args.step,
            seed=args.seed,
            labels=dict(args.label) if args.label else None,
            on_stage=stage_done,
        )
    logging.getLogger("slo_pipeline.devstack.simulator").info(
        "wrote %.1f days of history to %s", args.days, args.out
    )
    return 0
