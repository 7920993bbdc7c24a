"""Stage CLI ``python -m training.run``: train -> evaluate -> gate -> register -> promote.

Each step is a function that takes and returns paths or simple values, so the Kubeflow
pipeline (``pipelines/components.py``) wraps each one as a component that passes files; this
CLI chains the same functions in the same order in one process: train, evaluate on the test
window, log the MLflow run, the registration gate, the champion challenge (same test
window), register ``@candidate`` if the gate passed, move ``@champion`` if it also won. It
writes ``artifacts/metrics.json`` and ``artifacts/plots/*`` for ``dvc metrics`` / ``dvc plots``
and prints a summary table. A candidate that fails the gate or loses to the champion is a
normal outcome: the run still succeeds.

Directory layouts shared by the steps:

- ``train_step(out_dir)``: ``bundle/`` (model.ubj + bundle.json, loadable with
  ``fraudops.bundle.load_bundle``), ``baseline/`` (baseline.joblib + thresholds.json),
  ``reference_sample.parquet``.
- ``evaluate_step(out_dir)``: ``evaluation.json`` (``candidate`` / ``baseline`` metrics on the
  test window) and ``test_scores.parquet`` (labels + both models' scores); ``write_decision``
  adds ``decision.json`` (run id, gate, challenge) to the same directory.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import joblib
import pandas as pd

from data.schema import CUSTOMER_ID, TX_AMOUNT, TX_DATETIME, TX_FRAUD
from fraudops.bundle import MODEL_NAME, Thresholds, load_bundle, save_bundle
from fraudops.config import Params, load_params
from fraudops.paths import paths
from fraudops.registry import tracking_uri_or_default
from training.cli import run_cli
from training.evaluate import (
    decision_counts,
    evaluate_scores,
    pr_curve_points,
    roc_curve_points,
)
from training.metrics import net_benefit_curve
from training.register import (
    CANDIDATE,
    CHAMPION,
    ChallengeResult,
    ChampionChange,
    GateResult,
    PromotionDecision,
    challenge_champion,
    current_version,
    passes_registration_gate,
    promote,
    promote_if_better,
    register_candidate,
)
from training.split import split_by_time
from training.tracking import (
    BASELINE_SCORE,
    CANDIDATE_SCORE,
    lineage,
    log_training_run,
)
from training.train import TrainingError, baseline_scores, feature_matrix, train_models

BUNDLE_DIR, BASELINE_DIR = "bundle", "baseline"
BASELINE_FILE, BASELINE_THRESHOLDS_FILE = "baseline.joblib", "thresholds.json"
REFERENCE_SAMPLE_FILE = "reference_sample.parquet"
EVALUATION_FILE, TEST_SCORES_FILE = "evaluation.json", "test_scores.parquet"
DECISION_FILE = "decision.json"


def load_training_set(training_set: Path) -> pd.DataFrame:
    """Read the point-in-time training set written by the featurize stage."""
    training_set = Path(training_set)
    if not training_set.exists():
        raise FileNotFoundError(
            f"{training_set}: training set not found (run `python -m features.featurize` first)"
        )
    return pd.read_parquet(training_set)


def train_step(
    training_set: Path,
    out_dir: Path,
    params: Params,
    feature_names: Sequence[str] | None = None,
    lineage_overrides: dict[str, str] | None = None,
) -> Path:
    """Fit the candidate and the baseline; write them (see module doc) to ``out_dir``.

    ``lineage_overrides`` replaces computed lineage facts, e.g. the git commit and DVC hash a
    pipeline container (no checkout, no dvc.lock) receives as run parameters.
    """
    frame = load_training_set(training_set)
    facts = {**lineage(params, training_set), **(lineage_overrides or {})}
    result = train_models(frame, params, feature_names, metadata=facts)
    out_dir = Path(out_dir)
    save_bundle(result.bundle, out_dir / BUNDLE_DIR)
    baseline_dir = out_dir / BASELINE_DIR
    baseline_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(result.baseline, baseline_dir / BASELINE_FILE)
    thresholds = result.baseline_thresholds
    (baseline_dir / BASELINE_THRESHOLDS_FILE).write_text(
        json.dumps({"review": thresholds.review, "decline": thresholds.decline})
    )
    result.reference_sample.to_parquet(out_dir / REFERENCE_SAMPLE_FILE, index=False)
    return out_dir


def holdout_window(training_set: Path, params: Params) -> pd.DataFrame:
    """The test window of the training set: the same rows for every model compared."""
    return split_by_time(load_training_set(training_set), params.train).test


def evaluate_step(train_dir: Path, training_set: Path, out_dir: Path, params: Params) -> Path:
    """Score candidate and baseline on the test window; write ``evaluation.json`` + scores."""
    train_dir, out_dir = Path(train_dir), Path(out_dir)
    bundle = load_bundle(train_dir / BUNDLE_DIR)
    baseline = joblib.load(train_dir / BASELINE_DIR / BASELINE_FILE)
    raw = json.loads((train_dir / BASELINE_DIR / BASELINE_THRESHOLDS_FILE).read_text())
    baseline_thresholds = Thresholds(review=raw["review"], decline=raw["decline"])

    test = holdout_window(training_set, params)
    if test[TX_FRAUD].sum() == 0:
        raise TrainingError(f"{TX_FRAUD}: the test window has no fraud; metrics would be undefined")
    X = feature_matrix(test, bundle.feature_names)
    scores = test[[TX_DATETIME, CUSTOMER_ID, TX_AMOUNT, TX_FRAUD]].assign(
        **{CANDIDATE_SCORE: bundle.predict_proba(X), BASELINE_SCORE: baseline_scores(baseline, X)}
    )
    evaluation = {
        "test_window": bundle.metadata.get("windows", {}).get("test", ""),
        "model_name": params.register_.model_name,
        "review_cost": params.evaluate.review_cost,
        "thresholds": {"review": bundle.thresholds.review, "decline": bundle.thresholds.decline},
        "candidate": evaluate_scores(
            test, scores[CANDIDATE_SCORE].to_numpy(), bundle.thresholds, params
        ),
        "baseline": evaluate_scores(
            test, scores[BASELINE_SCORE].to_numpy(), baseline_thresholds, params
        ),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    scores.to_parquet(out_dir / TEST_SCORES_FILE, index=False)
    path = out_dir / EVALUATION_FILE
    path.write_text(json.dumps(evaluation, indent=2))
    return path


def log_step(
    train_dir: Path, eval_dir: Path, params: Params, tracking_uri: str | None = None
) -> str:
    """Log the run (model, bundle, reference, plots, card, lineage) to MLflow; the run id."""
    train_dir, eval_dir = Path(train_dir), Path(eval_dir)
    return log_training_run(
        load_bundle(train_dir / BUNDLE_DIR),
        json.loads((eval_dir / EVALUATION_FILE).read_text()),
        pd.read_parquet(eval_dir / TEST_SCORES_FILE),
        pd.read_parquet(train_dir / REFERENCE_SAMPLE_FILE),
        params,
        tracking_uri=tracking_uri,
    )


def gate_step(evaluation_json: Path, params: Params) -> GateResult:
    """The registration gate on the candidate's test-window metrics."""
    evaluation = json.loads(Path(evaluation_json).read_text())
    return passes_registration_gate(evaluation["candidate"], params.register_)


