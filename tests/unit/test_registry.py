"""Registry: champion-challenger, history and rollback on a per-test SQLite MLflow."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from mlflow import MlflowClient

from features.definitions import FEATURE_NAMES
from fraudops.bundle import (
    BUNDLE_ARTIFACT_PATH,
    load_bundle,
    load_reference_sample,
    load_registered_bundle,
)
from tests.model.mlflow_store import fresh_sqlite_store, migrated_store_template
from tests.model.synthetic import WEAK_XGBOOST, small_params, write_training_set
from training.register import (
    NoPreviousChampionError,
    RegistryUnavailableError,
    champion_history,
    current_version,
    promote,
    promote_if_better,
    register_candidate,
    rollback,
)
from training.run import holdout_window, run_training

MODEL = "fraud-detector"


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty MLflow database that each test copies into its own tmp_path."""
    return migrated_store_template(tmp_path_factory.mktemp("mlflow-template"))


@pytest.fixture(scope="module")
def training_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_training_set(tmp_path_factory.mktemp("features") / "training_set.parquet")


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_template: Path) -> str:
    """This test's own SQLite tracking store + artifact root inside its tmp_path."""
    monkeypatch.setenv("FRAUD_PROJECT_ROOT", str(tmp_path))
    return fresh_sqlite_store(mlflow_template, tmp_path)


