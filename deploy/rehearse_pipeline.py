"""The rehearsal's pipeline step: the committed compiled pipeline, each step in a container.

``kfp.local.DockerRunner`` runs every step in the training image, as a KFP pod would (uid
10001, read-only root, the cluster's service names); the run registers and promotes in
MLflow. The object-store fault (``deploy.rehearse_faults``) runs it again.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from deploy.rehearsal import (
    LABEL,
    Rehearsal,
    StepFailed,
    environment,
    one_line,
)
from deploy.rehearse_services import LOCAL_TEST_CREDENTIALS, MLFLOW_PORT
from fraudops.registry import mlflow_client
from fraudops.settings import MODEL_NAME
from pipelines import local_conditions


def pipeline_runner_args(r: Rehearsal) -> dict[str, Any]:
    """How each pipeline step's container runs: the pod a KFP step gets, on Docker."""
    return {
        "environment": {
            **LOCAL_TEST_CREDENTIALS,
            "MLFLOW_S3_ENDPOINT_URL": "http://minio.mlops.svc.cluster.local:9000",
            "AWS_ENDPOINT_URL": "http://minio.mlops.svc.cluster.local:9000",
            "HOME": "/tmp",
        },
        "extra_hosts": r.cluster_hosts(),
        "user": "10001:10001",
        "read_only": True,
        "tmpfs": {"/tmp": "mode=1777"},
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        # Teardown removes what carries the label: a step cut off at its bound included.
        "labels": {LABEL: "1"},
    }


def run_pipeline_in_containers(r: Rehearsal, log_name: str) -> Path:
    """The committed compiled pipeline, each step in the training image (kfp DockerRunner)."""
    from kfp import components, local

    # heavy: kfp, the trainer and MLflow; only the pipeline steps need them
    from pipelines.compile import compiled_pipeline_path
    from pipelines.console import plain
    from pipelines.run_local import PipelineFailed, PipelineInputs
    from training.tracking import dvc_data_hash, git_commit

    root = Path(tempfile.mkdtemp(prefix="pipeline-", dir=r.workdir))
    root.chmod(0o777)  # the steps run as uid 10001 and write their outputs here
    inputs = PipelineInputs(
        transactions=r.data_urls["transactions"],
        customer_features=r.data_urls["customer_features"],
        terminal_features=r.data_urls["terminal_features"],
        params_yaml=(r.root / "params.yaml").read_text(),
        mlflow_tracking_uri=f"http://mlflow.mlops.svc.cluster.local:{MLFLOW_PORT}",
        git_commit=git_commit(r.root),
        data_hash=dvc_data_hash(r.root),
        promote_via="pipeline",
    )
    local_conditions.install()
    local.init(
        local.DockerRunner(**pipeline_runner_args(r)),
        pipeline_root=str(root),
        raise_on_error=True,
    )
    pipeline = components.load_component_from_file(str(compiled_pipeline_path()))
    # kfp creates each step's output folders here as this (root) process; the steps write
    # into them as uid 10001, like a pod's fsGroup-owned volume: so no umask while it runs.
    umask = os.umask(0)
    r.activity = f"running the pipeline's steps in containers (see {log_name})"
    with (r.logs / log_name).open("w") as log, contextlib.redirect_stdout(log):
        try:
            task = pipeline(**inputs.as_arguments())
        except RuntimeError as exc:
            raise PipelineFailed(plain(one_line(exc))) from None
        finally:
            os.umask(umask)
    return Path(task.output.path)


def champion_version(r: Rehearsal) -> str | None:
    """The registry's @champion version now (None: no champion)."""
    from mlflow.exceptions import MlflowException

    uri = f"http://{r.gateway}:{MLFLOW_PORT}"
    try:
        client, _ = mlflow_client(uri, check=False)
        return client.get_model_version_by_alias(MODEL_NAME, "champion").version
    except MlflowException:
        return None


def gate_lines(decision: dict) -> list[str]:
    """The gates of a run that got past validation, from its evaluation's ``decision.json``.

    The steps ran in containers, so their stdout is only in the log; the evaluation step's
    JSON is in the pipeline root, which DockerRunner mounts at the same path on the host.
    A run that failed validation raised before, so validation passed.
    """
    gate, challenge = decision["gate"], decision["challenge"]
    return [
        "GATE data validation: PASS",
        f"GATE registration: {'PASS' if gate['passed'] else 'FAIL'} — "
        + "; ".join(gate["reasons"]),
        f"GATE champion comparison: {'WIN' if challenge['better'] else 'LOSE'} — "
        + challenge["reason"],
    ]


def step_pipeline(r: Rehearsal) -> str:
    """The pipeline in containers: validate -> training set -> train -> evaluate -> register."""
    # heavy: imports kfp and the trainer; only the pipeline step needs it
    from pipelines.run_local import PipelineFailed
    from training.run import DECISION_FILE

    with environment(r.host_env()):
        try:
            evaluation = run_pipeline_in_containers(r, "pipeline.log")
        except PipelineFailed as exc:
            raise StepFailed(f"pipeline: {exc}") from None
        version = champion_version(r)
    gates = gate_lines(json.loads((evaluation / DECISION_FILE).read_text()))
    if version is None:
        raise StepFailed(f"no @champion after the run: {gates[-1]}")
    return f"@champion = version {version}; " + " | ".join(
        line.partition(" — ")[0] for line in gates
    )
