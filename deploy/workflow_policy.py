"""The project's rules for GitHub workflows, beyond what actionlint checks.

* ``permissions:`` at the top and on every job (least privilege, never ``write-all``);
* ``concurrency:`` at the top;
* every action pinned to a full commit SHA with its version in a comment
  (``uses: owner/repo@<40 hex> # v1.2.3``);
* every ``run:`` step calls a make target or a Python module (``make X`` / ``python -m X``)
  and contains no ``${{ }}`` expression (values come in through ``env:``, which keeps
  untrusted text out of the shell);
* credentials only from ``secrets.*``: an env / with entry named like a credential takes
  its value from ``${{ secrets.NAME }}``; nothing runs ``kubectl apply`` (GitOps only).

``python -m deploy.workflow_policy`` checks .github/workflows (exit 1 with one line per problem).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from fraudops.config import project_root

PINNED_USES = re.compile(r"^\s*-?\s*uses:\s*([\w.-]+/[\w./-]+)@([0-9a-f]{40})\s+#\s*v\d[\w.-]*\s*$")
RUN_COMMAND = re.compile(r"^(make\s+[\w-]+|(\.venv/bin/)?python\s+-m\s+[\w.]+)(\s|$)")
SECRET_VALUE = re.compile(r"^\$\{\{\s*secrets\.[A-Z0-9_]+\s*\}\}$")
CREDENTIAL_NAME = re.compile(
    r"(TOKEN|PASSWORD|SECRET|ACCESS_KEY|PRIVATE_KEY|CREDENTIALS)", re.IGNORECASE
)
FORBIDDEN_PERMISSIONS = {"write-all", "read-all"}


def load_workflow(path: Path) -> dict[str, Any]:
    """A workflow as a mapping (PyYAML reads the key ``on`` as True: it is put back)."""
    workflow = yaml.safe_load(path.read_text())
    if True in workflow:
        workflow["on"] = workflow.pop(True)
    return workflow


def _check_uses_lines(path: Path) -> list[str]:
    problems = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        stripped = line.split("#", 1)[0].strip().removeprefix("- ").strip()
        if not stripped.startswith("uses:"):
            continue
        target = stripped.removeprefix("uses:").strip().strip("'\"")
        if target.startswith("./"):
            continue
        if not PINNED_USES.match(line):
            problems.append(
                f"{path.name}:{number}: {target} must be pinned to a full commit SHA "
                "with its version in a comment (uses: owner/repo@<sha> # vX.Y.Z)"
            )
    return problems


def _check_credentials(where: str, mapping: dict[str, Any] | None) -> list[str]:
    problems = []
    for name, value in (mapping or {}).items():
        if isinstance(value, bool | int | float):
            continue  # flags such as persist-credentials: false hold no credential
        text = str(value)
        if CREDENTIAL_NAME.search(str(name)) and not SECRET_VALUE.match(text):
            problems.append(
                f"{where}: {name} looks like a credential: take it from ${{{{ secrets.* }}}}"
            )
        elif "secrets." in text and not SECRET_VALUE.match(text):
            problems.append(
                f"{where}: {name} builds a value around a secret: pass the secret alone"
            )
    return problems


def _check_permissions(where: str, permissions: Any) -> list[str]:
    if permissions is None:
        return [f"{where}: needs an explicit permissions: block (least privilege)"]
    if isinstance(permissions, str) and permissions in FORBIDDEN_PERMISSIONS:
        return [f"{where}: permissions: {permissions} is too broad; list the scopes it needs"]
    return []


def workflow_violations(path: Path) -> list[str]:
    """Every rule ``path`` breaks (empty when it keeps them all)."""
    workflow = load_workflow(path)
    name = path.name
    problems = _check_uses_lines(path)
    problems += _check_permissions(f"{name}: workflow", workflow.get("permissions"))
    if "concurrency" not in workflow:
        problems.append(f"{name}: needs a concurrency: group so two runs do not race")
    problems += _check_credentials(f"{name}: env", workflow.get("env"))
    for job_id, job in (workflow.get("jobs") or {}).items():
        where = f"{name}: job {job_id}"
        problems += _check_permissions(where, job.get("permissions"))
        problems += _check_credentials(f"{where} env", job.get("env"))
        for index, step in enumerate(job.get("steps") or []):
            step_where = f"{where} step {step.get('name') or step.get('id') or index}"
            problems += _check_credentials(f"{step_where} env", step.get("env"))
            problems += _check_credentials(f"{step_where} with", step.get("with"))
            command = " ".join(str(step.get("run", "")).split())
            if "run" in step:
                if not RUN_COMMAND.match(command):
                    problems.append(
                        f"{step_where}: run must call a make target or python -m, got {command[:60]!r}"
                    )
                if "${{" in command:
                    problems.append(
                        f"{step_where}: no ${{{{ }}}} in run: pass the value through env"
                    )
            if "kubectl apply" in command:
                problems.append(f"{step_where}: no kubectl apply: push to git and let Argo CD sync")
    return problems


def make_targets(command: str) -> list[str]:
    """Make targets a run command calls."""
    match = re.match(r"^make\s+([\w-]+)", command)
    return [match.group(1)] if match else []


def python_modules(command: str) -> list[str]:
    """Python modules a run command calls with ``python -m``."""
    return re.findall(r"python\s+-m\s+([\w.]+)", command)


def run_commands(path: Path) -> list[str]:
    """Every run: command of a workflow, whitespace-normalised."""
    workflow = load_workflow(path)
    return [
        " ".join(str(step["run"]).split())
        for job in (workflow.get("jobs") or {}).values()
        for step in job.get("steps") or []
        if "run" in step
    ]


def main(argv: list[str] | None = None) -> int:
    """CLI: check the given workflow files (default: .github/workflows/*.yml)."""
    parser = argparse.ArgumentParser(prog="python -m deploy.workflow_policy")
    parser.add_argument("files", nargs="*", type=Path)
    args = parser.parse_args(argv)
    files = args.files or sorted((project_root() / ".github" / "workflows").glob("*.yml"))
    problems = [problem for path in files for problem in workflow_violations(path)]
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"{len(files)} workflows checked, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
