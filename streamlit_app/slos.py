"""SLO listing, editing and revision history, through `slo_pipeline.slo.store`.

Every write goes through `store.apply_slos`, whose database trigger records who, when, why and
old -> new in `slo_revisions`; this module never writes the tables itself. Edits are re-validated
with the same spec rules as `slo apply -f`, so the UI cannot store an SLO the CLI would refuse.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from slo_pipeline.slo import store
from slo_pipeline.slo.spec import MAX_PERIOD_DAYS, MIN_PERIOD_DAYS, SLO, slos_from_documents
from streamlit_app import pg

MINUTES_PER_DAY = 24 * 60
COMMON_PERIODS = ("7d", "14d", "28d", "30d", "90d")
PERIOD_RANGE_DAYS = (MIN_PERIOD_DAYS, MAX_PERIOD_DAYS)


class ConcurrentEditError(ValueError):
    """The SLO changed in the database after the operator opened it; their edit would undo that."""


@dataclass(frozen=True)
class SLOEdit:
    """What the page lets an operator change; None leaves a field as it is."""

    objective: float
    time_period: str
    min_events: int | None = None
    description: str | None = None
    detectors: tuple[str, ...] | None = None
    alert_labels: Mapping[str, str] | None = None
    error_query: str | None = None
    total_query: str | None = None
    error_ratio_query: str | None = None


def parse_labels(text: str) -> dict[str, str]:
    """`key=value` per line (blank lines ignored) -> labels; ValueError names the bad line."""
    labels: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"alert labels, line {number}: expected key=value, got {line.strip()[:80]!r}")
        labels[key.strip()] = value.strip()
    return labels


def format_labels(labels: Mapping[str, str]) -> str:
    return "\n".join(f"{key}={value}" for key, value in sorted(labels.items()))


def slo_rows(slos: Sequence[SLO]) -> list[dict[str, Any]]:
    return [
        {
            "name": slo.name,
            "service": slo.service,
            "objective_percent": slo.block.objective,
            "time_period": slo.block.time_period,
            "error_budget_minutes": round(budget_minutes(slo.block.objective, slo.period_days), 1),
            "detectors": ", ".join(slo.block.detectors),
            "description": slo.block.description,
        }
        for slo in slos
    ]


def budget_minutes(objective_percent: float, period_days: int) -> float:
    """Minutes of total failure the error budget allows per period (what operators reason in)."""
    return (100.0 - objective_percent) / 100.0 * period_days * MINUTES_PER_DAY


def period_choices(current: str) -> list[str]:
    """The usual periods plus the SLO's own, in day order."""
    return sorted({*COMMON_PERIODS, current}, key=lambda p: int(p.rstrip("d")))


def apply_edit(slo: SLO, edit: SLOEdit) -> SLO:
    """The SLO with the edit applied, validated like a spec file; raises SpecError (a ValueError)."""
    document = slo.to_document()
    block = dict(document["slos"][0])
    block.update(objective=float(edit.objective), time_period=edit.time_period.strip())
    if edit.min_events is not None:
        block["min_events"] = int(edit.min_events)
    if edit.description is not None:
        block["description"] = edit.description.strip()
    if edit.detectors is not None:
        block["detectors"] = list(edit.detectors)
    if edit.alert_labels is not None:
        block["alerting"] = {**dict(block.get("alerting") or {}), "labels": dict(edit.alert_labels)}
    sli = {key: dict(value) for key, value in dict(block["sli"]).items() if value is not None}
    if "events" in sli:
        for field in ("error_query", "total_query"):
            if getattr(edit, field) is not None:
                sli["events"][field] = getattr(edit, field).strip()
    if "raw" in sli and edit.error_ratio_query is not None:
        sli["raw"]["error_ratio_query"] = edit.error_ratio_query.strip()
    block["sli"] = sli
    document["slos"] = [block]
    (edited,) = slos_from_documents([document], source=f"the edit of SLO {slo.name!r}")
    return edited


