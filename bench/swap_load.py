"""Swap under load (issue #15): the chain's p99 while the champion is promoted and rolled back.

``python -m training.promote`` then ``python -m training.rollback`` run as processes of
their own (as ``make promote`` does) while the transformer takes ``SWAP_RATE`` requests a
second; the window lasts until both model servers serve the new version and then the old
one again. Its p99 is compared with that of a steady-state window of the same rate just
before it, and the slow requests are placed in the phases of the swap (``swap_phases``).

The commands run twice, in two windows. **Warm** (the checked figure): each command's
process is started before the window and imports the training stack there, then runs the
command's ``main`` when the window says go -- in production the command runs on a CI
runner or an operator's machine, and only the alias it moves reaches the servers.
**Cold** (printed): started inside the window, so its ~5 s of CPU importing MLflow,
pandas, scikit-learn and XGBoost shares the 2 cores with the servers and the client.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import time
from typing import Any, Literal

from bench.load import Body, RunResult, fixed_rate, run_fixed_rate
from serving.model_worker import lowest_cpu_priority

SWAP_RATE = 100.0
STEADY_SECONDS = 40.0

#: A registry command with its imports done: ``python -c WARM_COMMAND MODULE ARGS...``
#: takes the lowest CPU priority, imports MLflow (which the commands import lazily) and
#: MODULE, prints ``ready``, waits for a line on stdin, then runs ``MODULE.main(ARGS)``.
WARM_COMMAND = (
    "import importlib, sys; from serving.model_worker import lowest_cpu_priority; "
    "lowest_cpu_priority(); import mlflow; command = importlib.import_module(sys.argv[1]); "
    "print('ready', flush=True); sys.stdin.readline(); sys.exit(command.main(sys.argv[2:]))"
)

Commands = Literal["warm", "cold"]


class RegistryCommand:
    """``python -m MODULE ARGS`` at the lowest CPU priority, warm (imported before the
    window, :meth:`prepare`) or cold (started by :meth:`run`)."""

    def __init__(self, module: str, args: list[str], env: dict[str, str]) -> None:
        self.module, self.args, self.env = module, args, env
        self._warm: subprocess.Popen | None = None

    def prepare(self) -> None:
        """Start the command and let it import everything; it waits for :meth:`run`."""
        self._warm = subprocess.Popen(
            [sys.executable, "-c", WARM_COMMAND, self.module, *self.args],
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self._warm.stdout is not None  # PIPE
        line = self._warm.stdout.readline()
        if line.strip() != "ready":
            self._warm.kill()
            raise RuntimeError(f"{self.module} did not start: {line}{self._warm.stdout.read()}")

    async def run(self) -> float:
        """Run the command (the warm one if prepared); the seconds it took."""
        started = time.perf_counter()
        if self._warm is not None:
            warm, self._warm = self._warm, None
            assert warm.stdin is not None and warm.stdout is not None  # PIPE
            warm.stdin.write("go\n")
            warm.stdin.flush()
            output = await asyncio.to_thread(warm.stdout.read)
            returncode = await asyncio.to_thread(warm.wait)
        else:
            output, returncode = await _run_cold(
                [sys.executable, "-m", self.module, *self.args], self.env
            )
        if returncode != 0:
            raise RuntimeError(f"{self.module} {' '.join(self.args)}: {output[-500:]}")
        return time.perf_counter() - started

    def close(self) -> None:
        """Stop a prepared command that never ran (the window ended early)."""
        if self._warm is not None:
            self._warm.kill()
            self._warm.wait()
            self._warm = None


async def _run_cold(command: list[str], env: dict[str, str]) -> tuple[str, int]:
    """Run a registry command as a new process inside the window; its output and code.

    At the lowest CPU priority: at normal priority its ~5 s of CPU importing the training
    stack was measured as the servers' latency.
    """
    process = await asyncio.create_subprocess_exec(
        *command,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        preexec_fn=lowest_cpu_priority,
    )
    try:
        output, _ = await process.communicate()
    except asyncio.CancelledError:
        # The load ran out of time: the command must not outlive the temporary registry.
        process.kill()
        await process.wait()
        raise
    return output.decode(errors="replace"), process.returncode or 0


async def _served_version(port: int) -> str:
    """The model version the predictor on ``port`` serves (its ``fraud_model_info``).

    A plain GET on the load client's own event loop: this poll runs beside the load, and
    building an HTTP client per poll (httpx: an SSL context, 20-80 ms of CPU) blocked the
    loop that sends the requests -- the poll's own stall counted as the servers' latency.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        text = (await reader.read()).decode("utf-8", errors="replace")
    finally:
        writer.close()
    for line in text.splitlines():
        if line.startswith("fraud_model_info{") and line.endswith(" 1.0"):
            return line.split('model_version="', 1)[1].split('"', 1)[0]
    return "none"


