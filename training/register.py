"""The registry: registration gate, ``@candidate``, champion-challenger promotion, rollback.

Serving only ever loads ``models:/fraud-detector@champion``; promotion and rollback move
that alias and nothing else. Every move of ``@champion`` is recorded twice: on the new
champion version (tag ``previous_champion`` — what rollback returns to) and in the
registered model's ``champion_history`` tag (an audit trail: time, actor, reason).
A losing candidate is a normal outcome: it keeps ``@candidate`` and the run succeeds.
"""

from __future__ import annotations

import getpass
import json
import math
import os
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import pandas as pd

from fraudops.bundle import (
    BUNDLE_ARTIFACT_PATH,
    MODEL_NAME,
    REGISTRATION_FILE,
    ModelBundle,
    load_run_bundle,
    registration_record,
)
from fraudops.config import Params, RegisterParams
from fraudops.registry import RegistryUnavailableError, mlflow_client
from training.evaluate import EvaluationError, evaluate_bundle
from training.tracking import MODEL_ID_TAG

CHAMPION, CANDIDATE = "champion", "candidate"
HISTORY_TAG = "champion_history"
PREVIOUS_CHAMPION_TAG = "previous_champion"
#: The audit trail keeps this many events in the registered-model tag (tags are bounded).
HISTORY_LIMIT = 100
#: The metric champion and candidate are compared on.
COMPARISON_METRIC = "average_precision"

__all__ = [
    "CANDIDATE",
    "CHAMPION",
    "ChallengeResult",
    "ChampionChange",
    "GateResult",
    "NoPreviousChampionError",
    "PromotionDecision",
    "RegistryError",
    "RegistryUnavailableError",
    "challenge_champion",
    "champion_history",
    "current_version",
    "passes_registration_gate",
    "promote",
    "promote_if_better",
    "register_candidate",
    "rollback",
]


class RegistryError(RuntimeError):
    """A registry operation cannot be done as asked (no candidate, unknown version...)."""


class NoPreviousChampionError(RegistryError):
    """Rollback asked for, but the current champion has no predecessor."""


@dataclass(frozen=True)
class GateResult:
    """Whether a candidate may be registered, with one reason per rule checked."""

    passed: bool
    reasons: tuple[str, ...]

    def __bool__(self) -> bool:
        return self.passed


def passes_registration_gate(metrics: dict[str, float], params: RegisterParams) -> GateResult:
    """The series' gate: net benefit > ``min_net_benefit`` AND F1 > ``min_f1`` (test window)."""
    checks = (
        ("net_benefit", params.min_net_benefit, lambda v: f"${v:,.0f}", lambda t: f"${t:,.0f}"),
        ("f1", params.min_f1, lambda v: f"{v:.3f}", lambda t: f"{t:.2f}"),
    )
    reasons, passed = [], True
    for key, minimum, show, show_min in checks:
        value = metrics.get(key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            passed = False
            reasons.append(
                f"{key}: missing from the evaluation metrics (must be > {show_min(minimum)})"
            )
        elif value > minimum:
            reasons.append(f"{key}: {show(value)} > {show_min(minimum)} (pass)")
        else:
            passed = False
            reasons.append(f"{key}: {show(value)} is not > {show_min(minimum)} (fail)")
    return GateResult(passed, tuple(reasons))


@dataclass(frozen=True)
class ChampionChange:
    """One move of ``@champion`` (promotion or rollback)."""

    model_name: str
    event: str  # "promote" | "rollback" | "unchanged"
    previous: str | None
    current: str
    reason: str
    actor: str
    time: str

    def describe(self) -> str:
        """One line for a terminal: what moved, from where to where, and why."""
        if self.event == "unchanged":
            return f"{self.model_name}@{CHAMPION} unchanged: version {self.current} ({self.reason})"
        before = f"version {self.previous}" if self.previous else "no champion"
        return (
            f"{self.model_name}@{CHAMPION}: {before} -> version {self.current} "
            f"({self.event} by {self.actor}: {self.reason})"
        )


@dataclass(frozen=True)
class PromotionDecision:
    """Outcome of champion-challenger: both models' metrics on the same test window."""

    promoted: bool
    candidate_version: str
    champion_version: str  # the champion after the decision
    previous_champion: str | None
    reason: str
    candidate_metrics: dict[str, float] = field(default_factory=dict)
    champion_metrics: dict[str, float] = field(default_factory=dict)


def _actor(actor: str | None) -> str:
    if actor:
        return actor
    try:
        return os.environ.get("GITHUB_ACTOR") or getpass.getuser()
    except OSError:  # no login name in some containers
        return "unknown"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _alias_version(client, model_name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model_name, alias).version)
    except MlflowException:
        return None


def current_version(
    alias: str = CHAMPION, model_name: str = MODEL_NAME, tracking_uri: str | None = None
) -> str | None:
    """Version an alias points to, or None when the alias (or the model) does not exist."""
    client, _ = mlflow_client(tracking_uri)
    return _alias_version(client, model_name, alias)


