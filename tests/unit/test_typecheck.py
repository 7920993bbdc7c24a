"""The floor (fraudops) and the servers (serving) type-check under ``[tool.mypy]``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def mypy(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run the environment's mypy with the project's configuration."""
    executable = Path(sys.executable).with_name("mypy")
    return subprocess.run(
        [str(executable), "--config-file", str(ROOT / "pyproject.toml"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,  # the callers judge the exit code and show the report
    )


def test_floor_and_serving_type_check() -> None:
    result = mypy()
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert result.stdout.startswith("Success: no issues found")


def test_the_configuration_catches_a_wrong_call(tmp_path: Path) -> None:
    # The check above is only worth something if the configuration lets errors through:
    # a wrong argument type to a project class must be reported.
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from fraudops.bundle import Thresholds\n\nThresholds(review='high', decline=0.9)\n"
    )
    result = mypy(str(probe), cwd=ROOT)
    assert result.returncode == 1, result.stdout
    assert 'Argument "review" to "Thresholds" has incompatible type "str"' in result.stdout
