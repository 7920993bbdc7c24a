"""The scoring core every level shares: features -> probability -> decision -> answer + log.

L1/L2 run it in one process (:class:`PredictionService`); L4 splits it across the
transformer (features, decision, answer, log) and the predictor (probability), calling the
same functions on each side. Decisions come only from ``Thresholds.decide`` of the model
that produced the probability.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel

from data.schema import CUSTOMER_ID, TERMINAL_ID, TRANSACTION_ID, TX_AMOUNT, TX_DATETIME
from features.definitions import FEATURE_NAMES
from fraudops.bundle import Thresholds
from serving import metrics
from serving.errors import ModelUnavailable
from serving.feature_batch import FeatureBatch
from serving.model_source import ModelHolder
from serving.prediction_log import PredictionLogWriter, PredictionRecord

if TYPE_CHECKING:  # the model servers never look features up: they do not import Feast
    from serving.lookup import OnlineFeatureLookup

REQUEST_ID_HEADER = "x-request-id"


def request_id_from(headers: Mapping[str, str] | None) -> str:
    """The caller's ``x-request-id`` (so a trace spans the chain) or a fresh one."""
    if headers:
        given = headers.get(REQUEST_ID_HEADER)
        if given and len(given) <= 128:
            return given
    # 128 random bits as 32 hex digits. Not os.urandom: a system call that gives up the GIL,
    # which a server busy in another thread (the live updates) then waits milliseconds to
    # take back. An id only has to be unique, not unguessable.
    return f"{random.getrandbits(128):032x}"


@dataclass(frozen=True)
class Scores:
    """What a model said about a batch."""

    probabilities: np.ndarray
    decisions: np.ndarray
    model_version: str


def decide(
    probabilities: np.ndarray | Sequence[float], thresholds: Thresholds, model_version: str
) -> Scores:
    """Decisions from the thresholds that travel with the model that scored."""
    probabilities = np.asarray(probabilities, dtype=float)
    return Scores(probabilities, thresholds.decide(probabilities), model_version)


def prediction_bodies(batch: FeatureBatch, scores: Scores, request_id: str) -> list[dict[str, Any]]:
    """One answer per transaction: probability, decision, version, request id, unknown flags."""
    unknown_customer, unknown_terminal = batch.unknown_customer, batch.unknown_terminal
    return [
        {
            "request_id": request_id,
            "transaction_id": transaction[TRANSACTION_ID],
            "fraud_probability": float(scores.probabilities[i]),
            "decision": str(scores.decisions[i]),
            "model_version": scores.model_version,
            "unknown_customer": bool(unknown_customer[i]),
            "unknown_terminal": bool(unknown_terminal[i]),
        }
        for i, transaction in enumerate(batch.transactions)
    ]


def _feature_values(row: list[float]) -> dict[str, float | None]:
    return {name: (None if math.isnan(value) else value) for name, value in zip(FEATURE_NAMES, row)}


def prediction_records(
    batch: FeatureBatch, scores: Scores, request_id: str, latency_ms: float, served_by: str
) -> list[PredictionRecord]:
    """The prediction-log records of a scored batch (features included, for the drift job)."""
    values = batch.values.tolist()
    unknown_customer, unknown_terminal = batch.unknown_customer, batch.unknown_terminal
    return [
        PredictionRecord(
            request_id=request_id,
            transaction_id=int(t[TRANSACTION_ID]),
            tx_datetime=t[TX_DATETIME],
            customer_id=int(t[CUSTOMER_ID]),
            terminal_id=int(t[TERMINAL_ID]),
            tx_amount=float(t[TX_AMOUNT]),
            model_version=scores.model_version,
            fraud_probability=float(scores.probabilities[i]),
            decision=str(scores.decisions[i]),
            latency_ms=round(latency_ms, 3),
            features=_feature_values(values[i]),
            unknown_customer=bool(unknown_customer[i]),
            unknown_terminal=bool(unknown_terminal[i]),
            served_by=served_by,
        )
        for i, t in enumerate(batch.transactions)
    ]


def record_outcome(
    batch: FeatureBatch,
    scores: Scores,
    request_id: str,
    started: float,
    writer: PredictionLogWriter,
    served_by: str,
) -> None:
    """Metrics and prediction log of one scored request (``started``: ``perf_counter()``)."""
    latency = time.perf_counter() - started
    metrics.observe_scores(
        scores.probabilities.tolist(), scores.decisions.tolist(), scores.model_version, latency
    )
    metrics.observe_unknown(batch.unknown_customer, batch.unknown_terminal)
    writer.write(prediction_records(batch, scores, request_id, latency * 1000, served_by))


class PredictionService:
    """L1/L2 in one process: lookup, model, decision, log -- the transformer's steps, inline."""

    def __init__(
        self,
        holder: ModelHolder,
        lookup: OnlineFeatureLookup,
        writer: PredictionLogWriter,
        served_by: str,
    ) -> None:
        self.holder = holder
        self.lookup = lookup
        self.writer = writer
        self.served_by = served_by

    def predict(self, transactions: list[BaseModel], request_id: str) -> dict[str, Any]:
        """Score validated transactions; the answer of ``POST /v1/models/<name>:predict``."""
        started = time.perf_counter()
        bundle = self.holder.bundle  # one read: a concurrent alias swap cannot split a request
        if bundle is None:
            raise ModelUnavailable(
                f"model not loaded yet from {self.holder.source}: "
                f"{self.holder.load_error or 'loading'}"
            )
        batch = self.lookup.features(transactions)
        version = bundle.model_version or "local"
        scores = decide(
            bundle.predict_proba(batch.matrix(bundle.feature_names)), bundle.thresholds, version
        )
        record_outcome(batch, scores, request_id, started, self.writer, self.served_by)
        return {
            "predictions": prediction_bodies(batch, scores, request_id),
            "model_version": version,
            "request_id": request_id,
        }
