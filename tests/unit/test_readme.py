"""The README is the course: every ``make`` target it names exists, and the order holds."""

from __future__ import annotations

import re

from fraudops.config import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
MAKEFILE = PROJECT_ROOT / "Makefile"


def readme_targets(text: str) -> set[str]:
    """Targets the README tells people to run: ``make <target>`` in code or backticks."""
    # `make levelN` is a pattern, not a target: a name running into a capital is skipped.
    return set(re.findall(r"\bmake ([a-z][a-z0-9-]*)(?![A-Za-z0-9_])", text))


def makefile_targets(text: str) -> set[str]:
    return set(re.findall(r"^([a-zA-Z0-9_-]+):", text, re.MULTILINE))


def test_every_make_target_in_the_readme_exists() -> None:
    named = readme_targets(README.read_text())
    defined = makefile_targets(MAKEFILE.read_text())
    assert {"demo", "test", "level1", "level5", "drift", "canary", "retrain"} <= named
    assert not named - defined, (
        f"README names targets the Makefile lacks: {sorted(named - defined)}"
    )


def test_every_user_target_has_a_help_line_and_help_is_the_default() -> None:
    text = MAKEFILE.read_text()
    assert re.search(r"^\.DEFAULT_GOAL := help$", text, re.MULTILINE)
    documented = set(re.findall(r"^([a-zA-Z0-9_-]+):.*## ", text, re.MULTILINE))
    for target in readme_targets(README.read_text()):
        assert target in documented, f"make {target}: no '## description' for `make help`"


def test_the_check_would_catch_a_missing_target() -> None:
    assert readme_targets("run `make nonexistent-target` now") == {"nonexistent-target"}
    assert "nonexistent-target" not in makefile_targets(MAKEFILE.read_text())


def test_the_readme_follows_the_course_order() -> None:
    headings = [h.lower() for h in re.findall(r"^## (.+)$", README.read_text(), re.MULTILINE)]
    order = [
        "set-up",
        "level",
        "data",
        "features",
        "pipeline",
        "registry",
        "monitoring",
        "canary",
        "kubernetes",
        "performance",
        "troubleshooting",
    ]
    positions = [next(i for i, h in enumerate(headings) if word in h) for word in order]
    assert positions == sorted(positions), headings
