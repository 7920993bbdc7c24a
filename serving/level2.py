"""Level 2: a FastAPI app serving ``models:/fraud-detector@champion`` from the MLflow registry.

``python -m serving.level2 [--port 8080]``. The alias is configuration
(``FRAUD_MODEL_ALIAS``); the app polls it every ``FRAUD_RELOAD_INTERVAL_SECONDS`` and
``POST /reload`` checks at once, swapping models without a restart or a failed request.
"""

from __future__ import annotations

import argparse

from serving.api import run_level
from serving.settings import load_settings


def main(argv: list[str] | None = None) -> None:
    """Serve the registry alias on ``--host``:``--port``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0", help="interface to listen on")
    parser.add_argument("--port", type=int, default=8080, help="HTTP port")
    args = parser.parse_args(argv)
    # L2 is the registry level by definition: a bundle directory would pin a version.
    settings = load_settings().model_copy(update={"model_dir": None})
    run_level("level2", settings, args.host, args.port)


if __name__ == "__main__":
    main()
