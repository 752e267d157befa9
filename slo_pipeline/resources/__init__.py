"""Shipped configuration as package data: SQL migrations, rules, Prometheus/Alertmanager configs.

The subpackages are the repository's top-level `sql/`, `rules/`, `prometheus/`, `alertmanager/`
and `examples/` folders, mapped in pyproject.toml, so an installed wheel carries exactly the files
a checkout has. Read them with `resource_path` (or `importlib.resources`), never by repository path.
"""

from __future__ import annotations

from importlib.resources import as_file, files
from importlib.resources.abc import Traversable
from pathlib import Path

__all__ = ["as_file", "resource", "shipped_folder"]


def resource(folder: str, name: str = "") -> Traversable:
    """The shipped file (or folder) `name` in `folder` (sql, rules, rules.slo, prometheus, ...)."""
    root = files(f"slo_pipeline.resources.{folder}")
    return root.joinpath(name) if name else root


def shipped_folder(folder: str) -> Path:
    """The folder of shipped files, on disk (wheels and editable installs both unpack package data)."""
    return Path(str(files(f"slo_pipeline.resources.{folder}")))
