"""Global explanations of a trained model: which features drive its scores, and how.

``shap.TreeExplainer`` (exact TreeSHAP for tree ensembles) runs on a bounded, seeded slice
of the run's reference sample -- training-window rows, the same baseline the drift job
uses -- and gives each row's per-feature contributions in log-odds, the units of the
serving explainer's reason codes. Every training run logs, under ``explanations/``:

- ``shap_summary.png``: the beeswarm of all features (spread and direction of each);
- ``dependence/<feature>.png``: contribution against value for the top features;
- ``mean_abs_shap.json``: mean |SHAP| per feature, largest first (the run report's table).

The sample is capped at :data:`MAX_ROWS` rows, so the cost stays at a few seconds whatever
the reference size; plots are drawn headless (matplotlib's Agg backend).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fraudops.bundle import ModelBundle

#: Where a training run keeps its global explanations inside its artifacts.
EXPLANATIONS_ARTIFACT_PATH = "explanations"
SUMMARY_PLOT_FILE = "shap_summary.png"
IMPORTANCE_FILE = "mean_abs_shap.json"
DEPENDENCE_DIR = "dependence"
#: Rows explained: enough for stable means and a readable beeswarm, few enough that the
#: default 300-tree model is explained in about a second on a busy 2-core machine.
MAX_ROWS = 500
#: Features that get a dependence plot (the largest by mean |SHAP|).
TOP_FEATURES = 3


@dataclass(frozen=True)
class GlobalExplanation:
    """TreeSHAP of a sample: its rows (model order), contributions and the bias, in log-odds."""

    rows: pd.DataFrame
    values: np.ndarray  # (n_rows, n_features)
    base_value: float

    def mean_abs(self) -> dict[str, float]:
        """Mean |SHAP| per feature, largest first (ties keep the model's feature order)."""
        means = np.abs(self.values).mean(axis=0)
        order = np.argsort(-means, kind="stable")
        return {str(self.rows.columns[j]): float(means[j]) for j in order}

    def top_features(self, k: int) -> list[str]:
        """The ``k`` features with the largest mean |SHAP|."""
        return list(self.mean_abs())[:k]


def explanation_sample(
    reference: pd.DataFrame, feature_names: tuple[str, ...], max_rows: int, seed: int
) -> pd.DataFrame:
    """At most ``max_rows`` reference rows (seeded), only the model's features, in its order."""
    rows = reference[list(feature_names)].astype("float64")
    if len(rows) > max_rows:
        rows = rows.sample(n=max_rows, random_state=seed)
    return rows.reset_index(drop=True)


def explain_global(
    bundle: ModelBundle, reference: pd.DataFrame, max_rows: int = MAX_ROWS, seed: int = 0
) -> GlobalExplanation:
    """TreeSHAP contributions of the bundle's booster on a bounded slice of ``reference``."""
    import shap

    rows = explanation_sample(reference, bundle.feature_names, max_rows, seed)
    if rows.empty:
        raise ValueError("reference: no rows to explain (the reference sample is empty)")
    # model_output="raw": log-odds, as XGBoost's pred_contribs and the reason codes.
    explainer = shap.TreeExplainer(bundle.booster, model_output="raw")
    values = np.asarray(explainer.shap_values(rows.to_numpy()), dtype=np.float64)
    return GlobalExplanation(
        rows=rows, values=values, base_value=float(np.ravel(explainer.expected_value)[0])
    )


def importance_record(explanation: GlobalExplanation) -> dict[str, Any]:
    """The JSON written as ``mean_abs_shap.json``: units, sample size, bias, ranked features."""
    return {
        "units": "log-odds",
        "n_rows": int(explanation.values.shape[0]),
        "base_value": explanation.base_value,
        "mean_abs_shap": [
            {"feature": feature, "mean_abs_shap": value}
            for feature, value in explanation.mean_abs().items()
        ],
    }


def _pyplot():
    # Agg before pyplot (and shap's plots) load: no display on a training node or in CI.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_summary(explanation: GlobalExplanation, path: Path) -> Path:
    """The beeswarm of every feature's contributions, saved as a PNG."""
    plt = _pyplot()
    import shap

    shap.summary_plot(
        explanation.values,
        explanation.rows,
        max_display=explanation.rows.shape[1],
        show=False,
        plot_size=(7, 6),
    )
    figure = plt.gcf()
    # shap's default label names no units; the reason codes speak log-odds too.
    figure.axes[0].set_xlabel("SHAP value (log-odds of fraud)")
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path


def plot_dependence(explanation: GlobalExplanation, feature: str, path: Path) -> Path:
    """One feature's contribution against its value, coloured by its strongest interaction."""
    plt = _pyplot()
    import shap

    figure, ax = plt.subplots(figsize=(6, 4))
    shap.dependence_plot(feature, explanation.values, explanation.rows, ax=ax, show=False)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path


def write_explanations(
    explanation: GlobalExplanation, directory: Path, top_k: int = TOP_FEATURES
) -> Path:
    """Write the summary plot, the top-``top_k`` dependence plots and the JSON into ``directory``."""
    directory = Path(directory)
    (directory / DEPENDENCE_DIR).mkdir(parents=True, exist_ok=True)
    plot_summary(explanation, directory / SUMMARY_PLOT_FILE)
    for feature in explanation.top_features(top_k):
        plot_dependence(explanation, feature, directory / DEPENDENCE_DIR / f"{feature}.png")
    record = importance_record(explanation)
    (directory / IMPORTANCE_FILE).write_text(json.dumps(record, indent=2))
    return directory


def log_global_explanations(bundle: ModelBundle, reference: pd.DataFrame, seed: int) -> None:
    """Explain the model on its reference sample; log the files to the active MLflow run."""
    import mlflow

    explanation = explain_global(bundle, reference, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        written = write_explanations(explanation, Path(tmp) / EXPLANATIONS_ARTIFACT_PATH)
        mlflow.log_artifacts(str(written), EXPLANATIONS_ARTIFACT_PATH)