def champion_history(model_name: str = MODEL_NAME, tracking_uri: str | None = None) -> list[dict]:
    """Every recorded move of ``@champion``, oldest first."""
    client, _ = mlflow_client(tracking_uri)
    return _history(client, model_name)


def _history(client, model_name: str) -> list[dict]:
    from mlflow.exceptions import MlflowException

    try:
        tags = client.get_registered_model(model_name).tags
    except MlflowException:
        return []
    return json.loads(tags.get(HISTORY_TAG, "[]"))


def _record(client, change: ChampionChange) -> None:
    history = _history(client, change.model_name)
    history.append(
        {
            "event": change.event,
            "version": change.current,
            "previous": change.previous,
            "time": change.time,
            "actor": change.actor,
            "reason": change.reason,
        }
    )
    client.set_registered_model_tag(
        change.model_name, HISTORY_TAG, json.dumps(history[-HISTORY_LIMIT:])
    )


def _move_champion(
    client, model_name: str, version: str, reason: str, actor: str | None, event: str = "promote"
) -> ChampionChange:
    previous = _alias_version(client, model_name, CHAMPION)
    change = ChampionChange(
        model_name, event, previous, str(version), reason, _actor(actor), _now()
    )
    if previous == str(version):
        return ChampionChange(
            model_name,
            "unchanged",
            previous,
            str(version),
            "already champion",
            change.actor,
            change.time,
        )
    if event == "promote":
        # The pointer rollback follows; a rollback keeps the restored version's own pointer
        # so repeated rollbacks walk further back.
        client.set_model_version_tag(
            model_name, str(version), PREVIOUS_CHAMPION_TAG, previous or ""
        )
        client.set_model_version_tag(model_name, str(version), "promoted_at", change.time)
        client.set_model_version_tag(model_name, str(version), "promoted_by", change.actor)
        client.set_model_version_tag(model_name, str(version), "promotion_reason", reason)
    client.set_registered_model_alias(model_name, CHAMPION, str(version))
    _record(client, change)
    return change


