"""Every third-party import is declared in the right extra, every declared dependency is used.

deptry reads ``[tool.deptry]`` in pyproject.toml. Three kinds of scan:

- the shipped code against all extras (``dev`` counted as dev-only): undeclared (DEP001),
  unused (DEP002), transitive (DEP003) and dev-only (DEP004) imports all fail;
- the dev-time code (tests, bench, deploy: they run where ``make setup`` installed
  every extra) against all extras: undeclared and transitive imports fail;
- each container's own code against the base and that container's extras only (the other
  extras counted as dev-only): an import its image does not install fails as DEP004.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXTRAS = ("train", "serve", "monitor", "pipeline", "dev")
#: Dev-time code: never in an image, run where every extra is installed.
DEV_TIME = ("tests", "bench", "deploy")
#: Container -> (the extras its image installs, the project folders it runs).
#: The floor (fraudops) is in every image and not scanned alone: its bundle imports xgboost,
#: which every image that loads a model installs through its own extra.
CONTAINERS = {
    "serve": (("serve",), ("serving",)),
    "monitor": (("monitor",), ("monitoring",)),
    "pipeline": (("train", "pipeline"), ("data", "features", "training", "pipelines")),
}


def deptry(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run the environment's deptry with ``args`` in ``cwd``."""
    executable = Path(sys.executable).with_name("deptry")
    return subprocess.run(
        [str(executable), "--no-ansi", *args],
        cwd=cwd,
        capture_output=True,
        check=False,  # the callers judge the exit code and show the report
        text=True,
        timeout=300,
    )


def _report(result: subprocess.CompletedProcess[str]) -> str:
    return (result.stdout + result.stderr)[-4000:]


def test_shipped_code_declares_exactly_what_it_imports() -> None:
    result = deptry(".")
    assert result.returncode == 0, _report(result)


def test_dev_time_code_declares_what_it_imports() -> None:
    # Unused (DEP002) is judged on the shipped code; dev tools are expected here (DEP004).
    result = deptry(*DEV_TIME, "--exclude", r"\.venv", "--ignore", "DEP002,DEP004")
    assert result.returncode == 0, _report(result)


@pytest.mark.parametrize("container", sorted(CONTAINERS))
def test_each_container_installs_what_its_code_imports(container: str) -> None:
    extras, folders = CONTAINERS[container]
    others = ",".join(extra for extra in EXTRAS if extra not in extras)
    result = deptry(*folders, "--optional-dependencies-dev-groups", others, "--ignore", "DEP002")
    assert result.returncode == 0, f"{container} image: {_report(result)}"


def test_deptry_catches_an_undeclared_and_an_unused_dependency(tmp_path: Path) -> None:
    # The checks above pass only if deptry really reads the declarations: a project that
    # imports yaml without declaring it, and declares httpx without importing it, must fail.
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "probe"\nversion = "0"\ndependencies = ["httpx"]\n'
    )
    (tmp_path / "probe").mkdir()
    (tmp_path / "probe" / "__init__.py").write_text("import yaml\n")
    result = deptry(".", cwd=tmp_path)
    assert result.returncode == 1, _report(result)
    # yaml is installed here (a dependency of dependencies): undeclared shows as transitive.
    assert "DEP003 'yaml' imported but it is a transitive dependency" in result.stderr
    assert "DEP002 'httpx' defined as a dependency but not used" in result.stderr
