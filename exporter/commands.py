import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Registers no command yet."""
