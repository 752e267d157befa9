"""Put generated rule files in place safely, then tell Prometheus (at most once per interval).

Prometheus may reload at any moment (another tool, a SIGHUP), so it must never see a half-written
or invalid file: everything is written to a staging folder next to the target, checked there
with `promtool check rules`, and only then renamed over the old files (rename is atomic on one
filesystem). Only files that carry our "generated" header are ever replaced or removed, so a
hand-written rule file that happens to sit in the same folder is safe.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from slo_pipeline.slo.promcheck import PROMTOOL, check_rule_files, explain_rule_problems
from slo_pipeline.slo.rulegen import GENERATED_MARKER
from slo_pipeline.slo.spec import SLO

if TYPE_CHECKING:
    from slo_pipeline.settings import PrometheusConnection

log = logging.getLogger(__name__)

RULE_FILE_SUFFIX = ".yml"
DEFAULT_RELOAD_INTERVAL_SECONDS = 10.0


class RuleFileError(RuntimeError):
    """Generated rules were not installed; `problems` says why (nothing on disk was changed)."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        self.problems = list(problems)
        detail = "".join(f"\n  - {p}" for p in self.problems)
        super().__init__(message + detail)


class ReloadError(RuntimeError):
    """Prometheus did not accept the reload request; the message carries its answer."""


@dataclass(frozen=True)
class RenderResult:
    out_dir: Path
    written: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.written or self.removed)


