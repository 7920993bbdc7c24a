"""Local server processes: start one in its own session, wait until it is ready, stop it.

Used by ``python -m serving.launch`` (the deployment levels), the canary
(``monitoring.canary``), the serving tests and the benchmarks: one way to run a model server
as a local process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from fraudops.paths import paths

#: Environment variables a parent may carry that must not leak into a server: Feast sets
#: Prometheus' multi-process mode on import, which would change how servers count metrics.
_DO_NOT_INHERIT = (
    "PROMETHEUS_MULTIPROC_DIR",
    "PROMETHEUS_MULTIPROCESS_DIR",
    "prometheus_multiproc_dir",
)


class LaunchError(RuntimeError):
    """A level could not be started; the message says why and where the log is."""


@dataclass(frozen=True)
class Component:
    """One server process of a level."""

    name: str
    module: str
    args: tuple[str, ...]
    port: int
    ready_path: str
    env: dict[str, str] = field(default_factory=dict)

    def command(self) -> list[str]:
        """The command line (this interpreter, ``-m module``)."""
        return [sys.executable, "-m", self.module, *self.args]

    def url(self, path: str = "") -> str:
        """``http://127.0.0.1:<port><path>``."""
        return f"http://127.0.0.1:{self.port}{path}"


def child_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a server, minus what must not leak, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in _DO_NOT_INHERIT}
    env.update(extra or {})
    return env


def spawn(
    component: Component, log_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Start ``component`` in its own session (it outlives the caller), logging to a file."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            component.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_environment({**component.env, **(env or {})}),
            start_new_session=True,
            cwd=paths().root,
        )


def log_tail(log_path: Path, lines: int = 15) -> str:
    """The last lines of a server log (for error messages)."""
    if not log_path.exists():
        return ""
    return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])


def _answers_ok(url: str, timeout: float = 2.0) -> bool:
    """``url`` answers HTTP 200 (False while the server is not listening yet)."""
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False  # not listening yet (refused, reset, timed out)


def wait_ready(
    component: Component, process: subprocess.Popen, log_path: Path, timeout_s: float = 120.0
) -> float:
    """Seconds until ``component`` answers 200 on its readiness route; raises if it dies."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if process.poll() is not None:
            raise LaunchError(
                f"{component.name} exited with code {process.returncode} before it was ready; "
                f"log {log_path}:\n{log_tail(log_path)}"
            )
        if _answers_ok(component.url(component.ready_path)):
            return time.monotonic() - started
        time.sleep(0.1)
    raise LaunchError(
        f"{component.name} not ready after {timeout_s:.0f}s on {component.url(component.ready_path)}; "
        f"log {log_path}:\n{log_tail(log_path)}"
    )


def is_ours(pid: int) -> bool:
    """The PID still runs one of our servers (not a recycled PID of something else)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return "serving." in cmdline


def _running(pid: int) -> bool:
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished == pid:
            return False
    except ChildProcessError:
        pass  # not our child: ask the kernel whether it still exists
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def terminate(pids: list[int], grace_s: float = 15.0) -> None:
    """SIGTERM every pid (in order), wait for all, SIGKILL those that will not stop."""
    for pid in pids:
        # A server that already exited is exactly what we want: nothing to signal.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_running(pid) for pid in pids):
        time.sleep(0.1)
    for pid in pids:
        if _running(pid):
            os.kill(pid, signal.SIGKILL)


def port_free(port: int) -> bool:
    """Nothing listens on ``port`` on this machine."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True
