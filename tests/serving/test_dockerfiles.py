"""The five serving images: hadolint-clean, non-root, one entry point each from the contract."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DOCKER = Path(__file__).resolve().parents[2] / "serving" / "docker"
HADOLINT = Path(sys.executable).parent / "hadolint"
IMAGES = {
    "level1": "serving.level1",
    "level2": "serving.level2",
    "predictor": "serving.predictor",
    "transformer": "serving.transformer",
    "explainer": "serving.explainer",
}


@pytest.mark.parametrize("image", IMAGES)
def test_dockerfile_passes_hadolint(image: str) -> None:
    result = subprocess.run(
        [str(HADOLINT), str(DOCKER / f"{image}.Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("image,module", IMAGES.items())
def test_dockerfile_runs_its_server_as_non_root_from_the_lock(image: str, module: str) -> None:
    text = (DOCKER / f"{image}.Dockerfile").read_text()
    assert f'ENTRYPOINT ["python", "-m", "{module}"]' in text
    assert "USER 10001:10001" in text and "slim" in text
    assert "uv sync --project /opt/lock --frozen" in text and "--extra serve" in text
    assert "EXPOSE 8080" in text


def test_level1_bakes_the_exported_bundle() -> None:
    text = (DOCKER / "level1.Dockerfile").read_text()
    assert (
        "COPY --from=model --chown=10001:10001 model.ubj bundle.json /models/fraud-detector/"
        in text
    )
    assert "FRAUD_MODEL_DIR=/models/fraud-detector" in text


def test_hadolint_catches_a_root_latest_image(tmp_path: Path) -> None:
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install fastapi\nCMD python -m serving.level1\n")
    result = subprocess.run([str(HADOLINT), str(bad)], capture_output=True, text=True, check=False)
    assert result.returncode != 0 and "DL3007" in result.stdout
