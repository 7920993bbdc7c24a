"""Settings of every model server, from the environment (one prefix: ``FRAUD_``).

The same variables configure a local process (``python -m serving.level2``) and a
container on a cluster; nothing is read at import time -- each entry point builds one
:class:`ServingSettings` when it starts.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from pydantic import Field

from fraudops.config import FeaturizeParams, load_params, params_path
from fraudops.paths import paths
from fraudops.settings import FeatureStoreSettings, LogSettings, ModelSettings


class ServingSettings(ModelSettings, LogSettings, FeatureStoreSettings):
    """What a model server needs to know; each field is ``FRAUD_<NAME>`` in the environment.

    The model (``model_name``, ``model_alias``) and log folders (``prediction_log_dir``,
    ``audit_log_dir``) are the floor's fields (:mod:`fraudops.settings`), shared with the jobs;
    so are the Feast store's (``redis_url``, ``feast_project``), shared with ``features.store``.
    """

    #: a bundle directory (baked into the L1 image, KServe's /mnt/models); wins over the registry
    model_dir: Path | None = None
    #: seconds between registry alias checks (0 = never poll; ``POST /reload`` still works)
    reload_interval_seconds: float = Field(30.0, ge=0)
    #: seconds between load attempts while the registry is unreachable at start-up
    load_retry_seconds: float = Field(5.0, gt=0)
    #: Feast online store: the SQLite file of the feature repo, or Redis at ``redis_url``
    #: (the floor's field, narrowed: a server refuses any other value when it starts)
    online_store: Literal["sqlite", "redis"] = "sqlite"
    #: the Feast feature repo (default: the project's ``features/feature_repo``)
    feast_repo: Path | None = None
    #: fold every scored transaction into the online rows (off: rows move only by materialisation)
    live_updates: bool = True
    #: clock event times are checked against: ``server`` (production) or ``replay`` (the newest
    #: transaction the online state has seen -- simulated or replayed traffic, the local default)
    event_clock: Literal["server", "replay"] = "replay"
    #: seconds a transaction may be dated ahead of the server clock before it is refused (422)
    future_tolerance_seconds: float = Field(300.0, ge=0)
    #: the same against the replay clock, which only moves with traffic: a quiet night of
    #: simulated traffic is a gap of hours, a date decades ahead is still refused
    replay_future_tolerance_seconds: float = Field(2 * 86_400.0, ge=0)
    #: days until a label is known; None = ``featurize.label_delay_days`` of params.yaml
    label_delay_days: int | None = Field(None, ge=0)
    #: score small batches with the booster's trees compiled (checked against XGBoost first)
    compiled_trees: bool = True
    #: the most transactions one request may carry; more is a 422, not a slow request
    max_batch_size: int = Field(256, ge=1)
    #: reasons returned per explanation (the largest contributions by size)
    top_reasons: int = Field(5, ge=1)
    #: scored rows the transformer keeps so an explanation explains the score given
    #: (serving.served_rows; 0 = keep none, every explanation recomputes its rows)
    explain_rows_kept: int = Field(50_000, ge=0)
    #: seconds the transformer waits for the predictor or the explainer
    upstream_timeout_seconds: float = Field(10.0, gt=0)

    def prediction_log_path(self) -> Path:
        """The prediction-log folder (``FRAUD_PREDICTION_LOG_DIR`` or ``run/predictions``)."""
        return self.prediction_log_dir or paths().prediction_log_dir

    def audit_log_path(self) -> Path:
        """The explanation audit-log folder (``FRAUD_AUDIT_LOG_DIR`` or ``run/audit``)."""
        return self.audit_log_dir or paths().audit_log_dir

    def label_delay(self) -> int:
        """The label delay of the feature definition (setting, else params.yaml, else default)."""
        if self.label_delay_days is not None:
            return self.label_delay_days

        # A container without params.yaml uses the definition's default, like training did.
        return (
            load_params().featurize.label_delay_days
            if params_path().exists()
            else (FeaturizeParams().label_delay_days)
        )

    def feast_repo_path(self) -> Path:
        """The Feast feature repo (``FRAUD_FEAST_REPO`` or the project's feature repo)."""
        return self.feast_repo or paths().feature_repo


def load_settings() -> ServingSettings:
    """Read the serving settings from the environment (call once per process)."""
    return ServingSettings()


def configure_logging() -> None:
    """One readable line per event on stderr for the ``serving`` loggers (entry points call it)."""
    logger = logging.getLogger("serving")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
