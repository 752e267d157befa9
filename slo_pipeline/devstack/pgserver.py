"""A private PostgreSQL server in a folder: for the demo when no server is reachable, and for
tests that must stop and restart the database under a running service.

PostgreSQL refuses to run as root, so when we are root the server runs as the `postgres` system
user and owns its data folder. The server listens on 127.0.0.1 only, with trust auth, and keeps
its unix socket inside the data folder so it never collides with a system server.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2

log = logging.getLogger(__name__)

POSTGRES_BIN_DIRS = (Path("/usr/lib/postgresql/15/bin"), Path("/usr/local/bin"), Path("/usr/bin"))
SUPERUSER = "postgres"
LOG_FILE_NAME = "server.log"
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 30.0


class PostgresServerError(RuntimeError):
    """The private server could not be created, started or stopped; carries its log tail."""


def find_postgres_binary(name: str) -> Path:
    for folder in POSTGRES_BIN_DIRS:
        candidate = folder / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    searched = ", ".join(str(d) for d in POSTGRES_BIN_DIRS)
    raise PostgresServerError(f"PostgreSQL binary {name!r} not found in {searched} or PATH")


def _run_as_user() -> pwd.struct_passwd | None:
    """The unprivileged account to run the server as, or None when we are not root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError as err:
        raise PostgresServerError(
            "running as root, but PostgreSQL refuses root and there is no 'postgres' user to run it as"
        ) from err


def _check_reachable_by(account: pwd.struct_passwd, data_dir: Path) -> None:
    """Every parent must be traversable by the server's user, or it cannot open its own folder."""
    for parent in data_dir.resolve().parents:
        mode = parent.stat()
        traversable = mode.st_mode & stat.S_IXOTH or (
            mode.st_uid == account.pw_uid and mode.st_mode & stat.S_IXUSR
        )
        if not traversable:
            raise PostgresServerError(
                f"the private PostgreSQL runs as user {account.pw_name!r}, which cannot enter {parent}: "
                f"choose a data folder under a world-traversable path such as /tmp"
            )


def _log_tail(log_path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


@dataclass
class ManagedPostgres:
    """A postmaster we started; `stop()` shuts it down fast, `start()` brings it back."""

    data_dir: Path
    port: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def url_for(self, dbname: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_FILE_NAME

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = START_TIMEOUT_SECONDS) -> ManagedPostgres:
        if self.running:
            return self
        account = _run_as_user()
        command = [
            str(find_postgres_binary("postgres")),
            "-D", str(self.data_dir),
            "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1",
            "-c", f"unix_socket_directories={self.data_dir}",
        ]  # fmt: skip
        with open(self.log_path, "ab") as server_log:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=server_log,
                stderr=subprocess.STDOUT,
                # own process group: a test can always kill the postmaster and its backends
                start_new_session=True,
                user=account.pw_uid if account else None,
                group=account.pw_gid if account else None,
            )
        self._wait_until_ready(timeout)
        log.info("private PostgreSQL ready on 127.0.0.1:%d (data %s)", self.port, self.data_dir)
        return self

    def _wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error = "not tried"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise PostgresServerError(
                    f"postgres exited with code {self.process.returncode} while starting on port "
                    f"{self.port}:\n{_log_tail(self.log_path)}"
                )
            try:
                psycopg2.connect(self.url, connect_timeout=2).close()
                return
            except psycopg2.OperationalError as err:
                last_error = str(err).strip()
            time.sleep(0.1)
        self.stop()
        raise PostgresServerError(
            f"postgres on port {self.port} not accepting connections after {timeout:.0f}s "
            f"({last_error}):\n{_log_tail(self.log_path)}"
        )

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Fast shutdown (SIGINT: roll back open transactions, disconnect clients)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning("postgres on port %d ignored fast shutdown; killing its process group", self.port)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=timeout)


def _initdb(data_dir: Path, account: pwd.struct_passwd | None) -> None:
    command = [
        str(find_postgres_binary("initdb")),
        "-D", str(data_dir),
        "-U", SUPERUSER,
        "--auth=trust",
        "--encoding=UTF8",
        "--locale=C",
        "--no-sync",  # a scratch cluster: durability of the template files does not matter
        "--no-instructions",
    ]  # fmt: skip
    result = subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        user=account.pw_uid if account else None,
        group=account.pw_gid if account else None,
        check=False,
    )
    if result.returncode != 0:
        raise PostgresServerError(
            f"initdb of {data_dir} failed with code {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )


def start_private_postgres(data_dir: Path, port: int | None = None) -> ManagedPostgres:
    """Create (if empty) and start a PostgreSQL cluster in `data_dir` on 127.0.0.1:`port`."""
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    account = _run_as_user()
    if account is not None:
        _check_reachable_by(account, data_dir)
    if not (data_dir / "PG_VERSION").exists():
        if any(data_dir.iterdir()):
            raise PostgresServerError(f"{data_dir} is neither empty nor a PostgreSQL data folder")
        if account is not None:
            os.chown(data_dir, account.pw_uid, account.pw_gid)
        data_dir.chmod(0o700)  # postgres refuses a group/world-readable data folder
        _initdb(data_dir, account)
    if port is None:
        from slo_pipeline.devstack.launch import free_port

        port = free_port()
    return ManagedPostgres(data_dir=data_dir, port=port).start()
