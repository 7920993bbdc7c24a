"""Global SHAP explanations: bounded, additive, ranked, and logged with every training run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.model.mlflow_store import fresh_sqlite_store, migrated_store_template
from tests.model.synthetic import small_params, write_training_set
from training.explain_global import (
    DEPENDENCE_DIR,
    EXPLANATIONS_ARTIFACT_PATH,
    IMPORTANCE_FILE,
    SUMMARY_PLOT_FILE,
    TOP_FEATURES,
    GlobalExplanation,
    explain_global,
    importance_record,
    write_explanations,
)
from training.run import run_training
from training.train import TrainingResult

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def explanation(trained: TrainingResult) -> GlobalExplanation:
    return explain_global(trained.bundle, trained.reference_sample, max_rows=200, seed=1)


def test_the_sample_is_bounded_and_in_model_order(
    trained: TrainingResult, explanation: GlobalExplanation
) -> None:
    assert len(trained.reference_sample) > 200
    assert explanation.values.shape == (200, len(trained.bundle.feature_names))
    assert tuple(explanation.rows.columns) == trained.bundle.feature_names


def test_contributions_add_up_to_the_model_margin(
    trained: TrainingResult, explanation: GlobalExplanation
) -> None:
    margin = trained.bundle.booster.inplace_predict(
        explanation.rows.to_numpy(dtype=np.float32), predict_type="margin"
    )
    total = explanation.base_value + explanation.values.sum(axis=1)
    np.testing.assert_allclose(total, margin, rtol=0, atol=1e-4)


def test_mean_abs_shap_ranks_the_fraud_mechanics_first(explanation: GlobalExplanation) -> None:
    ranked = explanation.mean_abs()
    assert list(ranked.values()) == sorted(ranked.values(), reverse=True)
    # The synthetic fraud is driven by the amount, its ratio to the customer's mean and
    # terminal risk; none of them may rank below a feature the mechanics never use.
    drivers = {"tx_amount", "customer_amount_ratio_30d", "terminal_risk_7d"}
    assert explanation.top_features(1)[0] in drivers
    assert ranked["tx_amount"] > ranked["customer_tx_count_1d"]


def test_the_json_record_lists_every_feature_with_its_units(
    explanation: GlobalExplanation,
) -> None:
    record = importance_record(explanation)
    assert record["units"] == "log-odds" and record["n_rows"] == 200
    assert {row["feature"] for row in record["mean_abs_shap"]} == set(explanation.rows.columns)
    assert all(row["mean_abs_shap"] >= 0 for row in record["mean_abs_shap"])


def test_written_files_are_the_summary_the_dependence_plots_and_the_json(
    explanation: GlobalExplanation, tmp_path: Path
) -> None:
    out = write_explanations(explanation, tmp_path / "explanations")
    assert (out / SUMMARY_PLOT_FILE).read_bytes().startswith(PNG_SIGNATURE)
    plots = sorted(p.stem for p in (out / DEPENDENCE_DIR).glob("*.png"))
    assert plots == sorted(explanation.top_features(TOP_FEATURES))
    assert json.loads((out / IMPORTANCE_FILE).read_text()) == importance_record(explanation)


def test_every_training_run_logs_its_explanations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    monkeypatch.setenv("FRAUD_PROJECT_ROOT", str(tmp_path))
    uri = fresh_sqlite_store(migrated_store_template(tmp_path / "template"), tmp_path)
    training_set = write_training_set(tmp_path / "training_set.parquet")
    summary = run_training(
        small_params(), training_set, tmp_path / "artifacts", tmp_path / "work", tracking_uri=uri
    )
    client = MlflowClient(tracking_uri=uri)
    logged = {a.path for a in client.list_artifacts(summary.run_id, EXPLANATIONS_ARTIFACT_PATH)}
    assert f"{EXPLANATIONS_ARTIFACT_PATH}/{SUMMARY_PLOT_FILE}" in logged
    assert f"{EXPLANATIONS_ARTIFACT_PATH}/{IMPORTANCE_FILE}" in logged
    dependence = client.list_artifacts(
        summary.run_id, f"{EXPLANATIONS_ARTIFACT_PATH}/{DEPENDENCE_DIR}"
    )
    assert len(dependence) == TOP_FEATURES