def is_generated(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as handle:
            return handle.readline().startswith(GENERATED_MARKER)
    except (OSError, UnicodeDecodeError):
        return False


def install_rule_files(
    files: Mapping[str, str],
    out_dir: Path,
    *,
    promtool: str = PROMTOOL,
    slos: Sequence[SLO] = (),
) -> RenderResult:
    """Check `files` (name -> text) with promtool, then atomically replace the generated files.

    Generated files in `out_dir` that are not in `files` (an SLO service that was deleted) are
    removed. `slos` only improves error messages (which SLO a broken group belongs to).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in files:
        if Path(name).name != name or not name.endswith(RULE_FILE_SUFFIX):
            raise RuleFileError(f"refusing to write {name!r}: not a plain *{RULE_FILE_SUFFIX} file name")
        target = out_dir / name
        if target.exists() and not is_generated(target):
            raise RuleFileError(
                f"refusing to overwrite {str(target)!r}: it lacks the '{GENERATED_MARKER}' header, "
                "so someone wrote it by hand"
            )
    # A hidden folder inside out_dir: same filesystem (atomic rename), and Prometheus' rule glob
    # (`rules/slo/*.yml`) does not descend into it.
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out_dir))
    try:
        staged = []
        for name, text in sorted(files.items()):
            path = staging / name
            path.write_text(text, encoding="utf-8")
            staged.append(path)
        problems = check_rule_files(staged, promtool)
        if problems:
            raise RuleFileError(
                f"generated rules failed `promtool check rules`; {str(out_dir)!r} left untouched",
                explain_rule_problems(problems, slos),
            )
        result = RenderResult(out_dir=out_dir)
        for path in staged:
            target = out_dir / path.name
            if target.exists() and target.read_text(encoding="utf-8") == path.read_text(encoding="utf-8"):
                result.unchanged.append(target)
                continue
            os.chmod(path, 0o644)  # mkdtemp files are private; Prometheus may run as another user
            os.replace(path, target)
            result.written.append(target)
        for existing in sorted(out_dir.glob(f"*{RULE_FILE_SUFFIX}")):
            if existing.name not in files and is_generated(existing):
                existing.unlink()
                result.removed.append(existing)
        return result
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def post_reload(prometheus: str | PrometheusConnection, timeout_seconds: float = 10.0) -> None:
    """POST /-/reload (needs Prometheus started with --web.enable-lifecycle), with the connection
    settings' credentials (a reverse proxy in front of Prometheus may ask for them)."""
    import requests

    from slo_pipeline.adapters.prometheus_connection import (
        PrometheusQueryError,
        as_connection,
        prometheus_session,
        redact_url,
    )

    connection = as_connection(prometheus)
    url = connection.url.rstrip("/") + "/-/reload"
    shown = redact_url(url)
    try:
        with prometheus_session(connection) as session:
            response = session.post(url, timeout=timeout_seconds)
    except PrometheusQueryError as err:  # an unreadable secret file
        raise ReloadError(str(err)) from None
    except requests.RequestException as err:
        raise ReloadError(f"could not reach Prometheus at {shown}: {type(err).__name__}") from err
    if response.status_code == 401:
        raise ReloadError(f"Prometheus at {shown} answered HTTP 401 Unauthorized: check the credentials")
    if response.status_code != 200:
        hint = " (start Prometheus with --web.enable-lifecycle)" if response.status_code == 403 else ""
        raise ReloadError(
            f"Prometheus refused {shown}: HTTP {response.status_code} {response.text.strip()[:300]}{hint}"
        )


class DebouncedReloader:
    """Reload Prometheus at most once per `min_interval_seconds`, never dropping the last request.

    A reload re-reads every rule file and restarts rule evaluation, so a burst of SLO edits (the
    UI saving one SLO after another) should cost one reload, not twenty. The first request
    reloads at once; requests within the interval after it are coalesced into one trailing
    reload when the interval ends, so the newest rules always get loaded. `flush()` waits for
    that trailing reload (a CLI calls it before exiting).
    """

    def __init__(
        self,
        prometheus: str | PrometheusConnection,
        *,
        min_interval_seconds: float = DEFAULT_RELOAD_INTERVAL_SECONDS,
        timeout_seconds: float = 10.0,
        post: Callable[[str | PrometheusConnection, float], None] = post_reload,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min_interval_seconds < 0:
            raise ValueError(f"min_interval_seconds must be >= 0, got {min_interval_seconds}")
        from slo_pipeline.adapters.prometheus_connection import redact_url

        self._target = prometheus
        # For logs: never the credentials.
        self.prometheus_url = redact_url(prometheus if isinstance(prometheus, str) else prometheus.url)
        self.min_interval_seconds = min_interval_seconds
        self.timeout_seconds = timeout_seconds
        self._post = post
        self._clock = clock
        self._lock = threading.Lock()
        self._last_reload: float | None = None
        self._timer: threading.Timer | None = None
        self._last_error: Exception | None = None
        self.reload_count = 0

    def request(self) -> bool:
        """Reload now if allowed (True), else schedule one trailing reload (False)."""
        with self._lock:
            if self._timer is not None:
                return False  # a trailing reload is already due and will load these rules too
            now = self._clock()
            if self._last_reload is None or now - self._last_reload >= self.min_interval_seconds:
                self._reload_locked()
                return True
            delay = self._last_reload + self.min_interval_seconds - now
            self._timer = threading.Timer(delay, self._trailing)
            self._timer.daemon = True
            self._timer.start()
            return False

    def flush(self) -> None:
        """Wait for a scheduled reload; raise its error if it failed."""
        timer = self._timer
        if timer is not None:
            timer.join()
        with self._lock:
            error, self._last_error = self._last_error, None
        if error is not None:
            raise error

    def take_error(self) -> Exception | None:
        """The error of a trailing reload that failed since the last call, without waiting.

        For a loop that must not block on the timer (the rules sync): it retries on its next tick.
        """
        with self._lock:
            error, self._last_error = self._last_error, None
        return error

    def _trailing(self) -> None:
        with self._lock:
            self._timer = None
            try:
                self._reload_locked()
            except ReloadError as err:  # nobody is waiting on this thread: keep it for flush()
                log.error("%s", err)
                self._last_error = err

    def _reload_locked(self) -> None:
        self._last_reload = self._clock()
        self._post(self._target, self.timeout_seconds)
        self.reload_count += 1
        log.info("reloaded Prometheus at %s", self.prometheus_url)
