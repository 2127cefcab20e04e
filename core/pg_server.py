"""A throwaway PostgreSQL server in a folder (the test suite's, `bench/`'s): initdb + pg_ctl on a free port,
trust authentication on 127.0.0.1 only, durability off (a scratch server), stopped and deleted by `stop()`.

PostgreSQL refuses to run as root: as root the server runs as the `postgres` system user (Debian's package makes
it), in a folder that user owns. The binaries are found on PATH, else in `pg_config --bindir`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from core.errors import AssistantError

__all__ = ["Server", "find_bin", "start"]


def find_bin(name: str) -> str | None:
    """A PostgreSQL program: on PATH, else in the installed server's bindir (Debian keeps them off PATH)."""
    if found := shutil.which(name):
        return found
    if pg_config := shutil.which("pg_config"):
        bindir = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True).stdout.strip()
        if bindir and (Path(bindir) / name).is_file():
            return str(Path(bindir) / name)
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):  # Debian's layout
        return str(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    root: Path
    port: int
    user: str | None  # the system user it runs as (None: this process's)

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A fresh empty database (C collation: ORDER BY sorts as SQLite does); its URL."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING \'UTF8\' LC_COLLATE \'C\' '
                         f"LC_CTYPE 'C'".encode())
        return self.url_for(name)

    def stop(self) -> None:
        _run([find_bin("pg_ctl") or "pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "stop"],
             self.user, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def _run(cmd: list[str], user: str | None, check: bool = True) -> subprocess.CompletedProcess[str]:
    # the child switches user in C (subprocess's user/group), never in Python: a preexec_fn would run the parent's
    # fork hooks in the child (gRPC's among them, once Milvus was used), which can fail it before exec
    ids: dict = {}
    if user:
        pw = pwd.getpwnam(user)
        ids = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
    done = subprocess.run(cmd, capture_output=True, text=True, cwd="/", timeout=120, **ids)
    if check and done.returncode:
        raise AssistantError(f"{Path(cmd[0]).name} failed: {(done.stderr or done.stdout).strip()[-800:]}")
    return done


def start(root: Path | None = None) -> Server:
    """Initialise and start a server; raises AssistantError when PostgreSQL is not installed."""
    initdb, pg_ctl = find_bin("initdb"), find_bin("pg_ctl")
    if not initdb or not pg_ctl:
        raise AssistantError("PostgreSQL's initdb/pg_ctl not found (Debian: apt-get install postgresql)")
    user = "postgres" if os.geteuid() == 0 else None
    root = Path(root or tempfile.mkdtemp(prefix="assistant-pg-"))
    root.mkdir(parents=True, exist_ok=True)
    if user:
        pw = pwd.getpwnam(user)
        os.chown(root, pw.pw_uid, pw.pw_gid)
    data, port = root / "data", _free_port()
    _run([initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "-N"], user)
    opts = (f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300")
    _run([pg_ctl, "-D", str(data), "-o", opts, "-l", str(root / "log.txt"), "-w", "-t", "60", "start"], user)
    server = Server(root, port, user)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # -w waits for the socket; the first connection may still race startup
        try:
            import psycopg

            psycopg.connect(server.url, connect_timeout=2).close()
            return server
        except Exception:
            time.sleep(0.2)
    server.stop()
    raise AssistantError(f"PostgreSQL did not accept connections on port {port}")
