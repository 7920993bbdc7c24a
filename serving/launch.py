"""Start a deployment level as local processes, show it working, leave it running.

``python -m serving.launch level1|level2|level3|level4|level5`` starts the level's servers
in the background (PID files and logs under ``run/serving/``), waits until each is ready,
sends the sample request(s) from ``serving/samples/`` to ``http://localhost:8080``, prints
the answers and exits; ``python -m serving.launch stop`` stops whatever was started.
Starting a level first stops the previous one. No Docker, no cluster: the same modules
the container images run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fraudops.paths import paths

LEVELS = ("level1", "level2", "level3", "level4", "level5")
SAMPLES = Path(__file__).resolve().parent / "samples"
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


def kserve_ready_path(model_name: str) -> str:
    """KServe's model readiness route (200 once the model is loaded)."""
    return f"/v1/models/{model_name}"


def level_components(
    level: str,
    model_name: str = "fraud-detector",
    port: int = 8080,
    predictor_port: int = 8081,
    explainer_port: int = 8082,
    model_dir: Path | None = None,
) -> list[Component]:
    """The processes of a level, in start order (the entry point on ``port`` last)."""
    ready = kserve_ready_path(model_name)
    if level == "level1":
        env = {"FRAUD_MODEL_DIR": str(model_dir)} if model_dir else {}
        return [
            Component(
                "level1",
                "serving.level1",
                ("--host", "127.0.0.1", "--port", str(port)),
                port,
                "/readyz",
                env,
            )
        ]
    if level == "level2":
        return [
            Component(
                "level2",
                "serving.level2",
                ("--host", "127.0.0.1", "--port", str(port)),
                port,
                "/readyz",
            )
        ]
    if level == "level3":
        return [
            Component("predictor", "serving.predictor", ("--http_port", str(port)), port, ready)
        ]
    predictor = Component(
        "predictor",
        "serving.predictor",
        ("--http_port", str(predictor_port)),
        predictor_port,
        ready,
    )
    transformer_args = ["--http_port", str(port), "--predictor_host", f"127.0.0.1:{predictor_port}"]
    components = [predictor]
    if level == "level5":
        components.append(
            Component(
                "explainer",
                "serving.explainer",
                ("--http_port", str(explainer_port)),
                explainer_port,
                ready,
            )
        )
        transformer_args += ["--explainer_host", f"127.0.0.1:{explainer_port}"]
    elif level != "level4":
        raise LaunchError(f"level: must be one of {', '.join(LEVELS)}, got {level!r}")
    components.append(
        Component("transformer", "serving.transformer", tuple(transformer_args), port, ready)
    )
    return components


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


def http_json(
    url: str, body: Any = None, timeout: float = 10.0, method: str | None = None
) -> tuple[int, Any]:
    """GET (or POST ``body`` as JSON) and return ``(status, parsed JSON or text)``."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method or ("POST" if data else "GET"))
    if data is not None:
        request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def log_tail(log_path: Path, lines: int = 15) -> str:
    """The last lines of a server log (for error messages)."""
    if not log_path.exists():
        return ""
    return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])


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
        try:
            status, _ = http_json(component.url(component.ready_path), timeout=2.0)
            if status == 200:
                return time.monotonic() - started
        except (urllib.error.URLError, OSError):
            pass  # not listening yet
        time.sleep(0.1)
    raise LaunchError(
        f"{component.name} not ready after {timeout_s:.0f}s on {component.url(component.ready_path)}; "
        f"log {log_path}:\n{log_tail(log_path)}"
    )


def _is_ours(pid: int) -> bool:
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


def state_dir() -> Path:
    """PID files and logs of locally started servers."""
    return paths().run_dir / "serving"


def stop_all(directory: Path | None = None) -> list[str]:
    """Stop every server recorded under ``directory``, entry point first; names stopped."""
    directory = directory or state_dir()
    order_file = directory / "level"
    recorded = order_file.read_text().split()[1:] if order_file.exists() else []
    pid_files = sorted(
        directory.glob("*.pid"), key=lambda p: -recorded.index(p.stem) if p.stem in recorded else 0
    )
    stopped, pids = [], []
    for pid_file in pid_files:
        try:
            pid = int(pid_file.read_text().strip())
        except ValueError:
            pid = -1
        if pid > 0 and _is_ours(pid):
            stopped.append(pid_file.stem)
            pids.append(pid)
    terminate(pids)
    for pid_file in pid_files:
        pid_file.unlink(missing_ok=True)
    order_file.unlink(missing_ok=True)
    return stopped


def port_free(port: int) -> bool:
    """Nothing listens on ``port`` on this machine."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def export_level1_model(directory: Path) -> Path:
    """What the L1 image build does: resolve the alias and write the bundle to a folder."""
    from fraudops.bundle import export_bundle
    from serving.settings import load_settings

    settings = load_settings()
    try:
        return export_bundle(directory, alias=settings.model_alias, model_name=settings.model_name)
    except LookupError as exc:
        raise LaunchError(f"{exc} -- train and promote a model first (make train)") from None


