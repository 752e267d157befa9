"""Fixtures live in tests/fixtures/, one module per area, so each area owns its own."""

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.database",
    "tests.fixtures.browser",
    "tests.fixtures.object_store",
]
