"""Every ``FRAUD_*`` environment variable, as typed settings (one prefix, each field documented).

``params.yaml`` configures the pipeline (:mod:`fraudops.config`); the environment configures
a process: where the project is, which model it serves or judges, where it logs, where it
pushes. Each class below reads its variables when it is built -- never at import time -- so
a CLI builds one when it parses its arguments and uses the fields as its defaults. A field
``name`` is the variable ``FRAUD_NAME`` (matched without regard to case, as pydantic-settings
does); variables not named here are ignored.

This module imports no other project module: everything else in the floor may import it.

========================  ==============================================  ==================
class                     variables                                       read by
========================  ==============================================  ==================
ProjectSettings           FRAUD_PROJECT_ROOT, FRAUD_PARAMS                fraudops.config
ModelSettings             FRAUD_MODEL_NAME, FRAUD_MODEL_ALIAS             jobs, deploy CLIs
LogSettings               FRAUD_PREDICTION_LOG_DIR, FRAUD_AUDIT_LOG_DIR   servers
MonitoringSettings        + FRAUD_PUSHGATEWAY_URL (log dir may be s3://)  drift, performance
DeploySettings            + FRAUD_SERVING_URL, FRAUD_REHEARSE_CACHE       deploy.smoke, images
PipelineSettings          FRAUD_PROMOTE_VIA                               pipelines.run_local
LaunchSettings            FRAUD_PORT, FRAUD_PREDICTOR_PORT, ...           serving.launch
FeatureStoreSettings      FRAUD_ONLINE_STORE, FRAUD_REDIS_URL,            features.store
                          FRAUD_FEAST_PROJECT
ConsoleSettings           FRAUD_VERBOSE                                   pipelines.console
serving.settings.         the model servers' own (FRAUD_MODEL_DIR, ...)   serving
ServingSettings           + the model and log folders, the Feast store
========================  ==============================================  ==================
"""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

#: Repository root: every default path is relative to it (override with FRAUD_PROJECT_ROOT).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: The registered model's name, the one every layer defaults to (FRAUD_MODEL_NAME overrides
#: it for a process). Re-exported by ``fraudops.config`` and ``fraudops.bundle``; defined
#: here, the bottom of the floor, so that light CLIs need neither numpy nor XGBoost for it.
MODEL_NAME = "fraud-detector"
#: The registry alias served and judged unless told otherwise.
DEFAULT_ALIAS = "champion"


class FraudSettings(BaseSettings):
    """Base of every settings class: the ``FRAUD_`` prefix, unknown variables ignored."""

    model_config = SettingsConfigDict(env_prefix="FRAUD_", extra="ignore", protected_namespaces=())


class ProjectSettings(FraudSettings):
    """Where the project is, and which params file the pipeline reads."""

    #: the root all relative paths resolve against (a test may point it at a temp copy)
    project_root: Path = PROJECT_ROOT
    #: the params file (default: ``params.yaml`` in the project root)
    params: Path | None = None


class ModelSettings(FraudSettings):
    """Which registered model a process serves or judges."""

    #: registry model name, and the name on the endpoint path (``/v1/models/<name>:predict``)
    model_name: str = MODEL_NAME
    #: registry alias to serve or judge; promotion and rollback move it, never a version
    model_alias: str = DEFAULT_ALIAS


class LogSettings(FraudSettings):
    """Where servers log what they scored and what they explained."""

    #: where scored transactions are logged (default ``run/predictions``)
    prediction_log_dir: Path | None = None
    #: where explanations are audited (default ``run/audit``)
    audit_log_dir: Path | None = None


class MonitoringSettings(ModelSettings):
    """The drift and performance jobs: what they read and where they push metrics."""

    #: the prediction log to judge: a folder or an ``s3://`` URI (default ``run/predictions``);
    #: text, not a path, so a URI keeps its ``//``
    prediction_log_dir: str | None = None
    #: Prometheus Pushgateway base URL; unset or empty: the jobs write only the textfile
    pushgateway_url: str | None = None


class DeploySettings(ModelSettings):
    """The post-deploy smoke test: which service to call."""

    #: the served model's base URL (``https://fraud-detector.<domain>``)
    serving_url: str | None = None
    #: where ``make rehearse`` keeps the Debian base image between runs (default
    #: ``$XDG_CACHE_HOME/fraud-mlops``, else ``~/.cache/fraud-mlops``)
    rehearse_cache: Path | None = None


class PipelineSettings(FraudSettings):
    """One pipeline run's overrides of ``params.yaml``."""

    #: "pipeline" or "canary": overrides ``register.promote_via`` (unset or empty: params)
    promote_via: str | None = None


class LaunchSettings(FraudSettings):
    """Ports of the model servers ``make levelN`` starts as local processes."""

    #: the level's entry point (the API, or the transformer at levels 4 and 5)
    port: int = 8080
    #: the KServe predictor behind the transformer
    predictor_port: int = 8081
    #: the KServe explainer (level 5)
    explainer_port: int = 8082


class FeatureStoreSettings(FraudSettings):
    """Which Feast online store a process opens (the feature repo's yaml says the rest)."""

    #: ``sqlite`` (the feature repo's own file) or ``redis``; text, so that
    #: ``features.store`` names the variable when the value is neither
    online_store: str = "sqlite"
    #: ``host:port`` of Redis when ``online_store`` is ``redis``
    redis_url: str | None = None
    #: overrides the Feast project of feature_store.yaml (Redis keys and SQLite tables are
    #: namespaced by it, so several projects can share one Redis)
    feast_project: str | None = None


class ConsoleSettings(FraudSettings):
    """How much of a run's output reaches the terminal (``make ... VERBOSE=1`` sets it)."""

    #: anything but empty, ``0``, ``false`` or ``no`` echoes every line again; text, not a
    #: bool, so that any other value (``2``, ``on``) still means "verbose"
    verbose: str = ""
