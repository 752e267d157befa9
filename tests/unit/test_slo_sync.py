"""The rules sync loop's decisions and its outage handling, with fake database and rule folder.

The real PostgreSQL, promtool and Prometheus are exercised by tests/integration/test_slo_sync.py;
here every edge is a fake, so each fault can be switched on and off between ticks.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from slo_pipeline.adapters import postgres as db
from slo_pipeline.slo.promcheck import PromtoolError
from slo_pipeline.slo.render import DebouncedReloader, ReloadError, RenderResult, RuleFileError
from slo_pipeline.slo.rulegen import render_rule_files
from slo_pipeline.slo.spec import SLO, SpecError, parse_specs, slos_from_documents
from slo_pipeline.slo.store import StoredVersion
from slo_pipeline.slo.sync import (
    OutageLog,
    Outages,
    RuleFolder,
    SyncState,
    TickOutcome,
    changed_slo_names,
    needs_render,
    run_sync,
    run_tick,
)
from tests.fixtures.waiting import wait_until

SPEC = """
version: prometheus/v1
service: shop
slos:
  - name: shop-availability
    objective: {objective}
    sli:
      events:
        error_query: sum(rate(http_requests_total{{code=~"5.."}}[{{{{.window}}}}]))
        total_query: sum(rate(http_requests_total[{{{{.window}}}}]))
    alerting: {{name: ShopAvailability}}
"""


def slos_with(objective: float) -> list[SLO]:
    return parse_specs(SPEC.format(objective=objective))


class FakeSource:
    """The `slos` table: a list of SLOs, a revision counter, and switches for faults."""

    def __init__(self, slos: list[SLO]) -> None:
        self.slos = slos
        self.revision = 1
        self.down = False
        self.invalid_row = False
        self.loads = 0

    def edit(self, slos: list[SLO]) -> None:
        self.slos = slos
        self.revision += 1

    def version(self) -> StoredVersion:
        if self.down:
            raise db.DatabaseError("cannot connect to PostgreSQL at host=db dbname=slo: Connection refused")
        text = repr(sorted((s.name, s.to_document()) for s in self.slos)) + str(self.invalid_row)
        return StoredVersion(hashlib.md5(text.encode()).hexdigest(), self.revision)

    def load(self) -> list[SLO]:
        self.loads += 1
        if self.down:
            raise db.DatabaseError("cannot connect to PostgreSQL at host=db dbname=slo: Connection refused")
        if self.invalid_row:
            raise SpecError("table slos", ["slos[0] (shop-availability).objective: must be in (0, 100]"])
        return self.slos


class FakeFolder:
    """Rule files in memory; `refuse` plays promtool saying no, `promtool_broken` promtool missing."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.files: dict[str, str] = {}
        self.installs = 0
        self.refuse = False
        self.promtool_broken = False

    def digest(self) -> str:
        return hashlib.sha256(repr(sorted(self.files.items())).encode()).hexdigest()

    def install(self, slos: Sequence[SLO]) -> RenderResult:
        self.installs += 1
        if self.promtool_broken:
            raise PromtoolError("promtool 'promtool' not found on PATH")
        if self.refuse:
            raise RuleFileError(
                "generated rules failed `promtool check rules`",
                ["slo 'shop-availability' (service 'shop'), generated rule 'x': parse error"],
            )
        wanted = render_rule_files(slos)
        result = RenderResult(out_dir=self.out_dir)
        for name, text in wanted.items():
            (result.unchanged if self.files.get(name) == text else result.written).append(self.out_dir / name)
        result.removed.extend(self.out_dir / name for name in self.files if name not in wanted)
        self.files = dict(wanted)
        return result


class Prometheus:
    """The reload endpoint: records reloads, fails while `down`."""

    def __init__(self) -> None:
        self.reloads = 0
        self.attempts = 0
        self.down = False

    def __call__(self, url: str, timeout: float) -> None:
        self.attempts += 1
        if self.down:
            raise ReloadError(f"could not reach Prometheus at {url}/-/reload: Connection refused")
        self.reloads += 1


class Loop:
    """One sync loop's state, ticked by hand."""

    def __init__(self, tmp_path: Path, objective: float = 99.5) -> None:
        self.source = FakeSource(slos_with(objective))
        self.folder = FakeFolder(tmp_path / "rules")
        self.prometheus = Prometheus()
        self.reloader = DebouncedReloader("http://prom:9090", min_interval_seconds=0, post=self.prometheus)
        self.state = SyncState()
        self.outages = Outages()

    def tick(self) -> TickOutcome:
        return run_tick(self.state, self.source, self.folder, self.reloader, self.outages)


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# --- pure decisions -------------------------------------------------------------------------------


def test_needs_render_only_when_the_store_or_the_folder_changed() -> None:
    state = SyncState()
    assert needs_render(state, "db1", "disk1")  # nothing installed yet: always render at start
    state.installed = ("db1", "disk1")
    assert not needs_render(state, "db1", "disk1")
    assert needs_render(state, "db2", "disk1")  # an SLO edit
    assert needs_render(state, "db1", "disk0")  # someone deleted or edited a generated file
    state.refused = ("db2", "disk1")
    assert not needs_render(state, "db2", "disk1")  # refused before: would fail the same way
    assert needs_render(state, "db3", "disk1")  # the SLO was fixed


