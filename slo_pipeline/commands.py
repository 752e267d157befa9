"""Subcommands of the shared package (registered by slo_pipeline.cli)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Filled in as the train/db/demo/simulator commands land."""
