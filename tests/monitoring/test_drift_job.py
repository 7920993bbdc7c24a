"""The drift job end to end: registry champion + prediction log -> report, summary, MLflow,
Prometheus metrics, console and exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from fraudops.config import load_params
from monitoring import drift
from monitoring.drift import DriftJobConfig, console_summary, run_drift_job
from monitoring.outputs import EXIT_DRIFT, EXIT_ERROR, EXIT_OK, MAX_TOP_LEVEL_KEYS, SUMMARY_KEYS
from monitoring.prometheus import MetricsPushError
from tests.monitoring.conftest import Registry, World, write_prediction_log
from tests.monitoring.http_stub import Reply, http_stub


@pytest.fixture(scope="module")
def drifted_log(tmp_path_factory: pytest.TempPathFactory, world: World) -> Path:
    """A prediction log of a week of amount-shifted traffic, served by version 1."""
    window = world.live_window("amount_shift")
    return write_prediction_log(
        tmp_path_factory.mktemp("log-drift"), window, world.bundle.feature_names
    )


@pytest.fixture(scope="module")
def quiet_log(tmp_path_factory: pytest.TempPathFactory, world: World) -> Path:
    """A prediction log of a week of traffic from the training process, served by version 1."""
    window = world.live_window("none")
    return write_prediction_log(
        tmp_path_factory.mktemp("log-none"), window, world.bundle.feature_names
    )


def test_drift_job_reports_logs_and_publishes_metrics(
    project: Registry, world: World, drifted_log: Path, tmp_path: Path
) -> None:
    config = DriftJobConfig(source=drifted_log, out_dir=tmp_path / "reports")
    summary, _ = run_drift_job(config, load_params())

    assert tuple(summary) == SUMMARY_KEYS and len(summary) <= MAX_TOP_LEVEL_KEYS
    assert summary["job"] == "drift" and summary["drift_detected"] is True
    assert summary["model"]["alias"] == "champion"
    assert summary["model"]["version"] == project.bundle.model_version
    live = world.live("amount_shift")
    assert summary["window"]["rows"] == len(live)
    assert summary["window"]["start"] <= live["tx_datetime"].min().isoformat()
    assert summary["window"]["end"] > live["tx_datetime"].max().isoformat()
    assert summary["window"]["reference_rows"] == len(project.reference)
    assert "tx_amount" in summary["drifted_features"]

    artifacts = summary["artifacts"]
    html = Path(artifacts["html"]).read_text()
    assert html.lstrip().lower().startswith("<!doctype html") and "tx_amount" in html
    on_disk = json.loads(Path(artifacts["summary"]).read_text())
    assert on_disk == summary

    client = MlflowClient(project.tracking_uri)
    run = client.get_run(artifacts["mlflow_run_id"])
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == load_params().drift.experiment
    assert run.data.tags["model_version"] == project.bundle.model_version
    assert run.data.tags["drift_detected"] == "true"
    assert run.data.metrics["drift_detected"] == 1.0
    assert run.data.metrics["psi_tx_amount"] == pytest.approx(
        summary["statistics"]["psi"]["features"]["tx_amount"]["psi"]
    )
    logged = {item.path for item in client.list_artifacts(run.info.run_id)}
    assert {"drift_report.html", "drift_summary.json"} <= logged

    metrics = Path(artifacts["metrics"]).read_text()
    assert f'fraud_drift_detected{{model_version="{project.bundle.model_version}"}} 1' in metrics
    assert "\nfraud_drift_share " in metrics
    assert 'fraud_feature_psi{feature="tx_amount"}' in metrics

    screen = console_summary(summary)
    assert "DRIFT DETECTED" in screen and "tx_amount" in screen
    assert len(screen.splitlines()) <= 30


def test_cli_exit_codes_no_drift_drift_and_error(
    project: Registry,
    quiet_log: Path,
    drifted_log: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = ["--out-dir", str(tmp_path / "reports"), "--no-mlflow"]
    assert drift.main(["--source", str(quiet_log), *base]) == EXIT_OK
    assert "no drift" in capsys.readouterr().out

    assert drift.main(["--source", str(drifted_log), *base]) == EXIT_DRIFT
    assert "DRIFT DETECTED" in capsys.readouterr().out

    assert drift.main(["--source", str(tmp_path / "nowhere"), *base]) == EXIT_ERROR
    err = capsys.readouterr().err.strip()
    assert err.startswith("drift job failed:") and "nowhere" in err
    assert len(err.splitlines()) == 1

    empty_window = ["--start", "2030-01-01", "--end", "2030-01-02"]
    assert drift.main(["--source", str(quiet_log), *empty_window, *base]) == EXIT_ERROR
    assert "min_current_rows" in capsys.readouterr().err


def test_a_transactions_file_is_featurised_and_scored_by_the_champion(
    project: Registry, world: World, tmp_path: Path
) -> None:
    live, history = tmp_path / "live.parquet", tmp_path / "history.parquet"
    world.live("night_shift").to_parquet(live, index=False)
    world.history.to_parquet(history, index=False)
    config = DriftJobConfig(
        source=live, history=history, out_dir=tmp_path / "reports", log_to_mlflow=False
    )
    summary, _ = run_drift_job(config, load_params())
    assert summary["window"]["source_kind"] == "transactions"
    assert summary["window"]["rows"] == len(world.live("night_shift"))
    assert summary["drift_detected"]
    assert "tx_during_night" in summary["drifted_features"]
    assert summary["artifacts"]["mlflow_run_id"] is None


def test_metrics_are_pushed_to_the_pushgateway_when_configured(
    project: Registry, quiet_log: Path, tmp_path: Path
) -> None:
    with http_stub(lambda request: Reply(status=200)) as gateway:
        config = DriftJobConfig(
            source=quiet_log,
            out_dir=tmp_path / "reports",
            log_to_mlflow=False,
            pushgateway_url=gateway.url,
        )
        summary, _ = run_drift_job(config, load_params())
    (pushed,) = gateway.requests
    assert pushed.method == "PUT" and pushed.path == "/metrics/job/fraud-drift"
    body = pushed.body.decode()
    assert f'fraud_drift_detected{{model_version="{summary["model"]["version"]}"}} 0' in body
    assert body == Path(summary["artifacts"]["metrics"]).read_text()


def test_a_pushgateway_error_is_reported_with_its_url(
    project: Registry, quiet_log: Path, tmp_path: Path
) -> None:
    with http_stub(lambda request: Reply(status=500, body={"error": "full"})) as gateway:
        config = DriftJobConfig(
            source=quiet_log,
            out_dir=tmp_path / "reports",
            log_to_mlflow=False,
            pushgateway_url=gateway.url,
        )
        with pytest.raises(MetricsPushError, match="HTTP 500"):
            run_drift_job(config, load_params())


def test_an_object_store_uri_is_read_like_a_local_log(
    project: Registry, quiet_log: Path, tmp_path: Path
) -> None:
    # file:// goes through the same object-store path as s3:// (pyarrow's filesystems).
    config = DriftJobConfig(
        source=quiet_log.as_uri() + "/", out_dir=tmp_path / "reports", log_to_mlflow=False
    )
    summary, _ = run_drift_job(config, load_params())
    local, _ = run_drift_job(
        DriftJobConfig(source=quiet_log, out_dir=tmp_path / "local", log_to_mlflow=False),
        load_params(),
    )
    assert summary["window"]["rows"] == local["window"]["rows"] > 0
    assert summary["statistics"] == local["statistics"]


def test_one_future_dated_record_does_not_move_the_default_window(
    project: Registry, world: World, tmp_path: Path
) -> None:
    window = world.live_window("none")
    typo = window.tail(1).copy()
    typo["tx_datetime"] = pd.Timestamp("2099-01-01")
    typo["transaction_id"] = typo["transaction_id"] + 10**9
    log = write_prediction_log(
        tmp_path / "log", pd.concat([window, typo]), world.bundle.feature_names
    )
    config = DriftJobConfig(source=log, out_dir=tmp_path / "reports", log_to_mlflow=False)
    summary, _ = run_drift_job(config, load_params())
    # The default window still holds the week of traffic, not the lone 2099 record.
    assert summary["window"]["rows"] == len(window)
    assert summary["window"]["end"] <= "2099"


def test_a_too_small_window_names_the_window_and_the_flag(
    project: Registry, quiet_log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--out-dir", str(tmp_path / "reports"), "--no-mlflow"]
    tiny = ["--start", "2030-01-01", "--end", "2030-01-02"]
    assert drift.main(["--source", str(quiet_log), *tiny, *base]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "[2030-01-01 00:00, 2030-01-02 00:00)" in err
    assert "--start/--end" in err and "--window-days" in err
