"""``python -m serving.launch``: start a level in the background, demo it, stop it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import World, free_port


def _own_feature_repo(world: World) -> Path:
    """A copy of the world's feature repo: the launched levels fold the samples into its live
    state, and the session's other servers must not see transactions dated months ahead."""
    repo = world.root / "launch-feature-repo"
    if not repo.exists():
        shutil.copytree(world.feature_repo, repo)
    return repo


def _launch(world: World, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "FRAUD_PROJECT_ROOT": str(world.root),
        "FRAUD_FEAST_REPO": str(_own_feature_repo(world)),
        "MLFLOW_TRACKING_URI": world.tracking_uri,
        # The launch demo posts serving/samples (dated after the project's data, months
        # after this test world's history): the replay clock may not refuse them here.
        "FRAUD_REPLAY_FUTURE_TOLERANCE_SECONDS": str(365 * 86_400),
    }
    return subprocess.run(
        [sys.executable, "-m", "serving.launch", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and "serving." in Path(f"/proc/{pid}/cmdline").read_text(
        errors="replace"
    )


def test_level1_is_exported_started_demoed_and_stopped(world: World) -> None:
    port = free_port()
    started = _launch(world, "level1", "--port", str(port))
    state = world.root / "run" / "serving"
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert "exported fraud-detector@champion" in started.stdout
        assert "level1      ready after" in started.stdout
        assert '"fraud_probability"' in started.stdout and '"decision"' in started.stdout
        assert (state / "level1-model" / "bundle.json").exists()
        pid = int((state / "level1.pid").read_text())
        assert _alive(pid)
    finally:
        stopped = _launch(world, "stop")
    assert stopped.returncode == 0 and "stopped: level1" in stopped.stdout
    assert not _alive(pid) and not (state / "level1.pid").exists()
    assert _launch(world, "stop").stdout.strip() == "nothing was running"


def test_a_busy_port_is_a_one_line_error(world: World) -> None:
    import socket

    with socket.socket() as squatter:
        squatter.bind(("0.0.0.0", 0))
        squatter.listen(1)
        port = squatter.getsockname()[1]
        result = _launch(world, "level3", "--port", str(port))
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: port {port}: already in use")
    assert "Traceback" not in result.stderr
