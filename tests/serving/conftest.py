"""Shared fixtures of the serving tests: a tiny world and every server on loopback ports.

One session builds the world once (synthetic transactions -> Feast repo materialised in
SQLite and in Redis, a 20-tree booster registered as ``fraud-detector@champion`` in a
temporary SQLite MLflow) and starts every server as a real process, all at once so their
start-up overlaps: L1, L2, predictor, explainer, a SQLite transformer (L4/L5) and a Redis
transformer (through a TCP proxy the tests can cut, to play "Redis down"), plus a
predictor pointed at a registry that does not answer.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pandas as pd
import pytest

from fraudops.bundle import ModelBundle, export_bundle
from serving.launch import Component, kserve_ready_path, spawn, terminate, wait_ready
from serving.prediction_log import read_prediction_log
from serving.sandbox import (
    build_feature_repo,
    register_bundle,
    synthetic_transactions,
    train_bundle,
)

MODEL = "fraud-detector"
MAX_BATCH = 16
REDIS = ("127.0.0.1", 6379)


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TcpProxy:
    """A loopback TCP forwarder to Redis that a test can cut (``stop``) and restore."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # listener closed: the proxy is down
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._connections += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass  # the other side closed: the pipe simply ends
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed
                end.close()

    def stop(self) -> None:
        """Refuse new connections and cut the open ones (Redis "goes down")."""
        if self._listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would not.
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # never connected: nothing to shut down
            self._listener.close()
            self._listener = None
        with self._lock:
            for connection in self._connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed by its peer
                connection.close()
            self._connections.clear()


@dataclass
class World:
    """The tiny world every server serves."""

    root: Path
    transactions: pd.DataFrame
    feature_repo: Path
    tracking_uri: str
    bundle: ModelBundle
    model_dir: Path
    redis_project: str
    l2_tracking_uri: str
    l2_db: Path

    @property
    def last_time(self) -> pd.Timestamp:
        return self.transactions["tx_datetime"].max()

    def transaction(self, **overrides) -> dict:
        """A valid raw transaction just after the materialised history (known entities)."""
        row = self.transactions.iloc[-1]
        base = {
            "transaction_id": 10_000_001,
            "tx_datetime": (self.last_time + pd.Timedelta(hours=1)).isoformat(),
            "customer_id": int(row["customer_id"]),
            "terminal_id": int(row["terminal_id"]),
            "tx_amount": 42.5,
        }
        return {**base, **overrides}


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("serving-world")
    transactions = synthetic_transactions()
    repo = build_feature_repo(root, transactions)
    project = f"fraud_serving_test_{uuid.uuid4().hex[:8]}"
    build_feature_repo(
        root, transactions, online="redis", redis_url=f"{REDIS[0]}:{REDIS[1]}", project=project
    )
    bundle = train_bundle(transactions)
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    version = register_bundle(bundle, tracking_uri, root / "mlartifacts")
    bundle.model_version = version
    model_dir = export_bundle(root / "level1-model", tracking_uri=tracking_uri)
    # L2 gets its own copy of the registry: its tests move aliases and break the file.
    l2_db = root / "l2" / "mlflow.db"
    l2_db.parent.mkdir()
    shutil.copy(root / "mlflow.db", l2_db)
    yield World(
        root,
        transactions,
        repo,
        tracking_uri,
        bundle,
        model_dir,
        project,
        f"sqlite:///{l2_db}",
        l2_db,
    )
    import redis

    client = redis.Redis(*REDIS)
    for key in client.scan_iter(match=b"*" + project.encode()):
        client.delete(key)
    # The live state (recent transactions, labels) of the same project.
    for key in client.scan_iter(match=f"fraud_live:{project}:*".encode(), count=1000):
        client.delete(key)


