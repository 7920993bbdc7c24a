"""What fresh features catch: a card-testing day served with live updates on vs off.

A stolen card is tested with a burst of small payments within minutes (simulator scenario
5, ``card_testing``). One run, one model, one day of traffic, two ways of serving it:

* **on** -- every payment moves the online state (the default): the burst shows in the
  velocity features (count and spend in the last 10 minutes / hour) and in the daily
  aggregates of the next payment;
* **off** -- the online store holds what the last materialisation wrote: the aggregates
  stop at the end of the history, and request-time velocity is unknown (missing).

Reported: recall at the false-positive budget (``evaluate.fpr_budget``) and average
precision, on the whole day and on the card-testing frauds against the genuine payments.
The model is trained on a history that has the pattern (fraud teams know it), with the
project's own training code.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data.schema import REQUEST_COLUMNS, TX_FRAUD, TX_FRAUD_SCENARIO
from data.simulate import simulate_next_days, simulate_transactions
from fraudops.config import SimulateParams, load_params
from serving.lookup import OnlineFeatureLookup
from serving.sandbox import build_feature_repo, train_bundle
from serving.schema import validate_transactions
from serving.settings import ServingSettings
from training.metrics import average_precision, recall_at_fpr

#: Simulator scenario code of the card-testing bursts.
CARD_TESTING = 5
#: Transactions per request when replaying the day (in time order).
BATCH = 50
TARGETS = {"card_testing_recall_gain_min": 0.2}


def _world(params: SimulateParams) -> tuple[pd.DataFrame, pd.DataFrame]:

    history = simulate_transactions(params, drift="card_testing")
    live = simulate_next_days(history, 1, params, drift="card_testing")
    return history, live


def _served_vectors(root: Path, history: pd.DataFrame, live: pd.DataFrame, live_updates: bool):
    """The live day's feature matrix as a server with (or without) live updates serves it."""

    project = f"card_testing_{uuid.uuid4().hex[:6]}"
    repo = build_feature_repo(root, history, project=project)
    settings = ServingSettings(
        feast_repo=repo,
        feast_project=project,
        live_updates=live_updates,
        event_clock="replay",
        prediction_log_dir=root / "predictions",
    )
    lookup = OnlineFeatureLookup(settings)
    requests = live[list(REQUEST_COLUMNS)].copy()
    requests["tx_datetime"] = requests["tx_datetime"].dt.strftime("%Y-%m-%dT%H:%M:%S")
    rows = requests.to_dict(orient="records")
    matrices = []
    for start in range(0, len(rows), BATCH):
        instances = validate_transactions({"instances": rows[start : start + BATCH]}, BATCH)
        matrices.append(lookup.features(instances).values)
    return np.vstack(matrices)


def _scores(y: np.ndarray, scores: np.ndarray, fpr_budget: float) -> dict[str, float]:

    return {
        "recall_at_fpr": round(recall_at_fpr(y, scores, fpr_budget), 4),
        "average_precision": round(average_precision(y, scores), 4),
    }


def bench_card_testing() -> dict[str, Any]:
    """Train once, serve the card-testing day with updates on and off, compare the catch."""

    params = SimulateParams(n_days=45, n_customers=1500, n_terminals=3000, seed=11)
    fpr_budget = load_params().evaluate.fpr_budget
    history, live = _world(params)
    bundle = train_bundle(history, n_estimators=200, max_depth=6)
    y = live[TX_FRAUD].to_numpy()
    genuine = y == 0
    burst = live[TX_FRAUD_SCENARIO].to_numpy() == CARD_TESTING
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-card-testing-") as tmp:
        for mode, on in (("updates_on", True), ("updates_off", False)):
            matrix = _served_vectors(Path(tmp) / mode, history, live, on)
            scores = bundle.predict_proba(matrix.astype(np.float32))
            figures[mode] = {
                "all_frauds": _scores(y, scores, fpr_budget),
                "card_testing": _scores(y[genuine | burst], scores[genuine | burst], fpr_budget),
            }
    gain = (
        figures["updates_on"]["card_testing"]["recall_at_fpr"]
        - figures["updates_off"]["card_testing"]["recall_at_fpr"]
    )
    return {
        "name": "card_testing",
        "passed": gain >= TARGETS["card_testing_recall_gain_min"],
        "ratios": {"card_testing_recall_gain": round(gain, 4)},
        "targets": TARGETS,
        "figures": figures,
        "live_day": {
            "transactions": len(live),
            "frauds": int(y.sum()),
            "card_testing_frauds": int(burst.sum()),
            "fpr_budget": fpr_budget,
        },
    }
