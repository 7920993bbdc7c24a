"""``python -m monitoring.lineage``: where a decision or a model came from, end to end.

Given a request id from the prediction log, a registry version or an alias, it walks
model version -> MLflow run -> git commit -> DVC data hash -> params, and prints the
promotion history of ``@champion`` (who or what moved it, when, and why). The same typed
facts feed the run report (``tutorial.report``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from fraudops.bundle import MODEL_NAME
from fraudops.registry import mlflow_client
from serving.prediction_log import read_prediction_log
from serving.settings import load_settings
from training.cli import run_cli
from training.register import champion_history

#: Run tags written by ``training.tracking.log_training_run`` (the lineage facts).
LINEAGE_TAGS = ("git_commit", "data_hash", "params_hash", "training_set_md5")
UNKNOWN = "unknown"


class LineageError(LookupError):
    """A request id, version or alias cannot be traced; the message says which and where."""


@dataclass(frozen=True)
class RequestTrace:
    """One prediction-log record: which transaction was scored, by which model version."""

    request_id: str
    transaction_id: int
    tx_datetime: str
    model_version: str
    fraud_probability: float
    decision: str
    served_by: str
    logged_at: str


@dataclass(frozen=True)
class VersionLineage:
    """A registered version and everything that produced it."""

    model_name: str
    version: str
    aliases: tuple[str, ...]
    registered_at: str
    run_id: str
    run_name: str
    experiment_id: str
    git_commit: str
    data_hash: str
    params_hash: str
    training_set_md5: str | None
    test_window: str | None
    params: dict[str, str] = field(default_factory=dict)
    #: the run's test-window metrics, without the ``test_`` prefix
    metrics: dict[str, float] = field(default_factory=dict)
    #: registry tags of the version (promotion, canary verdict, previous champion...)
    version_tags: dict[str, str] = field(default_factory=dict)


def default_prediction_log_dir() -> Path:
    """``FRAUD_PREDICTION_LOG_DIR`` or ``run/predictions`` (what the servers write)."""
    return load_settings().prediction_log_path()


def find_request(request_id: str, log_dir: Path) -> list[RequestTrace]:
    """Every prediction-log record of ``request_id`` (a batch request scores several rows)."""
    log_dir = Path(log_dir)
    if not log_dir.is_dir():
        raise LineageError(
            f"request id {request_id}: no prediction log at {log_dir} (serve some traffic first, "
            "or pass --log-dir)"
        )
    frame = read_prediction_log(log_dir)
    matches = frame[frame["request_id"].astype(str) == str(request_id)]
    if matches.empty:
        raise LineageError(
            f"request id {request_id}: not found in the prediction log at {log_dir} "
            f"({len(frame):,} records)"
        )
    return [
        RequestTrace(
            request_id=str(row["request_id"]),
            transaction_id=int(row["transaction_id"]),
            tx_datetime=str(row["tx_datetime"]),
            model_version=str(row["model_version"]),
            fraud_probability=float(row["fraud_probability"]),
            decision=str(row["decision"]),
            served_by=str(row.get("served_by", "") or ""),
            logged_at=str(row.get("logged_at", "") or ""),
        )
        for _, row in matches.iterrows()
    ]


def _iso_from_millis(millis: int | None) -> str:
    if not millis:
        return UNKNOWN
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat(timespec="seconds")


def alias_version(alias: str, model_name: str = MODEL_NAME, tracking_uri: str | None = None) -> str:
    """The version ``models:/<model_name>@<alias>`` points to; LineageError if none."""
    from mlflow.exceptions import MlflowException

    client, uri = mlflow_client(tracking_uri)
    try:
        return str(client.get_model_version_by_alias(model_name, alias).version)
    except MlflowException:
        raise LineageError(
            f"{model_name}@{alias}: no such alias in the registry at {uri}"
        ) from None


def version_lineage(
    version: str, model_name: str = MODEL_NAME, tracking_uri: str | None = None
) -> VersionLineage:
    """Registry version -> run -> lineage tags, params and test metrics."""
    from mlflow.exceptions import MlflowException

    client, uri = mlflow_client(tracking_uri)
    try:
        model_version = client.get_model_version(model_name, str(version))
    except MlflowException:
        raise LineageError(
            f"{model_name} version {version}: not in the registry at {uri}"
        ) from None
    if not model_version.run_id:
        raise LineageError(f"{model_name} version {version}: registered without a run, no lineage")
    try:
        run = client.get_run(model_version.run_id)
    except MlflowException:
        raise LineageError(
            f"{model_name} version {version}: its run {model_version.run_id} is gone from {uri}"
        ) from None
    tags = run.data.tags
    metrics = {
        key.removeprefix("test_"): float(value)
        for key, value in run.data.metrics.items()
        if key.startswith("test_")
    }
    return VersionLineage(
        model_name=model_name,
        version=str(model_version.version),
        aliases=tuple(sorted(model_version.aliases or ())),
        registered_at=_iso_from_millis(model_version.creation_timestamp),
        run_id=run.info.run_id,
        run_name=run.info.run_name or "",
        experiment_id=run.info.experiment_id,
        # The run is the source of truth; the version's copies cover a pruned run.
        git_commit=tags.get("git_commit") or model_version.tags.get("git_commit", UNKNOWN),
        data_hash=tags.get("data_hash") or model_version.tags.get("data_hash", UNKNOWN),
        params_hash=tags.get("params_hash") or model_version.tags.get("params_hash", UNKNOWN),
        training_set_md5=tags.get("training_set_md5"),
        test_window=tags.get("window_test") or model_version.tags.get("window_test"),
        params=dict(sorted(run.data.params.items())),
        metrics=dict(sorted(metrics.items())),
        version_tags=dict(sorted((model_version.tags or {}).items())),
    )


def promotion_history(model_name: str = MODEL_NAME, tracking_uri: str | None = None) -> list[dict]:
    """Every move of ``@champion``, oldest first (``training.register.champion_history``)."""
    return champion_history(model_name, tracking_uri)


def describe_history(history: list[dict]) -> list[str]:
    """One line per ``@champion`` move: when, what, from -> to, who, why."""
    if not history:
        return ["  (no recorded moves of @champion)"]
    return [
        f"  {event.get('time', '?')}  {event.get('event', '?'):<8} "
        f"v{event.get('previous') or '-'} -> v{event.get('version', '?')}  "
        f"by {event.get('actor', '?')}: {event.get('reason', '')}"
        for event in history
    ]


def describe_lineage(
    lineage: VersionLineage,
    history: list[dict],
    requests: list[RequestTrace] | None = None,
    show_params: bool = True,
) -> str:
    """The lineage chain as terminal lines (request -> version -> run -> commit -> data)."""
    lines: list[str] = []
    for trace in requests or []:
        lines.append(
            f"request  {trace.request_id}: transaction {trace.transaction_id} at "
            f"{trace.tx_datetime}, {trace.decision} (p={trace.fraud_probability:.4f}), "
            f"served by {trace.served_by or '?'} (logged {trace.logged_at or '?'})"
        )
    aliases = ", ".join(f"@{a}" for a in lineage.aliases) or "no alias"
    lines += [
        (
            f"model    {lineage.model_name} version {lineage.version} ({aliases}; registered "
            f"{lineage.registered_at})"
        ),
        (
            f"run      {lineage.run_id} ({lineage.run_name or 'unnamed'}, experiment "
            f"{lineage.experiment_id})"
        ),
        f"git      {lineage.git_commit}",
        f"data     {lineage.data_hash} (DVC md5 of data/validated/transactions.parquet)",
        f"params   {lineage.params_hash} (md5 of params.yaml as used)",
    ]
    if lineage.training_set_md5:
        lines.append(f"features {lineage.training_set_md5} (md5 of the training set)")
    if lineage.metrics:
        shown = ("average_precision", "recall_at_fpr", "card_precision_at_k", "f1")
        values = [f"{key} {lineage.metrics[key]:.4f}" for key in shown if key in lineage.metrics]
        if "net_benefit" in lineage.metrics:
            values.append(f"net_benefit ${lineage.metrics['net_benefit']:,.0f}")
        lines.append(f"metrics  test window {lineage.test_window or '?'}: " + ", ".join(values))
    if show_params and lineage.params:
        lines.append("params (as logged with the run):")
        lines += [f"  {key} = {value}" for key, value in lineage.params.items()]
    lines.append(f"@champion promotion history of {lineage.model_name} (oldest first):")
    lines += describe_history(history)
    return "\n".join(lines)


def trace(
    *,
    request_id: str | None = None,
    version: str | None = None,
    alias: str | None = None,
    model_name: str = MODEL_NAME,
    tracking_uri: str | None = None,
    log_dir: Path | None = None,
) -> tuple[VersionLineage, list[RequestTrace], list[dict]]:
    """Resolve exactly one of request id / version / alias to its lineage and the history."""
    if sum(x is not None for x in (request_id, version, alias)) != 1:
        raise ValueError("trace: give exactly one of request_id, version, alias")
    requests: list[RequestTrace] = []
    if request_id is not None:
        requests = find_request(request_id, log_dir or default_prediction_log_dir())
        served = sorted({r.model_version for r in requests})
        if len(served) != 1:
            # One request is scored by one loaded model; two versions means a corrupt log.
            raise LineageError(
                f"request id {request_id}: logged with several model versions {served}"
            )
        version = served[0]
        if not version.isdigit():
            # e.g. "local": a bundle directory that was never resolved from the registry.
            raise LineageError(
                f"request id {request_id}: served by model_version {version!r}, not a registry "
                "version, so there is no run to trace"
            )
    elif alias is not None:
        version = alias_version(alias, model_name, tracking_uri)
    lineage = version_lineage(str(version), model_name, tracking_uri)
    return lineage, requests, promotion_history(model_name, tracking_uri)


def main(argv: list[str] | None = None) -> int:
    """Print the lineage of a request id, a version or an alias; exit 1 if unknown."""
    parser = argparse.ArgumentParser(
        prog="python -m monitoring.lineage", description=__doc__.splitlines()[0]
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--request-id", help="a request id from the prediction log")
    which.add_argument("--version", help="a registered version number")
    which.add_argument("--alias", help="a registry alias (champion, candidate)")
    parser.add_argument("--model-name", default=MODEL_NAME)
    parser.add_argument("--tracking-uri", help="default: MLFLOW_TRACKING_URI or the local SQLite")
    parser.add_argument(
        "--log-dir",
        type=Path,
        help="prediction log (default: FRAUD_PREDICTION_LOG_DIR or run/predictions)",
    )
    parser.add_argument("--no-params", action="store_true", help="omit the params listing")
    args = parser.parse_args(argv)

    def show() -> int:
        lineage, requests, history = trace(
            request_id=args.request_id,
            version=args.version,
            alias=args.alias,
            model_name=args.model_name,
            tracking_uri=args.tracking_uri,
            log_dir=args.log_dir,
        )
        print(describe_lineage(lineage, history, requests, show_params=not args.no_params))
        return 0

    return run_cli(show)


if __name__ == "__main__":
    sys.exit(main())