def register_candidate(
    run_id: str,
    model_name: str = MODEL_NAME,
    tracking_uri: str | None = None,
    description: str | None = None,
) -> str:
    """Register the run's XGBoost model as a new version and point ``@candidate`` at it."""
    from mlflow.exceptions import MlflowException

    client, uri = mlflow_client(tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise RegistryError(f"run {run_id}: not found in the tracking store at {uri}") from None
    model_id = run.data.tags.get(MODEL_ID_TAG)
    if not model_id:
        raise RegistryError(
            f"run {run_id}: no logged model (tag {MODEL_ID_TAG} missing); was it logged by "
            "training.tracking.log_training_run?"
        )
    try:
        client.get_registered_model(model_name)
    except MlflowException:
        client.create_registered_model(
            model_name, description="Transaction fraud detector (XGBoost); serve @champion."
        )
    lineage = {
        key: run.data.tags[key]
        for key in ("git_commit", "data_hash", "params_hash", "window_test")
        if key in run.data.tags
    }
    version = client.create_model_version(
        model_name,
        source=f"models:/{model_id}",
        run_id=run_id,
        model_id=model_id,
        tags=lineage,
        description=description or run.data.tags.get("mlflow.note.content"),
    )
    # Beside the bundle: whoever fetches the folder by location (KServe's storage
    # initializer) serves it under the version the registry gave it, not as "local".
    client.log_dict(
        run_id,
        registration_record(model_name, str(version.version), _now()),
        f"{BUNDLE_ARTIFACT_PATH}/{REGISTRATION_FILE}",
    )
    client.set_registered_model_alias(model_name, CANDIDATE, str(version.version))
    return str(version.version)


@dataclass(frozen=True)
class ChallengeResult:
    """Candidate vs the current champion, both scored on the same test window."""

    better: bool
    reason: str
    champion_version: str | None
    candidate_metrics: dict[str, float] = field(default_factory=dict)
    champion_metrics: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        """Plain JSON-able form (the pipeline passes it between steps as a file)."""
        return {
            "better": self.better,
            "reason": self.reason,
            "champion_version": self.champion_version,
            "candidate_metrics": self.candidate_metrics,
            "champion_metrics": self.champion_metrics,
        }


def challenge_champion(
    candidate: ModelBundle,
    test_df: pd.DataFrame,
    params: Params,
    tracking_uri: str | None = None,
) -> ChallengeResult:
    """Does ``candidate`` beat ``@champion`` on ``test_df``? Changes nothing in the registry.

    No champion yet: the candidate wins (the first model becomes champion). Otherwise it
    wins when its average precision beats the champion's by at least
    ``register.promote_margin``.
    """
    client, uri = mlflow_client(tracking_uri)
    return _challenge(client, uri, candidate, test_df, params)


def _challenge(
    client, uri: str, candidate: ModelBundle, test_df: pd.DataFrame, params: Params
) -> ChallengeResult:
    model_name = params.register_.model_name
    candidate_metrics = evaluate_bundle(candidate, test_df, params.evaluate)
    champion_version = _alias_version(client, model_name, CHAMPION)

    def result(better: bool, reason: str, champion_metrics: dict | None = None) -> ChallengeResult:
        return ChallengeResult(
            better, reason, champion_version, candidate_metrics, champion_metrics or {}
        )

    if champion_version is None:
        return result(True, "first model: there was no champion")
    if candidate.model_version is not None and candidate.model_version == champion_version:
        return result(False, f"version {champion_version} is already the champion")
    champion = load_run_bundle(client.get_model_version(model_name, champion_version).run_id, uri)
    try:
        champion_metrics = evaluate_bundle(champion, test_df, params.evaluate)
    except EvaluationError as exc:
        # The champion cannot score the current data (its features are gone): it cannot
        # serve either, so the candidate that can takes over.
        return result(
            True, f"champion version {champion_version} cannot score the test window: {exc}"
        )

    cand_ap = candidate_metrics[COMPARISON_METRIC]
    champ_ap = champion_metrics[COMPARISON_METRIC]
    margin = params.register_.promote_margin
    if math.isnan(cand_ap) or math.isnan(champ_ap):
        return result(
            False,
            "average precision undefined on the test window (no fraud in it)",
            champion_metrics,
        )
    summary = (
        f"candidate AP {cand_ap:.4f} vs champion v{champion_version} AP {champ_ap:.4f} "
        f"(margin {margin:g})"
    )
    improvement = cand_ap - champ_ap
    if improvement > 0 and improvement >= margin:
        return result(True, f"{summary}: candidate better", champion_metrics)
    return result(False, f"{summary}: champion kept", champion_metrics)


def promote_if_better(
    candidate_version: str,
    test_df: pd.DataFrame,
    params: Params,
    tracking_uri: str | None = None,
    actor: str | None = None,
) -> PromotionDecision:
    """Champion-challenger for a registered version; moves ``@champion`` only if it wins.

    A losing candidate keeps ``@candidate`` and the champion stays where it is: a normal,
    successful outcome.
    """
    client, uri = mlflow_client(tracking_uri)
    model_name = params.register_.model_name
    candidate_version = str(candidate_version)
    run_id = client.get_model_version(model_name, candidate_version).run_id
    candidate = replace(load_run_bundle(run_id, uri), model_version=candidate_version)
    challenge = _challenge(client, uri, candidate, test_df, params)
    if challenge.better:
        _move_champion(client, model_name, candidate_version, challenge.reason, actor)
    return PromotionDecision(
        promoted=challenge.better,
        candidate_version=candidate_version,
        champion_version=candidate_version if challenge.better else str(challenge.champion_version),
        previous_champion=challenge.champion_version,
        reason=challenge.reason,
        candidate_metrics=challenge.candidate_metrics,
        champion_metrics=challenge.champion_metrics,
    )


def promote(
    version: str | None = None,
    model_name: str = MODEL_NAME,
    tracking_uri: str | None = None,
    actor: str | None = None,
    reason: str = "manual promotion",
) -> ChampionChange:
    """Move ``@champion`` to ``version`` (default: the ``@candidate`` version), recorded."""
    client, uri = mlflow_client(tracking_uri)
    if version is None:
        version = _alias_version(client, model_name, CANDIDATE)
        if version is None:
            raise RegistryError(f"{model_name}@{CANDIDATE}: no candidate to promote in {uri}")
    else:
        from mlflow.exceptions import MlflowException

        try:
            client.get_model_version(model_name, str(version))
        except MlflowException:
            raise RegistryError(f"{model_name} version {version}: not found in {uri}") from None
    return _move_champion(client, model_name, str(version), reason, actor)


def rollback(
    model_name: str = MODEL_NAME,
    tracking_uri: str | None = None,
    actor: str | None = None,
    reason: str = "manual rollback",
) -> ChampionChange:
    """Move ``@champion`` back to the version it replaced, in one call."""
    from mlflow.exceptions import MlflowException

    client, uri = mlflow_client(tracking_uri)
    current = _alias_version(client, model_name, CHAMPION)
    if current is None:
        raise NoPreviousChampionError(
            f"{model_name}@{CHAMPION}: no champion in {uri}, nothing to roll back"
        )
    previous = client.get_model_version(model_name, current).tags.get(PREVIOUS_CHAMPION_TAG, "")
    if not previous:
        raise NoPreviousChampionError(
            f"{model_name}@{CHAMPION} is version {current}, which has no previous champion "
            "to roll back to"
        )
    try:
        client.get_model_version(model_name, previous)
    except MlflowException:
        raise RegistryError(
            f"{model_name}: previous champion version {previous} no longer exists in {uri}"
        ) from None
    client.set_model_version_tag(model_name, current, "rolled_back_at", _now())
    return _move_champion(client, model_name, previous, reason, actor, event="rollback")