@dataclass
class Server:
    """A running server process and an HTTP client for it."""

    name: str
    port: int
    process: object
    log: Path
    prediction_log: Path
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def predict(self, body, **kwargs) -> httpx.Response:
        return self.client.post(f"/v1/models/{MODEL}:predict", json=body, **kwargs)

    def explain(self, body, **kwargs) -> httpx.Response:
        return self.client.post(f"/v1/models/{MODEL}:explain", json=body, **kwargs)

    def metrics(self) -> str:
        return self.client.get("/metrics").text

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def logged(self, query: str, rows: int = 1, timeout_s: float = 30) -> pd.DataFrame:
        """Prediction-log records matching ``query``, once ``rows`` of them are there.

        The transformer writes its log from a thread, moments after it answers: poll, bounded.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            found = read_prediction_log(self.prediction_log).query(query)
            if len(found) >= rows or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


@dataclass
class Stack:
    """Every server of the session, by role."""

    level1: Server
    level2: Server
    predictor: Server
    explainer: Server
    transformer: Server
    transformer_redis: Server
    predictor_no_registry: Server
    redis_proxy: TcpProxy


@pytest.fixture(scope="session")
def stack(world: World) -> Iterator[Stack]:
    logs = world.root / "logs"
    ports = {
        name: free_port()
        for name in (
            "level1",
            "level2",
            "predictor",
            "explainer",
            "transformer",
            "transformer_redis",
            "predictor_no_registry",
        )
    }
    proxy = TcpProxy(REDIS)
    proxy.start()
    ready = kserve_ready_path(MODEL)
    common = {
        "MLFLOW_TRACKING_URI": world.tracking_uri,
        "FRAUD_FEAST_REPO": str(world.feature_repo),
        "FRAUD_RELOAD_INTERVAL_SECONDS": "0",
        "FRAUD_MAX_BATCH_SIZE": str(MAX_BATCH),
        "FRAUD_AUDIT_LOG_DIR": str(world.root / "audit"),
        "FRAUD_LOAD_RETRY_SECONDS": "1",
    }
    host = ("--host", "127.0.0.1", "--port")
    predictor_host = f"127.0.0.1:{ports['predictor']}"
    components = {
        "level1": Component(
            "level1",
            "serving.level1",
            (*host, str(ports["level1"])),
            ports["level1"],
            "/readyz",
            {"FRAUD_MODEL_DIR": str(world.model_dir)},
        ),
        "level2": Component(
            "level2",
            "serving.level2",
            (*host, str(ports["level2"])),
            ports["level2"],
            "/readyz",
            {"MLFLOW_TRACKING_URI": world.l2_tracking_uri, "FRAUD_RELOAD_INTERVAL_SECONDS": "1"},
        ),
        "predictor": Component(
            "predictor",
            "serving.predictor",
            ("--http_port", str(ports["predictor"])),
            ports["predictor"],
            ready,
        ),
        "explainer": Component(
            "explainer",
            "serving.explainer",
            ("--http_port", str(ports["explainer"])),
            ports["explainer"],
            ready,
        ),
        "transformer": Component(
            "transformer",
            "serving.transformer",
            (
                "--http_port",
                str(ports["transformer"]),
                "--predictor_host",
                predictor_host,
                "--explainer_host",
                f"127.0.0.1:{ports['explainer']}",
            ),
            ports["transformer"],
            ready,
        ),
        "transformer_redis": Component(
            "transformer_redis",
            "serving.transformer",
            ("--http_port", str(ports["transformer_redis"]), "--predictor_host", predictor_host),
            ports["transformer_redis"],
            ready,
            {
                "FRAUD_ONLINE_STORE": "redis",
                "FRAUD_REDIS_URL": f"127.0.0.1:{proxy.port}",
                "FRAUD_FEAST_PROJECT": world.redis_project,
            },
        ),
        # Nothing listens on this port: the registry is unreachable from the start.
        "predictor_no_registry": Component(
            "predictor_no_registry",
            "serving.predictor",
            ("--http_port", str(ports["predictor_no_registry"])),
            ports["predictor_no_registry"],
            "/",
            {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"},
        ),
    }
    processes = {}
    servers = {}
    try:
        for name, component in components.items():
            log = logs / f"{name}.log"
            prediction_log = world.root / "predictions" / name
            processes[name] = spawn(
                component,
                log,
                {**common, **component.env, "FRAUD_PREDICTION_LOG_DIR": str(prediction_log)},
            )
            servers[name] = Server(name, component.port, processes[name], log, prediction_log)
        for name, component in components.items():
            wait_ready(component, processes[name], logs / f"{name}.log", timeout_s=150)
        yield Stack(**servers, redis_proxy=proxy)
    finally:
        terminate([p.pid for p in processes.values()])
        proxy.stop()


@dataclass
class Chain:
    """A level-4 chain of its own (predictor behind a transformer) for one test module."""

    predictor: Server
    transformer: Server


@contextlib.contextmanager
def level4_chain(root: Path, env: dict[str, str]) -> Iterator[Chain]:
    """Start a predictor and a transformer in front of it with ``env``; stop both after."""
    ports = {"predictor": free_port(), "transformer": free_port()}
    ready = kserve_ready_path(MODEL)
    components = {
        "predictor": Component(
            "predictor",
            "serving.predictor",
            ("--http_port", str(ports["predictor"])),
            ports["predictor"],
            ready,
        ),
        "transformer": Component(
            "transformer",
            "serving.transformer",
            (
                "--http_port",
                str(ports["transformer"]),
                "--predictor_host",
                f"127.0.0.1:{ports['predictor']}",
            ),
            ports["transformer"],
            ready,
        ),
    }
    processes, servers = {}, {}
    env = {"FRAUD_PREDICTION_LOG_DIR": str(root / "predictions"), **env}
    try:
        for name, component in components.items():
            log = root / f"{name}.log"
            processes[name] = spawn(component, log, env)
            servers[name] = Server(name, component.port, processes[name], log, root / "predictions")
        for name, component in components.items():
            wait_ready(component, processes[name], servers[name].log, timeout_s=150)
        yield Chain(servers["predictor"], servers["transformer"])
    finally:
        terminate([p.pid for p in processes.values()])