def register_step(run_id: str, params: Params, tracking_uri: str | None = None) -> str:
    """Register the run's model as a new version with ``@candidate``; the version."""
    return register_candidate(run_id, params.register_.model_name, tracking_uri)


def challenge_step(
    train_dir: Path, training_set: Path, params: Params, tracking_uri: str | None = None
) -> ChallengeResult:
    """Candidate (the trained bundle) vs ``@champion`` on the same test window; no changes."""
    bundle = load_bundle(Path(train_dir) / BUNDLE_DIR)
    return challenge_champion(bundle, holdout_window(training_set, params), params, tracking_uri)


def promote_step(
    candidate_version: str, training_set: Path, params: Params, tracking_uri: str | None = None
) -> PromotionDecision:
    """Champion-challenger for a registered version; moves ``@champion`` if it is better."""
    return promote_if_better(
        candidate_version, holdout_window(training_set, params), params, tracking_uri
    )


def write_decision(
    eval_dir: Path,
    run_id: str,
    gate: GateResult,
    challenge: ChallengeResult,
    promote_now: bool | None = None,
) -> Path:
    """``decision.json``: the run id, the gate, the challenge and whether the run promotes.

    ``promote_now`` defaults to "passed the gate and won"; with ``promote_via: canary`` a
    winner is not promoted by the run but left for the canary.
    """
    path = Path(eval_dir) / DECISION_FILE
    decision = {
        "run_id": run_id,
        "gate": {"passed": gate.passed, "reasons": list(gate.reasons)},
        "challenge": challenge.as_dict(),
        "promote_now": gate.passed and challenge.better if promote_now is None else promote_now,
    }
    path.write_text(json.dumps(decision, indent=2))
    return path


