def register(subparsers):
    """Placeholder until the webhook lands."""
