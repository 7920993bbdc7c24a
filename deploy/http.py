"""Tiny standard-library HTTP client for the pipeline's checks (no install needed).

The pre-flight, smoke and Argo CD checks run in CI jobs before (or without) the project's
environment, so they use ``urllib`` only. HTTP error statuses are answers, not exceptions:
a check decides what a 403 or a 422 means.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Response:
    """Status, headers (lower-case names), body and how long the call took."""

    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float

    def json(self) -> Any:
        """The body parsed as JSON (ValueError when it is not JSON)."""
        return json.loads(self.body.decode("utf-8"))

    def text(self, limit: int = 300) -> str:
        """The start of the body as text, for error messages."""
        return self.body[:limit].decode("utf-8", errors="replace")


class Unreachable(Exception):
    """No HTTP answer at all: DNS, connection refused, TLS failure or timeout."""


def request(
    method: str,
    url: str,
    *,
    payload: Any | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> Response:
    """Send one request; a JSON ``payload`` is encoded and typed. Raises Unreachable."""
    data = None
    all_headers = {"Accept": "application/json", **(headers or {})}
    if payload is not None:
        data = json.dumps(payload).encode("utf-8")
        all_headers.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    started = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as answer:
            body, status, raw_headers = answer.read(), answer.status, answer.headers
    except urllib.error.HTTPError as error:
        body, status, raw_headers = error.read(), error.code, error.headers
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise Unreachable(f"{method} {url}: {reason}") from error
    headers_lower = {name.lower(): value for name, value in raw_headers.items()}
    return Response(status, headers_lower, body, time.monotonic() - started)


def require_http_url(url: str, what: str) -> str:
    """``url`` if it is an http(s) URL, else a ValueError naming ``what``."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{what}: expected an http:// or https:// URL, got {url!r}")
    return url.rstrip("/")