def test_changed_slo_names_covers_created_changed_and_deleted() -> None:
    before = {"a": {"objective": 99}, "b": {"objective": 99}, "c": {}}
    after = {"a": {"objective": 99}, "b": {"objective": 98}, "d": {}}
    assert changed_slo_names(before, after) == ["b", "c", "d"]
    assert changed_slo_names(after, after) == []


def test_outage_log_reports_start_and_end_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="test-outage")
    outage = OutageLog("reading the SLOs", logging.getLogger("test-outage"))
    outage.recovered()  # healthy: says nothing
    for _ in range(3):
        outage.failed(RuntimeError("connection refused"))
    outage.recovered()
    levels = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in levels] == ["ERROR", "DEBUG", "DEBUG", "INFO"]
    assert "reading the SLOs failed: connection refused" in levels[0][1]
    assert "works again after 3 failed tick(s)" in levels[3][1]
    assert not outage.failing


# --- ticks ----------------------------------------------------------------------------------------


def test_first_tick_installs_and_reloads_then_idle_ticks_do_nothing(tmp_path: Path) -> None:
    loop = Loop(tmp_path)
    assert loop.tick() is TickOutcome.INSTALLED
    assert loop.prometheus.reloads == 1
    for _ in range(3):
        assert loop.tick() is TickOutcome.IDLE
    # Idle ticks cost one digest query: no load, no render, no promtool, no reload.
    assert (loop.source.loads, loop.folder.installs, loop.prometheus.reloads) == (1, 1, 1)


def test_an_edit_is_installed_and_reloaded_on_the_next_tick(tmp_path: Path) -> None:
    loop = Loop(tmp_path)
    loop.tick()
    loop.source.edit(slos_with(99.9))
    assert loop.tick() is TickOutcome.INSTALLED
    assert "vector(0.999)" in loop.folder.files["shop.rules.yml"]
    assert loop.prometheus.reloads == 2


def test_a_change_that_leaves_the_rules_alike_does_not_reload(tmp_path: Path) -> None:
    loop = Loop(tmp_path)
    loop.tick()
    (slo,) = loop.source.slos
    document = slo.to_document()
    document["slos"][0]["description"] = "Requests answered without a 5xx."  # not in any rule
    loop.source.edit(slos_from_documents([document], source="test"))
    assert loop.tick() is TickOutcome.INSTALLED
    assert loop.prometheus.reloads == 1


def test_a_deleted_rule_file_is_restored(tmp_path: Path) -> None:
    loop = Loop(tmp_path)
    loop.tick()
    loop.folder.files.clear()  # someone removed the generated file
    assert loop.tick() is TickOutcome.INSTALLED
    assert "shop.rules.yml" in loop.folder.files
    assert loop.prometheus.reloads == 2


def test_database_outage_keeps_the_files_logs_once_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    loop = Loop(tmp_path)
    loop.tick()
    files = dict(loop.folder.files)
    loop.source.down = True
    caplog.set_level(logging.INFO)
    for _ in range(4):
        assert loop.tick() is TickOutcome.FAILED
    assert loop.folder.files == files  # never removed because the database said nothing
    assert loop.folder.installs == 1
    assert len(errors(caplog)) == 1
    assert "reading the SLOs from PostgreSQL failed: cannot connect to PostgreSQL" in errors(caplog)[0]

    loop.source.down = False
    loop.source.edit(slos_with(99.0))  # edited while the sync could not see the database
    assert loop.tick() is TickOutcome.INSTALLED
    assert "vector(0.99)" in loop.folder.files["shop.rules.yml"]
    assert any("works again after 4 failed tick(s)" in r.getMessage() for r in caplog.records)
    assert not loop.outages.database.failing


def test_rules_promtool_refuses_are_not_installed_and_not_retried_until_changed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    loop = Loop(tmp_path)
    loop.tick()
    files = dict(loop.folder.files)
    loop.folder.refuse = True
    loop.source.edit(slos_with(99.1))
    for _ in range(3):
        loop.tick()
    assert loop.folder.files == files
    assert loop.folder.installs == 2  # tried once; the same SLOs would fail the same way
    assert loop.prometheus.reloads == 1
    (message,) = errors(caplog)
    assert "shop-availability" in message
    assert "changed since the last installed rules: shop-availability)" in message

    loop.folder.refuse = False
    loop.source.edit(slos_with(99.2))  # the fix
    assert loop.tick() is TickOutcome.INSTALLED
    assert "vector(0.992)" in loop.folder.files["shop.rules.yml"]
    assert loop.state.refused is None


