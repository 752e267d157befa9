"""SLO rules against the real promtool: rule unit tests, PromQL validation, safe installation.

promtool is Prometheus' own parser and rule evaluator; a missing binary fails these tests.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from slo_pipeline.slo.promcheck import PromtoolError, check_rule_files, check_slo_queries
from slo_pipeline.slo.render import RuleFileError, install_rule_files
from slo_pipeline.slo.rulegen import render_rule_files
from slo_pipeline.slo.spec import SpecError, parse_specs
from tests.fixtures.paths import REPO_ROOT

pytestmark = pytest.mark.integration

RULES = REPO_ROOT / "rules"
RULE_TESTS = [*sorted(RULES.glob("tests/slo*.test.yml")), RULES / "tests" / "anomaly-slo-gating.test.yml"]
EXAMPLE = REPO_ROOT / "examples" / "slos.yml"

SPEC = """
version: prometheus/v1
service: shop
slos:
  - name: availability
    objective: 99.9
    sli:
      events:
        error_query: sum(rate(http_requests_total{code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total[{{.window}}]))
    alerting:
      name: ShopAvailability
"""


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is not installed (Debian package `prometheus`); these tests need it"
    return found


def run_promtool_tests(test_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), "test", "rules", str(test_file)], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=lambda p: p.name)
def test_promtool_rule_tests_pass(test_file: Path) -> None:
    completed = run_promtool_tests(test_file)
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_committed_rules_pass_promtool_check() -> None:
    files = [*sorted((RULES / "slo").glob("*.yml")), RULES / "anomaly-slo-gating.rules.yml"]
    assert len(files) >= 2
    assert check_rule_files(files, promtool()) == []


def mutated_copy(tmp_path: Path, rule_file: Path, test_file: Path, old: str, new: str) -> Path:
    """Copy a rule file (with one change) and its promtool test into the same relative layout."""
    text = rule_file.read_text(encoding="utf-8")
    assert old in text, f"mutation target {old!r} not found in {rule_file}"
    target = tmp_path / rule_file.relative_to(RULES)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text.replace(old, new), encoding="utf-8")
    test_copy = tmp_path / "tests" / test_file.name
    test_copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(test_file, test_copy)
    return test_copy


@pytest.mark.parametrize(
    ("rule_file", "test_file", "old", "new"),
    [
        # The fast tier at 16x instead of 14.4x: the 15.84x case must then fail.
        ("slo/demo.rules.yml", "slo-demo.test.yml", "(14.4 * 0.005)", "(16 * 0.005)"),
        # No zero-traffic guard (`>= 0` keeps 0/0 = NaN): the zero-traffic case must fail.
        ("slo/demo.rules.yml", "slo-demo-guards.test.yml", "        > 0\n", "        >= 0\n"),
        # 28d and 7d factors computed as if the period were 30d.
        ("slo/demo.rules.yml", "slo-demo-periods.test.yml", "(13.44 * 0.01)", "(14.4 * 0.01)"),
        ("slo/demo.rules.yml", "slo-demo-periods.test.yml", "(1.4 * 0.001)", "(6 * 0.001)"),
        # Page on any anomaly, burning or not.
        (
            "anomaly-slo-gating.rules.yml",
            "anomaly-slo-gating.test.yml",
            "(slo:current_burn_rate:ratio) > 1",
            "(slo:current_burn_rate:ratio) > -1",
        ),
    ],
    ids=["fast-factor", "zero-traffic-guard", "28d-factors", "7d-factors", "gating"],
)
def test_rule_tests_catch_a_broken_rule(
    tmp_path: Path, rule_file: str, test_file: str, old: str, new: str
) -> None:
    copy = mutated_copy(tmp_path, RULES / rule_file, RULES / "tests" / test_file, old, new)
    completed = run_promtool_tests(copy)
    assert completed.returncode != 0, "the promtool tests did not notice the broken rule"
    assert "FAILED" in completed.stdout + completed.stderr


def test_promql_errors_are_mapped_to_slo_and_field() -> None:
    broken = SPEC.replace("[{{.window}}]))\n    alerting", "[{{.window}}])\n    alerting")
    slos = parse_specs(broken)
    with pytest.raises(SpecError) as caught:
        check_slo_queries(slos, "broken.yml", promtool())
    (error,) = caught.value.errors
    assert error.startswith(
        "slo 'availability' (service 'shop') sli.events.total_query: Prometheus refuses it:"
    )
    assert "parse error" in error
    check_slo_queries(parse_specs(SPEC), "ok.yml", promtool())  # no error for valid PromQL


def test_missing_promtool_is_an_error_not_a_pass() -> None:
    with pytest.raises(PromtoolError, match="not found on PATH"):
        check_slo_queries(parse_specs(SPEC), "x.yml", "no-such-promtool")


def test_install_writes_checks_and_replaces_only_generated_files(tmp_path: Path) -> None:
    out = tmp_path / "rules" / "slo"
    out.mkdir(parents=True)
    (out / "hand-written.yml").write_text("groups: []\n", encoding="utf-8")
    stale = out / "gone.rules.yml"
    files = render_rule_files(parse_specs(SPEC))
    stale.write_text(next(iter(files.values())), encoding="utf-8")  # a generated file of a deleted service

    first = install_rule_files(files, out, promtool=promtool())
    assert [p.name for p in first.written] == ["shop.rules.yml"]
    assert [p.name for p in first.removed] == ["gone.rules.yml"]
    assert (out / "hand-written.yml").exists()
    assert sorted(p.name for p in out.iterdir()) == ["hand-written.yml", "shop.rules.yml"]  # no staging left
    assert oct((out / "shop.rules.yml").stat().st_mode & 0o777) == "0o644"

    second = install_rule_files(files, out, promtool=promtool())
    assert not second.changed
    assert [p.name for p in second.unchanged] == ["shop.rules.yml"]


def test_install_refuses_to_overwrite_a_hand_written_file(tmp_path: Path) -> None:
    (tmp_path / "shop.rules.yml").write_text("groups: []\n", encoding="utf-8")
    with pytest.raises(RuleFileError, match="lacks the '# Generated by slo-pipeline' header"):
        install_rule_files(render_rule_files(parse_specs(SPEC)), tmp_path, promtool=promtool())
    assert (tmp_path / "shop.rules.yml").read_text(encoding="utf-8") == "groups: []\n"


def test_invalid_rules_leave_the_old_files_untouched(tmp_path: Path) -> None:
    good = render_rule_files(parse_specs(SPEC))
    install_rule_files(good, tmp_path, promtool=promtool())
    # A spec that skipped check_slo_queries: its PromQL only fails at promtool check time.
    broken_slos = parse_specs(SPEC.replace("[{{.window}}]))\n    alerting", "[{{.window}}])\n    alerting"))
    with pytest.raises(RuleFileError) as caught:
        install_rule_files(render_rule_files(broken_slos), tmp_path, promtool=promtool(), slos=broken_slos)
    assert "left untouched" in str(caught.value)
    assert any(
        p.startswith("slo 'availability' (service 'shop'), generated rule") for p in caught.value.problems
    )
    assert (tmp_path / "shop.rules.yml").read_text(encoding="utf-8") == good["shop.rules.yml"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shop.rules.yml"]


def test_cli_validate_names_the_field_and_exits_2(tmp_path: Path) -> None:
    spec = tmp_path / "slos.yml"
    spec.write_text(SPEC.replace("objective: 99.9", "objective: 120"), encoding="utf-8")
    completed = subprocess.run(
        [sys.executable, "-m", "slo_pipeline.cli", "slo", "validate", "-f", str(spec)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 2
    assert "slos[0] (availability).objective: must be in (0, 100]" in completed.stderr


def test_cli_renders_the_example_like_the_committed_files(tmp_path: Path) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "slo_pipeline.cli",
            "rules",
            "render",
            "-f",
            str(EXAMPLE),
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    for path in tmp_path.glob("*.yml"):
        assert path.read_text(encoding="utf-8") == (RULES / "slo" / path.name).read_text(encoding="utf-8")
