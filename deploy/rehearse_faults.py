"""The rehearsal's faults, each checked against what production must do.

A wrong STORAGE_URI stops the predictor naming it; the object store down while serving
keeps serving; the object store down during a pipeline run fails the run and leaves the
champion where it was.
"""

from __future__ import annotations

import shutil
from dataclasses import replace

from deploy.rehearsal import (
    Rehearsal,
    StepFailed,
    environment,
    last_log_line,
    wait_exit,
)
from deploy.rehearse_level5 import level5_plans, step_smoke, storage_initializer
from deploy.rehearse_pipeline import champion_version, run_pipeline_in_containers
from deploy.rehearse_services import MLFLOW_PORT
from fraudops.registry import mlflow_client
from fraudops.settings import MODEL_NAME

#: Seconds the predictor may take to refuse a wrong model folder (it exits at start-up).
WRONG_URI_EXIT_S = 180.0


def step_fault_wrong_storage_uri(r: Rehearsal) -> str:
    """A wrong STORAGE_URI (the MLflow model folder): the predictor stops, naming it."""
    uri = f"http://{r.gateway}:{MLFLOW_PORT}"
    with environment(r.host_env()):
        client, _ = mlflow_client(uri, check=False)
        wrong = client.get_model_version_download_uri(MODEL_NAME, r.champion["version"])
    folder = r.workdir / "mnt-models-wrong"
    shutil.rmtree(folder, ignore_errors=True)
    storage_initializer(r, wrong, folder, "storage-initializer-wrong-uri.log")
    plan, _ = level5_plans(r, wrong)["predictor"]
    plan = replace(plan, name="predictor-wrong-uri")
    container = r.run_container(
        plan,
        volumes={
            **plan.run_kwargs()["volumes"],
            str(folder): {"bind": "/mnt/models", "mode": "ro"},
        },
    )
    code = wait_exit(r, container, WRONG_URI_EXIT_S, "the predictor with the wrong STORAGE_URI")
    last = last_log_line(container)
    if code == 0 or wrong not in last:
        raise StepFailed(f"predictor with STORAGE_URI={wrong}: exit {code}, last line {last}")
    return f"exit {code}: {last}"


def step_fault_store_down_serving(r: Rehearsal) -> str:
    """The object store down while serving: level 5 keeps serving the loaded model."""
    r.store.stop()
    try:
        return "store down: " + step_smoke(r, "smoke-store-down.log")
    finally:
        r.store.start()


def step_fault_store_down_pipeline(r: Rehearsal) -> str:
    """The object store down during a pipeline run: the run fails, @champion stays."""
    # heavy: imports kfp and the trainer; only the pipeline-fault step needs it
    from pipelines.run_local import PipelineFailed

    with environment(r.host_env()):
        before = champion_version(r)
        r.store.stop()
        try:
            run_pipeline_in_containers(r, "pipeline-store-down.log")
        except PipelineFailed as exc:
            failure = str(exc)
        else:
            raise StepFailed("the pipeline succeeded with the object store down")
        finally:
            r.store.start()
        after = champion_version(r)
    if after != before:
        raise StepFailed(f"@champion moved from {before} to {after} during a failed run")
    return f"run failed ({failure[:120]}); @champion still version {after}"
