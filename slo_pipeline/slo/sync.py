"""`slo-pipeline rules sync`: keep Prometheus' SLO rule files in step with the SLOs in PostgreSQL.

The UI (and a hand-typed UPDATE) change the `slos` table but write no rule files. This loop closes
that gap. One tick:

1. look, cheaply: one query for a digest of the stored specs (`store.stored_version`) and a
   digest of the rule folder (a few small files);
2. decide (`needs_render`, pure): render only when either differs from what the last good
   install left behind, and never twice for a combination that was already refused;
3. act: load, render and `install_rule_files` (promtool-checked, atomic, writes only changed
   files), then reload Prometheus through a `DebouncedReloader` when a file changed or an earlier
   reload failed.

Failures never touch the rule files: an unreachable database skips the tick, rules promtool (or
the spec validator) refuses leave the last good files in place. Each kind of failure is logged
once when it starts and once when it ends, not every tick. The I/O sits behind two small
classes (`DatabaseSLOSource`, `RuleFolder`) so the tick logic is tested with fakes.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

import psycopg2
import psycopg2.extensions

from slo_pipeline.adapters import postgres as db
from slo_pipeline.slo.promcheck import PROMTOOL, PromtoolError
from slo_pipeline.slo.render import (
    RULE_FILE_SUFFIX,
    DebouncedReloader,
    ReloadError,
    RenderResult,
    RuleFileError,
    install_rule_files,
)
from slo_pipeline.slo.rulegen import render_rule_files
from slo_pipeline.slo.spec import SLO, SpecError
from slo_pipeline.slo.store import StoredVersion, load_slos, stored_version

log = logging.getLogger(__name__)

# What an unreachable, dropped or unmigrated database raises (connect, then the queries).
DATABASE_ERRORS: tuple[type[Exception], ...] = (db.DatabaseError, psycopg2.Error)


class TickOutcome(Enum):
    IDLE = "idle"  # nothing changed since the last good install (or the last refusal)
    INSTALLED = "installed"  # rendered and installed; files were written only if they differ
    REFUSED = "refused"  # the stored SLOs do not give valid rules; the old files stay
    FAILED = "failed"  # database, promtool or the rule folder failed; retried next tick


# --- pure decision logic -----------------------------------------------------------------------


@dataclass
class SyncState:
    """What the loop remembers between ticks."""

    # (stored digest, folder digest) right after the last good install / the last refusal.
    installed: tuple[str, str] | None = None
    refused: tuple[str, str] | None = None
    # name -> stored document of the last good install, to name the SLOs behind a refusal.
    installed_specs: dict[str, dict[str, Any]] = field(default_factory=dict)
    reload_due: bool = False
    reloads_seen: int = 0  # the reloader's reload_count at the last tick


def needs_render(state: SyncState, stored_digest: str, folder_digest: str) -> bool:
    """Render when the stored SLOs or the rule folder changed since the last install or refusal.

    The folder counts too, so a deleted or hand-edited generated file is healed on the next tick;
    a refused combination is not retried (it would fail the same way) until either side changes.
    """
    seen = (stored_digest, folder_digest)
    return seen != state.installed and seen != state.refused


def changed_slo_names(
    before: Mapping[str, Mapping[str, Any]], after: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """Names of SLOs created, changed or deleted between two name -> document mappings."""
    return sorted(name for name in set(before) | set(after) if before.get(name) != after.get(name))


class OutageLog:
    """Log a failing dependency once when it starts failing and once when it works again.

    A database that is down for an hour would otherwise write 360 identical errors at a 10 s
    interval; the repeats go to DEBUG.
    """

    def __init__(self, what: str, logger: logging.Logger = log) -> None:
        self.what = what
        self.failures = 0
        self._log = logger

    @property
    def failing(self) -> bool:
        return self.failures > 0

    def failed(self, error: BaseException) -> None:
        self.failures += 1
        if self.failures == 1:
            self._log.error(
                "%s failed: %s; the rule files stay as they are and the next tick retries", self.what, error
            )
        else:
            self._log.debug("%s still failing (%d ticks): %s", self.what, self.failures, error)

    def recovered(self) -> None:
        if self.failures:
            self._log.info("%s works again after %d failed tick(s)", self.what, self.failures)
        self.failures = 0


@dataclass
class Outages:
    database: OutageLog = field(default_factory=lambda: OutageLog("reading the SLOs from PostgreSQL"))
    rule_folder: OutageLog = field(default_factory=lambda: OutageLog("installing the rule files"))
    reload: OutageLog = field(default_factory=lambda: OutageLog("reloading Prometheus"))


# --- the I/O edges ------------------------------------------------------------------------------


class SLOSource(Protocol):
    def version(self) -> StoredVersion: ...

    def load(self) -> list[SLO]: ...


class RuleTarget(Protocol):
    @property
    def out_dir(self) -> Path: ...

    def digest(self) -> str: ...

    def install(self, slos: Sequence[SLO]) -> RenderResult: ...


@dataclass(frozen=True)
class DatabaseSLOSource:
    """The `slos` table; a short connection per call, so an outage needs no reconnect logic."""

    database_url: str
    connect_timeout_seconds: float = 5.0

    def version(self) -> StoredVersion:
        conn = self._connect()
        try:
            return stored_version(conn)
        finally:
            conn.close()

    def load(self) -> list[SLO]:
        conn = self._connect()
        try:
            return load_slos(conn)
        finally:
            conn.close()

    def _connect(self) -> psycopg2.extensions.connection:
        return db.connect(
            self.database_url,
            connect_timeout=self.connect_timeout_seconds,
            application_name="slo-pipeline rules sync",
        )


@dataclass(frozen=True)
class RuleFolder:
    """The folder Prometheus loads `*.yml` from; only generated files in it are ever replaced."""

    out_dir: Path
    promtool: str = PROMTOOL

    def digest(self) -> str:
        # Every *.yml, hand-written ones included: removing a hand-written file that blocked an
        # install must make the next tick try again.
        hasher = hashlib.sha256()
        if self.out_dir.is_dir():
            for path in sorted(self.out_dir.glob(f"*{RULE_FILE_SUFFIX}")):
                hasher.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        return hasher.hexdigest()

    def install(self, slos: Sequence[SLO]) -> RenderResult:
        return install_rule_files(render_rule_files(slos), self.out_dir, promtool=self.promtool, slos=slos)


# --- one tick and the loop ----------------------------------------------------------------------


def run_tick(
    state: SyncState,
    source: SLOSource,
    target: RuleTarget,
    reloader: DebouncedReloader,
    outages: Outages,
) -> TickOutcome:
    """Bring the rule files in line with the database if needed, then reload if that is due."""
    outcome = _sync_files(state, source, target, outages)
    _reload_if_due(state, reloader, outages)
    return outcome


def _sync_files(state: SyncState, source: SLOSource, target: RuleTarget, outages: Outages) -> TickOutcome:
    try:
        # Read before loading: a change landing in between makes the next tick's digest differ,
        # so it is rendered again (a no-op install) rather than missed.
        version = source.version()
    except DATABASE_ERRORS as err:
        outages.database.failed(err)
        return TickOutcome.FAILED
    try:
        folder_before = target.digest()
    except OSError as err:
        outages.rule_folder.failed(RuntimeError(f"cannot read {str(target.out_dir)!r}: {err}"))
        return TickOutcome.FAILED
    if not needs_render(state, version.digest, folder_before):
        outages.database.recovered()
        return TickOutcome.IDLE
    try:
        slos = source.load()
    except DATABASE_ERRORS as err:
        outages.database.failed(err)
        return TickOutcome.FAILED
    except SpecError as err:  # a hand-edited row no longer validates; the error names the SLO
        outages.database.recovered()
        return _refused(state, version, folder_before, err, changed=None)
    outages.database.recovered()
    specs = {slo.name: slo.to_document() for slo in slos}
    try:
        result = target.install(slos)
    except RuleFileError as err:
        return _refused(
            state, version, folder_before, err, changed=changed_slo_names(state.installed_specs, specs)
        )
    except (PromtoolError, OSError) as err:  # no verdict on the rules: promtool or the disk failed
        outages.rule_folder.failed(err)
        return TickOutcome.FAILED
    outages.rule_folder.recovered()
    _report_install(result, version, slos)
    state.installed = (version.digest, target.digest())
    state.refused = None
    state.installed_specs = specs
    state.reload_due = state.reload_due or result.changed
    return TickOutcome.INSTALLED


def _refused(
    state: SyncState,
    version: StoredVersion,
    folder_digest: str,
    error: Exception,
    changed: list[str] | None,
) -> TickOutcome:
    state.refused = (version.digest, folder_digest)
    suspects = f"; changed since the last installed rules: {', '.join(changed)}" if changed else ""
    log.error(
        "not installing the rules of the stored SLOs (newest revision id %s%s); the current rule files "
        "stay in place until the SLO is fixed. %s",
        version.latest_revision,
        suspects,
        error,
    )
    return TickOutcome.REFUSED


def _report_install(result: RenderResult, version: StoredVersion, slos: Sequence[SLO]) -> None:
    if not result.changed:
        log.debug("rules of %d SLOs already up to date in %s", len(slos), result.out_dir)
        return
    log.info(
        "installed the rules of %d SLOs (newest revision id %s) in %s: written %s, removed %s",
        len(slos),
        version.latest_revision,
        result.out_dir,
        [p.name for p in result.written] or "none",
        [p.name for p in result.removed] or "none",
    )
    if not slos and result.removed:
        log.warning("no SLOs are stored, so every generated rule file in %s was removed", result.out_dir)


def _reload_if_due(state: SyncState, reloader: DebouncedReloader, outages: Outages) -> None:
    trailing_error = reloader.take_error()
    if trailing_error is not None:  # a reload the reloader deferred to its timer failed meanwhile
        state.reload_due = True
        outages.reload.failed(trailing_error)
    if state.reload_due:
        try:
            reloader.request()  # now, or deferred to the reloader's timer (checked next tick)
            state.reload_due = False
        except ReloadError as err:
            outages.reload.failed(err)
    if reloader.reload_count > state.reloads_seen:  # a reload succeeded, now or on the timer
        outages.reload.recovered()
    state.reloads_seen = reloader.reload_count


def run_sync(
    source: SLOSource,
    target: RuleTarget,
    reloader: DebouncedReloader,
    *,
    interval_seconds: float,
    stop: threading.Event,
    on_tick: Callable[[TickOutcome | None], None] | None = None,
) -> None:
    """Tick every `interval_seconds` until `stop` is set (by a signal handler).

    `on_tick` hears every tick's outcome (None for a tick that raised), e.g. for metrics.
    """
    state, outages = SyncState(), Outages()
    log.info(
        "syncing SLO rules into %s every %gs (Prometheus at %s)",
        target.out_dir,
        interval_seconds,
        reloader.prometheus_url,
    )
    last_unexpected: str | None = None
    while not stop.is_set():
        outcome: TickOutcome | None = None
        try:
            outcome = run_tick(state, source, target, reloader, outages)
            last_unexpected = None
        except Exception as err:  # a bug must not end the loop: the files on disk are still consistent
            # The traceback once per kind of failure, then one line per tick at DEBUG: a failure that
            # repeats every 10 s must not flood the log.
            kind = f"{type(err).__name__}: {err}"
            if kind != last_unexpected:
                log.exception("unexpected error in the SLO rules sync; retrying every tick")
            else:
                log.debug("the SLO rules sync still fails: %s", kind)
            last_unexpected = kind
        if on_tick is not None:
            on_tick(outcome)
        stop.wait(interval_seconds)
    _finish(reloader)


def _finish(reloader: DebouncedReloader) -> None:
    """Let a deferred reload happen before exiting, so the last installed rules get loaded."""
    try:
        reloader.flush()
    except ReloadError as err:
        log.error("last reload before stopping failed: %s", err)
    log.info("SLO rules sync stopped")
