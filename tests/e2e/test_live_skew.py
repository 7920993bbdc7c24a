"""End to end: live days replayed through the serving lookup equal the offline definition.

A small project copy is featurised (materialised and its live state seeded), two live days
are simulated like ``make demo`` does (one normal, one drifted), replayed in request
batches through :class:`serving.lookup.OnlineFeatureLookup` -- the code L1, L2 and the
transformer serve with -- into a prediction log, and ``python -m monitoring.skew`` checks
the log against the definition recomputed from the versioned data: >= 99.9 % equal.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data.schema import REQUEST_COLUMNS
from fraudops.paths import paths
from serving.lookup import OnlineFeatureLookup
from serving.prediction_log import PredictionLogWriter
from serving.schema import validate_transactions
from serving.scoring import Scores, prediction_records
from serving.settings import ServingSettings

from .conftest import Project, make_project

BATCH = 200
#: Copy, featurise, two simulated days and their replay: minutes on a busy machine.
pytestmark = pytest.mark.timeout(1500)


@pytest.fixture(scope="module")
def live_project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    project = make_project(tmp_path_factory.mktemp("live") / "fraud-mlops")
    project.dvc("repro", "featurize")
    for drift in ("none", "amount_shift"):
        project.python(
            "-m", "data.acquire", "--no-progress", "next-days", "--days", "1", "--drift", drift
        )
    return project


def _replay(project: Project, day: pd.DataFrame, log: Path) -> None:
    settings = ServingSettings(
        feast_repo=paths(project.root).feature_repo, event_clock="replay", prediction_log_dir=log
    )
    lookup = OnlineFeatureLookup(settings)
    writer = PredictionLogWriter(log)
    rows = day[list(REQUEST_COLUMNS)].copy()
    rows["tx_datetime"] = rows["tx_datetime"].dt.strftime("%Y-%m-%dT%H:%M:%S")
    instances = rows.to_dict(orient="records")
    for start in range(0, len(instances), BATCH):
        batch = lookup.features(
            validate_transactions({"instances": instances[start : start + BATCH]}, BATCH)
        )
        n = len(batch.transactions)
        scores = Scores(np.zeros(n), np.asarray(["APPROVE"] * n), "e2e")
        writer.write(prediction_records(batch, scores, f"replay-{start}", 1.0, "e2e"))


def test_replayed_live_days_are_served_the_offline_vectors(live_project: Project) -> None:
    layout = paths(live_project.root)
    batches = sorted(layout.live_dir.glob("*.parquet"))
    assert len(batches) == 2
    log = live_project.root / "run" / "predictions"
    days = [pd.read_parquet(path) for path in batches]
    for day in days:
        _replay(live_project, day, log)
    # The chargebacks of those days arrive on the label stream (a file here).
    consumed = live_project.python("-m", "features.label_events", "consume")
    assert "applied to the terminal-risk state" in consumed.stdout
    first, last = days[0]["tx_datetime"].min(), days[-1]["tx_datetime"].max()
    result = live_project.python(
        "-m",
        "monitoring.skew",
        "--source",
        str(log),
        "--start",
        first.isoformat(),
        "--end",
        (last + pd.Timedelta(seconds=1)).isoformat(),
        check=False,
    )
    assert result.returncode == 0, result.stdout
    summary = json.loads((layout.reports_dir / "skew" / "skew_summary.json").read_text())
    stats = summary["statistics"]
    assert stats["transactions"] == sum(len(day) for day in days)
    assert stats["equal_share"] >= 0.999, result.stdout