def test_a_stored_row_that_no_longer_validates_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    loop = Loop(tmp_path)
    loop.tick()
    files = dict(loop.folder.files)
    loop.source.invalid_row = True
    assert loop.tick() is TickOutcome.REFUSED
    assert loop.tick() is TickOutcome.IDLE
    assert loop.folder.files == files
    (message,) = errors(caplog)
    assert "shop-availability" in message and "must be in (0, 100]" in message


def test_a_broken_promtool_is_an_outage_retried_every_tick(tmp_path: Path) -> None:
    loop = Loop(tmp_path)
    loop.folder.promtool_broken = True
    assert loop.tick() is TickOutcome.FAILED
    assert loop.tick() is TickOutcome.FAILED
    assert loop.folder.installs == 2  # no verdict on the rules, so not remembered as refused
    loop.folder.promtool_broken = False
    assert loop.tick() is TickOutcome.INSTALLED
    assert not loop.outages.rule_folder.failing


def test_a_failed_reload_is_retried_on_later_ticks_without_a_change(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    loop = Loop(tmp_path)
    loop.prometheus.down = True
    caplog.set_level(logging.INFO)
    assert loop.tick() is TickOutcome.INSTALLED  # files are in place even while Prometheus is down
    assert loop.tick() is TickOutcome.IDLE
    assert loop.state.reload_due
    assert len(errors(caplog)) == 1 and "reloading Prometheus failed" in errors(caplog)[0]
    loop.prometheus.down = False
    loop.tick()
    assert loop.prometheus.reloads == 1 and not loop.state.reload_due
    assert any("reloading Prometheus works again" in r.getMessage() for r in caplog.records)


def test_a_deferred_reload_that_failed_is_retried(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    loop = Loop(tmp_path)
    loop.reloader = DebouncedReloader("http://prom:9090", min_interval_seconds=0.2, post=loop.prometheus)
    loop.tick()
    loop.source.edit(slos_with(99.9))
    loop.prometheus.down = True
    loop.tick()  # within the interval: the reloader defers the reload to its timer, which fails
    assert not loop.state.reload_due
    wait_until(
        lambda: loop.prometheus.attempts,
        timeout=5,
        interval=0.01,
        describe="2 reload attempts",
        until=lambda n: n == 2,
    )
    loop.prometheus.down = False
    # The next ticks pick the timer's error up and reload again once the interval allows.

    def settled() -> bool:
        loop.tick()
        return loop.prometheus.reloads == 2 and not loop.outages.reload.failing

    wait_until(
        settled, timeout=5, interval=0.01, describe="the reload to work again after its deferred failure"
    )
    assert not loop.state.reload_due
    assert [m for m in errors(caplog) if m.startswith("reloading Prometheus failed")] != []


# --- the loop -------------------------------------------------------------------------------------


def test_run_sync_survives_an_unexpected_error_and_stops_when_asked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = FakeSource(slos_with(99.5))
    stop = threading.Event()
    calls = 0
    real_version = source.version

    def version() -> StoredVersion:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise KeyError("a bug")
        stop.set()  # what the SIGTERM handler does
        return real_version()

    source.version = version  # type: ignore[method-assign]
    folder = FakeFolder(tmp_path)
    reloader = DebouncedReloader("http://prom:9090", min_interval_seconds=0, post=Prometheus())
    worker = threading.Thread(
        target=run_sync, args=(source, folder, reloader), kwargs={"interval_seconds": 0.01, "stop": stop}
    )
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert calls == 2 and folder.installs == 1
    assert any("unexpected error in the SLO rules sync" in r.getMessage() for r in caplog.records)


def test_rule_folder_digest_follows_the_yml_files_only(tmp_path: Path) -> None:
    folder = RuleFolder(tmp_path / "absent")
    empty = folder.digest()
    folder = RuleFolder(tmp_path)
    assert folder.digest() == empty
    (tmp_path / "shop.rules.yml").write_text("groups: []\n")
    first = folder.digest()
    assert first != empty
    (tmp_path / ".staging-x").mkdir()
    (tmp_path / ".staging-x" / "shop.rules.yml").write_text("half written")
    (tmp_path / "notes.txt").write_text("not a rule file")
    assert folder.digest() == first
    (tmp_path / "shop.rules.yml").write_text("groups: [] # edited\n")
    assert folder.digest() != first


def test_a_repeating_unexpected_error_is_logged_once_with_its_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = FakeSource(slos_with(99.5))
    stop = threading.Event()
    calls = 0

    def version() -> StoredVersion:
        nonlocal calls
        calls += 1
        if calls == 5:
            stop.set()
        raise KeyError("the same bug")

    source.version = version  # type: ignore[method-assign]
    reloader = DebouncedReloader("http://prom:9090", min_interval_seconds=0, post=Prometheus())
    with caplog.at_level("DEBUG", logger="slo_pipeline.slo.sync"):
        run_sync(source, FakeFolder(tmp_path), reloader, interval_seconds=0.01, stop=stop)
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert calls == 5 and len(errors) == 1 and errors[0].exc_info is not None
    assert sum("still fails" in r.getMessage() for r in caplog.records) == 4
