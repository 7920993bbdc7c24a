"""The baseline the L3 predictor is measured against: the way many fraud APIs are written.

A FastAPI app that unpickles a scikit-learn-API model (``xgboost.XGBClassifier``) at
start-up and, per request, builds a one-row pandas DataFrame per instance and calls
``predict_proba`` -- DMatrix construction, pandas and the sklearn wrapper on the hot path.
The pickle is made by the benchmark at run time (``NAIVE_MODEL_PICKLE``), never committed.

``python -m bench.naive_app --port 8090`` (the benchmark starts it itself).
"""

from __future__ import annotations

import argparse
import os
import pickle
from typing import Any

import pandas as pd
from fastapi import FastAPI, Request

from fraudops.settings import MODEL_NAME


def create_app(pickle_path: str) -> FastAPI:
    """The naive app around the pickled classifier at ``pickle_path``."""
    with open(pickle_path, "rb") as handle:
        model = pickle.load(handle)
    feature_names = list(model.get_booster().feature_names)
    app = FastAPI(title="naive fraud API (benchmark baseline)")

    @app.get("/ready")
    def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.post(f"/v1/models/{MODEL_NAME}:predict")
    async def predict(request: Request) -> dict[str, Any]:
        body = await request.json()
        predictions = []
        for row in body["instances"]:
            values = dict(zip(feature_names, row)) if isinstance(row, list) else row
            frame = pd.DataFrame([values], columns=feature_names).astype(float)
            predictions.append(float(model.predict_proba(frame)[0, 1]))
        return {"predictions": predictions}

    return app


def main(argv: list[str] | None = None) -> None:
    """Serve the naive app on ``--port``."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args(argv)
    app = create_app(os.environ["NAIVE_MODEL_PICKLE"])
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
