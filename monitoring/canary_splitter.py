"""The canary's traffic: a weighted HTTP splitter over two arms, and a replay client.

Locally the splitter stands in for Istio's weighted routes / KServe's
``canaryTrafficPercent``: each POST goes to a weighted-random arm, every answer is tagged
with the arm and the serving model version, and each request is recorded as an
:class:`~monitoring.canary_policy.Outcome` for the verdict.
"""

from __future__ import annotations

import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pandas as pd

from data.schema import REQUEST_COLUMNS, TRANSACTION_ID, TX_DATETIME
from fraudops.bundle import MODEL_NAME
from monitoring.canary_policy import CANDIDATE, CHAMPION, CanaryError, Outcome

ARM_HEADER, VERSION_HEADER = "X-Canary-Arm", "X-Model-Version"


class TrafficSplitter:
    """A weighted HTTP splitter on 127.0.0.1: each POST goes to one arm, answers are tagged.

    Locally it stands in for Istio's weighted routes / KServe's ``canaryTrafficPercent``.
    ``set_candidate_weight(0)`` takes the candidate out of traffic (what a rollback does).
    """

    def __init__(
        self, backends: dict[str, str], candidate_weight: float, seed: int, timeout: float = 10.0
    ) -> None:
        missing = {CHAMPION, CANDIDATE} - set(backends)
        if missing:
            raise CanaryError(f"backends: missing {', '.join(sorted(missing))}")
        self.backends = {arm: url.rstrip("/") for arm, url in backends.items()}
        self.candidate_weight = candidate_weight
        self.outcomes: list[Outcome] = []
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=timeout)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def set_candidate_weight(self, weight: float) -> None:
        """Change the candidate's share of new requests (0 = out of traffic)."""
        with self._lock:
            self.candidate_weight = weight

    def _choose(self) -> str:
        with self._lock:
            return CANDIDATE if self._random.random() < self.candidate_weight else CHAMPION

    def forward(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, dict]:
        """Send one request to a weighted-random arm; record and tag the answer."""
        arm = self._choose()
        started = time.perf_counter()
        try:
            response = self._client.post(self.backends[arm] + path, content=body, headers=headers)
            status, content = response.status_code, response.content
        except httpx.HTTPError as exc:
            status, content = 502, json.dumps({"error": f"{arm} unreachable: {exc}"}).encode()
        latency_ms = (time.perf_counter() - started) * 1000
        version = probability = decision = transaction_id = None
        if status < 300:
            try:
                prediction = json.loads(content)["predictions"][0]
                version = str(prediction.get("model_version"))
                probability = float(prediction["fraud_probability"])
                decision = str(prediction["decision"])
                transaction_id = int(prediction["transaction_id"])
            except (ValueError, KeyError, IndexError, TypeError):
                status = 502  # an answer the client cannot use is a server failure
        outcome = Outcome(arm, status, latency_ms, transaction_id, version, probability, decision)
        with self._lock:
            self.outcomes.append(outcome)
        return status, content, {ARM_HEADER: arm, VERSION_HEADER: version or ""}

    def start(self) -> str:
        """Listen on a free loopback port; returns the splitter's base URL."""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        """Stop listening and close the upstream client."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._client.close()


def _handler_for(splitter: TrafficSplitter) -> type[BaseHTTPRequestHandler]:
    """A request handler class that hands every POST to ``splitter``."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            status, content, extra = splitter.forward(
                self.path,
                self.rfile.read(length),
                {"Content-Type": self.headers.get("Content-Type", "application/json")},
            )
            self.send_response(status)
            for name, value in {**extra, "Content-Type": "application/json"}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, *args) -> None:  # the console shows the verdict, not access logs
            return

    return Handler


def request_body(transaction: dict) -> bytes:
    """The KServe v1 body for one raw transaction (request columns only)."""
    instance = {column: transaction[column] for column in REQUEST_COLUMNS}
    instance[TX_DATETIME] = pd.Timestamp(instance[TX_DATETIME]).isoformat()
    instance[TRANSACTION_ID] = int(instance[TRANSACTION_ID])
    instance["customer_id"] = int(instance["customer_id"])
    instance["terminal_id"] = int(instance["terminal_id"])
    instance["tx_amount"] = float(instance["tx_amount"])
    return json.dumps({"instances": [instance]}).encode()


def replay(url: str, transactions: pd.DataFrame, model_name: str = MODEL_NAME) -> int:
    """POST each transaction (one per request, in time order) to the splitter; returns count."""
    path = f"/v1/models/{model_name}:predict"
    with httpx.Client(timeout=30.0) as client:
        for transaction in transactions.to_dict("records"):
            client.post(
                url + path,
                content=request_body(transaction),
                headers={"Content-Type": "application/json"},
            )
    return len(transactions)
