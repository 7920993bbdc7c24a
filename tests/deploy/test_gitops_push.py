"""Commit, push, rebase-on-race and revert of a release, against a bare repository in tmp_path."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from deploy.gitops_push import GitError, Repo, commit_paths, main, push

OVERLAY = Path("k8s/overlays/level5/kustomization.yaml")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def clone(remote: Path, target: Path) -> Path:
    subprocess.run(
        ["git", "clone", "-q", str(remote), str(target)], check=True, capture_output=True
    )
    git(target, "config", "user.email", "dev@example.com")
    git(target, "config", "user.name", "dev")
    return target


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """A bare 'origin' whose main holds one overlay file."""
    bare = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    seed = clone(bare, tmp_path / "seed")
    (seed / OVERLAY).parent.mkdir(parents=True)
    (seed / OVERLAY).write_text("STORAGE_URI=s3://old\n")
    (seed / "README.md").write_text("fraud\n")
    git(seed, "add", ".")
    git(seed, "commit", "-q", "-m", "seed")
    git(seed, "push", "-q", "origin", "HEAD:main")
    return bare


def test_commit_and_push_a_release(remote: Path, tmp_path: Path):
    work = clone(remote, tmp_path / "ci")
    (work / OVERLAY).write_text("STORAGE_URI=s3://new\n")
    repo = Repo(work)
    sha = commit_paths(repo, [OVERLAY.parent], "release: fraud-detector v7")
    assert sha and push(repo) == sha
    assert (
        git(remote, "log", "-1", "--format=%H %s %an", "main")
        == f"{sha} release: fraud-detector v7 fraud-mlops-release-bot"
    )
    assert git(remote, "show", f"main:{OVERLAY}") == "STORAGE_URI=s3://new"


def test_nothing_to_commit_returns_none(remote: Path, tmp_path: Path):
    work = clone(remote, tmp_path / "ci")
    assert commit_paths(Repo(work), [OVERLAY.parent], "release") is None


def test_only_the_given_paths_are_committed(remote: Path, tmp_path: Path):
    work = clone(remote, tmp_path / "ci")
    (work / OVERLAY).write_text("STORAGE_URI=s3://new\n")
    (work / "README.md").write_text("an unrelated edit\n")
    commit_paths(Repo(work), [OVERLAY.parent], "release")
    assert git(work, "show", "--name-only", "--format=", "HEAD") == OVERLAY.as_posix()


def test_push_rebases_when_the_branch_moved(remote: Path, tmp_path: Path):
    work = clone(remote, tmp_path / "ci")
    other = clone(remote, tmp_path / "other")
    (other / "README.md").write_text("someone else's commit\n")
    git(other, "commit", "-q", "-am", "docs")
    git(other, "push", "-q", "origin", "HEAD:main")
    (work / OVERLAY).write_text("STORAGE_URI=s3://new\n")
    repo = Repo(work)
    commit_paths(repo, [OVERLAY.parent], "release")
    landed = push(repo)
    assert git(remote, "rev-parse", "main") == landed
    assert git(remote, "log", "--format=%s", "main").splitlines()[:2] == ["release", "docs"]


def test_revert_is_the_rollback(remote: Path, tmp_path: Path, capsys):
    work = clone(remote, tmp_path / "ci")
    (work / OVERLAY).write_text("STORAGE_URI=s3://new\n")
    repo = Repo(work)
    release = commit_paths(repo, [OVERLAY.parent], "release")
    push(repo)
    assert main(["--repo", str(work), "--push", "revert", "--commit", release]) == 0
    assert "pushed to origin/main" in capsys.readouterr().out
    assert git(remote, "show", f"main:{OVERLAY}") == "STORAGE_URI=s3://old"


def test_cli_commit_writes_github_outputs(remote: Path, tmp_path: Path, monkeypatch):
    work = clone(remote, tmp_path / "ci")
    output = tmp_path / "out"
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    (work / OVERLAY).write_text("STORAGE_URI=s3://new\n")
    assert (
        main(
            [
                "--repo",
                str(work),
                "--push",
                "--github-output",
                "commit",
                "--path",
                str(OVERLAY.parent),
                "--message",
                "release",
            ]
        )
        == 0
    )
    sha = git(remote, "rev-parse", "main")
    assert output.read_text() == f"changed=true\ncommit={sha}\n"


def test_git_failure_is_one_line_and_exit_1(remote: Path, tmp_path: Path, capsys):
    work = clone(remote, tmp_path / "ci")
    assert main(["--repo", str(work), "revert", "--commit", "0" * 40]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: git revert") and err.count("\n") == 1
    with pytest.raises(GitError):
        Repo(work).git("rev-parse", "no-such-ref")
