"""The rehearsal's plans (no engine needed): what it changes in a manifest, and what it refuses."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from deploy import (
    engine,
    rehearsal,
    rehearse,
    rehearse_infra,
    rehearse_level5,
    rehearse_pipeline,
    storage_initializer,
)
from deploy.manifests import build
from deploy.pod_container import find, pod_of
from deploy.rehearse_services import ObjectStore, PostgresDatabase
from fraudops.config import project_root


def _rehearsal(tmp_path: Path) -> rehearsal.Rehearsal:
    r = rehearsal.Rehearsal(root=project_root(), workdir=tmp_path)
    r.gateway = "172.17.0.1"
    r.database = PostgresDatabase("mlflow_rehearse")
    return r


def test_mlflow_runs_as_its_manifest_says_but_where_it_listens(tmp_path: Path):
    plan = rehearse_infra.mlflow_plan(_rehearsal(tmp_path))
    manifest = pod_of(find(build(project_root() / "k8s/infra/mlflow"), "Deployment", "mlflow"))
    original = manifest["containers"][0]["args"]
    changed = [(a, b) for a, b in zip(original, plan.args, strict=True) if a != b]
    # Only the backend secret's expansion, the bind address and one more allowed Host differ.
    assert [a for a, _ in changed] == [
        "$(MLFLOW_BACKEND_STORE_URI)",
        "0.0.0.0",
        original[original.index("--allowed-hosts") + 1],
    ]
    assert plan.args[plan.args.index("--backend-store-uri") + 1] == (
        "postgresql+psycopg2://postgres@127.0.0.1:5432/mlflow_rehearse"
    )
    assert plan.args[plan.args.index("--host") + 1] == "172.17.0.1"
    assert plan.image == "fraud-mlops-train:rehearse"


def test_pipeline_steps_run_like_a_kfp_pod(tmp_path: Path):
    args = rehearse_pipeline.pipeline_runner_args(_rehearsal(tmp_path))
    assert args["user"] == "10001:10001" and args["read_only"] is True
    assert args["cap_drop"] == ["ALL"]
    assert args["extra_hosts"]["minio.mlops.svc.cluster.local"] == "172.17.0.1"
    assert args["environment"]["AWS_ENDPOINT_URL"] == "http://minio.mlops.svc.cluster.local:9000"


def test_level5_plans_take_the_champions_storage_uri(tmp_path: Path):
    plans = rehearse_level5.level5_plans(
        _rehearsal(tmp_path), "s3://fraud-mlops/mlflow/1/r/artifacts/bundle"
    )
    assert (
        plans["predictor"][0].env["STORAGE_URI"] == "s3://fraud-mlops/mlflow/1/r/artifacts/bundle"
    )
    assert plans["predictor"][0].env["FRAUD_MODEL_DIR"] == "/mnt/models"
    for plan, _ in plans.values():
        assert plan.read_only and plan.user == "10001:10001"


def test_no_engine_and_no_root_stops_with_one_line(monkeypatch, capsys, tmp_path: Path):
    monkeypatch.setattr(engine, "_connect", lambda timeout_s=5.0: None)
    monkeypatch.setattr(engine.os, "geteuid", lambda: 1000)
    assert rehearse.main(["--workdir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {engine.HOW_TO_GET_ONE}"]


def test_a_failing_step_is_one_line_and_stops_the_run(tmp_path: Path, capsys):
    r = rehearsal.Rehearsal(root=project_root(), workdir=tmp_path)

    def broken() -> str:
        raise rehearsal.StepFailed("object store: nothing answers")

    assert not r.step("services", broken)
    line = capsys.readouterr().out.strip()
    assert line.startswith("FAIL") and line.endswith("services: object store: nothing answers")
    assert r.results[0].ok is False


def test_every_step_has_a_time_bound():
    assert all(bound > 0 for _, _, bound in rehearse.STEPS)


def test_a_step_past_its_bound_fails_naming_what_it_waited_on(tmp_path: Path, capsys):
    """A wait that would hang (here: an hour's sleep) is cut at the step's bound, one line."""
    r = rehearsal.Rehearsal(root=project_root(), workdir=tmp_path)

    def hangs() -> str:
        r.activity = "waiting for the predictor to exit"
        time.sleep(3600)
        return "never"

    assert not r.step("fault: wrong STORAGE_URI", hangs, bound_s=0.2)
    line = capsys.readouterr().out.strip()
    assert line.startswith("FAIL") and "timed out: still running after its bound" in line
    assert "while waiting for the predictor to exit" in line


class _RunningContainer:
    """A container that never exits on its own (the engine's view of a hung process)."""

    def __init__(self) -> None:
        self.status, self.killed = "running", False

    def reload(self) -> None:
        return None

    def logs(self, tail: int = 5) -> bytes:
        return b"INFO downloading s3://fraud-mlops/mlflow/1/models/m-1/artifacts\n"

    def kill(self) -> None:
        self.killed = True


def test_a_container_past_its_bound_is_killed_and_named(tmp_path: Path):
    r = rehearsal.Rehearsal(root=project_root(), workdir=tmp_path)
    container = _RunningContainer()
    with pytest.raises(
        rehearsal.StepFailed, match=r"the predictor: still running after 0s, killed"
    ):
        rehearsal.wait_exit(r, container, 0, "the predictor")
    assert container.killed


def test_a_host_command_past_its_bound_is_killed_and_named(tmp_path: Path):
    r = rehearsal.Rehearsal(root=project_root(), workdir=tmp_path)
    r.logs.mkdir(parents=True)
    sleeper = [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(3600)"]
    with pytest.raises(rehearsal.StepFailed, match=r"no result after 0s, killed \(see slow.log\)"):
        rehearsal.run_host(sleeper, r, dict(os.environ), "slow.log", timeout_s=0.3)


def test_the_storage_initializer_runs_as_a_process_of_its_own(tmp_path: Path, monkeypatch):
    """KServe's download forks a pool: never from the rehearsal's multi-threaded process."""
    calls = []
    monkeypatch.setattr(rehearse_level5, "run_host", lambda command, *a, **k: calls.append(command))
    r = _rehearsal(tmp_path)
    r.store = ObjectStore("172.17.0.1")
    rehearse_level5.storage_initializer(r, "s3://fraud-mlops/mlflow/1/r/artifacts/bundle", tmp_path)
    assert calls[0][1:3] == ["-m", "deploy.storage_initializer"]


def test_the_storage_initializer_names_the_uri_it_could_not_fetch(tmp_path: Path, capsys):
    missing = (tmp_path / "no-such-model").as_uri()
    assert storage_initializer.main([missing, str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {missing}: ")