def train_and_register(training_set: Path, uri: str, tmp_path: Path, weak: bool = False):
    params = small_params(train=WEAK_XGBOOST if weak else None)
    return run_training(
        params, training_set=training_set, artifacts_dir=tmp_path / "artifacts", tracking_uri=uri
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_first_model_becomes_champion(training_set: Path, registry: str, tmp_path: Path) -> None:
    summary = train_and_register(training_set, registry, tmp_path)
    assert summary.gate.passed
    assert summary.candidate_version == "1"
    assert summary.promoted
    assert summary.challenge.reason == "first model: there was no champion"
    assert current_version("champion", MODEL, registry) == "1"
    assert current_version("candidate", MODEL, registry) == "1"
    bundle = load_registered_bundle("champion", MODEL, registry)
    assert bundle.model_version == "1" and bundle.run_id == summary.run_id
    assert bundle.metadata["metrics"]["average_precision"] > 0.5
    [event] = champion_history(MODEL, registry)
    assert event["event"] == "promote" and event["version"] == "1" and event["previous"] is None


def test_the_bundle_folder_names_the_version_it_was_registered_as(
    training_set: Path, registry: str, tmp_path: Path
) -> None:
    """Fetched by location (KServe's STORAGE_URI), the run's bundle still knows its version."""
    import mlflow.artifacts

    summary = train_and_register(training_set, registry, tmp_path)
    folder = mlflow.artifacts.download_artifacts(
        run_id=summary.run_id,
        artifact_path=BUNDLE_ARTIFACT_PATH,
        dst_path=str(tmp_path / "mnt-models"),
        tracking_uri=registry,
    )
    assert load_bundle(Path(folder)).model_version == summary.candidate_version == "1"


def test_worse_candidate_is_not_promoted_and_the_run_succeeds(
    training_set: Path, registry: str, tmp_path: Path
) -> None:
    train_and_register(training_set, registry, tmp_path)
    summary = train_and_register(training_set, registry, tmp_path, weak=True)
    assert summary.candidate_version == "2"
    assert not summary.promoted and summary.champion_change is None
    assert "champion kept" in summary.challenge.reason
    # both scored on the same test window
    assert (
        summary.challenge.candidate_metrics["n_transactions"]
        == (summary.challenge.champion_metrics["n_transactions"])
    )
    assert current_version("champion", MODEL, registry) == "1"
    assert current_version("candidate", MODEL, registry) == "2"
    metrics = json.loads(summary.metrics_path.read_text())
    assert metrics["promoted"] is False and metrics["gate_passed"] is True
    assert metrics["champion"]["average_precision"] > metrics["candidate"]["average_precision"]


def test_better_candidate_is_promoted_and_rollback_restores_the_previous_champion(
    training_set: Path, registry: str, tmp_path: Path
) -> None:
    train_and_register(training_set, registry, tmp_path, weak=True)
    summary = train_and_register(training_set, registry, tmp_path)
    assert summary.promoted and "candidate better" in summary.challenge.reason
    assert summary.champion_change.describe().startswith(
        f"{MODEL}@champion: version 1 -> version 2 (promote by training.run: candidate AP"
    )
    assert current_version("champion", MODEL, registry) == "2"

    change = rollback(MODEL, registry, actor="oncall")
    assert (change.previous, change.current, change.event) == ("2", "1", "rollback")
    assert change.describe() == (
        f"{MODEL}@champion: version 2 -> version 1 (rollback by oncall: manual rollback)"
    )
    assert current_version("champion", MODEL, registry) == "1"
    assert load_registered_bundle("champion", MODEL, registry).model_version == "1"
    assert [e["event"] for e in champion_history(MODEL, registry)] == [
        "promote",
        "promote",
        "rollback",
    ]

    with pytest.raises(NoPreviousChampionError, match="version 1, which has no previous champion"):
        rollback(MODEL, registry)
    assert current_version("champion", MODEL, registry) == "1"


def test_explicit_promote_moves_champion_to_the_candidate(
    training_set: Path, registry: str, tmp_path: Path
) -> None:
    train_and_register(training_set, registry, tmp_path)
    train_and_register(training_set, registry, tmp_path, weak=True)  # loses: stays @candidate
    change = promote(model_name=MODEL, tracking_uri=registry, actor="lead")
    assert (change.previous, change.current) == ("1", "2")
    assert current_version("champion", MODEL, registry) == "2"
    # promoting the champion again changes nothing
    assert promote("2", MODEL, registry).event == "unchanged"
    assert rollback(MODEL, registry).current == "1"


def test_gate_failure_logs_the_run_but_registers_nothing(
    training_set: Path, registry: str, tmp_path: Path
) -> None:
    params = small_params(register={"min_net_benefit": 1e9, "min_f1": 0.2})
    summary = run_training(
        params,
        training_set=training_set,
        artifacts_dir=tmp_path / "artifacts",
        tracking_uri=registry,
    )
    assert not summary.gate.passed
    assert summary.candidate_version is None and not summary.promoted
    assert "is not > $1,000,000,000 (fail)" in summary.gate.reasons[0]
    client = MlflowClient(registry)
    assert client.get_run(summary.run_id).info.status == "FINISHED"
    assert client.search_registered_models() == []
    assert json.loads(summary.metrics_path.read_text())["gate_passed"] is False


def test_promote_if_better_on_registered_versions(
    training_set: Path, registry: str, tmp_path: Path
) -> None:
    closed = {"min_net_benefit": 1e12}  # log runs without registering them
    strong = run_training(
        small_params(register=closed), training_set, tmp_path / "a", tracking_uri=registry
    )
    weak_params = small_params(train=WEAK_XGBOOST, register=closed)
    weak = run_training(weak_params, training_set, tmp_path / "a", tracking_uri=registry)
    test_df = holdout_window(training_set, small_params())

    assert register_candidate(strong.run_id, MODEL, registry) == "1"
    first = promote_if_better("1", test_df, small_params(), registry, actor="ci")
    assert first.promoted and first.previous_champion is None

    assert register_candidate(weak.run_id, MODEL, registry) == "2"
    assert current_version("candidate", MODEL, registry) == "2"
    second = promote_if_better("2", test_df, small_params(), registry)
    assert not second.promoted and second.champion_version == "1"
    assert (
        second.champion_metrics["average_precision"] > second.candidate_metrics["average_precision"]
    )
    assert current_version("champion", MODEL, registry) == "1"
    # the champion challenged by itself is not a promotion
    assert not promote_if_better("1", test_df, small_params(), registry).promoted


def test_the_run_carries_everything_the_model_needs(
    training_set: Path, registry: str, tmp_path: Path
) -> None:
    summary = train_and_register(training_set, registry, tmp_path)
    client = MlflowClient(registry)
    run = client.get_run(summary.run_id)
    assert {"git_commit", "data_hash", "params_hash", "training_set_md5", "window_test"} <= set(
        run.data.tags
    )
    assert run.data.params["train.xgboost.n_estimators"] == "20"
    assert {"test_average_precision", "baseline_test_average_precision", "test_net_benefit"} <= set(
        run.data.metrics
    )
    artifacts = set()
    for top in client.list_artifacts(summary.run_id):
        artifacts.add(top.path)
        if top.is_dir:
            artifacts |= {a.path for a in client.list_artifacts(summary.run_id, top.path)}
    assert {
        "bundle/model.ubj",
        "bundle/bundle.json",
        "reference/reference_sample.parquet",
        "plots/pr_curve.png",
        "plots/confusion_matrix.png",
        "model_card.md",
        "features.json",
        "thresholds.json",
    } <= artifacts
    version = client.get_model_version(MODEL, "1")
    assert version.tags["params_hash"] == run.data.tags["params_hash"]
    from mlflow.models import get_model_info

    info = get_model_info(f"models:/{MODEL}@champion")
    assert info.signature.inputs.input_names() == list(FEATURE_NAMES)
    reference = load_reference_sample("champion", MODEL, registry)
    assert list(reference.columns) == ["tx_datetime", *FEATURE_NAMES, "fraud_probability"]
    plots = tmp_path / "artifacts" / "plots"
    assert {"pr_curve.csv", "roc_curve.csv", "confusion_matrix.csv", "net_benefit.csv"} <= {
        p.name for p in plots.iterdir()
    }


def test_unreachable_registry_names_the_uri_and_leaves_the_champion(
    training_set: Path, registry: str, tmp_path: Path
) -> None:
    summary = train_and_register(training_set, registry, tmp_path)
    down = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RegistryUnavailableError, match=f"MLflow registry at {down} is unreachable"):
        register_candidate(summary.run_id, MODEL, down)
    with pytest.raises(RegistryUnavailableError, match=down):
        rollback(MODEL, down)
    with pytest.raises(RegistryUnavailableError, match=down):
        run_training(small_params(), training_set, tmp_path / "other", tracking_uri=down)
    assert current_version("champion", MODEL, registry) == "1"


def test_unknown_alias_is_a_clear_lookup_error(registry: str) -> None:
    with pytest.raises(LookupError, match="models:/fraud-detector@champion: no such alias"):
        load_registered_bundle("champion", MODEL, registry)
