"""Start a deployment level as local processes, show it working, leave it running.

``python -m serving.launch level1|level2|level3|level4|level5`` starts the level's servers
in the background (PID files and logs under ``run/serving/``), waits until each is ready,
sends the sample request(s) from ``serving/samples/`` to ``http://localhost:8080``, prints
the answers and exits; ``python -m serving.launch stop`` stops whatever was started.
Starting a level first stops the previous one. No Docker, no cluster: the same modules
the container images run.

Which processes make a level: ``serving.levels``; how one is started, awaited and stopped:
``serving.processes``. This module is the command: state files, the demo requests, the CLI.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import httpx

from fraudops.paths import paths
from fraudops.settings import LaunchSettings
from serving.levels import LEVELS, kserve_ready_path, level_components
from serving.processes import (
    Component,
    LaunchError,
    is_ours,
    port_free,
    spawn,
    terminate,
    wait_ready,
)
from serving.settings import load_settings

SAMPLES = Path(__file__).resolve().parent / "samples"

# The benchmarks, the serving tests and the demo import these from here (their home is
# serving.processes / serving.levels); kept so `from serving.launch import ...` still works.
__all__ = [
    "LEVELS",
    "Component",
    "LaunchError",
    "http_json",
    "kserve_ready_path",
    "level_components",
    "main",
    "spawn",
    "start_level",
    "stop_all",
    "terminate",
    "wait_ready",
]


def http_json(
    url: str, body: Any = None, timeout: float = 10.0, method: str | None = None
) -> tuple[int, Any]:
    """GET (or POST ``body`` as JSON) and return ``(status, parsed JSON or text)``.

    An HTTP error status is an answer, not an exception; no answer at all raises
    ``httpx.HTTPError``.
    """
    data = None if body is None else json.dumps(body).encode()
    headers = {"content-type": "application/json"} if data is not None else {}
    response = httpx.request(
        method or ("POST" if data else "GET"), url, content=data, headers=headers, timeout=timeout
    )
    try:
        return response.status_code, json.loads(response.content)
    except ValueError:
        return response.status_code, response.content.decode(errors="replace")


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
        if pid > 0 and is_ours(pid):
            stopped.append(pid_file.stem)
            pids.append(pid)
    terminate(pids)
    for pid_file in pid_files:
        pid_file.unlink(missing_ok=True)
    order_file.unlink(missing_ok=True)
    return stopped


def export_level1_model(directory: Path) -> Path:
    """What the L1 image build does: resolve the alias and write the bundle to a folder."""
    from fraudops.bundle import export_bundle  # heavy (xgboost): only level1 needs it

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
    parser.add_argument("--port", type=int, default=LaunchSettings().port)
    parser.add_argument("--predictor-port", type=int, default=LaunchSettings().predictor_port)
    parser.add_argument("--explainer-port", type=int, default=LaunchSettings().explainer_port)
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
