"""A container engine for the rehearsal: the running Docker engine, or Debian's ``dockerd``.

Order: an engine that answers (``DOCKER_HOST`` or the default socket) is used as it is;
with none, root starts Debian's ``dockerd`` (installing ``docker.io`` first when it is
missing) and waits for it; without root there is nothing to do but say how to get one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOW_TO_GET_ONE = (
    "no container engine: start Docker (or run `make rehearse` as root, which starts "
    "Debian's dockerd: apt-get install -y docker.io)"
)


class EngineUnavailable(RuntimeError):
    """No engine answers and none can be started here; the message says how to get one."""


@dataclass
class Engine:
    """A connected Docker client, and the dockerd process when this run started it."""

    client: Any
    started: subprocess.Popen | None = None

    def stop(self) -> None:
        """Stop the dockerd this run started (an engine that was already running stays)."""
        self.client.close()
        if self.started is not None:
            self.started.terminate()
            self.started.wait(timeout=60)


def _connect(timeout_s: float = 5.0) -> Any | None:
    """A client whose ping answers, or None."""
    import docker
    import docker.errors

    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except (docker.errors.DockerException, OSError):
        return None
    return client


def apt_install(*packages: str) -> None:
    """Install Debian packages (root only; the rehearsal's engine and base-image tools)."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def ensure_engine(log_dir: Path, wait_s: float = 60.0) -> Engine:
    """Connect to the running engine, or start Debian's dockerd as root (see module doc)."""
    client = _connect()
    if client is not None:
        return Engine(client)
    if os.geteuid() != 0:
        raise EngineUnavailable(HOW_TO_GET_ONE)
    if shutil.which("dockerd") is None:
        apt_install("docker.io")
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / "dockerd.log").open("ab") as log:
        process = subprocess.Popen(
            ["dockerd"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EngineUnavailable(
                f"dockerd exited with {process.returncode}: see {log_dir / 'dockerd.log'}"
            )
        client = _connect()
        if client is not None:
            return Engine(client, process)
        time.sleep(1)
    process.terminate()
    raise EngineUnavailable(f"dockerd did not answer within {wait_s:.0f}s: see {log_dir}")


def bridge_gateway(client: Any, network: str = "bridge") -> str:
    """The host's address on the default bridge: where host-side services listen for containers."""
    import ipaddress

    config = client.networks.get(network).attrs["IPAM"]["Config"][0]
    if config.get("Gateway"):
        return str(config["Gateway"])
    # The default bridge often names only its subnet: the gateway is its first address.
    return str(next(ipaddress.ip_network(config["Subnet"]).hosts()))
