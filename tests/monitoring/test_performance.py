"""Delayed-label performance: only matured labels count, metrics are training's, and a
new fraud pattern the model misses shows up as a performance drop (concept drift)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from fraudops.config import load_params
from monitoring import performance
from monitoring.outputs import EXIT_DRIFT, EXIT_ERROR, EXIT_OK, SUMMARY_KEYS
from monitoring.performance import (
    PERFORMANCE_DROP,
    PerformanceJobConfig,
    console_summary,
    matured_predictions,
    run_performance_job,
)
from tests.monitoring.conftest import LIVE_DAYS, Registry, World, write_prediction_log
from training.evaluate import evaluate_scores

# Card testing at 3x the default strength: in this small world (4% base fraud) that is what
# it takes to cost the champion over 20% of its average precision.
NEW_PATTERN_STRENGTH = 3.0


def labels_file(tmp_path: Path, live: pd.DataFrame, name: str = "live.parquet") -> Path:
    path = tmp_path / name
    live.to_parquet(path, index=False)
    return path


def all_matured(live: pd.DataFrame, delay_days: int) -> str:
    """An as-of time at which every live transaction's label has matured."""
    return (live["tx_datetime"].max().normalize() + pd.Timedelta(days=1 + delay_days)).isoformat()


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory, world: World) -> dict[str, Path]:
    scenarios = {"none": 1.0, "new_fraud_pattern": NEW_PATTERN_STRENGTH}
    return {
        name: write_prediction_log(
            tmp_path_factory.mktemp(f"perf-{name}"),
            world.live_window(name, strength),
            world.bundle.feature_names,
        )
        for name, strength in scenarios.items()
    }


def test_traffic_like_training_keeps_its_performance(
    project: Registry, world: World, logs: dict[str, Path], tmp_path: Path
) -> None:
    live = world.live("none")
    delay = world.params.featurize.label_delay_days
    config = PerformanceJobConfig(
        predictions=logs["none"],
        labels=labels_file(tmp_path, live),
        as_of=all_matured(live, delay),
        out_dir=tmp_path / "reports",
    )
    summary = run_performance_job(config, load_params())
    stats = summary["statistics"]
    assert tuple(summary) == SUMMARY_KEYS
    assert summary["job"] == "performance" and not summary["drift_detected"]
    assert summary["signals"] == []
    assert stats["counts"]["matured"] == len(live)
    assert stats["judged_windows"] >= 1
    baseline = project.bundle.metadata["metrics"]["average_precision"]
    assert stats["baseline_average_precision"] == pytest.approx(baseline)
    latest = stats["latest_window"]
    assert latest["average_precision"] >= stats["floor_average_precision"]
    assert {"precision", "recall", "card_precision_at_k", "net_benefit"} <= set(latest)
    assert performance.exit_code(summary) == EXIT_OK
    assert Path(summary["artifacts"]["html"]).read_text().startswith("<!DOCTYPE html>")
    assert (
        'fraud_performance_drop_detected{model_version="1"} 0'
        in Path(summary["artifacts"]["metrics"]).read_text()
    )


def test_a_new_fraud_pattern_the_model_misses_is_a_performance_drop(
    project: Registry, world: World, logs: dict[str, Path], tmp_path: Path
) -> None:
    live = world.live("new_fraud_pattern", NEW_PATTERN_STRENGTH)
    delay = world.params.featurize.label_delay_days
    config = PerformanceJobConfig(
        predictions=logs["new_fraud_pattern"],
        labels=labels_file(tmp_path, live),
        as_of=all_matured(live, delay),
        out_dir=tmp_path / "reports",
    )
    summary = run_performance_job(config, load_params())
    stats = summary["statistics"]
    assert summary["drift_detected"] and summary["signals"] == [PERFORMANCE_DROP]
    assert stats["latest_window"]["average_precision"] < stats["floor_average_precision"]
    assert stats["relative_change"] < -load_params().monitor.performance.max_relative_ap_drop
    on_disk = json.loads(Path(summary["artifacts"]["summary"]).read_text())
    assert on_disk == summary and summary["artifacts"]["mlflow_run_id"]
    screen = console_summary(summary)
    assert "PERFORMANCE DROP" in screen


