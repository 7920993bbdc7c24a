"""The one MLflow client factory: which registry to use, and whether it answers.

Every layer that reads or moves the registry (training, serving, monitoring, deploy) gets
its client here, so the URI default and the fail-fast reachability probe exist once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlparse

import httpx

from fraudops.config import mlflow_tracking_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient


class RegistryUnavailableError(RuntimeError):
    """The MLflow tracking server / registry cannot be reached; nothing was changed."""


def tracking_uri_or_default(tracking_uri: str | None = None) -> str:
    """The URI to use: the explicit one, else ``fraudops.config.mlflow_tracking_uri()``."""
    return tracking_uri or mlflow_tracking_uri()


def ensure_reachable(tracking_uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast with the URI in the message when the tracking store does not answer.

    MLflow itself retries for minutes (HTTP backoff, SQLAlchemy engine retries) before
    failing; a pipeline step should stop at once and say where it tried to go.
    """
    # SQLAlchemy comes with mlflow, which only the registry's users install.
    import sqlalchemy.exc

    scheme = urlparse(tracking_uri).scheme.lower()
    try:
        if scheme in ("http", "https"):
            response = httpx.get(f"{tracking_uri.rstrip('/')}/health", timeout=timeout_s)
            response.raise_for_status()
        elif scheme and scheme not in ("sqlite", "file", "databricks") and len(scheme) > 1:
            engine = sqlalchemy.create_engine(
                tracking_uri, connect_args=_connect_timeout(scheme, timeout_s)
            )
            try:
                with engine.connect():
                    pass
            finally:
                engine.dispose()
    except ImportError as exc:
        # SQLAlchemy 2.1 maps postgresql:// to psycopg 3; the project pins psycopg2.
        raise RegistryUnavailableError(
            f"MLflow registry at {tracking_uri} is unreachable: database driver missing ({exc}); "
            "for PostgreSQL use postgresql+psycopg2://"
        ) from None
    except (httpx.HTTPError, sqlalchemy.exc.SQLAlchemyError, OSError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RegistryUnavailableError(
            f"MLflow registry at {tracking_uri} is unreachable: {detail}"
        ) from None


def _connect_timeout(scheme: str, timeout_s: float) -> dict:
    # Without a connect timeout a firewalled database host hangs the probe for minutes.
    if scheme.startswith(("postgresql", "mysql")):
        return {"connect_timeout": max(1, int(timeout_s))}
    return {}


def mlflow_client(
    tracking_uri: str | None = None, *, check: bool = True
) -> tuple[MlflowClient, str]:
    """A client on the tracking store and registry at one URI, and that URI.

    ``check`` probes the store first, so a caller fails at once naming the URI instead of
    inside MLflow's minutes of retries.
    """
    # mlflow is heavy and absent from the pipeline image: imported only when a client is made.
    from mlflow import MlflowClient

    uri = tracking_uri_or_default(tracking_uri)
    if check:
        ensure_reachable(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri), uri
