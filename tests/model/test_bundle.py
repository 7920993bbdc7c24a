"""The model bundle round-trips through files and predicts from float32 arrays."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fraudops.bundle import REGISTRATION_FILE, load_bundle, registration_record, save_bundle
from training.train import TrainingResult, feature_matrix


def test_save_and_load_round_trip(trained: TrainingResult, tmp_path: Path) -> None:
    directory = save_bundle(trained.bundle, tmp_path / "bundle")
    assert sorted(p.name for p in directory.iterdir()) == ["bundle.json", "model.ubj"]
    loaded = load_bundle(directory)
    assert loaded.feature_names == trained.bundle.feature_names
    assert loaded.thresholds == trained.bundle.thresholds
    assert loaded.metadata["windows"] == trained.split.windows.as_dict()
    X = feature_matrix(trained.split.test, loaded.feature_names)
    np.testing.assert_allclose(loaded.predict_proba(X), trained.bundle.predict_proba(X))


def test_manifest_is_plain_json(trained: TrainingResult, tmp_path: Path) -> None:
    manifest = json.loads((save_bundle(trained.bundle, tmp_path) / "bundle.json").read_text())
    assert set(manifest) >= {"feature_names", "thresholds", "metadata", "model_version", "run_id"}
    assert manifest["thresholds"]["decline"] > manifest["thresholds"]["review"]


def test_wrong_width_is_rejected(trained: TrainingResult) -> None:
    with pytest.raises(ValueError, match=r"expected shape \(n, 20\)"):
        trained.bundle.predict_proba(np.zeros((1, 3), dtype=np.float32))


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="bundle.json: model bundle file missing"):
        load_bundle(tmp_path)


def test_a_registered_folder_reports_its_registry_version(
    trained: TrainingResult, tmp_path: Path
) -> None:
    directory = save_bundle(trained.bundle, tmp_path)  # saved before registration: no version
    assert load_bundle(directory).model_version is None
    record = registration_record("fraud-detector", "7", "2026-01-01T00:00:00+00:00")
    (directory / REGISTRATION_FILE).write_text(json.dumps(record))
    assert load_bundle(directory).model_version == "7"


def test_a_malformed_registration_record_is_named(trained: TrainingResult, tmp_path: Path) -> None:
    directory = save_bundle(trained.bundle, tmp_path)
    (directory / REGISTRATION_FILE).write_text(json.dumps({"version": "7"}))
    with pytest.raises(ValueError, match=r"registration.json: model_version: must be"):
        load_bundle(directory)