def classification_curves(eval_dir: Path, max_points: int = 200) -> tuple[dict, dict]:
    """ROC points and the alert confusion matrix of the candidate (KFP ClassificationMetrics).

    ``roc``: ``fpr`` / ``tpr`` / ``threshold`` lists; ``confusion``: ``labels`` (genuine,
    fraud) and ``matrix`` rows = actual, columns = alerted (score >= review threshold).
    """
    eval_dir = Path(eval_dir)
    evaluation = json.loads((eval_dir / EVALUATION_FILE).read_text())
    scores = pd.read_parquet(eval_dir / TEST_SCORES_FILE)
    y = scores[TX_FRAUD].to_numpy().astype(int)
    candidate = scores[CANDIDATE_SCORE].to_numpy()
    roc = roc_curve_points(y, candidate, max_points)
    alerted = (candidate >= evaluation["thresholds"]["review"]).astype(int)
    matrix = [
        [int(((y == actual) & (alerted == flagged)).sum()) for flagged in (0, 1)]
        for actual in (0, 1)
    ]
    return (
        {column: roc[column].astype(float).tolist() for column in ("fpr", "tpr", "threshold")},
        {"labels": ["genuine", "fraud"], "matrix": matrix},
    )


def write_dvc_outputs_from_decision(eval_dir: Path, artifacts_dir: Path, decision: dict) -> Path:
    """``metrics.json`` (numbers only, for ``dvc metrics diff``) and ``plots/*.csv``."""
    eval_dir, artifacts_dir = Path(eval_dir), Path(artifacts_dir)
    evaluation = json.loads((eval_dir / EVALUATION_FILE).read_text())
    scores = pd.read_parquet(eval_dir / TEST_SCORES_FILE)
    challenge = decision.get("challenge", {})
    gate_passed = bool(decision["gate"]["passed"])
    metrics: dict = {
        "candidate": evaluation["candidate"],
        "baseline": evaluation["baseline"],
        "gate_passed": gate_passed,
        "beats_champion": bool(challenge.get("better", False)),
        "promoted": bool(
            decision.get("promote_now", gate_passed and bool(challenge.get("better", False)))
        ),
    }
    if challenge.get("champion_metrics"):
        metrics["champion"] = challenge["champion_metrics"]
    plots = artifacts_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    y = scores[TX_FRAUD].to_numpy()
    candidate = scores[CANDIDATE_SCORE].to_numpy()
    pr_curve_points(y, candidate).to_csv(plots / "pr_curve.csv", index=False)
    pr_curve_points(y, scores[BASELINE_SCORE].to_numpy()).to_csv(
        plots / "baseline_pr_curve.csv", index=False
    )
    roc_curve_points(y, candidate).to_csv(plots / "roc_curve.csv", index=False)
    decisions = Thresholds(**evaluation["thresholds"]).decide(candidate)
    counts = decision_counts(y, decisions).stack().rename("count").reset_index()
    counts.to_csv(plots / "confusion_matrix.csv", index=False)
    benefit = net_benefit_curve(
        y, candidate, scores[TX_AMOUNT].to_numpy(), evaluation["review_cost"]
    )
    benefit = benefit.iloc[1:]  # drop the +inf "no alerts" row: not plottable
    step = max(1, len(benefit) // 200)
    benefit.iloc[::step].to_csv(plots / "net_benefit.csv", index=False)
    path = artifacts_dir / "metrics.json"
    path.write_text(json.dumps(metrics, indent=2))
    return path


SUMMARY_METRICS = (
    "average_precision",
    "roc_auc",
    "recall_at_fpr",
    "card_precision_at_k",
    "f1",
    "net_benefit",
    "alerts",
)


def summarize_decision(eval_dir: Path, decision: dict, tracking_uri: str | None = None) -> str:
    """The summary table: XGBoost, baseline and champion side by side, the gates, the registry.

    With a ``tracking_uri`` the last lines say where ``@champion`` / ``@candidate`` point now.
    """
    evaluation = json.loads((Path(eval_dir) / EVALUATION_FILE).read_text())
    challenge = decision.get("challenge", {})
    gate = decision["gate"]
    columns = {"XGBoost": evaluation["candidate"], "baseline": evaluation["baseline"]}
    if challenge.get("champion_metrics"):
        columns[f"champion v{challenge['champion_version']}"] = challenge["champion_metrics"]
    lines = [f"test window {evaluation.get('test_window', '?')}"]
    lines.append(f"{'metric':<22}" + "".join(f"{name:>16}" for name in columns))
    for key in SUMMARY_METRICS:
        cells = "".join(f"{_fmt(key, metrics.get(key)):>16}" for metrics in columns.values())
        lines.append(f"{key:<22}{cells}")
    verdict = "PASS" if gate["passed"] else "FAIL"
    lines.append(f"registration gate: {verdict} — " + "; ".join(gate["reasons"]))
    if challenge:
        outcome = "WIN" if challenge["better"] else "LOSE"
        lines.append(f"champion challenge: {outcome} — {challenge['reason']}")
    if tracking_uri:
        name = evaluation.get("model_name", MODEL_NAME)
        champion = current_version(CHAMPION, name, tracking_uri) or "-"
        candidate = current_version(CANDIDATE, name, tracking_uri) or "-"
        lines.append(f"registry: {name}@champion = v{champion}, @candidate = v{candidate}")
    lines.append(f"mlflow run: {decision.get('run_id', '?')}")
    return "\n".join(lines)


def _fmt(key: str, value) -> str:
    if value is None:
        return "-"
    if key == "net_benefit":
        return f"${value:,.0f}"
    if key == "alerts":
        return f"{value:,.0f}"
    return f"{value:.4f}"


@dataclass(frozen=True)
class RunSummary:
    """What one training run did, for the terminal and for tests."""

    run_id: str
    gate: GateResult
    challenge: ChallengeResult
    candidate_version: str | None
    champion_change: ChampionChange | None
    eval_dir: Path
    metrics_path: Path

    @property
    def promoted(self) -> bool:
        """Did ``@champion`` move to this run's model?"""
        return self.champion_change is not None and self.champion_change.event == "promote"


def run_training(
    params: Params,
    training_set: Path | None = None,
    artifacts_dir: Path | None = None,
    work_dir: Path | None = None,
    tracking_uri: str | None = None,
    feature_names: Sequence[str] | None = None,
    actor: str = "training.run",
) -> RunSummary:
    """The whole stage, in the pipeline's order (see the module doc).

    Step outputs go to ``work_dir`` (default ``paths().run_dir / "training"``, cleared each
    run) so the summary can be read back after the run.
    """
    layout = paths()
    training_set = Path(training_set or layout.training_set)
    artifacts_dir = Path(artifacts_dir or layout.artifacts)
    work = Path(work_dir) if work_dir else layout.run_dir / "training"
    if work_dir is None:  # only the default is ours to clear; a given directory is reused
        shutil.rmtree(work, ignore_errors=True)
    train_dir = train_step(training_set, work / "train", params, feature_names)
    evaluation_json = evaluate_step(train_dir, training_set, work / "evaluation", params)
    eval_dir = evaluation_json.parent
    run_id = log_step(train_dir, eval_dir, params, tracking_uri)
    gate = gate_step(evaluation_json, params)
    challenge = challenge_step(train_dir, training_set, params, tracking_uri)
    decision_path = write_decision(eval_dir, run_id, gate, challenge)
    version = change = None
    if gate.passed:
        version = register_step(run_id, params, tracking_uri)
        if challenge.better:
            change = promote(
                version,
                params.register_.model_name,
                tracking_uri,
                actor=actor,
                reason=challenge.reason,
            )
    decision = json.loads(decision_path.read_text())
    metrics_path = write_dvc_outputs_from_decision(eval_dir, artifacts_dir, decision)
    return RunSummary(run_id, gate, challenge, version, change, eval_dir, metrics_path)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the stage, print the summary table."""
    parser = argparse.ArgumentParser(
        prog="python -m training.run", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--training-set", type=Path, help="default: paths().training_set")
    parser.add_argument("--tracking-uri", help="default: MLFLOW_TRACKING_URI or the local SQLite")
    parser.add_argument(
        "--work-dir", type=Path, help="step outputs (default: run/training, replaced each run)"
    )
    args = parser.parse_args(argv)

    def train_and_report() -> int:
        uri = tracking_uri_or_default(args.tracking_uri)
        summary = run_training(
            load_params(), training_set=args.training_set, work_dir=args.work_dir, tracking_uri=uri
        )
        decision = json.loads((summary.eval_dir / DECISION_FILE).read_text())
        print(summarize_decision(summary.eval_dir, decision, uri))
        if summary.candidate_version is None:
            print("registered: nothing (the candidate did not pass the registration gate)")
        if summary.champion_change is not None:
            print(summary.champion_change.describe())
        print(f"wrote {summary.metrics_path}")
        return 0

    return run_cli(train_and_report)


__all__ = [
    "RunSummary",
    "challenge_step",
    "classification_curves",
    "evaluate_step",
    "gate_step",
    "holdout_window",
    "log_step",
    "promote_step",
    "register_step",
    "run_training",
    "summarize_decision",
    "train_step",
    "write_decision",
    "write_dvc_outputs_from_decision",
]


if __name__ == "__main__":
    sys.exit(main())
