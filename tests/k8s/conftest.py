"""Fixtures for the manifest tests: the rendered kustomize roots, built once per session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deploy.manifests import build, k8s_dir, kubectl

#: Why the build tests skip on a machine without kubectl (its built-in kustomize renders them).
NO_KUBECTL = "kubectl is not on PATH: `kubectl kustomize` renders the overlays (install kubectl)"

needs_kubectl = pytest.mark.skipif(kubectl() is None, reason=NO_KUBECTL)


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """Rendered documents of every root that tests look into, keyed by path under k8s/."""
    if kubectl() is None:
        pytest.skip(NO_KUBECTL)
    names = [
        "overlays/level1",
        "overlays/level2",
        "overlays/level3",
        "overlays/level4",
        "overlays/level5",
        "overlays/canary",
        "overlays/ab",
        "infra",
    ]
    return {name: build(k8s_dir() / name) for name in names}


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    """Documents of ``kind`` (and ``name``) among rendered documents."""
    return [
        doc
        for doc in docs
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The single document of ``kind`` (and ``name``); fails the test when not exactly one."""
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    """A container's env as name -> value (or the valueFrom mapping)."""
    return {
        item["name"]: item.get("value", item.get("valueFrom")) for item in container.get("env", [])
    }


def fixture_path(*parts: str) -> Path:
    """A file under tests/k8s/fixtures."""
    return Path(__file__).parent / "fixtures" / Path(*parts)
