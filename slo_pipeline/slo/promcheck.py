"""Check PromQL and rule files with `promtool check rules`, i.e. with Prometheus' own parser.

A Python re-implementation of PromQL's grammar would drift from what Prometheus really accepts;
promtool is the reference and is installed wherever Prometheus is. Errors are mapped back to the
SLO and spec field they came from, because "rule 3 of group 2" means nothing to whoever wrote
the spec.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import yaml

from slo_pipeline.slo.spec import SLO, SpecError, render_query

PROMTOOL = "promtool"
PROMTOOL_TIMEOUT_SECONDS = 60
_ERROR_LINE = re.compile(
    r'group "(?P<group>[^"]*)", rule (?P<rule>\d+), "(?P<rule_name>[^"]*)": (?P<message>.*)'
)
_GENERATED_GROUP = re.compile(r"^sloth-slo-(?:sli-recordings|meta-recordings|alerts)-(?P<sloth_id>.+)$")


class PromtoolError(RuntimeError):
    """promtool could not be run at all (missing binary, timeout) -- not a verdict on the rules."""


def promtool_path(promtool: str = PROMTOOL) -> str:
    found = shutil.which(promtool)
    if found is None:
        raise PromtoolError(
            f"promtool {promtool!r} not found on PATH; install Prometheus' tools "
            "(Debian: apt-get install prometheus) or pass --promtool PATH"
        )
    return found


def check_rule_files(paths: Sequence[Path], promtool: str = PROMTOOL) -> list[str]:
    """promtool's complaints about the rule files, one per line; empty when they are valid."""
    if not paths:
        return []
    command = [promtool_path(promtool), "check", "rules", *[str(p) for p in paths]]
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=PROMTOOL_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired as err:
        raise PromtoolError(f"`{' '.join(command)}` did not finish in {PROMTOOL_TIMEOUT_SECONDS}s") from err
    if completed.returncode == 0:
        return []
    output = (completed.stderr + "\n" + completed.stdout).splitlines()
    problems = [line.strip() for line in output if line.strip() and not _is_progress_line(line)]
    return problems or [f"promtool exited with {completed.returncode} and printed nothing useful"]


def _is_progress_line(line: str) -> bool:
    stripped = line.strip()
    return stripped.startswith(("Checking ", "SUCCESS")) or stripped == "FAILED:"


def check_slo_queries(slos: Sequence[SLO], source: str, promtool: str = PROMTOOL) -> None:
    """Raise SpecError naming SLO and field for every query Prometheus would refuse."""
    groups = []
    fields: dict[str, tuple[SLO, str]] = {}
    for slo in slos:
        for field, query in sli_queries(slo).items():
            group = f"{slo.sloth_id}/{field}"
            fields[group] = (slo, field)
            expr = render_query(query, "5m")
            groups.append({"name": group, "rules": [{"record": "slo_pipeline:check:query", "expr": expr}]})
    with tempfile.TemporaryDirectory(prefix="slo-pipeline-check-") as folder:
        path = Path(folder) / "queries.rules.yml"
        path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False), encoding="utf-8")
        problems = check_rule_files([path], promtool)
    errors = []
    for problem in problems:
        match = _ERROR_LINE.search(problem)
        if match and match["group"] in fields:
            slo, field = fields[match["group"]]
            where = f"slo {slo.name!r} (service {slo.service!r}) {field}"
            errors.append(f"{where}: Prometheus refuses it: {match['message']}")
        else:
            errors.append(f"promtool: {problem}")
    if errors:
        raise SpecError(source, errors)


def explain_rule_problems(problems: Sequence[str], slos: Sequence[SLO]) -> list[str]:
    """Prefix promtool's complaints about generated files with the SLO whose group failed."""
    by_id = {slo.sloth_id: slo for slo in slos}
    explained = []
    for problem in problems:
        match = _ERROR_LINE.search(problem)
        generated = _GENERATED_GROUP.match(match["group"]) if match else None
        slo = by_id.get(generated["sloth_id"]) if generated else None
        if slo is not None and match is not None:
            hint = "alerting labels/annotations" if "alerts" in match["group"] else "generated rule"
            where = f"slo {slo.name!r} (service {slo.service!r}), {hint} {match['rule_name']!r}"
            explained.append(f"{where}: {match['message']}")
        else:
            explained.append(problem)
    return explained


def sli_queries(slo: SLO) -> dict[str, str]:
    """The SLO's PromQL by the spec field it comes from, so an error can name the field."""
    sli = slo.block.sli
    if sli.events is not None:
        return {
            "sli.events.error_query": sli.events.error_query,
            "sli.events.total_query": sli.events.total_query,
        }
    assert sli.raw is not None
    return {"sli.raw.error_ratio_query": sli.raw.error_ratio_query}
