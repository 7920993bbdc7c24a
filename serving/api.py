"""The FastAPI app of levels 1 and 2: raw transactions in, decisions out, OpenAPI described.

Same route and body as KServe's v1 protocol (``POST /v1/models/<name>:predict`` with
``{"instances": [...]}``), so a client moves from L1/L2 to L4 without a change. The app
does the feature lookup itself with the transformer's code (:mod:`serving.lookup`).
"""

# No `from __future__ import annotations`: FastAPI must see the request model built at run time.
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving import metrics
from serving.errors import MalformedRequest, ServingError, UnsupportedContentType
from serving.kserve_runtime import freeze_startup_objects
from serving.lookup import OnlineFeatureLookup
from serving.model_source import ModelHolder, configure_mlflow_client
from serving.prediction_log import PredictionLogWriter
from serving.schema import ErrorResponse, PredictResponse, invalid_request, predict_request_model
from serving.scoring import REQUEST_ID_HEADER, PredictionService, request_id_from
from serving.settings import ServingSettings, configure_logging

logger = logging.getLogger("serving.api")

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Body is not valid JSON"},
    413: {"description": "Body larger than the batch limit allows"},
    415: {"model": ErrorResponse, "description": "Content-Type is not application/json"},
    422: {"model": ErrorResponse, "description": "A field breaks its rule (named in the body)"},
    503: {"model": ErrorResponse, "description": "No model loaded, or the online store is down"},
}
#: Bytes allowed per transaction in a body (a valid one is ~130): bounds memory per request.
_BYTES_PER_TRANSACTION = 1024


def require_json(request: Request) -> None:
    """A predict body must be declared ``application/json`` (else 415, naming the header)."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise UnsupportedContentType(
            f"content-type: must be application/json, got {content_type or 'none'!r}",
            [{"field": "content-type", "rule": "must be application/json", "got": content_type}],
        )


def _error_response(exc: ServingError) -> JSONResponse:
    return JSONResponse(status_code=exc.status, content=exc.body())


async def _serving_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServingError)
    return _error_response(exc)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    # FastAPI's own errors (unparseable body, 404, 405) in the one error format.
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(
        status_code=exc.status_code, content={"error": str(exc.detail)}, headers=exc.headers
    )


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        reason = (errors[0].get("ctx") or {}).get("error", "invalid JSON")
        return _error_response(MalformedRequest(f"body: not valid JSON ({reason})"))
    # FastAPI prefixes body fields with "body"; the field names are what the client sent.
    stripped = [
        {**e, "loc": tuple(e["loc"])[1:] if e["loc"][:1] == ("body",) else e["loc"]} for e in errors
    ]
    return _error_response(invalid_request(stripped))


def create_app(
    service: PredictionService,
    settings: ServingSettings,
    *,
    title: str,
    allow_reload: bool,
) -> FastAPI:
    """The L1/L2 app around a prediction service; ``allow_reload`` adds ``POST /reload``."""
    holder: ModelHolder = service.holder
    request_model = predict_request_model(settings.max_batch_size)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        holder.stop()

    app = FastAPI(
        title=title,
        version="1",
        description="Scores raw card transactions: fraud probability and decision with reasons "
        "of the registry's model. Errors name the field and the rule.",
        lifespan=lifespan,
        max_body_size=64 * 1024 + settings.max_batch_size * _BYTES_PER_TRANSACTION,
    )
    app.add_middleware(metrics.ErrorCountingMiddleware)
    app.add_exception_handler(ServingError, _serving_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    predict_path = f"/v1/models/{settings.model_name}:predict"

    @app.get("/healthz", summary="Liveness")
    def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", summary="Readiness: a model is loaded", responses={503: {}})
    def readyz() -> JSONResponse:
        return JSONResponse(status_code=200 if holder.ready else 503, content=holder.status())

    @app.get(
        f"/v1/models/{settings.model_name}",
        summary="KServe-style model readiness",
        responses={503: {}},
    )
    def model_ready() -> JSONResponse:
        return JSONResponse(
            status_code=200 if holder.ready else 503,
            content={"name": settings.model_name, "ready": holder.ready},
        )

    @app.post(
        predict_path,
        response_model=PredictResponse,
        responses=_ERRORS,
        summary="Score raw transactions",
        dependencies=[Depends(require_json)],
    )
    def predict(body: request_model, request: Request, response: Response) -> dict[str, Any]:  # type: ignore[valid-type]
        request_id = request_id_from(request.headers)
        response.headers[REQUEST_ID_HEADER] = request_id
        return service.predict(list(body.instances), request_id)  # type: ignore[attr-defined]

    @app.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    if allow_reload:

        @app.post(
            "/reload", summary="Re-resolve the alias now; swap if it moved", responses={503: {}}
        )
        def reload() -> JSONResponse:
            changed = holder.refresh()
            status = {"changed": changed, **holder.status()}
            ok = holder.ready and holder.registry_error is None
            return JSONResponse(status_code=200 if ok else 503, content=status)

    return app


def run_level(level: str, settings: ServingSettings, host: str, port: int) -> None:
    """Start the L1 or L2 app: model holder, online lookup, prediction log, uvicorn."""
    import uvicorn

    configure_logging()
    configure_mlflow_client()
    holder = ModelHolder(settings)
    holder.listeners.append(
        lambda b: metrics.set_model_info(b.model_version or "local", settings.model_alias)
    )
    lookup = OnlineFeatureLookup(settings)
    lookup.open()
    logger.info("%s: features from %s; model from %s", level, lookup.describe(), holder.source)
    holder.start(load_now=True)
    service = PredictionService(
        holder, lookup, PredictionLogWriter(settings.prediction_log_path()), served_by=level
    )
    title = {
        "level1": "Fraud detector L1 (baked model)",
        "level2": "Fraud detector L2 (MLflow alias)",
    }
    app = create_app(service, settings, title=title[level], allow_reload=level == "level2")
    freeze_startup_objects()
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
