"""Suite-wide guard rails: no test writes into the developer's registry, logs or data.

Each test that needs MLflow, a prediction log or a project tree builds its own under
``tmp_path``; this session fixture only makes sure that a test which forgets to still lands
in a throw-away folder instead of the repository's ``mlflow.db`` or ``run/``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    sandbox = tmp_path_factory.mktemp("session-sandbox")
    overrides = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{sandbox / 'mlflow.db'}",
        "FRAUD_PREDICTION_LOG_DIR": str(sandbox / "predictions"),
        "FRAUD_AUDIT_LOG_DIR": str(sandbox / "audit"),
        # Matplotlib must never try to open a window on a CI machine.
        "MPLBACKEND": "Agg",
    }
    saved = {key: os.environ.get(key) for key in overrides}
    os.environ.update(overrides)
    yield sandbox
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
