"""Subcommands `slo apply|export|validate|history|report|snapshot` and `rules render|sync`.

Only argparse is imported here; specs, PostgreSQL and promtool are imported inside the handlers.
Exit codes: 0 done, 1 an I/O step failed (database, promtool, Prometheus), 2 the spec is invalid.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slo_pipeline.settings import PrometheusConnection, Settings
    from slo_pipeline.slo.render import RenderResult
    from slo_pipeline.slo.spec import SLO

log = logging.getLogger(__name__)

EXIT_FAILED = 1
# Generated SLO rules go beside the shipped ones, as Prometheus's config loads rules/slo/*.yml.
DEFAULT_RULES_OUT = Path("rules") / "slo"
EXIT_INVALID = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    slo = subparsers.add_parser("slo", help="load, export and validate SLO specs (Sloth prometheus/v1)")
    actions = slo.add_subparsers(dest="slo_command", metavar="ACTION", required=True)

    apply = actions.add_parser(
        "apply",
        help="validate a spec file, store its SLOs in PostgreSQL, re-render the rules",
        description="Validate FILE (fields, then PromQL with promtool), upsert its SLOs (a revision "
        "is recorded only for SLOs that really changed), then render the rules of all stored SLOs.",
    )
    apply.add_argument(
        "-f", "--file", required=True, type=Path, help="Sloth prometheus/v1 YAML (multi-document)"
    )
    apply.add_argument("--by", default=None, help="who makes the change (default: the OS user)")
    apply.add_argument("--note", default="", help="why; stored with each revision")
    apply.add_argument("--prune", action="store_true", help="delete stored SLOs that FILE does not define")
    apply.add_argument("--no-render", action="store_true", help="store only; do not touch rule files")
    _render_options(apply)
    apply.set_defaults(handler=_apply)

    export = actions.add_parser("export", help="write the stored SLOs as Sloth-compatible YAML")
    export.add_argument("-o", "--output", type=Path, default=None, help="file to write (default: stdout)")
    export.set_defaults(handler=_export)

    validate = actions.add_parser("validate", help="check a spec file without storing anything")
    validate.add_argument("-f", "--file", required=True, type=Path)
    validate.add_argument("--promtool", default="promtool", help="promtool binary (default: from PATH)")
    validate.set_defaults(handler=_validate)

    history = actions.add_parser("history", help="revisions of one or all SLOs, newest first (JSON lines)")
    history.add_argument("name", nargs="?", default=None)
    history.set_defaults(handler=_history)

    report = actions.add_parser(
        "report",
        help="a period's compliance report from the SLO history in PostgreSQL",
        description="Sum a calendar month up from the snapshots the worker stores (slo_snapshots, "
        "slo_breaches): SLI error ratio, budget remaining, worst burn per window pair, pages, tickets "
        "and breach periods with their incidents. Exit 2 for a bad period or an unknown SLO.",
        epilog="examples:\n"
        "  slo-pipeline slo report                                  every SLO, this month\n"
        "  slo-pipeline slo report --slo demo-availability --period 2026-11\n"
        "  slo-pipeline slo report --period 2026-11 --json          one JSON object per SLO",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report.add_argument("--slo", default=None, help="one SLO (default: every stored SLO)")
    report.add_argument("--period", default=None, help="YYYY-MM, UTC (default: the current month)")
    report.add_argument("--json", action="store_true", help="one JSON object per SLO instead of text")
    report.set_defaults(handler=_slo_report)

    snapshot = actions.add_parser(
        "snapshot",
        help="store the SLO history's due snapshots now (what the worker does every interval)",
        description="One pass of the SLO history: for every stored SLO, every scheduled instant "
        "(multiples of SLO_PIPELINE_SLO_HISTORY_INTERVAL) since its newest snapshot, read from "
        "Prometheus' recording rules into PostgreSQL. Idempotent; for cron set-ups without a "
        "long-running worker, or to catch up after an outage. Exit 1 when an SLO could not be read.",
    )
    snapshot.set_defaults(handler=_slo_snapshot)

    rules = subparsers.add_parser("rules", help="generate Prometheus rules")
    rules_actions = rules.add_subparsers(dest="rules_command", metavar="ACTION", required=True)
    render = rules_actions.add_parser(
        "render",
        help="render SLO recording and burn-rate alert rules",
        description="Render the rules of the stored SLOs (or of -f FILE), check them with "
        "`promtool check rules`, atomically replace the generated files in --out, and optionally "
        "ask Prometheus to reload.",
    )
    render.add_argument(
        "-f", "--file", type=Path, default=None, help="render this spec file, not the database"
    )
    _render_options(render)
    render.set_defaults(handler=_render)

    # A subcommand of its own rather than `render --watch`: it never exits on a failure (it logs
    # once and retries), reads only the database (a spec file would not change under it) and
    # always reloads, so most of `render`'s options and exit codes would not apply.
    sync = rules_actions.add_parser(
        "sync",
        help="keep the rules in step with the stored SLOs (runs until SIGTERM/SIGINT)",
        description="Every SLO_PIPELINE_SLO_SYNC_INTERVAL seconds, check whether the stored SLOs (or "
        "the generated files in --out) changed; if so render, check with promtool, atomically "
        "install, and reload Prometheus. A database or Prometheus outage is logged once and retried; "
        "rules promtool refuses are not installed and the old files stay.",
    )
    sync.add_argument("--out", type=Path, default=None, help="rule folder (default: ./rules/slo)")
    sync.add_argument("--promtool", default="promtool", help="promtool binary (default: from PATH)")
    sync.add_argument("--prometheus-url", default=None, help="Prometheus to reload (default: PROMETHEUS_URL)")
    sync.add_argument(
        "--metrics-listen",
        default=None,
        metavar="HOST:PORT",
        help="serve / and /metrics here (default: SLO_PIPELINE_SLO_SYNC_METRICS_LISTEN, 127.0.0.1:9112; "
        "'' for none)",
    )
    sync.set_defaults(handler=_sync)


def _render_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=None, help="rule folder (default: ./rules/slo)")
    parser.add_argument("--promtool", default="promtool", help="promtool binary (default: from PATH)")
    parser.add_argument(
        "--reload", action="store_true", help="POST /-/reload to Prometheus when rule files changed"
    )
    parser.add_argument(
        "--prometheus-url", default=None, help="Prometheus to reload (default: PROMETHEUS_URL)"
    )


def _apply(args: argparse.Namespace) -> int:
    import getpass

    from slo_pipeline.adapters import postgres as db
    from slo_pipeline.settings import load_settings
    from slo_pipeline.slo.links import detector_link_problems
    from slo_pipeline.slo.store import apply_slos, load_slos

    settings = load_settings()
    slos = _read_checked_spec(args)
    if isinstance(slos, int):
        return slos
    errors, warnings = detector_link_problems(slos, settings.pipeline.detectors, all_slos_known=False)
    for warning in warnings:
        log.warning("%s", warning)
    if errors:
        print(
            "SLO spec and detector config disagree:\n" + "\n".join(f"  - {e}" for e in errors),
            file=sys.stderr,
        )
        return EXIT_INVALID
    try:
        conn = db.connect(settings.database_url)
    except db.DatabaseError as err:
        print(err, file=sys.stderr)
        return EXIT_FAILED
    try:
        result = apply_slos(
            conn, slos, changed_by=args.by or getpass.getuser(), change_note=args.note, prune=args.prune
        )
        print(
            json.dumps(
                {
                    "created": result.created,
                    "updated": result.updated,
                    "unchanged": result.unchanged,
                    "deleted": result.deleted,
                }
            )
        )
        if args.no_render:
            return 0
        stored = load_slos(conn)
    except Exception as err:  # psycopg2 errors: say which database, suggest the migration
        print(
            f"storing SLOs in {db.describe_dsn(settings.database_url)} failed: {err}"
            " (has `slo-pipeline db migrate` run?)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    finally:
        conn.close()
    return _install(stored, args, settings)


def _export(args: argparse.Namespace) -> int:
    from slo_pipeline.adapters import postgres as db
    from slo_pipeline.settings import load_settings
    from slo_pipeline.slo.spec import dump_specs
    from slo_pipeline.slo.store import load_slos

    settings = load_settings()
    try:
        conn = db.connect(settings.database_url)
        try:
            slos = load_slos(conn)
        finally:
            conn.close()
    except Exception as err:
        print(f"reading SLOs from {db.describe_dsn(settings.database_url)} failed: {err}", file=sys.stderr)
        return EXIT_FAILED
    text = "# Exported by slo-pipeline (Sloth prometheus/v1 + extensions); re-apply with `slo apply -f`.\n"
    text += dump_specs(slos) if slos else ""
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
        log.info("wrote %d SLOs to %s", len(slos), args.output)
    return 0


def _read_checked_spec(args: argparse.Namespace) -> list[Any] | int:
    """The SLOs of `args.file`, parsed and their PromQL checked; an exit code when they fail."""
    from slo_pipeline.slo.promcheck import PromtoolError, check_slo_queries
    from slo_pipeline.slo.spec import SpecError

    try:
        slos = _read_spec(args.file)
        check_slo_queries(slos, str(args.file), args.promtool)
    except SpecError as err:
        print(err, file=sys.stderr)
        return EXIT_INVALID
    except PromtoolError as err:
        print(f"cannot validate PromQL: {err}", file=sys.stderr)
        return EXIT_FAILED
    return slos


def _validate(args: argparse.Namespace) -> int:
    slos = _read_checked_spec(args)
    if isinstance(slos, int):
        return slos
    print(json.dumps({"valid": True, "slos": [slo.name for slo in slos]}))
    return 0


def _history(args: argparse.Namespace) -> int:
    from slo_pipeline.adapters import postgres as db
    from slo_pipeline.settings import load_settings
    from slo_pipeline.slo.store import list_revisions

    settings = load_settings()
    try:
        conn = db.connect(settings.database_url)
        try:
            revisions = list_revisions(conn, args.name)
        finally:
            conn.close()
    except Exception as err:
        print(
            f"reading revisions from {db.describe_dsn(settings.database_url)} failed: {err}", file=sys.stderr
        )
        return EXIT_FAILED
    for revision in revisions:
        row = {**revision.__dict__, "changed_at": revision.changed_at.isoformat()}
        print(json.dumps(row, sort_keys=True))
    return 0


def _slo_report(args: argparse.Namespace) -> int:
    import time

    from slo_pipeline.adapters import postgres as db
    from slo_pipeline.settings import load_settings
    from slo_pipeline.slo.report import (
        ReportError,
        check_period,
        known_slos,
        load_report,
        report_dict,
        report_text,
    )

    settings = load_settings()
    now = time.time()
    try:
        period = check_period(args.period, now)
    except ReportError as err:
        print(f"slo report: {err}", file=sys.stderr)
        return EXIT_INVALID
    try:
        known = known_slos(settings.database_url)
        if args.slo is not None and args.slo not in known:
            print(
                f"slo report: unknown SLO {args.slo!r} (known: {', '.join(known) or 'none'})", file=sys.stderr
            )
            return EXIT_INVALID
        periods = _stored_periods(settings.database_url)
        names = [args.slo] if args.slo is not None else known
        reports = [load_report(settings.database_url, name, period, now=now) for name in names]
    except Exception as err:
        print(
            f"reading the SLO history from {db.describe_dsn(settings.database_url)} failed: {err}"
            " (has `slo-pipeline db migrate` run?)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    if not names:
        print(
            "slo report: no SLOs are stored (load some with `slo-pipeline slo apply -f FILE`)",
            file=sys.stderr,
        )
        return 0
    for number, report in enumerate(reports):
        if args.json:
            print(json.dumps(report_dict(report), sort_keys=True))
            continue
        if number:
            print()
        print(report_text(report, periods.get(report.slo)))
    return 0


def _slo_snapshot(args: argparse.Namespace) -> int:
    import psycopg2

    from slo_pipeline.adapters import postgres as db
    from slo_pipeline.adapters.prometheus_connection import (
        PrometheusAuthError,
        PrometheusSecretError,
        redact_url,
    )
    from slo_pipeline.settings import load_settings
    from slo_pipeline.slo.history import snapshot_pass

    settings = load_settings()
    try:
        result = snapshot_pass(settings)
    except (PrometheusAuthError, PrometheusSecretError) as err:
        print(f"slo snapshot: {err}", file=sys.stderr)  # configuration: retrying will not help
        return EXIT_INVALID
    except (db.DatabaseError, psycopg2.Error) as err:  # say which database, suggest the migration
        print(
            f"storing the SLO history in {db.describe_dsn(settings.database_url)} failed: {err}"
            " (has `slo-pipeline db migrate` run?)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    print(json.dumps(result.__dict__, sort_keys=True))
    if result.failed:
        print(
            f"slo snapshot: Prometheus at {redact_url(settings.prometheus_url)} could not be read for "
            f"{', '.join(result.failed)}; they are taken at the next pass",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return 0


def _stored_periods(database_url: str) -> dict[str, str]:
    """SLO name -> its time_period (e.g. 30d), to name the burn tiers' factors."""
    from slo_pipeline.adapters import postgres as db

    conn = db.connect(database_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT name, time_period FROM slos")
            return dict(cur.fetchall())
    finally:
        conn.close()


def _render(args: argparse.Namespace) -> int:
    from slo_pipeline.adapters import postgres as db
    from slo_pipeline.settings import load_settings
    from slo_pipeline.slo.spec import SpecError
    from slo_pipeline.slo.store import load_slos

    settings = load_settings()
    try:
        if args.file is not None:
            slos = _read_spec(args.file)
        else:
            conn = db.connect(settings.database_url)
            try:
                slos = load_slos(conn)
            finally:
                conn.close()
    except SpecError as err:
        print(err, file=sys.stderr)
        return EXIT_INVALID
    except Exception as err:
        print(f"reading SLOs from {db.describe_dsn(settings.database_url)} failed: {err}", file=sys.stderr)
        return EXIT_FAILED
    return _install(slos, args, settings)


def _sync(args: argparse.Namespace) -> int:
    from slo_pipeline.adapters.metrics_http import metrics_served
    from slo_pipeline.adapters.stop_signals import stop_on_signals
    from slo_pipeline.settings import load_settings
    from slo_pipeline.slo.promcheck import PromtoolError, promtool_path
    from slo_pipeline.slo.render import DebouncedReloader
    from slo_pipeline.slo.sync import DatabaseSLOSource, RuleFolder, run_sync
    from slo_pipeline.slo.sync_metrics import SyncMetrics

    settings = load_settings()
    try:
        promtool = promtool_path(args.promtool)  # missing for good: say so now, not every tick
    except PromtoolError as err:
        print(err, file=sys.stderr)
        return EXIT_FAILED
    interval = settings.slo_sync_interval_seconds
    # At most one reload per tick: the loop itself is the debounce for a burst of UI edits.
    reloader = DebouncedReloader(_reload_target(args, settings), min_interval_seconds=interval)
    listen = settings.slo_sync_metrics_listen if args.metrics_listen is None else args.metrics_listen
    metrics = SyncMetrics(lambda: reloader.reload_count)
    with (
        metrics_served(
            listen,
            metrics.registry,
            title="slo-pipeline rules sync",
            description="Keeps the SLO rule files Prometheus loads in step with the SLOs in PostgreSQL.",
        ),
        # A signal lets the current tick finish: its install is atomic anyway.
        stop_on_signals() as stop,
    ):
        run_sync(
            DatabaseSLOSource(settings.database_url),
            RuleFolder(args.out or DEFAULT_RULES_OUT, promtool=promtool),
            reloader,
            interval_seconds=interval,
            stop=stop,
            on_tick=metrics.tick,
        )
    return 0


def _reload_target(args: argparse.Namespace, settings: Settings) -> PrometheusConnection:
    """`--prometheus-url` or the settings' URL, with the settings' credentials either way."""
    return settings.prometheus.with_url(args.prometheus_url) if args.prometheus_url else settings.prometheus


def _read_spec(path: Path) -> list[SLO]:
    from slo_pipeline.slo.spec import SpecError, parse_specs

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise SpecError(str(path), [f"cannot read the file: {err}"]) from err
    return parse_specs(text, source=str(path))


def _install(slos: list[SLO], args: argparse.Namespace, settings: Settings) -> int:
    from slo_pipeline.slo.promcheck import PromtoolError
    from slo_pipeline.slo.render import DebouncedReloader, ReloadError, RuleFileError, install_rule_files
    from slo_pipeline.slo.rulegen import render_rule_files

    out_dir = args.out or DEFAULT_RULES_OUT
    try:
        result = install_rule_files(render_rule_files(slos), out_dir, promtool=args.promtool, slos=slos)
    except (RuleFileError, PromtoolError) as err:
        print(err, file=sys.stderr)
        return EXIT_FAILED
    _report(result)
    if args.reload and result.changed:
        reloader = DebouncedReloader(_reload_target(args, settings))
        try:
            reloader.request()
            reloader.flush()
        except ReloadError as err:
            print(err, file=sys.stderr)
            return EXIT_FAILED
    return 0


def _report(result: RenderResult) -> None:
    print(
        json.dumps(
            {
                "out": str(result.out_dir),
                "written": [p.name for p in result.written],
                "unchanged": [p.name for p in result.unchanged],
                "removed": [p.name for p in result.removed],
            }
        )
    )
