"""Errors a model server turns into HTTP answers: a status, a message, the offending fields.

Every server (FastAPI for L1/L2, KServe for L3-L5) maps :class:`ServingError` to the same
JSON body, ``{"error": "...", "details": [{"field", "rule", "got"}]}``, so a client sees one
error format whichever level it talks to.
"""

from __future__ import annotations

from typing import Any


class ServingError(Exception):
    """A request the server answers with ``status`` and a message naming what is wrong."""

    status: int = 500

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def body(self) -> dict[str, Any]:
        """The JSON error body."""
        body: dict[str, Any] = {"error": self.message}
        if self.details:
            body["details"] = self.details
        return body


class MalformedRequest(ServingError):
    """The body is not JSON at all."""

    status = 400


class UnsupportedContentType(ServingError):
    """The body is not declared as ``application/json``."""

    status = 415


class InvalidRequest(ServingError):
    """JSON that breaks a field rule (missing/extra field, wrong type, out of range, batch size)."""

    status = 422


class ModelUnavailable(ServingError):
    """No model is loaded yet (registry unreachable at start-up, bundle missing)."""

    status = 503


class OnlineStoreUnavailable(ServingError):
    """The Feast online store (Redis, SQLite) cannot be read: no features, so no score."""

    status = 503


class NotConfigured(ServingError):
    """The deployment lacks the component this route needs (``:explain`` without explainer)."""

    status = 501


class UpstreamUnavailable(ServingError):
    """The predictor or explainer behind the transformer cannot be reached."""

    status = 503


class UpstreamFailed(ServingError):
    """The predictor or explainer answered with an error the transformer cannot fix."""

    status = 502


def upstream_error(component: str, status: int, message: str) -> ServingError:
    """The error to return when ``component`` answered ``status``: its 4xx pass through."""
    if 400 <= status < 500:
        error = ServingError(f"{component}: {message}")
        error.status = status
        return error
    if status == 503:
        return UpstreamUnavailable(f"{component} not ready: {message}")
    return UpstreamFailed(f"{component} failed with HTTP {status}: {message}")
