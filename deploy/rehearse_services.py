"""The services a cluster gives the fraud detector, for one rehearsal on one machine.

- an S3-compatible object store: moto in server mode (``s3://fraud-mlops``), in this process,
  so a fault step can stop it and start it again with its contents intact;
- Redis for Feast's online store: a redis-server of its own, on the engine's bridge address;
- PostgreSQL: a database of its own on the machine's server, dropped at the end;
- a Pushgateway stand-in that records what the drift job pushes.

Host-side services listen on the Docker bridge's gateway address, which every container
reaches and nothing outside the machine does. The containers find them under the cluster's
names (``minio.mlops.svc.cluster.local`` ...) through ``extra_hosts``, as cluster DNS would
answer, so the manifests' URLs are used unchanged.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

BUCKET = "fraud-mlops"
S3_PORT = 9000
REDIS_PORT = 6379
MLFLOW_PORT = 5000
PUSHGATEWAY_PORT = 9091
#: moto accepts any key: these are local test values for the rehearsal, never real ones.
LOCAL_TEST_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "rehearsal-local-test-key",
    "AWS_SECRET_ACCESS_KEY": "rehearsal-local-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}
#: The cluster names the manifests use, all answered by the host here.
CLUSTER_HOSTS = (
    "minio.mlops.svc.cluster.local",
    "mlflow.mlops.svc.cluster.local",
    "feast-redis.mlops.svc.cluster.local",
    "pushgateway.mlops.svc.cluster.local",
)


class ServiceError(RuntimeError):
    """A service did not start or answer; the message names it and where to look."""


def wait_for_port(host: str, port: int, what: str, timeout_s: float = 60.0) -> None:
    """Return once ``host:port`` accepts a connection; ServiceError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.5)
    raise ServiceError(f"{what}: nothing answers on {host}:{port} after {timeout_s:.0f}s")


def port_is_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound (another engineer's server may hold it)."""
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class ObjectStore:
    """moto's S3 server on ``host:port``, stoppable and restartable with its contents."""

    host: str
    port: int = S3_PORT
    server: Any = None

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL on the host."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Start (or restart) the server; moto's state lives in this process, so it stays."""
        import logging

        from moto.server import ThreadedMotoServer

        # One line per request from werkzeug would bury the rehearsal's one line per step.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        self.server.start()
        wait_for_port(self.host, self.port, "object store (moto)")

    def stop(self) -> None:
        """Stop answering (a fault step: the store is down)."""
        if self.server is not None:
            self.server.stop()
            self.server = None

    def client(self) -> Any:
        """A boto3 S3 client for the host side."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=LOCAL_TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=LOCAL_TEST_CREDENTIALS["AWS_DEFAULT_REGION"],
        )

    def create_bucket(self, bucket: str = BUCKET) -> None:
        """The one bucket the manifests use."""
        self.client().create_bucket(Bucket=bucket)

    def keys(self, prefix: str, bucket: str = BUCKET) -> list[str]:
        """Object keys under ``prefix``."""
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def upload_folder(self, folder: Path, prefix: str, bucket: str = BUCKET) -> list[str]:
        """Every file under ``folder`` to ``s3://bucket/prefix`` (relative paths kept)."""
        client, keys = self.client(), []
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            key = f"{prefix.rstrip('/')}/{path.relative_to(folder).as_posix()}"
            client.upload_file(str(path), bucket, key)
            keys.append(key)
        return keys


@dataclass
class Redis:
    """A redis-server of the rehearsal's own (nothing on disk)."""

    host: str
    port: int = REDIS_PORT
    log: Path | None = None
    process: subprocess.Popen | None = None

    def start(self) -> None:
        """Start it and wait until it accepts connections."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceError("redis-server not found: apt-get install -y redis-server")
        command = [binary, "--bind", self.host, "--port", str(self.port), "--save", ""]
        command += ["--appendonly", "no", "--protected-mode", "no"]
        output = self.log.open("ab") if self.log else subprocess.DEVNULL
        self.process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        wait_for_port(self.host, self.port, "redis")

    def stop(self) -> None:
        """Stop the server this rehearsal started."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None


@dataclass
class PostgresDatabase:
    """A database of the rehearsal's own on the machine's PostgreSQL server."""

    name: str
    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"

    def _admin(self) -> Any:
        import psycopg2

        connection = psycopg2.connect(
            host=self.host, port=self.port, user=self.user, dbname="postgres", connect_timeout=5
        )
        connection.autocommit = True  # CREATE / DROP DATABASE cannot run in a transaction
        return connection

    @property
    def url(self) -> str:
        """The SQLAlchemy URL MLflow's ``--backend-store-uri`` takes."""
        return f"postgresql+psycopg2://{self.user}@{self.host}:{self.port}/{self.name}"

    def create(self) -> None:
        """A fresh, empty database (a leftover of an interrupted run is dropped first)."""
        self.drop()
        self._execute(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        """Drop the database if it exists."""
        self._execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def _execute(self, statement: str) -> None:
        import psycopg2

        try:
            connection = self._admin()
        except psycopg2.OperationalError as exc:
            raise ServiceError(f"PostgreSQL {self.host}:{self.port}: {exc}".strip()) from None
        # Not `with connection`: psycopg2 opens a transaction block there, even in autocommit.
        try:
            with connection.cursor() as cursor:
                cursor.execute(statement)
        finally:
            connection.close()


@dataclass
class PushgatewayStandIn:
    """Records every metrics push (PUT/POST); answers 200 like a Pushgateway."""

    host: str
    port: int = PUSHGATEWAY_PORT
    pushes: list[tuple[str, str]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        """Serve in a daemon thread."""
        pushes = self.pushes

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                pushes.append((self.path, self.rfile.read(length).decode("utf-8", "replace")))
                self.send_response(200)
                self.end_headers()

            do_PUT = do_POST = _record

            def log_message(self, *_args: Any) -> None:
                return  # the pushes are the record; no access log on the console

        self.server = ThreadingHTTPServer((self.host, self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop serving."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
