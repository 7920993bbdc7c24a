"""Commit a GitOps release edit and push it (Argo CD syncs what lands on the branch).

::

    python -m deploy.gitops_push commit --path k8s/overlays/level5 \\
        --message "release: fraud-detector v7" --push --github-output
    python -m deploy.gitops_push revert --commit <sha> --push     # the rollback

A push rejected because the branch moved (another commit landed meanwhile) is retried
after ``git pull --rebase``: release edits touch only their own overlay lines, so they
rebase cleanly. ``--github-output`` publishes ``commit=<sha>`` and ``changed=true|false``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

#: Author of the pipeline's commits unless GIT_AUTHOR_NAME / GIT_AUTHOR_EMAIL say otherwise.
BOT_NAME = "fraud-mlops-release-bot"
BOT_EMAIL = "fraud-mlops-release-bot@users.noreply.github.com"


class GitError(RuntimeError):
    """A git command failed; the message carries git's own error."""


@dataclass(frozen=True)
class Repo:
    """A git working tree and the remote / branch releases go to."""

    path: Path
    remote: str = "origin"
    branch: str = "main"

    def git(self, *args: str) -> str:
        """Run git in the working tree; its stdout, or GitError with its stderr."""
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": os.environ.get("GIT_AUTHOR_NAME", BOT_NAME),
            "GIT_AUTHOR_EMAIL": os.environ.get("GIT_AUTHOR_EMAIL", BOT_EMAIL),
            "GIT_COMMITTER_NAME": os.environ.get("GIT_COMMITTER_NAME", BOT_NAME),
            "GIT_COMMITTER_EMAIL": os.environ.get("GIT_COMMITTER_EMAIL", BOT_EMAIL),
        }
        done = subprocess.run(
            ["git", "-C", str(self.path), *args],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if done.returncode != 0:
            raise GitError(f"git {' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout.strip()

    def head(self) -> str:
        """The current commit SHA."""
        return self.git("rev-parse", "HEAD")


def commit_paths(repo: Repo, paths: list[Path], message: str) -> str | None:
    """Commit the changes under ``paths``; the new SHA, or None when nothing changed."""
    relative = [str(path) for path in paths]
    repo.git("add", "--", *relative)
    if not repo.git("diff", "--cached", "--name-only", "--", *relative):
        return None
    repo.git("commit", "-m", message, "--", *relative)
    return repo.head()


def revert_commit(repo: Repo, sha: str) -> str:
    """Add a commit undoing ``sha`` (the GitOps rollback); the new SHA."""
    repo.git("revert", "--no-edit", sha)
    return repo.head()


def push(repo: Repo, attempts: int = 3) -> str:
    """Push the branch, rebasing onto the remote when it moved; the SHA that landed."""
    for attempt in range(1, attempts + 1):
        try:
            repo.git("push", repo.remote, f"HEAD:refs/heads/{repo.branch}")
            return repo.head()
        except GitError:
            if attempt == attempts:
                raise
            repo.git("pull", "--rebase", repo.remote, repo.branch)
    raise GitError("unreachable")  # pragma: no cover - the loop returns or raises


def _write_outputs(values: dict[str, str]) -> None:
    output = os.environ.get("GITHUB_OUTPUT")
    if output:
        with open(output, "a") as handle:
            handle.writelines(f"{key}={value}\n" for key, value in values.items())


def main(argv: list[str] | None = None) -> int:
    """CLI: ``commit`` or ``revert``, optionally ``--push``; exit 1 with git's error."""
    parser = argparse.ArgumentParser(
        prog="python -m deploy.gitops_push", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--repo", type=Path, default=Path.cwd(), help="working tree (default: .)")
    parser.add_argument("--remote", default="origin")
    parser.add_argument("--branch", default="main")
    parser.add_argument("--push", action="store_true", help="push to the remote branch")
    parser.add_argument("--github-output", action="store_true", help="append to $GITHUB_OUTPUT")
    sub = parser.add_subparsers(dest="action", required=True)
    commit = sub.add_parser("commit", help="commit the release edit under --path")
    commit.add_argument("--path", type=Path, action="append", required=True)
    commit.add_argument("--message", required=True)
    revert = sub.add_parser("revert", help="revert a release commit (rollback)")
    revert.add_argument("--commit", required=True)
    args = parser.parse_args(argv)
    repo = Repo(args.repo, args.remote, args.branch)
    try:
        if args.action == "commit":
            sha = commit_paths(repo, args.path, args.message)
            if sha is None:
                print("nothing to commit: the overlay already holds this release")
                if args.github_output:
                    _write_outputs({"changed": "false", "commit": repo.head()})
                return 0
        else:
            sha = revert_commit(repo, args.commit)
        if args.push:
            sha = push(repo)
    except GitError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        f"{args.action} {sha}{' pushed to ' + args.remote + '/' + args.branch if args.push else ''}"
    )
    if args.github_output:
        _write_outputs({"changed": "true", "commit": sha})
    return 0


if __name__ == "__main__":
    sys.exit(main())
