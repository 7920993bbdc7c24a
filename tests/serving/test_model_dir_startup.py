"""A predictor told to serve a model folder stops at start-up when the folder has no model.

KServe's storage initializer downloads STORAGE_URI to /mnt/models before the predictor
starts; a missing or wrong URI leaves the folder empty (or holding something else). The
predictor must then exit with one line naming the URI, never come up serving nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from serving.model_source import ModelHolder
from serving.settings import ServingSettings


def _start_predictor(model_dir: Path, storage_uri: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "STORAGE_URI"}
    env["FRAUD_MODEL_DIR"] = str(model_dir)
    if storage_uri is not None:
        env["STORAGE_URI"] = storage_uri
    return subprocess.run(
        [sys.executable, "-m", "serving.predictor", "--http_port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_wrong_storage_uri_stops_the_predictor_naming_it(tmp_path: Path):
    """The real process: what the MLflow model folder downloads to is refused at start-up."""
    (tmp_path / "MLmodel").write_text("flavors: {}\n")  # an MLflow model folder: no bundle
    uri = "s3://fraud-mlops/mlflow/1/models/m-1/artifacts"
    done = _start_predictor(tmp_path, uri)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no model in") and uri in last, done.stderr[-2000:]
    assert "bundle.json" in last


def test_a_missing_storage_uri_is_named_as_not_set(tmp_path: Path):
    holder = ModelHolder(ServingSettings(model_dir=tmp_path, compiled_trees=False))
    with pytest.raises(SystemExit, match="STORAGE_URI=not set"):
        holder.require_bundle_dir(None)
    assert not holder.ready


def test_a_loadable_folder_passes_the_check(tmp_path: Path):
    import numpy as np
    import xgboost

    from fraudops.bundle import ModelBundle, Thresholds, save_bundle

    features = np.random.default_rng(0).normal(size=(32, 2)).astype(np.float32)
    booster = xgboost.train({"nthread": 1}, xgboost.DMatrix(features, features[:, 0] > 0), 2)
    save_bundle(ModelBundle(booster, ("a", "b"), Thresholds(0.5, 0.9)), tmp_path)
    holder = ModelHolder(ServingSettings(model_dir=tmp_path, compiled_trees=False))
    holder.require_bundle_dir("s3://bucket/run/artifacts/bundle")  # returns: no SystemExit
    assert holder.ready


def test_the_registry_path_is_not_checked():
    holder = ModelHolder(ServingSettings(model_dir=None), tracking_uri="http://127.0.0.1:9")
    holder.require_bundle_dir(None)  # the registry path keeps its retry-until-ready behaviour
    assert not holder.ready
