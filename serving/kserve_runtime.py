"""Running a ``kserve.Model`` as a process: arguments, error answers, metrics, readiness.

The predictor, transformer and explainer share this bootstrap. It keeps KServe's own
command line (``--http_port``, ``--model_name``, ``--predictor_host`` ... as KServe passes
them to custom containers), registers the model *before* it is loaded -- so the server
is up and answers 503 on readiness while the registry is unreachable, instead of exiting
-- and maps :class:`~serving.errors.ServingError` to its status with the shared body.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from serving import metrics
from serving.errors import ServingError
from serving.metrics import ErrorCountingMiddleware
from serving.model_source import ModelHolder, configure_mlflow_client
from serving.settings import ServingSettings, configure_logging, load_settings

logger = logging.getLogger("serving.kserve")


def server_parser(description: str, default_port: int) -> argparse.ArgumentParser:
    """KServe's model-server arguments plus ours, with local-friendly defaults."""
    from kserve import model_server

    parser = argparse.ArgumentParser(description=description, parents=[model_server.parser])
    parser.add_argument(
        "--explainer_host", default=None, help="host:port of the explainer (transformer only)"
    )
    parser.add_argument(
        "--access_log", action="store_true", help="log every request (off: metrics cover it)"
    )
    # gRPC off by default: its port (8081) is the local predictor's HTTP port.
    parser.set_defaults(
        http_port=default_port, enable_grpc=False, enable_latency_logging=False, model_name=None
    )
    return parser


def parse_server_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, settings: ServingSettings
) -> argparse.Namespace:
    """Parse ``argv``; ``--model_name`` defaults to ``FRAUD_MODEL_NAME``."""
    configure_logging()
    args = parser.parse_args(argv)
    args.model_name = args.model_name or settings.model_name
    return args


async def _serving_error_handler(_request, exc: Exception):
    from fastapi.responses import ORJSONResponse

    assert isinstance(exc, ServingError)
    if exc.status >= 500:
        logger.error("%s", exc.message)
    return ORJSONResponse(status_code=exc.status, content=exc.body())


def serve(model, args: argparse.Namespace) -> None:
    """Register ``model`` (ready or not) and run KServe's server until it is stopped."""
    from kserve import ModelServer
    from kserve.model_server import app
    from kserve.predictor_config import PredictorConfig

    app.add_exception_handler(ServingError, _serving_error_handler)
    app.add_middleware(ErrorCountingMiddleware)
    server = ModelServer(
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        workers=1,
        enable_grpc=args.enable_grpc,
        enable_docs_url=args.enable_docs_url,
        enable_latency_logging=args.enable_latency_logging,
        predictor_config=PredictorConfig(
            predictor_host=args.predictor_host,
            predictor_protocol=args.predictor_protocol,
            predictor_use_ssl=args.predictor_use_ssl,
            predictor_request_timeout_seconds=args.predictor_request_timeout_seconds,
            predictor_request_retries=args.predictor_request_retries,
            predictor_health_check=args.enable_predictor_health_check,
        ),
    )
    if not args.access_log:
        # Two log lines per request (access + KServe timing) cost more than a small predict.
        logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
        logging.getLogger("kserve.trace").setLevel(logging.WARNING)
    model.enable_latency_logging = args.enable_latency_logging
    # Registered before it is ready: KServe's start() would refuse an unready model, and
    # a server that answers "not ready" is what readiness probes and operators expect.
    server.register_model(model)

    async def server_ready() -> bool:
        # KServe's /v2/health/ready says "ready" as soon as the process is up; here it means
        # what /v1/models/<name> means: the model is loaded (the probe the manifests use).
        return all(m.ready for m in server.registered_models.get_models().values())

    server.dataplane.ready = server_ready
    logger.info("%s listening on :%d (ready=%s)", model.name, args.http_port, model.ready)
    freeze_startup_objects()
    server.start([])


def run_model_server(
    build: Callable[[str, ModelHolder, ServingSettings], Any],
    description: str,
    default_port: int,
    argv: Sequence[str] | None = None,
) -> None:
    """Settings → arguments → model holder → ``build(name, holder, settings)`` → serve.

    The predictor and the explainer start the same way; only the model class differs.
    """
    settings = load_settings()
    args = parse_server_args(server_parser(description, default_port), argv, settings)
    configure_mlflow_client()
    holder = ModelHolder(settings)
    holder.listeners.append(
        lambda b: metrics.set_model_info(b.model_version or "local", settings.model_alias)
    )
    model = build(args.model_name, holder, settings)
    # KServe's storage initializer downloads STORAGE_URI into FRAUD_MODEL_DIR before start-up.
    holder.require_bundle_dir(os.environ.get("STORAGE_URI"))
    holder.start(load_now=True)
    serve(model, args)


def freeze_startup_objects() -> None:
    """Move everything allocated at start-up out of the garbage collector's sight.

    kserve, feast, mlflow and pandas leave ~10^6 long-lived objects; without this, each
    full collection walks them all and stalls a request by tens of milliseconds (p99).
    """
    import gc

    gc.collect()
    gc.freeze()
