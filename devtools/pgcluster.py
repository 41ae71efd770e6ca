"""Run a command against a throwaway PostgreSQL cluster: `python -m devtools.pgcluster -- CMD...`.

initdb and postgres refuse to run as root, so as root the cluster belongs to the `postgres`
user, in a directory that user can reach. The cluster is deleted afterwards.
"""

import argparse
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DEFAULT_BIN = "/usr/lib/postgresql/15/bin"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def postgres_cluster(bin_dir: str = DEFAULT_BIN) -> Iterator[str]:
    """Start a cluster and yield its DATABASE_URL (user postgres, database postgres)."""
    as_root = os.geteuid() == 0
    owner = pwd.getpwnam("postgres") if as_root else None
    # /tmp itself is world-writable; a mkdtemp directory is ours alone, so hand it over.
    base = Path(tempfile.mkdtemp(prefix="shop-pg-", dir="/tmp"))
    if owner:
        os.chown(base, owner.pw_uid, owner.pw_gid)
    data = base / "data"
    port = _free_port()
    user = owner.pw_uid if owner else None
    group = owner.pw_gid if owner else None
    log = open(base / "server.log", "wb")  # noqa: SIM115 - closed in finally
    server = None
    try:
        subprocess.run(
            [
                f"{bin_dir}/initdb",
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            # The postgres user may not enter the caller's directory (a CI clone in mktemp -d).
            cwd=base,
            user=user,
            group=group,
        )
        server = subprocess.Popen(
            [
                f"{bin_dir}/postgres",
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(base),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=base,
            user=user,
            group=group,
        )
        deadline = time.monotonic() + 30
        while True:
            ready = subprocess.run(
                [f"{bin_dir}/pg_isready", "-h", "127.0.0.1", "-p", str(port)],
                stdout=subprocess.DEVNULL,
                check=False,
            )
            if ready.returncode == 0:
                break
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "PostgreSQL did not start:\n" + (base / "server.log").read_text()
                )
            time.sleep(0.1)
        yield f"postgres://postgres@127.0.0.1:{port}/postgres"
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
        log.close()
        shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bin", default=DEFAULT_BIN)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give a command after --")
    with postgres_cluster(args.bin) as url:
        print(f"*** PostgreSQL run: DATABASE_URL={url} ***", flush=True)
        return subprocess.call(command, env={**os.environ, "DATABASE_URL": url})


if __name__ == "__main__":
    sys.exit(main())
