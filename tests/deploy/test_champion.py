"""Jobs 2 and 3: the gate outcome and the champion's storage location, from a real registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.champion import AliasTarget, main, outputs, promoted, resolve_alias

NAME = "fraud-detector"


def _tiny_bundle(version_hint: int):
    """A two-feature booster with thresholds: enough for the predictor's loader to accept."""
    import numpy as np
    import xgboost

    from fraudops.bundle import ModelBundle, Thresholds

    rng = np.random.default_rng(version_hint)
    features = rng.normal(size=(64, 2)).astype(np.float32)
    labels = (features[:, 0] > 0).astype(int)
    booster = xgboost.train(
        {"max_depth": 2, "nthread": 1}, xgboost.DMatrix(features, labels), num_boost_round=3
    )
    return ModelBundle(booster, ("tx_amount", "customer_tx_count_1d"), Thresholds(0.5, 0.9))


def _log_version(client, experiment_id: str, bundle, tmp: Path) -> str:
    """One training run as the pipeline logs it: ``bundle/`` + an MLflow ``model/`` folder."""
    from dataclasses import replace

    from fraudops.bundle import (
        BUNDLE_ARTIFACT_PATH,
        REGISTRATION_FILE,
        registration_record,
        save_bundle,
    )

    run = client.create_run(experiment_id)
    run_id = run.info.run_id
    logged = replace(bundle, run_id=run_id)  # as training.tracking logs it
    client.log_artifacts(run_id, str(save_bundle(logged, tmp / run_id)), BUNDLE_ARTIFACT_PATH)
    mlmodel = tmp / f"{run_id}-model"
    mlmodel.mkdir()
    (mlmodel / "MLmodel").write_text("flavors: {}\n")
    client.log_artifacts(run_id, str(mlmodel), "model")
    client.set_terminated(run_id)
    source = f"{run.info.artifact_uri}/model"
    version = client.create_model_version(NAME, source=source, run_id=run_id).version
    # What training.register.register_candidate writes beside the bundle once registered.
    client.log_dict(
        run_id,
        registration_record(NAME, version, "2026-01-01T00:00:00+00:00"),
        f"{BUNDLE_ARTIFACT_PATH}/{REGISTRATION_FILE}",
    )
    return version


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Iterator[tuple[object, str]]:
    """A registry with versions 1 (@champion) and 2 (@candidate), artifacts on disk, its URI."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment_id = client.create_experiment("e", artifact_location=(root / "art").as_uri())
    client.create_registered_model(NAME)
    for version in (1, 2):
        _log_version(client, experiment_id, _tiny_bundle(version), root)
    client.set_registered_model_alias(NAME, "champion", "1")
    client.set_registered_model_alias(NAME, "candidate", "2")
    yield client, uri


def test_resolves_the_champion_and_its_bundle_location(registry):
    client, _ = registry
    champion = resolve_alias(client, NAME, "champion")
    run = client.get_run(champion.run_id)
    assert (champion.name, champion.alias, champion.version) == (NAME, "champion", "1")
    # The bundle the servers load, not the MLflow model folder the version was created from.
    assert champion.storage_uri == f"{run.info.artifact_uri}/bundle"
    assert champion.model_uri == "models:/fraud-detector/1"


def _serve_from(directory: Path):
    """The predictor's own loader (serving.model_source) pointed at ``directory``."""
    from serving.model_source import ModelHolder
    from serving.settings import ServingSettings

    holder = ModelHolder(ServingSettings(model_dir=directory, compiled_trees=False))
    return holder, holder.load()


def test_the_storage_uri_downloads_to_what_the_predictor_loads(registry, tmp_path: Path):
    """STORAGE_URI -> KServe's storage initializer code -> /mnt/models -> the predictor loads it."""
    from kserve_storage import Storage

    client, _ = registry
    champion = resolve_alias(client, NAME, "champion")
    mnt_models = tmp_path / "mnt-models"
    Storage.download(champion.storage_uri, str(mnt_models))
    holder, loaded = _serve_from(mnt_models)
    assert loaded, holder.load_error
    assert holder.bundle.feature_names == ("tx_amount", "customer_tx_count_1d")
    assert holder.bundle.run_id == champion.run_id
    # The registry's version, not "local": the folder carries what registration wrote.
    assert holder.bundle.model_version == champion.version == "1"


def test_the_model_version_folder_is_not_loadable(registry, tmp_path: Path):
    """What the old STORAGE_URI named (the MLflow model folder) has no bundle: refused."""
    from kserve_storage import Storage

    client, _ = registry
    wrong = client.get_model_version_download_uri(NAME, "1")
    Storage.download(wrong, str(tmp_path / "mnt-models"))
    holder, loaded = _serve_from(tmp_path / "mnt-models")
    assert not loaded and "bundle.json" in holder.load_error


def test_missing_alias_or_model_is_none(registry):
    client, _ = registry
    assert resolve_alias(client, NAME, "challenger") is None
    assert resolve_alias(client, "no-such-model", "champion") is None


def test_gate_outcome():
    champion = AliasTarget(NAME, "champion", "2", "r", "s3://x/bundle")
    assert promoted(champion, "1")  # the alias moved: the candidate won
    assert not promoted(champion, "2")  # it stayed: the candidate lost, deployment is skipped
    assert promoted(champion, "")  # the first champion ever
    assert not promoted(None, "")
    assert outputs(None, "1") == {
        "promoted": "false",
        "version": "",
        "model_uri": "",
        "storage_uri": "",
        "run_id": "",
    }


def test_cli_writes_the_step_outputs(registry, tmp_path: Path, monkeypatch, capsys):
    output = tmp_path / "github_output"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry[1])
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    assert main(["--previous-version", "1", "--github-output"]) == 0
    assert "promoted: false" in capsys.readouterr().out
    lines = dict(line.split("=", 1) for line in output.read_text().splitlines())
    assert lines["promoted"] == "false" and lines["version"] == "1"
    assert lines["storage_uri"].endswith("/artifacts/bundle")


def test_cli_require_fails_without_the_alias(registry, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry[1])
    assert main(["--alias", "challenger", "--require"]) == 1
    assert "no such alias" in capsys.readouterr().out
