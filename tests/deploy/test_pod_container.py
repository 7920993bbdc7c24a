"""Manifest containers become ``docker run`` plans with the cluster's settings, nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.images import IMAGES, local_image
from deploy.manifests import build
from deploy.pod_container import PodSpecError, expand, find, plan_container, pod_of, resolve_env
from fraudops.config import project_root

SECRETS = {
    "object-store": {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret"},
    "mlflow-postgres": {"MLFLOW_BACKEND_STORE_URI": "postgresql+psycopg2://u@h:5432/db"},
}


def _plan(root: str, kind: str, name: str, tmp_path: Path, component: str | None = None):
    docs = build(project_root() / root)
    pod = pod_of(find(docs, kind, name), component)
    config_maps = {
        d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"
    }
    return plan_container(
        pod,
        pod["containers"][0],
        name=component or name,
        secrets=SECRETS,
        config_maps=config_maps,
        volume_dir=tmp_path,
    )


def test_kubernetes_expansion_of_dependent_variables():
    env = {"A": "1", "B": "two"}
    assert expand("$(A)-$(B)-$(C)-$$(A)", env) == "1-two-$(C)-$(A)"


def test_a_missing_secret_is_named():
    container = {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}
    with pytest.raises(PodSpecError, match="Secret s: not provided"):
        resolve_env(container, {}, {})
    with pytest.raises(PodSpecError, match="Secret s: no key k"):
        resolve_env(container, {"s": {}}, {})


def test_mlflow_server_runs_with_the_manifests_store_settings(tmp_path: Path):
    plan = _plan("k8s/infra/mlflow", "Deployment", "mlflow", tmp_path)
    # $(MLFLOW_BACKEND_STORE_URI) in args is expanded from the Secret, as the kubelet does.
    assert plan.args[plan.args.index("--backend-store-uri") + 1].startswith("postgresql+psycopg2")
    assert plan.args[plan.args.index("--default-artifact-root") + 1] == "s3://fraud-mlops/mlflow"
    assert "--no-serve-artifacts" in plan.args
    assert plan.command == ["mlflow", "server"]
    kwargs = plan.run_kwargs()
    assert kwargs["user"] == "10001:10001" and kwargs["read_only"] is True
    assert kwargs["cap_drop"] == ["ALL"] and kwargs["security_opt"] == ["no-new-privileges"]
    assert kwargs["volumes"][str(tmp_path / "mlflow" / "tmp")] == {"bind": "/tmp", "mode": "rw"}


def test_level5_transformer_gets_its_feast_config_and_secrets(tmp_path: Path):
    plan = _plan(
        "k8s/overlays/level5", "InferenceService", "fraud-detector", tmp_path, "transformer"
    )
    assert plan.env["AWS_ACCESS_KEY_ID"] == "id"
    feast = tmp_path / "transformer" / "feast-config" / "feature_store.yaml"
    assert "s3://fraud-mlops/feast/registry.db" in feast.read_text()
    assert plan.run_kwargs()["volumes"][str(feast.parent)] == {"bind": "/etc/feast", "mode": "ro"}
    assert local_image(plan.image) == "fraud-mlops-transformer:rehearse"


def test_every_image_the_rehearsed_manifests_name_is_built_here(tmp_path: Path):
    plans = [
        _plan("k8s/infra/mlflow", "Deployment", "mlflow", tmp_path),
        _plan("k8s/infra/drift", "CronJob", "fraud-drift", tmp_path),
        *(
            _plan("k8s/overlays/level5", "InferenceService", "fraud-detector", tmp_path, c)
            for c in ("predictor", "explainer", "transformer")
        ),
    ]
    built = {spec.tag for spec in IMAGES}
    for plan in plans:
        assert local_image(plan.image) in built, plan.image


def test_the_drift_job_runs_in_the_image_that_has_its_code(tmp_path: Path):
    plan = _plan("k8s/infra/drift", "CronJob", "fraud-drift", tmp_path)
    assert local_image(plan.image) == "fraud-mlops-monitor:rehearse"
    dockerfile = (project_root() / "monitoring" / "Dockerfile").read_text()
    assert "COPY monitoring/ monitoring/" in dockerfile and "--extra monitor" in dockerfile
    # The root is read-only: the report goes under /tmp, an emptyDir.
    assert "--out-dir /tmp/" in plan.args[0]
    assert plan.env["AWS_ENDPOINT_URL"] == plan.env["MLFLOW_S3_ENDPOINT_URL"]


def test_an_image_no_dockerfile_builds_is_refused():
    with pytest.raises(ValueError, match="no Dockerfile of this repo builds it"):
        local_image("ghcr.io/OWNER/fraud-mlops-unknown:latest")
