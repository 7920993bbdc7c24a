"""A small but complete project for the run report and the lineage CLI.

``project`` builds, once per module, a project root under tmp that is a real git checkout:

* two trained versions in a per-module SQLite MLflow (``tests.model`` helpers): version 1
  (the default booster, @champion) and version 2 (two stumps, @candidate), each trained at
  its own git commit on its own validated data, so their lineage differs in every field;
* ``@champion`` moved three times: v1 by training, v2 by ``alice``, back to v1 by ``oncall``;
* a prediction log of the test window (every 4th request served by the candidate);
* the drift job run over that log (``monitoring.drift.run_drift_job``, no MLflow logging);
* a canary verdict from ``monitoring.canary.analyse`` over the same traffic, written as JSON
  and applied (it tags the candidate version, as the real canary does).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from data.files import write_json_atomic, write_parquet_atomic
from data.schema import TRANSACTION_COLUMNS, TRANSACTION_ID, TX_FRAUD
from fraudops.bundle import SCORE_COLUMN, ModelBundle, load_run_bundle
from fraudops.config import Params
from fraudops.paths import Paths, paths
from tests.model.mlflow_store import fresh_sqlite_store, migrated_store_template
from tests.model.synthetic import WEAK_XGBOOST, small_params, synthetic_training_set
from tests.monitoring.conftest import write_prediction_log

MODEL = "fraud-detector"
#: Requests ``req-{i}`` with ``i % CANDIDATE_EVERY == CANDIDATE_EVERY - 1`` went to v2.
CANDIDATE_EVERY = 4
LOGGED_REQUESTS = 1200


@dataclass(frozen=True)
class Version:
    """What the fixture knows about one registered version (the expected lineage)."""

    version: str
    run_id: str
    git_commit: str
    data_hash: str
    params_hash: str


@dataclass(frozen=True)
class Project:
    """The tmp project: its root, registry, logs and the expected facts."""

    root: Path
    layout: Paths
    tracking_uri: str
    params_file: Path
    params: Params
    prediction_log: Path
    audit_log: Path
    versions: dict[str, Version]
    drift_summary: dict
    canary_verdict: dict

    def env(self) -> dict[str, str]:
        """The environment a CLI of this project runs with."""
        return {
            "FRAUD_PROJECT_ROOT": str(self.root),
            "FRAUD_PARAMS": str(self.params_file),
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "FRAUD_PREDICTION_LOG_DIR": str(self.prediction_log),
            "FRAUD_AUDIT_LOG_DIR": str(self.audit_log),
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        }


def git(root: Path, *args: str) -> str:
    """Run git in ``root`` with a fixed identity (no global config needed)."""
    result = subprocess.run(
        ["git", "-c", "user.name=report-test", "-c", "user.email=report@test", *args],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout.strip()


def write_validated_data(layout: Paths, transactions: pd.DataFrame) -> None:
    """The validated transactions (their md5 is the data hash) and the validation report."""
    from data.validate import summarize

    write_parquet_atomic(transactions, layout.validated_transactions)
    write_json_atomic(summarize(transactions).to_dict(), layout.validation_report)


def prediction_window(
    test: pd.DataFrame, champion: ModelBundle, candidate: ModelBundle
) -> pd.DataFrame:
    """The test window as served: every CANDIDATE_EVERY-th row by the candidate."""
    from monitoring.window import champion_scores

    window = champion_scores(test.head(LOGGED_REQUESTS).reset_index(drop=True), champion)
    window["model_version"] = champion.model_version
    by_candidate = (np.arange(len(window)) % CANDIDATE_EVERY) == CANDIDATE_EVERY - 1
    candidate_rows = champion_scores(window.loc[by_candidate], candidate)
    window.loc[by_candidate, SCORE_COLUMN] = candidate_rows[SCORE_COLUMN].to_numpy()
    window.loc[by_candidate, "decision"] = candidate_rows["decision"].to_numpy()
    window.loc[by_candidate, "model_version"] = candidate.model_version
    return window


def canary_from_log(log: pd.DataFrame, labels: pd.DataFrame, params: Params):
    """``monitoring.canary.analyse`` over the logged traffic (the candidate 3x slower)."""
    from monitoring.canary import CANDIDATE, CHAMPION, Outcome, analyse

    rng = np.random.default_rng(3)
    outcomes = [
        Outcome(
            arm=CANDIDATE if str(row.model_version) == "2" else CHAMPION,
            status=200,
            latency_ms=float(rng.gamma(4.0, 1.5)) * (3.0 if str(row.model_version) == "2" else 1.0),
            transaction_id=int(row.transaction_id),
            model_version=str(row.model_version),
            fraud_probability=float(row.fraud_probability),
            decision=str(row.decision),
        )
        for row in log.itertuples(index=False)
    ]
    return analyse(outcomes, labels, params.monitor.canary)


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty MLflow database copied by each project."""
    return migrated_store_template(tmp_path_factory.mktemp("report-mlflow-template"))


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> Project:
    """The whole story in a tmp project (see the module doc), built once per session.

    The environment points at the project only while it is built; a test that runs a CLI
    sets ``Project.env()`` itself, so nothing leaks into other tests.
    """
    from mlflow import MlflowClient

    from monitoring.canary import apply_verdict
    from monitoring.drift import DriftJobConfig, run_drift_job
    from serving.prediction_log import read_prediction_log
    from training.register import promote, rollback
    from training.run import holdout_window, run_training
    from training.tracking import dvc_data_hash, params_hash

    root = tmp_path_factory.mktemp("report-project")
    layout = paths(root)
    params = small_params()
    weak_params = small_params(train=WEAK_XGBOOST)
    params_file = root / "params.yaml"
    params_file.write_text(yaml.safe_dump(params.model_dump(mode="json", by_alias=True)))
    frame = synthetic_training_set(seed=0)
    transactions = frame[list(TRANSACTION_COLUMNS)]
    write_parquet_atomic(frame, layout.training_set)
    uri = fresh_sqlite_store(mlflow_template, root)

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FRAUD_PROJECT_ROOT", str(root))
        patch.setenv("FRAUD_PARAMS", str(params_file))
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        patch.delenv("FRAUD_PUSHGATEWAY_URL", raising=False)
        patch.delenv("GITHUB_ACTOR", raising=False)
        (root / ".gitignore").write_text("mlflow.db\nmlartifacts/\nrun/\nreports/\ndata/\n")
        git(root, "init", "-q")

        versions: dict[str, Version] = {}
        for version, (run_params, data) in {
            "1": (params, transactions.iloc[:-50]),
            "2": (weak_params, transactions),  # newer data, weaker booster
        }.items():
            write_validated_data(layout, data)
            (root / "CHANGES").write_text(f"version {version}\n")
            git(root, "add", "-A")
            git(root, "commit", "-q", "-m", f"train version {version}")
            summary = run_training(
                run_params,
                training_set=layout.training_set,
                artifacts_dir=layout.artifacts,
                tracking_uri=uri,
            )
            assert summary.candidate_version == version, summary.challenge.reason
            versions[version] = Version(
                version,
                summary.run_id,
                git(root, "rev-parse", "HEAD"),
                dvc_data_hash(root),
                params_hash(run_params),
            )
        promote("2", MODEL, uri, actor="alice", reason="manual: try the stumps in production")
        rollback(MODEL, uri, actor="oncall", reason="fraud losses up after the promotion")

        champion = load_run_bundle(versions["1"].run_id, uri)
        champion.model_version = "1"
        candidate = load_run_bundle(versions["2"].run_id, uri)
        candidate.model_version = "2"
        test = holdout_window(layout.training_set, params)
        prediction_log = root / "run" / "predictions"
        write_prediction_log(
            prediction_log, prediction_window(test, champion, candidate), champion.feature_names
        )
        patch.setenv("FRAUD_PREDICTION_LOG_DIR", str(prediction_log))
        audit_log = root / "run" / "audit"  # empty: the report computes its explanation
        patch.setenv("FRAUD_AUDIT_LOG_DIR", str(audit_log))

        drift_summary, _ = run_drift_job(
            DriftJobConfig(
                source=prediction_log,
                out_dir=root / "reports" / "drift",
                log_to_mlflow=False,
                tracking_uri=uri,
            ),
            params,
        )
        log = read_prediction_log(prediction_log)
        labels = frame[frame[TRANSACTION_ID].isin(log[TRANSACTION_ID])][[TRANSACTION_ID, TX_FRAUD]]
        canary = canary_from_log(log, labels, params)
        client = MlflowClient(uri, registry_uri=uri)
        apply_verdict(
            canary,
            None,
            promote=lambda **kw: promote(model_name=MODEL, tracking_uri=uri, **kw),
            tag_candidate=lambda v, tags: [
                client.set_model_version_tag(MODEL, v, key, value) for key, value in tags.items()
            ],
        )
        canary_verdict = canary.as_dict()
        write_json_atomic(canary_verdict, root / "reports" / "canary" / "canary_verdict.json")

    return Project(
        root=root,
        layout=layout,
        tracking_uri=uri,
        params_file=params_file,
        params=params,
        prediction_log=prediction_log,
        audit_log=audit_log,
        versions=versions,
        drift_summary=drift_summary,
        canary_verdict=canary_verdict,
    )
