"""The serving benchmarks' servers: started, stopped, and the world they serve.

:class:`Servers` starts server processes (``serving.launch``) and stops them together;
:func:`serve_noop` is the no-op KServe model (the framework's floor) behind
``python -m bench.bench_serving --noop-server``; :func:`_build_world` makes the temporary
transactions, Feast repo, registered model and naive pickle; :func:`_cold_start` and
:func:`_wait_for_compiled_trees` time the predictor's start. Used by
:mod:`bench.bench_serving`, :mod:`bench.bench_capacity` and :mod:`bench.bench_fresh`.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import socket
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from fraudops.config import MODEL_NAME
from serving.kserve_runtime import parse_server_args, serve, server_parser
from serving.launch import Component, spawn, terminate, wait_ready
from serving.settings import load_settings

MODEL = MODEL_NAME


def _noop_model():
    import kserve

    class NoOpModel(kserve.Model):
        """The framework's floor: KServe's request path with nothing inside."""

        def __init__(self, name: str) -> None:
            super().__init__(name)
            self.ready = True

        async def predict(self, payload: Any, headers=None, response_headers=None) -> dict:
            return {"predictions": [0.0 for _ in payload["instances"]]}

    return NoOpModel


def serve_noop(argv: list[str]) -> None:
    """``python -m bench.bench_serving --noop-server --http_port N``: the no-op KServe model."""
    args = parse_server_args(server_parser("no-op KServe model", 8080), argv, load_settings())
    serve(_noop_model()(args.model_name), args)


class Servers:
    """Server processes of the benchmark, stopped together."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.processes: list[subprocess.Popen] = []
        self.names: dict[str, int] = {}

    def start(
        self,
        name: str,
        command: list[str],
        port: int,
        ready_path: str,
        env: dict[str, str] | None = None,
    ) -> float:
        component = Component(name, command[0], tuple(command[1:]), port, ready_path)
        process = spawn(component, self.root / "logs" / f"{name}.log", {**self.env, **(env or {})})
        self.processes.append(process)
        self.names[name] = process.pid
        return wait_ready(component, process, self.root / "logs" / f"{name}.log", timeout_s=240)

    def pid(self, name: str) -> int:
        """The process id of the server started as ``name``."""
        return self.names[name]

    def stop(self) -> None:
        terminate([p.pid for p in self.processes])
        self.processes.clear()


@contextlib.contextmanager
def placed(placement: dict[int, set[int]]):
    """Every thread of each process (pid -> CPUs; 0 is this thread) on its CPUs meanwhile;
    every CPU back afterwards. Yields whether the placement was made (Linux, 2+ CPUs)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < 2:
        yield False
        return
    threads = {
        tid: wanted
        for pid, wanted in placement.items()
        for tid in ([0] if pid == 0 else [int(t) for t in os.listdir(f"/proc/{pid}/task")])
    }
    for tid, wanted in threads.items():
        os.sched_setaffinity(tid, wanted)
    try:
        yield True
    finally:
        for tid in threads:
            # A worker thread may have ended meanwhile; the living get every CPU back.
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(tid, set(cpus))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _build_world(root: Path) -> dict[str, Any]:
    """Transactions, Feast repo, the default-params model registered as champion, the pickle."""
    import xgboost

    # Training imports: only the driver builds the world, not the --noop-server process.
    from fraudops.bundle import save_bundle
    from serving.sandbox import (
        build_feature_repo,
        register_bundle,
        synthetic_transactions,
        train_bundle,
    )

    transactions = synthetic_transactions(n=20_000, n_customers=500, n_terminals=1_000, days=60)
    repo = build_feature_repo(root, transactions)
    bundle = train_bundle(transactions, n_estimators=300, max_depth=6)  # train.xgboost defaults
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    bundle.model_version = register_bundle(bundle, tracking_uri, root / "mlartifacts")
    # The naive baseline's artefact: the same booster behind the sklearn API, pickled.
    save_bundle(bundle, root / "bundle")
    classifier = xgboost.XGBClassifier()
    classifier.load_model(root / "bundle" / "model.ubj")
    # One thread like the predictor: measure pandas + DMatrix + sklearn, not OpenMP spin-waits.
    classifier.set_params(n_jobs=1)
    with open(root / "naive.pkl", "wb") as handle:
        pickle.dump(classifier, handle)
    last = transactions.iloc[-1]
    transaction = {
        "transaction_id": 1,
        "tx_datetime": (transactions["tx_datetime"].max() + np.timedelta64(1, "h")).isoformat(),
        "customer_id": int(last["customer_id"]),
        "terminal_id": int(last["terminal_id"]),
        "tx_amount": 312.5,
    }
    return {
        "repo": repo,
        "tracking_uri": tracking_uri,
        "bundle": bundle,
        "transaction": transaction,
    }


def _feature_body(world: dict[str, Any]) -> bytes:
    """The model-ready row the transformer would send for the benchmark transaction."""
    import pandas as pd

    # Feast imports: only the driver reads features, not the --noop-server process.
    from features.definitions import FEATURE_NAMES, assemble_features
    from features.store import feature_store, online_entity_features

    transaction = world["transaction"]
    customers, terminals = online_entity_features(
        feature_store(world["repo"]), [transaction["customer_id"]], [transaction["terminal_id"]]
    )
    frame = pd.DataFrame([transaction]).assign(tx_datetime=lambda f: pd.to_datetime(f.tx_datetime))
    row = assemble_features(frame, customers, terminals)[list(FEATURE_NAMES)].iloc[0].tolist()
    return json.dumps(
        {
            "instances": [[None if np.isnan(v) else v for v in row]],
            "feature_names": list(FEATURE_NAMES),
        }
    ).encode()


def _wait_for_compiled_trees(port: int, timeout_s: float = 120.0) -> float:
    """Seconds until the predictor scores with its compiled trees (it compiles them in the
    background after it is ready; measuring before would time the booster instead)."""
    import httpx

    started = time.perf_counter()
    while "fraud_compiled_trees 1.0" not in httpx.get(f"http://127.0.0.1:{port}/metrics").text:
        if time.perf_counter() - started > timeout_s:
            raise RuntimeError(f"predictor on :{port} never reported fraud_compiled_trees 1")
        time.sleep(0.1)
    return time.perf_counter() - started


def _cold_start(servers: Servers, tries: int = 3) -> dict[str, float]:
    """Process start -> ready (model from the registry): first start, then the median of
    ``tries`` starts with compiled bytecode -- how every image runs (UV_COMPILE_BYTECODE=1);
    the first start here pays for compiling the imports, as a fresh checkout does once."""
    times = []
    for i in range(tries + 1):
        port = _free_port()
        ready = f"/v1/models/{MODEL}"
        times.append(
            servers.start(f"cold-{i}", ["serving.predictor", "--http_port", str(port)], port, ready)
        )
        servers.processes[-1].terminate()
        servers.processes[-1].wait(timeout=30)
    return {
        "first_start_s": round(times[0], 3),
        "cold_start_s": round(statistics.median(times[1:]), 3),
    }
