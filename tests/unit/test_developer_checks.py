"""The pre-commit hooks run the project's own tools on the right files; Dependabot is set up."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deploy.lint import dockerfiles, workflow_files

ROOT = Path(__file__).resolve().parents[2]
PRE_COMMIT_CONFIG = ROOT / ".pre-commit-config.yaml"
#: The checks every commit gets (the ones `make lint` and CI run).
REQUIRED_HOOKS = {
    "ruff-check",
    "ruff-format",
    "import-linter",
    "deptry",
    "mypy",
    "hadolint",
    "actionlint",
}


def hooks() -> dict[str, dict]:
    """The hooks of .pre-commit-config.yaml by id."""
    config = yaml.safe_load(PRE_COMMIT_CONFIG.read_text())
    return {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}


def selects(hook: dict, path: str) -> bool:
    """Whether pre-commit would pass ``path`` to ``hook`` (its files / exclude patterns)."""
    included = re.search(hook.get("files", ""), path) is not None
    excluded = "exclude" in hook and re.search(hook["exclude"], path) is not None
    return included and not excluded


def test_the_config_is_valid() -> None:
    pre_commit = Path(sys.executable).with_name("pre-commit")
    result = subprocess.run(
        [str(pre_commit), "validate-config", str(PRE_COMMIT_CONFIG)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,  # the assertion shows pre-commit's own message
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_check_has_a_local_hook_that_works_offline() -> None:
    config = yaml.safe_load(PRE_COMMIT_CONFIG.read_text())
    assert [repo["repo"] for repo in config["repos"]] == ["local"]
    assert REQUIRED_HOOKS <= set(hooks())


@pytest.mark.parametrize("hook_id", sorted(REQUIRED_HOOKS))
def test_each_hook_calls_a_tool_make_setup_installs(hook_id: str) -> None:
    hook = hooks()[hook_id]
    assert hook["language"] == "system"
    executable = shlex.split(hook["entry"])[0]
    assert executable.startswith(".venv/bin/"), f"{hook_id}: {executable} is not the project's"
    assert (ROOT / executable).exists(), f"{hook_id}: {executable} missing (run make setup)"


def test_hadolint_sees_every_dockerfile_and_no_test_fixture() -> None:
    hook = hooks()["hadolint"]
    for path in dockerfiles(ROOT):
        assert selects(hook, path.relative_to(ROOT).as_posix()), path
    assert not selects(hook, "tests/workflows/fixtures/docker/broken.Dockerfile")
    assert not selects(hook, "serving/docker/README.md")


def test_actionlint_sees_every_workflow_and_nothing_else() -> None:
    hook = hooks()["actionlint"]
    for path in workflow_files(ROOT):
        assert selects(hook, path.relative_to(ROOT).as_posix()), path
    assert not selects(hook, ".github/dependabot.yml")


def test_dependabot_updates_the_actions_and_the_lock() -> None:
    config = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    assert config["version"] == 2
    ecosystems = {update["package-ecosystem"]: update for update in config["updates"]}
    assert set(ecosystems) == {"github-actions", "uv"}
    assert all(update["directory"] == "/" for update in ecosystems.values())
    assert all(update["schedule"]["interval"] for update in ecosystems.values())
