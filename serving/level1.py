"""Level 1: a FastAPI app serving the champion baked into its image as a bundle directory.

``python -m serving.level1 [--port 8080]``; the model is read from ``FRAUD_MODEL_DIR``
(default ``/models/fraud-detector``, where the Dockerfile copies the exported bundle).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from serving.api import run_level
from serving.settings import load_settings

#: Where serving/docker/level1.Dockerfile bakes the exported bundle.
IMAGE_MODEL_DIR = Path("/models/fraud-detector")


def main(argv: list[str] | None = None) -> None:
    """Serve the baked bundle on ``--host``:``--port``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0", help="interface to listen on")
    parser.add_argument("--port", type=int, default=8080, help="HTTP port")
    args = parser.parse_args(argv)
    settings = load_settings()
    if settings.model_dir is None:
        settings = settings.model_copy(update={"model_dir": IMAGE_MODEL_DIR})
    run_level("level1", settings, args.host, args.port)


if __name__ == "__main__":
    main()
