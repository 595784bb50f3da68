"""Run embedportal commands as real server subprocesses on free ports (HTTP and browser tests)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from embedportal.server import free_loopback_port

# Outside the kernel's ephemeral range, so a parallel suite's outgoing connection cannot take it.
free_port = free_loopback_port

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def wait_until_up(server: RunningServer, path: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log()}")
        try:
            if httpx.get(server.base_url + path, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server did not come up within {timeout}s:\n{server.log()}")


@contextmanager
def embedportal_process(
    args: list[str],
    *,
    port: int,
    env: Mapping[str, str] | None = None,
    log_dir: Path,
    health_path: str,
) -> Iterator[RunningServer]:
    """Start `python -m embedportal ARGS` and stop it afterwards; its output goes to a log file."""
    log_path = log_dir / f"server-{port}.log"
    full_env = {**os.environ, **(env or {})}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "embedportal", *args],
            cwd=REPO_ROOT,
            env=full_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        server = RunningServer(process, f"http://127.0.0.1:{port}", log_path)
        try:
            wait_until_up(server, health_path)
            yield server
        finally:
            server.stop()


CHROMIUM_PATH = os.environ.get("EMBEDPORTAL_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
