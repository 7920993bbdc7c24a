"""Fixtures for the data tier: a small simulated history and a throw-away project root."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from data.simulate import simulate_transactions
from fraudops.config import SimulateParams
from fraudops.paths import Paths, paths

#: Small world with a few percent fraud (2 compromised terminals a day among 2000).
SMALL_SIMULATION = {"seed": 3, "n_customers": 500, "n_terminals": 2000, "n_days": 30}


@pytest.fixture(scope="session")
def small_transactions() -> pd.DataFrame:
    """A valid simulated history (~29k rows); copy before mutating."""
    return simulate_transactions(SimulateParams(**SMALL_SIMULATION))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    """A project root in ``tmp_path`` with its own params.yaml (small simulation)."""
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump({"data": {"source": "simulate"}, "simulate": SMALL_SIMULATION})
    )
    monkeypatch.setenv("FRAUD_PROJECT_ROOT", str(tmp_path))
    monkeypatch.delenv("FRAUD_PARAMS", raising=False)
    return paths()
