def register(subparsers):
    """Placeholder until the exporter lands."""
