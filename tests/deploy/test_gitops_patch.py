"""The GitOps patch edits exactly the release fields of an overlay, in a copy of k8s/."""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path

import pytest
import yaml

from deploy.gitops_patch import ImagePin, PatchError, main, patch_overlay
from deploy.manifests import build, check_documents, k8s_dir
from tests.k8s.conftest import env_of, needs_kubectl, one

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
MODEL_URI = "s3://fraud-mlops/mlflow/1/4f2a/artifacts/model"
PREDICTOR = "ghcr.io/OWNER/fraud-mlops-predictor"


@pytest.fixture
def k8s_copy(tmp_path: Path) -> Path:
    """A copy of k8s/ (overlays reach ../../base and ../../components)."""
    target = tmp_path / "k8s"
    shutil.copytree(k8s_dir(), target, ignore=shutil.ignore_patterns("crds"))
    return target


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    """(removed, added) line pairs between two versions of a file."""
    diff = [
        line
        for line in difflib.ndiff(before.splitlines(), after.splitlines())
        if line[:2] in ("- ", "+ ")
    ]
    removed = [line[2:] for line in diff if line.startswith("- ")]
    added = [line[2:] for line in diff if line.startswith("+ ")]
    assert len(removed) == len(added)
    return list(zip(removed, added, strict=True))


def snapshot(root: Path) -> dict[Path, str]:
    return {path: path.read_text() for path in sorted(root.rglob("*.yaml"))}


def test_release_changes_exactly_the_model_uri_and_image_lines(k8s_copy: Path):
    overlay = k8s_copy / "overlays" / "level5"
    before = snapshot(k8s_copy)
    result = patch_overlay(
        overlay,
        model_uri=MODEL_URI,
        images=[
            ImagePin.parse(f"{PREDICTOR}=ghcr.io/acme/fraud-mlops-predictor@{DIGEST}"),
            ImagePin.parse(f"ghcr.io/OWNER/fraud-mlops-explainer={OTHER}"),
        ],
    )
    after = snapshot(k8s_copy)
    kustomization = overlay / "kustomization.yaml"
    assert result.changed_files == [kustomization]
    assert [path for path in before if before[path] != after[path]] == [kustomization]
    assert changed_lines(before[kustomization], after[kustomization]) == [
        (
            "      - STORAGE_URI=s3://fraud-mlops/mlflow/champion",
            f"      - STORAGE_URI={MODEL_URI}",
        ),
        (f"    newName: {PREDICTOR}", "    newName: ghcr.io/acme/fraud-mlops-predictor"),
        ("    newTag: latest", f"    digest: {DIGEST}"),
        ("    newTag: latest", f"    digest: {OTHER}"),
    ]
    assert result.previous_model_uri == "s3://fraud-mlops/mlflow/champion"
    assert result.previous_images[PREDICTOR] == f"{PREDICTOR}:latest"


@needs_kubectl
def test_patched_overlay_renders_the_release_and_still_validates(k8s_copy: Path):
    overlay = k8s_copy / "overlays" / "level5"
    patch_overlay(
        overlay,
        MODEL_URI,
        [ImagePin.parse(f"{PREDICTOR}=ghcr.io/acme/fraud-mlops-predictor@{DIGEST}")],
    )
    docs = build(k8s_copy / "overlays" / "canary")  # what Argo CD syncs
    spec = one(docs, "InferenceService")["spec"]
    predictor = spec["predictor"]["containers"][0]
    assert predictor["image"] == f"ghcr.io/acme/fraud-mlops-predictor@{DIGEST}"
    assert env_of(predictor)["STORAGE_URI"] == MODEL_URI
    assert env_of(spec["explainer"]["containers"][0])["STORAGE_URI"] == MODEL_URI
    assert spec["transformer"]["containers"][0]["image"].endswith("fraud-mlops-transformer:latest")
    assert check_documents(docs, crd_dir=k8s_dir() / "crds") == []


def test_second_run_with_the_same_release_changes_nothing(k8s_copy: Path):
    overlay = k8s_copy / "overlays" / "level5"
    pins = [ImagePin.parse(f"{PREDICTOR}={DIGEST}")]
    patch_overlay(overlay, MODEL_URI, pins)
    first = (overlay / "kustomization.yaml").read_text()
    result = patch_overlay(overlay, MODEL_URI, pins)
    assert result.changed_files == [] and (overlay / "kustomization.yaml").read_text() == first
    assert result.previous_images[PREDICTOR] == f"{PREDICTOR}@{DIGEST}"


def test_canary_percent_is_the_only_change_in_the_canary_patch(k8s_copy: Path):
    overlay = k8s_copy / "overlays" / "canary"
    before = (overlay / "canary-traffic.yaml").read_text()
    result = patch_overlay(overlay, canary_percent=100)
    after = (overlay / "canary-traffic.yaml").read_text()
    assert result.previous_canary_percent == 20
    assert changed_lines(before, after) == [("  value: 20", "  value: 100")]
    assert yaml.safe_load(after)[0]["value"] == 100


