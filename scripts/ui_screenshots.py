"""Screenshots of every UI page in the light or dark theme, from a running `slo-pipeline demo`.

    .venv/bin/python scripts/ui_screenshots.py --data-dir .data/demo \\
        --prometheus-url http://127.0.0.1:PORT --theme dark --out docs/images --suffix -dark

Starts its own `streamlit run` over the demo's services (the theme is a server option,
`--theme.base`), signs in as the demo's editor (password from DATA_DIR/ui_password) and saves
ui-<page><suffix>.png for each page with Debian's chromium. Stops what it started.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the browser test's helpers (tests/fixtures/browser.py)

PAGES = {"incidents": "Incidents", "slos": "SLOs", "threshold": "Threshold", "models": "Models"}


def main(argv: list[str] | None = None) -> int:
    from selenium.webdriver.common.by import By

    from slo_pipeline.devstack import launch
    from tests.fixtures.browser import button, by_label, choose_page, chromium, wait_for, wait_idle

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="the demo's --data-dir")
    parser.add_argument("--prometheus-url", required=True, help="the demo's Prometheus URL")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    parser.add_argument("--user", default="demo")
    parser.add_argument("--theme", choices=("light", "dark"), default="light")
    parser.add_argument("--out", type=Path, default=REPO / ".data" / "screenshots")
    parser.add_argument("--suffix", default="")
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("--database-url (or DATABASE_URL) is required: the demo prints it")
    password = (args.data_dir / "ui_password").read_text(encoding="utf-8").strip()
    env = {
        **os.environ,
        "DATABASE_URL": args.database_url,
        "PROMETHEUS_URL": args.prometheus_url,
        "MLFLOW_TRACKING_URI": f"sqlite:///{(args.data_dir / 'mlflow' / 'mlflow.db').resolve()}",
        "SLO_PIPELINE_CONFIG": str(REPO / "slo-pipeline.yml"),
        "SLO_PIPELINE_MLFLOW_ARTIFACT_ROOT": str((args.data_dir / "mlflow" / "artifacts").resolve()),
        "MLFLOW_ALLOW_FILE_STORE": "true",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ui-screenshots-") as tmp:
        ui = launch.start_service(
            "ui",
            lambda port: [
                *(sys.executable, "-m", "streamlit", "run", str(REPO / "streamlit_app" / "app.py")),
                *("--server.address=127.0.0.1", f"--server.port={port}", f"--theme.base={args.theme}"),
            ],
            port=None,
            log_path=Path(tmp) / "ui.log",
            ready_path="/_stcore/health",
            env=env,
            cwd=Path(tmp),
        )
        driver = chromium()
        try:
            driver.get(ui.url)
            wait_idle(driver)
            by_label(driver, "input", "User name").send_keys(args.user)
            by_label(driver, "input", "Password").send_keys(password)
            button(driver, "Sign in").click()
            wait_idle(driver)
            body = lambda d: d.find_element(By.TAG_NAME, "body").text  # noqa: E731
            wait_for(driver, "the sidebar", lambda d: "Signed in as" in body(d))
            for slug, page in PAGES.items():
                choose_page(driver, page)
                if page == "Threshold":
                    button(driver, "Preview").click()
                    wait_idle(driver)
                path = args.out / f"ui-{slug}{args.suffix}.png"
                _full_page(driver, path)
                print(path)
        finally:
            driver.quit()
            ui.stop()
    return 0


def _full_page(driver: object, path: Path) -> None:
    from tests.fixtures.browser import wait_idle

    # From a small window: a taller one left by the previous page would count as content.
    driver.set_window_size(1400, 900)  # type: ignore[attr-defined]
    wait_idle(driver)  # type: ignore[arg-type]
    height = driver.execute_script(  # type: ignore[attr-defined]
        "const m = document.querySelector('[data-testid=\"stMain\"]') || document.body;"
        "return Math.max(m.scrollHeight, document.body.scrollHeight);"
    )
    driver.set_window_size(1400, max(900, min(int(height) + 120, 6000)))  # type: ignore[attr-defined]
    wait_idle(driver)  # type: ignore[arg-type]
    driver.save_screenshot(str(path))  # type: ignore[attr-defined]


if __name__ == "__main__":
    raise SystemExit(main())
