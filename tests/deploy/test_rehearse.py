"""The rehearsal's plans (no engine needed): what it changes in a manifest, and what it refuses."""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from deploy import (
    engine,
    rehearsal,
    rehearse,
    rehearse_drift,
    rehearse_infra,
    rehearse_level1,
    rehearse_level5,
    rehearse_pipeline,
    storage_initializer,
)
from deploy.manifests import build
from deploy.pod_container import config_maps_of, find, plan_container, pod_of
from deploy.rehearse_services import ObjectStore, PostgresDatabase
from fraudops.config import project_root
from monitoring.window import read_log
from pipelines.run_local import gates_from_log
from serving.prediction_log import read_prediction_log


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


def test_the_pipeline_step_reads_its_gates_from_the_decision_json():
    decision = {
        "gate": {"passed": True, "reasons": ["pr_auc 0.81 >= 0.5", "recall 0.7 >= 0.5"]},
        "challenge": {"better": False, "reason": "champion v1 is better"},
    }
    lines = rehearse_pipeline.gate_lines(decision)
    # The same lines the components print, so the same gates a local run's summary lists.
    assert [(g["gate"], g["verdict"]) for g in gates_from_log("\n".join(lines))] == [
        ("data validation", "PASS"),
        ("registration", "PASS"),
        ("champion comparison", "LOSE"),
    ]
    assert lines[1].endswith("pr_auc 0.81 >= 0.5; recall 0.7 >= 0.5")
    assert lines[-1] == "GATE champion comparison: LOSE — champion v1 is better"


def test_the_online_store_is_loaded_by_its_job_from_the_pushed_data(tmp_path: Path):
    r = _rehearsal(tmp_path)
    r.data_urls = {
        "transactions": "s3://fraud-mlops/dvc/files/md5/aa/1",
        "customer_features": "s3://fraud-mlops/dvc/files/md5/bb/2",
        "terminal_features": "s3://fraud-mlops/dvc/files/md5/cc/3",
    }
    plan = rehearse_infra.load_online_plan(r)
    assert plan.image == "fraud-mlops-train:rehearse"
    assert plan.command == ["python", "-m", "features.load_online"]
    flags = dict(zip(plan.args[::2], plan.args[1::2], strict=True))
    assert flags == {
        "--config": "/etc/feast/feature_store.yaml",
        "--transactions": r.data_urls["transactions"],
        "--customer-features": r.data_urls["customer_features"],
        "--terminal-features": r.data_urls["terminal_features"],
    }
    assert plan.read_only and plan.user == "10001:10001"
    assert plan.env["AWS_ENDPOINT_URL"] == "http://minio.mlops.svc.cluster.local:9000"


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


def test_the_manifests_check_event_times_on_the_server_clock_the_rehearsal_on_its_replay(
    tmp_path: Path,
):
    """Production refuses a transaction dated far from now; the rehearsal replays simulated
    days from the past, so (and only so) its containers run on the replay clock."""
    plans = rehearse_level5.level5_plans(_rehearsal(tmp_path), "s3://fraud-mlops/m/bundle")
    _, transformer_pod = plans["transformer"]
    manifest_env = {e["name"]: e.get("value") for e in transformer_pod["containers"][0]["env"]}
    assert manifest_env["FRAUD_EVENT_CLOCK"] == "server"
    assert plans["transformer"][0].env["FRAUD_EVENT_CLOCK"] == "replay"
    level1 = pod_of(
        find(
            build(project_root() / "k8s/overlays/level1"), "Deployment", rehearse_level1.DEPLOYMENT
        )
    )
    assert {e["name"]: e.get("value") for e in level1["containers"][0]["env"]}[
        "FRAUD_EVENT_CLOCK"
    ] == "server"


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
    assert "level 1" in " ".join(name for name, _, _ in rehearse.STEPS)


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


def _skew_summary(mismatch_share: float) -> dict:
    return {
        "statistics": {
            "transactions": 400,
            "mismatch_share": mismatch_share,
            "equal_share": 1 - mismatch_share,
            "max_mismatch_share": 0.01,
            "feature_mismatch_share": {"customer_tx_count_1d": mismatch_share},
        }
    }


def test_skew_above_its_budget_fails_the_drift_step():
    assert rehearse_drift.judge_skew(_skew_summary(0.0025)).startswith("skew: 99.750% of 400")
    with pytest.raises(rehearsal.StepFailed, match=r"0\.000% of 400 .*'customer_tx_count_1d'"):
        rehearse_drift.judge_skew(_skew_summary(1.0))


def test_the_traffic_is_shipped_in_the_format_the_drift_job_reads(tmp_path: Path):
    """Shipped as the transformer's sidecar ships it; read back by the jobs' own reader."""
    served = tmp_path / "predictions"
    served.mkdir()
    (served / "predictions-20261130.jsonl").write_text(
        (Path(__file__).parents[1] / "monitoring/data/vector-prediction-log.ndjson").read_text()
    )
    store = tmp_path / "store"

    class Bucket:
        def put_object(self, Bucket: str, Key: str, Body: bytes) -> None:
            (store / Key).parent.mkdir(parents=True, exist_ok=True)
            (store / Key).write_bytes(Body)

    now = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
    [key] = rehearse_drift.ship_prediction_log(Bucket(), served, "prediction-log", now)
    assert key.startswith(
        f"prediction-log/date=2026-11-30/{int(now.timestamp())}-"
    ) and key.endswith(".log.gz")
    shipped = read_log((store / "prediction-log").as_uri())
    assert (
        shipped["transaction_id"].tolist() == read_prediction_log(served)["transaction_id"].tolist()
    )


