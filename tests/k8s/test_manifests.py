"""Every kustomize root builds and validates; deliberately broken manifests fail."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import yaml

from deploy.manifests import (
    build,
    check_documents,
    check_root,
    k8s_dir,
    kustomize_roots,
    load_crds,
    policy_violations,
    strict_schema,
    validate_schema,
)
from tests.k8s.conftest import fixture_path, needs_kubectl

ROOTS = kustomize_roots(k8s_dir())
EXPECTED_ROOTS = {
    "base",
    "infra",
    "overlays/level1",
    "overlays/level2",
    "overlays/level3",
    "overlays/level4",
    "overlays/level5",
    "overlays/canary",
    "overlays/ab",
}
CUSTOM_KINDS = {
    ("serving.kserve.io/v1beta1", "InferenceService"),
    ("networking.istio.io/v1", "VirtualService"),
    ("networking.istio.io/v1", "DestinationRule"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("argoproj.io/v1alpha1", "Application"),
}


def test_every_level_and_scenario_has_a_kustomize_root():
    found = {root.relative_to(k8s_dir()).as_posix() for root in ROOTS}
    assert EXPECTED_ROOTS <= found, f"missing roots: {EXPECTED_ROOTS - found}"


@needs_kubectl
@pytest.mark.parametrize("root", ROOTS, ids=lambda p: p.relative_to(k8s_dir()).as_posix())
def test_root_builds_and_validates(root: Path):
    problems = check_root(root)
    assert problems == [], "\n".join(problems)


@needs_kubectl
def test_every_custom_kind_is_rendered_and_checked_against_its_crd(rendered):
    kinds = {(doc["apiVersion"], doc["kind"]) for docs in rendered.values() for doc in docs}
    assert CUSTOM_KINDS <= kinds, f"not exercised: {CUSTOM_KINDS - kinds}"
    crds = load_crds(k8s_dir() / "crds")
    assert CUSTOM_KINDS <= set(crds), "a custom kind has no vendored CRD"


BROKEN = sorted(fixture_path("broken").glob("*.yaml"))
# The field each broken fixture gets wrong: the error must name it.
WRONG_FIELD = {
    "isvc-misspelled-field.yaml": "canaryTrafficPercnt",
    "isvc-misplaced-field.yaml": "minReplicas",
    "deployment-misspelled-field.yaml": "replica",
    "virtualservice-misspelled-field.yaml": "weigth",
    "destinationrule-misplaced-field.yaml": "subsets",
    "prometheusrule-misspelled-field.yaml": "expresion",
    "servicemonitor-misspelled-field.yaml": "intervall",
    "application-misspelled-field.yaml": "automatic",
    "metadata-misplaced-field.yaml": "label",
}


def test_every_broken_fixture_names_its_wrong_field():
    assert {path.name for path in BROKEN} == set(WRONG_FIELD)


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_broken_manifest_fails_schema_validation(path: Path):
    errors = validate_schema(yaml.safe_load(path.read_text()))
    assert errors, f"{path.name} validated although it is broken"
    assert any(f"'{WRONG_FIELD[path.name]}'" in error for error in errors), errors


@needs_kubectl
def test_broken_overlay_builds_but_fails_validation():
    problems = check_root(fixture_path("broken-overlay"))
    assert len(problems) == 1, problems
    assert "canaryTrafficPercnt" in problems[0] and "InferenceService/fraud-detector" in problems[0]


def test_insecure_workload_breaks_every_rule():
    doc = yaml.safe_load(fixture_path("insecure-deployment.yaml").read_text())
    assert validate_schema(doc) == []  # valid Kubernetes, yet not acceptable here
    problems = "\n".join(policy_violations(doc))
    for rule in (
        "runAsNonRoot",
        "allowPrivilegeEscalation",
        "drop ALL",
        "readOnlyRootFilesystem",
        "resources.requests",
        "resources.limits",
        "livenessProbe",
        "readinessProbe",
        "tag or a digest",
        "DB_PASSWORD",
    ):
        assert rule in problems, f"rule {rule!r} not reported:\n{problems}"


def test_committed_secret_is_rejected():
    doc = yaml.safe_load(fixture_path("committed-secret.yaml").read_text())
    assert policy_violations(doc) == [
        "Secret/object-store: Secrets are created out of band, never committed"
    ]


def test_check_documents_reports_schema_and_rule_problems_together():
    docs = [yaml.safe_load(fixture_path("broken", "deployment-misspelled-field.yaml").read_text())]
    problems = check_documents(docs)
    assert any("'replica'" in p for p in problems) and any("runAsNonRoot" in p for p in problems)


# --- the strict CRD schema conversion -------------------------------------------------------


def test_strict_schema_closes_objects_that_list_properties():
    schema = strict_schema({"type": "object", "properties": {"a": {"type": "string"}}})
    assert schema["additionalProperties"] is False


def test_strict_schema_keeps_preserved_and_map_objects_open():
    preserved = strict_schema(
        {"type": "object", "properties": {"a": {}}, "x-kubernetes-preserve-unknown-fields": True}
    )
    string_map = strict_schema({"type": "object", "additionalProperties": {"type": "string"}})
    assert "additionalProperties" not in preserved
    assert string_map["additionalProperties"] == {"type": "string"}


def test_strict_schema_admits_null_and_int_or_string():
    assert strict_schema({"type": "string", "nullable": True})["type"] == ["string", "null"]
    assert strict_schema({"x-kubernetes-int-or-string": True})["anyOf"] == [
        {"type": "integer"},
        {"type": "string"},
    ]


def test_strict_schema_recurses_into_items():
    schema = strict_schema({"type": "array", "items": {"type": "object", "properties": {"b": {}}}})
    assert schema["items"]["additionalProperties"] is False


# --- the vendored CRDs are the upstream files ----------------------------------------------


def _git_blob(path: Path) -> str:
    content = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def test_vendored_crds_match_their_provenance_table():
    crd_dir = k8s_dir() / "crds"
    table = (crd_dir / "README.md").read_text()
    rows = dict(
        re.findall(
            r"^\| `([^`]+\.yaml)` \|.*\| `([0-9a-f]{40})` \| Apache-2\.0 \|$", table, re.MULTILINE
        )
    )
    files = sorted(crd_dir.glob("*.yaml"))
    assert {path.name for path in files} == set(rows), "README table and crds/ disagree"
    for path in files:
        assert _git_blob(path) == rows[path.name], f"{path.name} differs from the upstream copy"


@needs_kubectl
def test_build_reports_kustomize_errors(tmp_path: Path):
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - missing.yaml\n")
    problems = check_root(tmp_path)
    assert len(problems) == 1 and "kubectl kustomize failed" in problems[0]
    with pytest.raises(Exception, match="missing.yaml"):
        build(tmp_path)
