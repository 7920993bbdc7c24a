"""The registry through a real MLflow tracking SERVER backed by PostgreSQL, over HTTP.

The production topology (MLflow server + PostgreSQL + artifact store): a fresh database on
127.0.0.1:5432 per test session, ``mlflow server`` as a subprocess, then register, promote and
roll back through its REST API. The database is dropped at the end.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg2
import pytest

from fraudops.bundle import load_reference_sample, load_registered_bundle
from tests.model.synthetic import WEAK_XGBOOST, small_params, write_training_set
from training.register import champion_history, current_version, rollback
from training.run import run_training

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
MODEL = "fraud-detector"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh, uniquely named PostgreSQL database; dropped after the session."""
    name = f"fraudops_mlflow_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(dbname="postgres", **PG)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="session")
def mlflow_server(
    postgres_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``mlflow server`` on PostgreSQL + a local artifact destination; yields its URL."""
    work = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    # SQLAlchemy's default PostgreSQL driver is psycopg 3; the project pins psycopg2.
    backend = f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{postgres_database}"
    log = (work / "server.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            backend,
            "--artifacts-destination",
            str(work / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        # Its own process group: teardown stops the server and its workers, nothing else.
        start_new_session=True,
        # No background job runner: the registry needs none and it costs CPU.
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None:
                pytest.fail(
                    f"mlflow server exited ({server.returncode}):\n{(work / 'server.log').read_text()[-2000:]}"
                )
            try:
                if httpx.get(f"{url}/health", timeout=2).is_success:
                    break
            except httpx.HTTPError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                pytest.fail(
                    f"mlflow server not healthy after 180 s:\n{(work / 'server.log').read_text()[-2000:]}"
                )
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        log.close()


def champion_alias_in_postgres(database: str) -> list[tuple[str, int]]:
    connection = psycopg2.connect(dbname=database, **PG)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT alias, version FROM registered_model_aliases WHERE name = %s ORDER BY alias",
                (MODEL,),
            )
            return cursor.fetchall()
    finally:
        connection.close()


def test_register_promote_rollback_through_the_tracking_server(
    mlflow_server: str,
    postgres_database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FRAUD_PROJECT_ROOT", str(tmp_path))
    training_set = write_training_set(tmp_path / "training_set.parquet")
    artifacts = tmp_path / "artifacts"

    first = run_training(
        small_params(train=WEAK_XGBOOST), training_set, artifacts, tracking_uri=mlflow_server
    )
    assert first.promoted and first.candidate_version == "1"
    second = run_training(small_params(), training_set, artifacts, tracking_uri=mlflow_server)
    assert second.promoted and second.champion_change.previous == "1"
    assert current_version("champion", MODEL, mlflow_server) == "2"
    assert champion_alias_in_postgres(postgres_database) == [("candidate", 2), ("champion", 2)]

    # artifacts travel through the server's proxy (mlflow-artifacts:/)
    bundle = load_registered_bundle("champion", MODEL, mlflow_server)
    assert bundle.model_version == "2" and bundle.run_id == second.run_id
    assert len(load_reference_sample("champion", MODEL, mlflow_server)) == 500

    change = rollback(MODEL, mlflow_server, actor="oncall")
    assert (change.previous, change.current) == ("2", "1")
    assert champion_alias_in_postgres(postgres_database) == [("candidate", 2), ("champion", 1)]
    assert load_registered_bundle("champion", MODEL, mlflow_server).run_id == first.run_id
    assert [e["event"] for e in champion_history(MODEL, mlflow_server)] == [
        "promote",
        "promote",
        "rollback",
    ]
