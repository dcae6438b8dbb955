"""A throwaway PostgreSQL cluster of the test's own (`initdb` into a temporary directory, its own
port and socket directory, trust authentication on loopback), which a test may stop and start
again. The machine's PostgreSQL is never touched.

initdb refuses to run as root: as root the cluster is made and run as the `postgres` system
user (through `runuser`), in a directory it owns."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.servers import free_port


def _pg_bin() -> Path:
    """`RIDEFLOW_TEST_PG_BIN`, else the newest Debian PostgreSQL installed (15 if none is)."""
    if "RIDEFLOW_TEST_PG_BIN" in os.environ:
        return Path(os.environ["RIDEFLOW_TEST_PG_BIN"])
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()
RUN_AS = "postgres"


class PgCluster:
    """`initdb`, `pg_ctl start`, `pg_ctl stop -m fast`, and its SQLAlchemy URL."""

    def __init__(self) -> None:
        self.port = free_port()
        self.prefix: list[str] = []
        # Not under pytest's tmp_path: that is private to root, and the server may run as
        # another user.
        self.dir = Path(tempfile.mkdtemp(prefix="rideflow-pg-"))
        self.data = self.dir / "data"
        if os.geteuid() == 0:
            user = pwd.getpwnam(RUN_AS)
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self.prefix = ["runuser", "-u", RUN_AS, "--"]

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str, timeout: float = 120) -> None:
        done = subprocess.run(
            [*self.prefix, str(PG_BIN / tool), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed:\n{done.stdout}{done.stderr}")

    def init(self) -> PgCluster:
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-sync", "--no-instructions",
        )  # fmt: skip
        return self

    def start(self) -> None:
        """Start it and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"), "-o", options,
            "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """`pg_ctl stop -m fast`: every connection is cut, the server is down until `start`."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def destroy(self) -> None:
        if self.running():
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        path = self.dir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


def missing() -> str | None:
    """Why a cluster cannot be made here, or None."""
    if not (PG_BIN / "initdb").exists():
        return f"PostgreSQL's initdb is not installed at {PG_BIN} (apt-get install postgresql-15)"
    share = subprocess.run(
        [str(PG_BIN / "pg_config"), "--sharedir"], capture_output=True, text=True, check=False
    ).stdout.strip()
    if not (Path(share) / "extension" / "postgis.control").exists():
        return f"PostGIS is not installed for the PostgreSQL at {PG_BIN} (postgresql-NN-postgis-3)"
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return "running as root and runuser is missing (initdb refuses root)"
        try:
            pwd.getpwnam(RUN_AS)
        except KeyError:
            return f"running as root and there is no {RUN_AS!r} user to run PostgreSQL as"
    return None


def skip_unless_available() -> None:
    reason = missing()
    if reason is not None:
        pytest.skip(f"PostgreSQL fault test skipped: {reason}")
