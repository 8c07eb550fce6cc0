"""`stepgap serve` processes on loopback, started once per test session, all at once.

`servers["sync"]`, `servers["overlap"]` and `servers["faulty"]` (overlap with a planted
fault) serve the smoke workload's model, 8 slots, on free ports.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PLANTED = "placeholder-token"  # deterministic: every request's second token changes


@dataclass
class ServerProcess:
    name: str
    process: subprocess.Popen
    log: Path
    url: str = ""

    @classmethod
    def start(cls, name: str, *args: str) -> ServerProcess:
        log = Path(tempfile.mkstemp(prefix=f"stepgap-serve-{name}-", suffix=".log")[1])
        command = [sys.executable, "-m", "stepgap", "serve", "--port", "0", "--device", "cpu"]
        process = subprocess.Popen(
            [*command, *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=log.open("w"),
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        return cls(name, process, log)

    def wait_ready(self, timeout_s: float = 240.0) -> str:
        """The URL the server prints once it listens (it builds and warms its engine first)."""
        readable, _, _ = select.select([self.process.stdout], [], [], timeout_s)
        line = self.process.stdout.readline() if readable else "(no line in time)\n"
        if " on http://" not in line:
            self.process.kill()
            raise RuntimeError(f"{self.name} server did not start: {line}{self.log.read_text()}")
        self.url = line.rsplit(" on ", 1)[1].strip()
        return self.url

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM (as Ctrl-C or a supervisor would), then its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


@pytest.fixture(scope="session")
def servers():
    started = {
        "sync": ServerProcess.start("sync", "--mode", "sync"),
        "overlap": ServerProcess.start("overlap", "--mode", "overlap"),
        "faulty": ServerProcess.start("faulty", "--mode", "overlap", "--fault", PLANTED),
    }
    try:
        for server in started.values():
            server.wait_ready()
        yield started
    finally:
        statuses = {name: server.stop() for name, server in started.items()}
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it: the exit says so
    for name, status in statuses.items():
        log = started[name].log.read_text()
        assert status in (0, -signal.SIGTERM) and "Traceback" not in log, (name, status, log)