def test_live_traffic_is_the_day_after_the_versioned_data():
    validated = pd.DataFrame(
        {
            "transaction_id": [10, 11],
            "tx_datetime": pd.to_datetime(["2026-04-30 10:00", "2026-04-30 23:59"]),
            "terminal_id": [3, 4],
        }
    )
    sent = rehearse_drift.live_traffic(validated, rows=50)
    assert len(sent) == 50 and sent["tx_datetime"].is_monotonic_increasing
    assert sent["tx_datetime"].min() >= pd.Timestamp("2026-05-01")
    assert sent["transaction_id"].min() > 11


def test_level1_runs_the_locally_built_image_of_its_manifest(tmp_path: Path):
    docs = build(project_root() / "k8s/overlays/level1")
    pod = pod_of(find(docs, "Deployment", rehearse_level1.DEPLOYMENT))
    assert (
        rehearsal.local_images(
            plan_container(
                pod,
                pod["containers"][0],
                name="level1",
                secrets=_rehearsal(tmp_path).secrets(),
                config_maps=config_maps_of(docs),
                volume_dir=tmp_path,
            )
        ).image
        == "fraud-mlops-level1:rehearse"
    )


def test_a_failed_host_check_is_named_by_its_failing_line(tmp_path: Path):
    """deploy.smoke prints a line per check: the FAIL one says why, not the last one."""
    r = rehearsal.Rehearsal(root=project_root(), workdir=tmp_path)
    r.logs.mkdir(parents=True)
    script = "print('ok   ready'); print('FAIL scores a transaction: HTTP 503'); print('ok   rejects'); raise SystemExit(1)"
    with pytest.raises(rehearsal.StepFailed, match=r": FAIL scores a transaction: HTTP 503$"):
        rehearsal.run_host([sys.executable, "-c", script], r, dict(os.environ), "smoke.log")


def test_shipping_waits_for_every_answered_transaction_in_the_log(tmp_path: Path):
    (tmp_path / "predictions-20261130.jsonl").write_text(
        (Path(__file__).parents[1] / "monitoring/data/vector-prediction-log.ndjson").read_text()
    )
    rehearse_drift.wait_for_log(tmp_path, {1200001, 1200003})
    with pytest.raises(rehearsal.StepFailed, match=r"1 of 2 answered transactions not in the"):
        rehearse_drift.wait_for_log(tmp_path, {1200001, 1299999}, timeout_s=0)


def test_teardown_takes_a_container_that_removed_itself_as_removed():
    import docker.errors

    class Api:
        def containers(self, all: bool, filters: dict) -> list[dict]:
            return [{"Id": "gone"}, {"Id": "here"}]

        def remove_container(self, container_id: str, force: bool) -> None:
            if container_id == "gone":  # auto_remove: it went between listing and removal
                raise docker.errors.NotFound("No such container: gone")
            if container_id == "going":  # auto_remove: it is being removed right now
                response = type(
                    "Response",
                    (),
                    {"status_code": 409, "reason": "Conflict", "url": "http+docker://x"},
                )()
                raise docker.errors.APIError(
                    "409 Client Error",
                    response,
                    "removal of container going is already in progress",
                )
            if container_id == "stuck":
                response = type(
                    "Response",
                    (),
                    {"status_code": 500, "reason": "Server Error", "url": "http+docker://x"},
                )()
                raise docker.errors.APIError("500 Server Error", response, "driver failed")

    assert rehearsal.remove_labelled(type("Client", (), {"api": Api()})()) == 2

    class Going(Api):
        def containers(self, all: bool, filters: dict) -> list[dict]:
            return [{"Id": "going"}, {"Id": "here"}]

    assert rehearsal.remove_labelled(type("Client", (), {"api": Going()})()) == 2

    class Stuck(Api):
        def containers(self, all: bool, filters: dict) -> list[dict]:
            return [{"Id": "stuck"}]

    with pytest.raises(docker.errors.APIError, match="driver failed"):
        rehearsal.remove_labelled(type("Client", (), {"api": Stuck()})())


def test_teardown_stops_every_service_even_when_one_part_fails(tmp_path: Path):
    r = rehearsal.Rehearsal(root=project_root(), workdir=tmp_path)
    stopped = []

    class Service:
        def __init__(self, name: str, fails: bool = False) -> None:
            self.name, self.fails = name, fails

        def stop(self) -> None:
            if self.fails:
                raise OSError(f"{self.name}: already gone")
            stopped.append(self.name)

    r.pushgateway, r.redis, r.store = Service("push", fails=True), Service("redis"), Service("s3")
    with pytest.raises(rehearsal.StepFailed, match=r"pushgateway stopped: OSError: push"):
        rehearse.teardown(r)
    assert stopped == ["redis", "s3"]
