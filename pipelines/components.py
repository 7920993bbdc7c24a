"""The pipeline's steps as KFP lightweight components.

Each component is a thin wrapper over a function in ``data/``, ``features/`` or ``training/``
(the logic exists once); it only moves files between KFP artifacts and those functions.
Imports live inside the functions because KFP ships each function's source on its own into
the training image, which has this project installed.

The functions are plain Python here; ``pipelines.pipeline.build_pipeline`` turns them into
components with the image it is given, so nothing is decided at import time.
"""

# No ``from __future__ import annotations``: KFP reads the real annotation objects.
from typing import NamedTuple

from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output


def validate_data(transactions: str, params_yaml: str, validated: Output[Dataset]) -> str:
    """Stop condition 1 (data prep): schema, types, ranges, nulls, ids, time order, volume."""
    import sys

    import pandas as pd
    import yaml

    # A KFP component is self-contained: it runs alone, so it imports inside.
    from data.validate import DataValidationError, validate_transactions
    from fraudops.config import Params

    params = Params.model_validate(yaml.safe_load(params_yaml))
    frame = pd.read_parquet(transactions)
    try:
        report = validate_transactions(frame, params.validate_)
    except DataValidationError as exc:
        # One readable line for the run log; the task (and so the run) fails.
        print(f"GATE data validation: FAIL — {exc}", file=sys.stderr)
        raise
    frame.to_parquet(validated.path, index=False)
    validated.metadata.update({"rows": report.rows, "fraud_rate": report.fraud_rate})
    summary = f"{report.rows} transactions, {report.days} days, fraud rate {report.fraud_rate:.4%}"
    print(f"GATE data validation: PASS — {summary}")
    return summary


def build_training_set(
    validated: Input[Dataset],
    customer_features: str,
    terminal_features: str,
    training_set: Output[Dataset],
) -> int:
    """Point-in-time join of the transactions with the Feast offline sources."""
    import pandas as pd

    # A KFP component is self-contained: it runs alone, so it imports inside.
    from features.definitions import build_training_set as point_in_time_join

    frame = point_in_time_join(
        pd.read_parquet(validated.path),
        pd.read_parquet(customer_features),
        pd.read_parquet(terminal_features),
    )
    frame.to_parquet(training_set.path, index=False)
    training_set.metadata["rows"] = len(frame)
    print(f"training set: {len(frame)} rows, point-in-time as of each transaction")
    return len(frame)


def train_model(
    training_set: Input[Dataset],
    params_yaml: str,
    git_commit: str,
    data_hash: str,
    model: Output[Model],
) -> None:
    """Stop condition 2 (training error): fit XGBoost + the baseline, pick thresholds."""
    from pathlib import Path

    import yaml

    # A KFP component is self-contained: it runs alone, so it imports inside.
    from fraudops.config import Params
    from training.run import train_step

    params = Params.model_validate(yaml.safe_load(params_yaml))
    train_step(
        Path(training_set.path),
        Path(model.path),
        params,
        lineage_overrides={"git_commit": git_commit, "data_hash": data_hash},
    )
    model.metadata.update(
        {"framework": "xgboost", "git_commit": git_commit, "data_hash": data_hash}
    )


def evaluate_model(
    model: Input[Model],
    training_set: Input[Dataset],
    params_yaml: str,
    mlflow_tracking_uri: str,
    promote_via: str,
    metrics: Output[Metrics],
    curves: Output[ClassificationMetrics],
    evaluation: Output[Artifact],
) -> NamedTuple(
    "EvaluationOutputs",
    [("gate_passed", bool), ("promote_now", bool), ("run_id", str), ("verdict", str)],
):
    """Stop condition 3 (below threshold): test-window metrics, MLflow run, gate, challenge.

    The run is logged whatever the outcome (every run is tracked); the registration gate and
    the champion comparison become the booleans the pipeline branches on.
    """
    import json
    import math
    from collections import namedtuple
    from pathlib import Path

    import yaml

    # A KFP component is self-contained: it runs alone, so it imports inside.
    from fraudops.config import Params
    from training.run import (
        challenge_step,
        classification_curves,
        evaluate_step,
        gate_step,
        log_step,
        write_decision,
    )

    params = Params.model_validate(yaml.safe_load(params_yaml))
    uri = mlflow_tracking_uri or None
    out = Path(evaluation.path)
    evaluation_json = evaluate_step(Path(model.path), Path(training_set.path), out, params)
    run_id = log_step(Path(model.path), out, params, uri)
    gate = gate_step(evaluation_json, params)
    challenge = challenge_step(Path(model.path), Path(training_set.path), params, uri)
    # With promote_via=canary a winner waits as @candidate for the canary (`make canary`);
    # the first model has nothing to be compared with live, so it is crowned here.
    promote_now = (
        gate.passed
        and challenge.better
        and (promote_via == "pipeline" or challenge.champion_version is None)
    )
    write_decision(out, run_id, gate, challenge, promote_now)

    for key, value in json.loads(evaluation_json.read_text())["candidate"].items():
        if isinstance(value, (int, float)) and not math.isnan(value):
            metrics.log_metric(key, float(value))
    roc, confusion = classification_curves(out)
    curves.log_roc_curve(roc["fpr"], roc["tpr"], roc["threshold"])
    curves.log_confusion_matrix(confusion["labels"], confusion["matrix"])

    print(f"GATE registration: {'PASS' if gate.passed else 'FAIL'} — " + "; ".join(gate.reasons))
    print(f"GATE champion comparison: {'WIN' if challenge.better else 'LOSE'} — {challenge.reason}")
    if gate.passed and challenge.better and not promote_now:
        print("promotion deferred to the canary (promote_via=canary): run `make canary`")
    outputs = namedtuple("EvaluationOutputs", ["gate_passed", "promote_now", "run_id", "verdict"])
    return outputs(gate.passed, promote_now, run_id, challenge.reason)


def register_model(run_id: str, params_yaml: str, mlflow_tracking_uri: str) -> str:
    """Stop condition 4 (registry unavailable): register the run as ``@candidate``."""
    import yaml

    # A KFP component is self-contained: it runs alone, so it imports inside.
    from fraudops.config import Params
    from training.run import register_step

    params = Params.model_validate(yaml.safe_load(params_yaml))
    version = register_step(run_id, params, mlflow_tracking_uri or None)
    print(f"registered {params.register_.model_name} version {version} as @candidate")
    return version


def promote_model(version: str, verdict: str, params_yaml: str, mlflow_tracking_uri: str) -> str:
    """Move ``@champion`` to the winning candidate (rollback: ``make rollback``)."""
    import yaml

    # A KFP component is self-contained: it runs alone, so it imports inside.
    from fraudops.config import Params
    from training.register import promote

    params = Params.model_validate(yaml.safe_load(params_yaml))
    change = promote(
        version,
        model_name=params.register_.model_name,
        tracking_uri=mlflow_tracking_uri or None,
        actor="pipeline",
        reason=verdict,
    )
    print(change.describe())
    return change.describe()
