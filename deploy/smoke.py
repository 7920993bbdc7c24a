"""Job 6 of the ML pipeline: three smoke tests against the deployed fraud detector.

1. **ready** - ``GET /v1/models/<model>`` answers 200 with ``"ready": true`` (retried
   while the new revision starts);
2. **scores a transaction** - ``POST /v1/models/<model>:predict`` with one valid
   transaction answers 200 with one prediction whose fraud score is within [0, 1];
3. **rejects bad input** - the same transaction with a negative amount answers a 4xx
   that names the field (the series' question 1: never a 500, never a confident score).

::

    python -m deploy.smoke --url https://fraud-detector.fraud-detection.example.com

``--url`` falls back to FRAUD_SERVING_URL; ``--host-header`` sets the Host an Istio
ingress routes on when the URL is the gateway's address.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from data import schema
from deploy.http import Response, Unreachable, request, require_http_url
from fraudops.config import MODEL_NAME
from fraudops.settings import DeploySettings

#: Keys a prediction object may carry its probability under.
SCORE_KEYS = ("fraud_probability", "fraud_score", "score")


def now_iso() -> str:
    """The server clock's now (UTC, to the second): the serving manifests refuse a
    transaction dated far from it, so the smoke transaction is dated now."""
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0).isoformat()


@dataclass(frozen=True)
class Target:
    """Where the model is served and how to address it."""

    url: str
    model: str = MODEL_NAME
    host_header: str | None = None
    timeout: float = 10.0
    #: when the smoke transaction happened (a replayed deployment passes its replay clock)
    tx_datetime: str = field(default_factory=now_iso)

    def call(self, method: str, path: str, payload: Any | None = None) -> Response:
        """One request to the service (Host header applied)."""
        headers = {"Host": self.host_header} if self.host_header else {}
        return request(
            method, f"{self.url}{path}", payload=payload, headers=headers, timeout=self.timeout
        )


@dataclass(frozen=True)
class SmokeResult:
    """One smoke test's verdict and the evidence."""

    name: str
    ok: bool
    detail: str


def sample_transaction(tx_datetime: str, amount: float = 42.5) -> dict[str, Any]:
    """A plausible card transaction in the serving request schema (data.schema)."""
    return {
        schema.TRANSACTION_ID: 900_000_001,
        schema.TX_DATETIME: tx_datetime,
        schema.CUSTOMER_ID: 17,
        schema.TERMINAL_ID: 123,
        schema.TX_AMOUNT: amount,
    }


def score_of(prediction: Any) -> float | None:
    """The fraud probability in one prediction (a number, or an object with a score key)."""
    if isinstance(prediction, bool):
        return None
    if isinstance(prediction, int | float):
        return float(prediction)
    if isinstance(prediction, dict):
        for key in SCORE_KEYS:
            value = prediction.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
    return None


def check_ready(target: Target, wait_seconds: float = 60.0, pause: float = 2.0) -> SmokeResult:
    """Smoke test 1: the model reports ready (retried for ``wait_seconds``)."""
    deadline = time.monotonic() + wait_seconds
    detail = "no answer"
    while True:
        try:
            answer = target.call("GET", f"/v1/models/{target.model}")
            body = answer.json() if answer.status == 200 else None
            if isinstance(body, dict) and body.get("ready") is True:
                return SmokeResult("ready", True, f"HTTP 200, ready in {answer.seconds:.2f} s")
            detail = f"HTTP {answer.status}: {answer.text()}"
        except (Unreachable, ValueError) as error:
            detail = str(error)
        if time.monotonic() + pause >= deadline:
            return SmokeResult("ready", False, detail)
        time.sleep(pause)


def check_scores(target: Target) -> SmokeResult:
    """Smoke test 2: one valid transaction gets one score within [0, 1]."""
    answer = target.call(
        "POST",
        f"/v1/models/{target.model}:predict",
        {"instances": [sample_transaction(target.tx_datetime)]},
    )
    if answer.status != 200:
        return SmokeResult("scores a transaction", False, f"HTTP {answer.status}: {answer.text()}")
    try:
        predictions = answer.json().get("predictions")
    except (ValueError, AttributeError):
        return SmokeResult("scores a transaction", False, f"not a JSON object: {answer.text()}")
    if not isinstance(predictions, list) or len(predictions) != 1:
        return SmokeResult(
            "scores a transaction", False, f"expected 1 prediction, got {answer.text()}"
        )
    score = score_of(predictions[0])
    if score is None or not 0.0 <= score <= 1.0:
        return SmokeResult(
            "scores a transaction", False, f"no fraud score in [0, 1]: {predictions[0]!r}"
        )
    variant = answer.headers.get("x-fraud-model-variant")
    served_by = f", variant {variant}" if variant else ""
    return SmokeResult(
        "scores a transaction", True, f"score {score:.4f} in {answer.seconds:.2f} s{served_by}"
    )


def check_rejects_bad_input(target: Target) -> SmokeResult:
    """Smoke test 3: a negative amount gets a 4xx that names the field."""
    bad = sample_transaction(target.tx_datetime, amount=-5.0)
    answer = target.call("POST", f"/v1/models/{target.model}:predict", {"instances": [bad]})
    if not 400 <= answer.status < 500:
        return SmokeResult(
            "rejects bad input", False, f"expected a 4xx, got HTTP {answer.status}: {answer.text()}"
        )
    if schema.TX_AMOUNT not in answer.text(2000):
        return SmokeResult(
            "rejects bad input",
            False,
            f"the error does not name {schema.TX_AMOUNT}: {answer.text()}",
        )
    return SmokeResult("rejects bad input", True, f"HTTP {answer.status} naming {schema.TX_AMOUNT}")


SMOKE_TESTS: tuple[Callable[[Target], SmokeResult], ...] = (check_scores, check_rejects_bad_input)


def run_smoke_tests(target: Target, ready_wait_seconds: float = 60.0) -> list[SmokeResult]:
    """All three smoke tests; the request tests run only once the model is ready."""
    ready = check_ready(target, ready_wait_seconds)
    if not ready.ok:
        return [ready]
    results = [ready]
    for test in SMOKE_TESTS:
        try:
            results.append(test(target))
        except Unreachable as error:
            results.append(SmokeResult(test.__name__, False, str(error)))
    return results


def main(argv: list[str] | None = None) -> int:
    """CLI: exit 0 when the three smoke tests pass, 1 otherwise (one line per test)."""
    parser = argparse.ArgumentParser(
        prog="python -m deploy.smoke", description=__doc__.split("\n")[0]
    )
    settings = DeploySettings()
    parser.add_argument("--url", default=settings.serving_url, help="service base URL")
    parser.add_argument("--model", default=settings.model_name)
    parser.add_argument("--host-header", default=None, help="Host header for an ingress gateway")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    parser.add_argument("--ready-wait", type=float, default=120.0, help="seconds to wait for ready")
    parser.add_argument(
        "--tx-datetime",
        default=None,
        help="date of the smoke transaction (default: now, UTC; a replay passes its clock)",
    )
    args = parser.parse_args(argv)
    if not args.url:
        print("error: --url (or FRAUD_SERVING_URL) is required", file=sys.stderr)
        return 1
    try:
        target = Target(
            require_http_url(args.url, "--url"),
            args.model,
            args.host_header,
            args.timeout,
            args.tx_datetime or now_iso(),
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    results = run_smoke_tests(target, args.ready_wait)
    for result in results:
        print(f"{'ok  ' if result.ok else 'FAIL'} {result.name}: {result.detail}")
    return 0 if len(results) == 1 + len(SMOKE_TESTS) and all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
