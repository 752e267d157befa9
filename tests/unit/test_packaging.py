"""pyproject.toml lists the packages (shipped configs are mapped in): keep the list complete."""

from __future__ import annotations

import tomllib

from tests.fixtures.paths import REPO_ROOT

CODE_ROOTS = ("slo_pipeline", "exporter", "webhook", "worker", "streamlit_app")


def test_every_code_package_and_every_mapped_config_folder_is_listed() -> None:
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    listed = set(config["packages"])
    mapped = config["package-dir"]
    code = {
        ".".join(init.parent.relative_to(REPO_ROOT).parts)
        for root in CODE_ROOTS
        for init in (REPO_ROOT / root).rglob("__init__.py")
    }
    assert code <= listed, f"add to [tool.setuptools] packages: {sorted(code - listed)}"
    for package, folder in mapped.items():
        assert package in listed, package
        assert (REPO_ROOT / folder / "__init__.py").is_file(), folder
    assert listed <= code | set(mapped), f"listed but missing: {sorted(listed - code - set(mapped))}"