#: Seconds between two reads of the servers' /metrics while waiting for a version. A read
#: costs the model server ~6 ms on its event loop (the whole Prometheus registry, encoded):
#: at 4 a second it was a stall the steady state never had. (Prometheus scrapes every 15 s.)
VERSION_POLL_SECONDS = 1.0


async def _wait_for_version(ports: list[int], version: str, timeout_s: float = 120.0) -> float:
    """Seconds until every server on ``ports`` serves ``version`` (to ``VERSION_POLL_SECONDS``)."""
    started = time.perf_counter()
    while True:
        served = {await _served_version(port) for port in ports}
        if served == {version}:
            return time.perf_counter() - started
        if time.perf_counter() - started > timeout_s:
            raise RuntimeError(f"servers still serve {served}, not version {version}")
        await asyncio.sleep(VERSION_POLL_SECONDS)


def _phases(run: RunResult, events: list[tuple[str, float]]) -> dict[str, dict[str, float]]:
    """p99 and worst latency of the requests sent between consecutive events of the swap."""
    import numpy as np

    sent, latency = np.asarray(run.sent_at_s), np.asarray(run.latencies_s) * 1000
    bounds = [("start", 0.0), *events, ("end", float("inf"))]
    phases = {}
    for (name, begin), (_, finish) in itertools.pairwise(bounds):
        inside = latency[(sent >= begin) & (sent < finish)]
        if inside.size:
            phases[f"after_{name}"] = {
                "requests": int(inside.size),
                "p99_ms": round(float(np.percentile(inside, 99)), 1),
                "max_ms": round(float(inside.max()), 1),
            }
    return phases


def swap_under_load(
    transformer_port: int,
    model_ports: list[int],
    body: Body,
    env: dict[str, str],
    tracking_uri: str,
    new_version: str,
    path: str,
    commands: Commands = "warm",
    steady: RunResult | None = None,
) -> dict[str, Any]:
    """Steady-state p99 at ``SWAP_RATE`` on ``path`` (``steady``, or measured now), then the
    p99 while promoting and rolling back with ``commands`` warm or cold."""
    steady = steady or run_fixed_rate(transformer_port, path, body, SWAP_RATE, STEADY_SECONDS)
    timeline: dict[str, float] = {}
    events: list[tuple[str, float]] = []  # (what, seconds after the load started)
    uri = ["--tracking-uri", tracking_uri]
    promote = RegistryCommand("training.promote", ["--version", new_version, *uri], env)
    rollback = RegistryCommand("training.rollback", uri, env)

    async def promote_and_roll_back() -> None:
        started = time.perf_counter()

        def mark(event: str) -> None:
            events.append((event, time.perf_counter() - started))

        await asyncio.sleep(2.0)
        mark("promote_started")
        timeline["promote_s"] = await promote.run()
        mark("promoted")
        timeline["new_served_after_s"] = await _wait_for_version(model_ports, new_version)
        mark("new_served")
        await asyncio.sleep(2.0)
        mark("rollback_started")
        timeline["rollback_s"] = await rollback.run()
        mark("rolled_back")
        timeline["old_served_after_s"] = await _wait_for_version(model_ports, "1")
        mark("old_served")
        await asyncio.sleep(2.0)

    try:
        if commands == "warm":
            promote.prepare()
            rollback.prepare()
        swap: RunResult = asyncio.run(
            fixed_rate(
                transformer_port,
                path,
                body,
                SWAP_RATE,
                STEADY_SECONDS,
                during=promote_and_roll_back,
            )
        )
    finally:
        promote.close()
        rollback.close()
    return {
        "commands": commands,
        "steady": steady.summary(),
        "swap": swap.summary(),
        "timeline_s": {k: round(v, 2) for k, v in timeline.items()},
        # Where in the window the slow requests were: by what had happened when they left.
        "swap_phases": _phases(swap, events),
    }