def revision_slo(spec: Mapping[str, Any], slo_name: str) -> SLO:
    """The SLO a stored revision holds (its `new_spec`), validated like a spec file."""
    (slo,) = slos_from_documents([dict(spec)], source=f"a revision of SLO {slo_name!r}")
    return slo


def spec_diff(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> str:
    """A unified diff of two stored specs as YAML (what a reviewer reads)."""

    def lines(spec: Mapping[str, Any] | None) -> list[str]:
        return [] if spec is None else yaml.safe_dump(dict(spec), sort_keys=True).splitlines(keepends=True)

    return "".join(difflib.unified_diff(lines(old), lines(new), "before", "after"))


def spec_changes(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> list[str]:
    """Readable `path: old -> new` lines between two stored specs (one revision's change)."""
    if old is None and new is None:
        return []
    if old is None:
        return ["created"]
    if new is None:
        return ["deleted"]
    changes: list[str] = []
    _diff("", old, new, changes)
    return changes


def _diff(path: str, old: Any, new: Any, out: list[str]) -> None:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in sorted(set(old) | set(new), key=str):
            _diff(f"{path}.{key}" if path else str(key), old.get(key), new.get(key), out)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            _diff(f"{path}[{index}]", a, b, out)
    elif old != new:
        # The stored spec always wraps one SLO in `slos[0]`; that prefix is noise to a reader.
        shown = path.removeprefix("slos[0].")
        out.append(f"{shown}: {old!r} -> {new!r}")


def load_slos(database_url: str) -> list[SLO]:
    with pg.connection(database_url) as conn:
        return store.load_slos(conn)


def save_edit(
    database_url: str,
    original: SLO,
    edit: SLOEdit,
    changed_by: str,
    change_note: str,
    check: Callable[[SLO], None] | None = None,
) -> bool:
    """Store the edit; False when it changes nothing (no revision is written then).

    `check` (PromQL against promtool and Prometheus) runs on the edited SLO before anything is
    stored. Refuses (ConcurrentEditError) when the stored SLO is no longer the one the operator
    edited, so two people editing at once cannot silently undo each other's change.
    """
    return save_slo(database_url, original, apply_edit(original, edit), changed_by, change_note, check)


def save_slo(
    database_url: str,
    original: SLO,
    edited: SLO,
    changed_by: str,
    change_note: str,
    check: Callable[[SLO], None] | None = None,
) -> bool:
    """Store `edited` in place of `original` (an edit or a revert); False when nothing changes."""
    changed_by = changed_by.strip()
    if not changed_by:
        raise ValueError("say who you are: every SLO change is recorded with a name")
    if edited.name != original.name:
        raise ValueError(f"a revision of {edited.name!r} cannot replace SLO {original.name!r}")
    if edited.to_document() == original.to_document():
        return False
    if check is not None:
        check(edited)
    with pg.connection(database_url) as conn:
        try:
            # Compare-and-set inside apply_slos' lock: checking first and writing after would let
            # two editors both pass the check and the later save undo the earlier one.
            result = store.apply_slos(
                conn,
                [edited],
                changed_by=changed_by,
                change_note=change_note.strip(),
                expected={original.name: original.to_document()},
            )
        except store.StaleSLOError as err:
            raise ConcurrentEditError(
                f"SLO {original.name!r} was changed or deleted by someone else meanwhile; "
                "reload the page and edit again"
            ) from err
    return bool(result.updated)


def revision_rows(database_url: str, slo_name: str) -> list[dict[str, Any]]:
    """The SLO's audit trail, newest first, each with its old -> new changes spelled out."""
    with pg.connection(database_url) as conn:
        revisions = store.list_revisions(conn, slo_name)
    return [
        {
            "revision": r.revision,
            "changed_at": r.changed_at,
            "changed_by": r.changed_by,
            "change": "; ".join(spec_changes(r.old_spec, r.new_spec)),
            "note": r.change_note,
            "old_spec": r.old_spec,
            "new_spec": r.new_spec,
        }
        for r in revisions
    ]
