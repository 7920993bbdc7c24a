"""Level 5: the KServe explainer -- reason codes for a score, and an audit trail of them.

``python -m serving.explainer [--http_port 8082]`` loads the same model as the predictor
(``FRAUD_MODEL_DIR`` or the registry alias) and answers ``:explain`` on the feature rows
the transformer built, so the contributions are computed on exactly the features that
were scored. Each explanation carries ``fraud_probability``, ``base_value`` (log-odds),
the per-feature ``contributions`` (they sum with ``base_value`` to ``margin``) and the top
``reasons`` as ``{feature, value, contribution, text}``; positive raises the risk. Every
explanation is appended to the audit log (``FRAUD_AUDIT_LOG_DIR``) by a thread of its own,
moments after the answer (the record, its time included, is made before the answer leaves).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from serving import metrics
from serving.errors import InvalidRequest, ModelUnavailable
from serving.explain import AuditRecord, contributions, top_reasons
from serving.feature_rows import parse_feature_rows
from serving.kserve_runtime import run_model_server
from serving.model_source import ModelHolder
from serving.prediction_log import BackgroundLogWriter
from serving.predictor import HeldModel, require_json_content
from serving.scoring import request_id_from
from serving.settings import ServingSettings


class FraudExplainer(HeldModel):
    """A ``kserve.Model`` answering ``:explain`` with TreeSHAP reason codes."""

    def __init__(self, name: str, holder: ModelHolder, settings: ServingSettings) -> None:
        # Serialising the records and four file system calls per request are not the
        # answer's business: the writer's thread appends them, many requests at a time.
        self.audit = BackgroundLogWriter(settings.audit_log_path(), prefix="audit")
        super().__init__(name, holder, settings)

    async def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        """Validate the feature rows against the loaded model's features."""
        from kserve.protocol.infer_type import InferRequest

        if isinstance(payload, InferRequest):
            raise InvalidRequest('the explainer takes v1 feature rows: {"instances": [...]}')
        require_json_content(headers)
        bundle = self.holder.bundle
        if bundle is None:
            raise ModelUnavailable(f"model not loaded yet from {self.holder.source}")
        rows = parse_feature_rows(payload, bundle.feature_names, self.settings.max_batch_size)
        return {"rows": rows, "bundle": bundle}

    async def predict(self, payload: Any, headers=None, response_headers=None) -> Any:
        """The explainer explains; scoring is the predictor's job."""
        raise InvalidRequest(f"the explainer answers POST /v1/models/{self.name}:explain only")

    def _explain(self, bundle, rows, request_id: str) -> dict[str, Any]:
        started = time.perf_counter()
        result = contributions(bundle, rows.matrix)
        decisions = bundle.thresholds.decide(result.probabilities)
        version = bundle.model_version or "local"
        explanations, audit = [], []
        for i in range(rows.matrix.shape[0]):
            context = rows.transactions[i] if rows.transactions else {}
            reasons = top_reasons(
                bundle.feature_names, rows.matrix[i], result.values[i], self.settings.top_reasons
            )
            transaction_id = context.get("transaction_id")
            explanation = {
                "request_id": request_id,
                "transaction_id": transaction_id,
                "model_version": version,
                "fraud_probability": float(result.probabilities[i]),
                "decision": str(decisions[i]),
                "base_value": result.base_value,
                "margin": float(result.margin[i]),
                "contributions": dict(zip(bundle.feature_names, result.values[i].tolist())),
                "reasons": reasons,
            }
            for flag in ("unknown_customer", "unknown_terminal"):
                if flag in context:
                    explanation[flag] = bool(context[flag])
            explanations.append(explanation)
            audit.append(
                AuditRecord(
                    request_id=request_id,
                    model_version=version,
                    decision=str(decisions[i]),
                    fraud_probability=float(result.probabilities[i]),
                    base_value=result.base_value,
                    reasons=reasons,
                    transaction_id=transaction_id if isinstance(transaction_id, int) else None,
                )
            )
        self.audit.write(audit)
        metrics.observe_latency(time.perf_counter() - started)
        return {"explanations": explanations, "model_version": version, "request_id": request_id}

    async def explain(self, payload: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
        """Contributions, reasons and audit record for each row (computed off the event loop)."""
        request_id = request_id_from(headers)
        return await asyncio.to_thread(
            self._explain, payload["bundle"], payload["rows"], request_id
        )


def main(argv: list[str] | None = None) -> None:
    """Start the explainer (port 8082 locally, 8080 in its container)."""
    run_model_server(FraudExplainer, __doc__.splitlines()[0], 8082, argv)


if __name__ == "__main__":
    main()