def test_only_labels_older_than_the_delay_are_used(world: World) -> None:
    live = world.live("none")
    window = world.live_window("none")
    start = live["tx_datetime"].min().normalize()
    cutoff = start + pd.Timedelta(days=3)
    # an extra prediction nobody has a label for yet (not in the labels file)
    orphan = window.head(1).assign(transaction_id=-1)
    matured, counts = matured_predictions(pd.concat([window, orphan]), live, cutoff)
    assert (matured["tx_datetime"] < cutoff).all()
    assert counts["matured"] == int((live["tx_datetime"] < cutoff).sum())
    assert counts["not_yet_mature"] == int((live["tx_datetime"] >= cutoff).sum())
    assert counts["without_label"] == 1
    assert counts["predictions"] == len(window) + 1


def test_window_metrics_are_trainings_metrics(project: Registry, world: World) -> None:
    window = world.live_window("none")
    live = world.live("none")
    cutoff = live["tx_datetime"].max().normalize() + pd.Timedelta(days=1)
    matured, _ = matured_predictions(window, live, cutoff)
    params = world.params
    (metrics,) = performance.window_metrics(
        matured, world.bundle, cutoff, params.evaluate, params.monitor.performance
    )
    expected = evaluate_scores(
        matured, matured["fraud_probability"].to_numpy(), world.bundle.thresholds, params.evaluate
    )
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, nan_ok=True), key
    assert metrics["start"] == (cutoff - pd.Timedelta(days=LIVE_DAYS)).isoformat()


def test_cli_exit_codes(
    project: Registry,
    world: World,
    logs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    delay = world.params.featurize.label_delay_days
    quiet, drifted = world.live("none"), world.live("new_fraud_pattern", NEW_PATTERN_STRENGTH)
    common = ["--out-dir", str(tmp_path / "reports"), "--no-mlflow"]
    code = performance.main(
        [
            "--predictions",
            str(logs["none"]),
            "--labels",
            str(labels_file(tmp_path, quiet)),
            "--as-of",
            all_matured(quiet, delay),
            *common,
        ]
    )
    assert code == EXIT_OK and "no drop" in capsys.readouterr().out
    drifted_labels = labels_file(tmp_path, drifted, "drifted.parquet")
    code = performance.main(
        [
            "--predictions",
            str(logs["new_fraud_pattern"]),
            "--labels",
            str(drifted_labels),
            "--as-of",
            all_matured(drifted, delay),
            *common,
        ]
    )
    assert code == EXIT_DRIFT
    code = performance.main(
        ["--predictions", str(logs["none"]), "--labels", str(tmp_path / "missing.parquet"), *common]
    )
    err = capsys.readouterr().err.strip()
    assert code == EXIT_ERROR and err.startswith("performance job failed:")
    assert "missing.parquet" in err and len(err.splitlines()) == 1


def test_before_any_label_matures_nothing_is_judged(
    project: Registry, world: World, logs: dict[str, Path], tmp_path: Path
) -> None:
    live = world.live("none")
    config = PerformanceJobConfig(
        predictions=logs["none"],
        labels=labels_file(tmp_path, live),
        out_dir=tmp_path / "reports",
        log_to_mlflow=False,
    )  # as of the newest transaction: a 7-day delay leaves nothing matured
    summary = run_performance_job(config, load_params())
    stats = summary["statistics"]
    assert not summary["drift_detected"]
    assert stats["counts"]["matured"] == 0 and stats["windows"] == []
    assert stats["latest_window"] is None
    assert "no matured predictions yet" in console_summary(summary)
