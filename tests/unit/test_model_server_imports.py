"""The model servers start without the feature store's library (their cold start, issue #15)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("server", ["serving.predictor", "serving.explainer"])
def test_a_model_server_does_not_import_feast(server: str) -> None:
    # Feast was 2.7 s of the predictor's 4 s import: the model servers only read feature
    # rows, so the lookup (and Feast with it) belongs to the transformer alone.
    probe = (
        f"import sys, {server}; print(sorted(m for m in sys.modules if m.split('.')[0] == 'feast'))"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert found == "[]", f"{server} imports {found}"