def test_challenger_overlay_takes_its_own_model_uri(k8s_copy: Path):
    overlay = k8s_copy / "overlays" / "ab" / "challenger"
    result = patch_overlay(overlay, model_uri="s3://fraud-mlops/mlflow/1/9c1d/artifacts/model")
    assert result.previous_model_uri == "s3://fraud-mlops/mlflow/candidate"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model_uri": "models:/fraud-detector@champion"}, "registry reference"),
        ({"model_uri": "/tmp/model"}, "must start with one of"),
        ({"images": [ImagePin("ghcr.io/OWNER/unknown", None, DIGEST)]}, "no images entry named"),
        ({"canary_percent": 120}, "0..100"),
        ({}, "nothing to patch"),
    ],
)
def test_impossible_edits_are_refused_with_the_reason(k8s_copy: Path, kwargs, message):
    overlay = k8s_copy / "overlays" / "level5"
    if "canary_percent" in kwargs:
        overlay = k8s_copy / "overlays" / "canary"
    before = snapshot(k8s_copy)
    with pytest.raises(PatchError, match=message):
        patch_overlay(overlay, **kwargs)
    assert snapshot(k8s_copy) == before


def test_an_overlay_without_a_model_location_is_refused(k8s_copy: Path):
    with pytest.raises(PatchError, match="does not own a model location"):
        patch_overlay(k8s_copy / "overlays" / "canary", model_uri=MODEL_URI)


@pytest.mark.parametrize("text", ["no-equals", f"{PREDICTOR}=sha256:short", f"{PREDICTOR}=latest"])
def test_bad_image_arguments(text: str):
    with pytest.raises(PatchError, match="--image"):
        ImagePin.parse(text)


def test_cli_patches_and_writes_github_outputs(k8s_copy: Path, tmp_path: Path, monkeypatch, capsys):
    output = tmp_path / "github_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    overlay = k8s_copy / "overlays" / "level3"
    code = main(
        [
            "--overlay",
            str(overlay),
            "--model-uri",
            MODEL_URI,
            "--image",
            f"{PREDICTOR}={DIGEST}",
            "--github-output",
        ]
    )
    assert code == 0
    assert f"patched {overlay / 'kustomization.yaml'}" in capsys.readouterr().out
    assert (
        output.read_text() == "changed=true\nprevious_model_uri=s3://fraud-mlops/mlflow/champion\n"
    )


def test_cli_refusal_is_one_line_and_exit_1(k8s_copy: Path, capsys):
    code = main(
        ["--overlay", str(k8s_copy / "overlays" / "level5"), "--model-uri", "runs:/abc/model"]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: --model-uri")


NEW_DATA = "s3://fraud-mlops/dvc/files/md5/aa/" + "1" * 30


@needs_kubectl
def test_a_release_moves_the_data_version_the_load_online_job_reads(k8s_copy: Path, capsys):
    feast = k8s_copy / "infra" / "feast"
    before = snapshot(k8s_copy)
    args = ["--overlay", str(feast), "--data-url", f"transactions={NEW_DATA}"]
    assert main(args) == 0
    after = snapshot(k8s_copy)
    kustomization = feast / "kustomization.yaml"
    assert [path for path in before if before[path] != after[path]] == [kustomization]
    ((old, new),) = changed_lines(before[kustomization], after[kustomization])
    assert old.strip().startswith("- TRANSACTIONS_URL=s3://") and new.strip() == (
        f"- TRANSACTIONS_URL={NEW_DATA}"
    )
    job = one(build(feast), "Job", "feast-load-online")
    pod = job["spec"]["template"]["spec"]
    config_map = pod["containers"][0]["envFrom"][0]["configMapRef"]["name"]
    rendered = {d["metadata"]["name"]: d for d in build(feast) if d["kind"] == "ConfigMap"}
    assert rendered[config_map]["data"]["TRANSACTIONS_URL"] == NEW_DATA


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("labels=s3://x/y", "NAME must be one of transactions, customer_features"),
        ("transactions=data/validated/transactions.parquet", "expected an object-store URL"),
    ],
)
def test_bad_data_urls_are_one_line(k8s_copy: Path, capsys, text: str, message: str):
    assert main(["--overlay", str(k8s_copy / "infra" / "feast"), "--data-url", text]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert message in line


def test_an_overlay_without_a_data_version_is_refused(k8s_copy: Path):
    with pytest.raises(PatchError, match="versioned-data has no literal TRANSACTIONS_URL"):
        patch_overlay(k8s_copy / "overlays" / "level5", data_urls={"transactions": NEW_DATA})