def _print_answer(title: str, url: str, status: int, body: Any) -> None:
    print(f"\n==> {title}: POST {url} -> HTTP {status}")
    print(json.dumps(body, indent=2, ensure_ascii=False) if not isinstance(body, str) else body)


def demo_requests(level: str, model_name: str, port: int) -> int:
    """Send the level's sample request(s) and print the answers; the number of failures."""
    base = f"http://127.0.0.1:{port}/v1/models/{model_name}"
    sample = SAMPLES / ("feature_rows.json" if level == "level3" else "transactions.json")
    body = json.loads(sample.read_text())
    failures = 0
    status, answer = http_json(f"{base}:predict", body)
    _print_answer(
        f"predict ({sample.relative_to(paths().root) if sample.is_relative_to(paths().root) else sample})",
        f"{base}:predict",
        status,
        answer,
    )
    failures += status != 200
    if level == "level5":
        suspicious = {"instances": body["instances"][1:2]}
        status, answer = http_json(f"{base}:explain", suspicious)
        _print_answer("explain (the night-time 940.00 purchase)", f"{base}:explain", status, answer)
        failures += status != 200
    return failures


def start_level(
    level: str, port: int, predictor_port: int, explainer_port: int, timeout_s: float
) -> int:
    """Stop what runs, start ``level``, wait for readiness, demo it; the exit code."""
    from serving.settings import load_settings

    settings = load_settings()
    directory = state_dir()
    stopped = stop_all(directory)
    if stopped:
        print(f"stopped the previous level ({', '.join(stopped)})")
    model_dir = None
    if level == "level1":
        model_dir = export_level1_model(directory / "level1-model")
        print(f"exported {settings.model_name}@{settings.model_alias} to {model_dir}")
    components = level_components(
        level, settings.model_name, port, predictor_port, explainer_port, model_dir
    )
    busy = [c for c in components if not port_free(c.port)]
    if busy:
        raise LaunchError(
            f"port {busy[0].port}: already in use by a process this command did not start; "
            f"free it or pass --port/--predictor-port/--explainer-port"
        )
    directory.mkdir(parents=True, exist_ok=True)
    # The level, then its components in start order (stop goes in reverse).
    (directory / "level").write_text(" ".join([level, *(c.name for c in components)]))
    started = []
    for component in components:
        log_path = directory / f"{component.name}.log"
        process = spawn(component, log_path)
        (directory / f"{component.name}.pid").write_text(str(process.pid))
        started.append((component, process, log_path))
    print(f"==> {level}: starting {', '.join(f'{c.name} :{c.port}' for c in components)}")
    for component, process, log_path in started:
        seconds = wait_ready(component, process, log_path, timeout_s)
        print(f"    {component.name:<11} ready after {seconds:4.1f}s  (log {log_path})")
    failures = demo_requests(level, settings.model_name, port)
    print(f"\n==> {level} is running on http://localhost:{port} -- `make stop` stops it.")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> None:
    """CLI: ``level1`` .. ``level5`` or ``stop``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=(*LEVELS, "stop"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("FRAUD_PORT", "8080")))
    parser.add_argument(
        "--predictor-port", type=int, default=int(os.environ.get("FRAUD_PREDICTOR_PORT", "8081"))
    )
    parser.add_argument(
        "--explainer-port", type=int, default=int(os.environ.get("FRAUD_EXPLAINER_PORT", "8082"))
    )
    parser.add_argument(
        "--timeout", type=float, default=180.0, help="seconds to wait for readiness"
    )
    args = parser.parse_args(argv)
    try:
        if args.action == "stop":
            stopped = stop_all()
            print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
            return
        sys.exit(
            start_level(
                args.action, args.port, args.predictor_port, args.explainer_port, args.timeout
            )
        )
    except LaunchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
