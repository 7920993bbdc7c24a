"""The rehearsal's monitoring steps: live traffic through level 5, then the drift CronJob.

The day after the versioned data, simulated (the same customers and terminals, as the
demo's traffic), is scored by the transformer; its prediction log is shipped to S3 in the
format the cluster's shipper writes (the transformer's Vector sidecar), and the versioned
transactions (the data + that day) go where the skew job reads them. Then the drift
CronJob's container runs from its manifest: the report reaches S3 through MLflow, the
metrics the Pushgateway, and the skew job must find the served vectors equal to the offline
definition (within its 1 % budget).
"""

from __future__ import annotations

import gzip
import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from data import schema
from data.simulate import simulate_next_days
from deploy.pod_container import find, pod_of
from deploy.rehearsal import (
    DATA_OUTPUTS,
    PREDICTION_LOG_PREFIX,
    TRAFFIC_BATCH,
    TRAFFIC_ROWS,
    Rehearsal,
    StepFailed,
    local_images,
    render,
    wait_exit,
)
from deploy.rehearse_services import BUCKET
from fraudops.config import load_params
from fraudops.settings import MODEL_NAME
from serving.prediction_log import LOG_FILE_PREFIX, LOG_FILE_SUFFIX, SHIPPED_SUFFIX

#: Where k8s/infra/drift's skew job reads the versioned transactions (`--transactions`).
VERSIONED_TRANSACTIONS_KEY = "data/transactions.parquet"
#: Seconds the drift CronJob's container may run (drift + skew on a few hundred records).
DRIFT_JOB_EXIT_S = 900.0
#: Seconds the transformer may take to write what it answered (its log thread flushes every
#: 50 ms; answered is not yet written).
LOG_FLUSH_TIMEOUT_S = 30.0
#: What a client sends: the request schema's fields of a transaction.
REQUEST_FIELDS = [
    schema.TRANSACTION_ID,
    schema.TX_DATETIME,
    schema.CUSTOMER_ID,
    schema.TERMINAL_ID,
    schema.TX_AMOUNT,
]


def live_traffic(validated: pd.DataFrame, rows: int = TRAFFIC_ROWS) -> pd.DataFrame:
    """The first ``rows`` transactions of the day after ``validated``: traffic the online
    state has not seen, arriving in time order (what serving meets after a deployment)."""
    needed = validated[[schema.TRANSACTION_ID, schema.TX_DATETIME, schema.TERMINAL_ID]]
    day = simulate_next_days(needed, 1, load_params().simulate, "none")
    return day.sort_values(schema.TX_DATETIME, kind="stable").head(rows).reset_index(drop=True)


def _score(url: str, sent: pd.DataFrame) -> tuple[int, set[str]]:
    """POST ``sent`` in batches; how many were scored and the model versions that said so."""
    import httpx

    rows = sent[REQUEST_FIELDS].copy()
    rows[schema.TX_DATETIME] = rows[schema.TX_DATETIME].dt.strftime("%Y-%m-%dT%H:%M:%S")
    records = rows.to_dict(orient="records")
    scored, versions = 0, set()
    with httpx.Client(timeout=30) as client:
        for start in range(0, len(records), TRAFFIC_BATCH):
            answer = client.post(url, json={"instances": records[start : start + TRAFFIC_BATCH]})
            if answer.status_code != 200:
                raise StepFailed(f"POST {url}: HTTP {answer.status_code}: {answer.text[:200]}")
            body = answer.json()
            scored += len(body["predictions"])
            versions.add(str(body["model_version"]))
    return scored, versions


def logged_ids(folder: Path) -> set[int]:
    """The transaction ids the server files in ``folder`` hold so far."""
    found = set()
    for path in folder.glob(f"{LOG_FILE_PREFIX}*{LOG_FILE_SUFFIX}"):
        for line in path.read_text().splitlines():
            if line.strip():
                found.add(int(json.loads(line)[schema.TRANSACTION_ID]))
    return found


def wait_for_log(folder: Path, ids: set[int], timeout_s: float = LOG_FLUSH_TIMEOUT_S) -> None:
    """Return once every transaction of ``ids`` is in the log; StepFailed after ``timeout_s``.

    The transformer answers before its log thread writes (serving.prediction_log): shipped
    at once, the last batch would be missing (the skew job then judged 350 of 400).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        missing = ids - logged_ids(folder)
        if not missing:
            return
        if time.monotonic() > deadline:
            raise StepFailed(
                f"{folder}: {len(missing)} of {len(ids)} answered transactions not in the "
                f"prediction log after {timeout_s:.0f}s (e.g. {min(missing)})"
            )
        time.sleep(0.2)


def shipped_object(log_file: Path) -> bytes:
    """A server's log file as the shipper writes it: compact sorted JSON lines, gzipped.

    What Vector's json codec and gzip compression make of the records it tails
    (k8s/components/transformer/prediction-log-shipper.yaml).
    """
    lines = [
        json.dumps(json.loads(line), sort_keys=True, separators=(",", ":")) + "\n"
        for line in log_file.read_text().splitlines()
        if line.strip()
    ]
    return gzip.compress("".join(lines).encode())


def ship_prediction_log(client: Any, folder: Path, prefix: str, now: datetime) -> list[str]:
    """Stand-in for the shipper sidecar: each log file as one object, named as Vector names it."""
    keys = []
    for path in sorted(folder.glob(f"{LOG_FILE_PREFIX}*{LOG_FILE_SUFFIX}")):
        key = f"{prefix}/date={now:%Y-%m-%d}/{int(now.timestamp())}-{uuid.uuid4()}{SHIPPED_SUFFIX}"
        client.put_object(Bucket=BUCKET, Key=key, Body=shipped_object(path))
        keys.append(key)
    return keys


def step_traffic(r: Rehearsal) -> str:
    """Live traffic through level 5, served by the champion; its log shipped to S3."""
    validated = pd.read_parquet(r.root / DATA_OUTPUTS["transactions"])
    sent = live_traffic(validated)
    url = f"{r.transformer_url}/v1/models/{MODEL_NAME}:predict"
    r.activity = f"sending {len(sent)} transactions to {url}"
    scored, versions = _score(url, sent)
    if versions != {r.champion["version"]}:
        raise StepFailed(
            f"model_version: the answers name {sorted(versions)}, expected the champion's "
            f"registry version {r.champion['version']} (what STORAGE_URI downloaded)"
        )
    log_dir = r.workdir / "volumes" / "transformer" / "prediction-log" / "predictions"
    wait_for_log(log_dir, set(sent[schema.TRANSACTION_ID].astype(int)))
    keys = ship_prediction_log(r.store.client(), log_dir, PREDICTION_LOG_PREFIX, datetime.now(UTC))
    if not keys:
        raise StepFailed(f"{log_dir}: the transformer wrote no prediction log")
    # The versioned transactions the traffic came from, where the CronJob's skew job reads them.
    versioned = r.workdir / "versioned-transactions.parquet"
    pd.concat([validated, sent], ignore_index=True).to_parquet(versioned, index=False)
    r.store.client().upload_file(str(versioned), BUCKET, VERSIONED_TRANSACTIONS_KEY)
    first, last = sent[schema.TX_DATETIME].min(), sent[schema.TX_DATETIME].max()
    return (
        f"{scored} live transactions ({first:%Y-%m-%d %H:%M} to {last:%H:%M}) scored by version "
        f"{r.champion['version']}; {len(keys)} object(s) in s3://{BUCKET}/{PREDICTION_LOG_PREFIX}/"
    )


def skew_summary(r: Rehearsal) -> dict[str, Any]:
    """The skew job's JSON summary, from the CronJob's /tmp (an emptyDir on this host)."""
    path = r.workdir / "volumes" / "drift" / "tmp" / "skew" / "skew_summary.json"
    if not path.exists():
        raise StepFailed(f"drift job: the skew job wrote no summary ({path}; see drift.log)")
    return json.loads(path.read_text())


def judge_skew(summary: dict[str, Any]) -> str:
    """The skew job's result as one line; StepFailed when more vectors differ than its budget.

    The CronJob treats skew as a finding (exit 3, an alert); the rehearsal cannot: served
    vectors that differ from the offline definition mean the deployment is wrong.
    """
    stats = summary["statistics"]
    line = (
        f"skew: {stats['equal_share']:.3%} of {stats['transactions']} served vectors equal the "
        f"offline definition (budget: at most {stats['max_mismatch_share']:.0%} differ)"
    )
    if stats["mismatch_share"] > stats["max_mismatch_share"]:
        differing = {k: f"{v:.0%}" for k, v in stats["feature_mismatch_share"].items() if v}
        raise StepFailed(f"{line}; differing: {differing}")
    return line


def step_drift(r: Rehearsal) -> str:
    """The drift CronJob's container, from its manifest, on the prediction log in S3."""
    docs = render(r.root, "k8s/infra/drift")
    pod = pod_of(find(docs, "CronJob", "fraud-drift"))
    plan = local_images(r.plan_from(docs, pod, "drift"))
    before = set(r.store.keys("mlflow/"))
    container = r.run_container(plan, extra_hosts=r.cluster_hosts())
    code = wait_exit(r, container, DRIFT_JOB_EXIT_S, "the drift CronJob's container")
    output = container.logs().decode("utf-8", "replace")
    (r.logs / "drift.log").write_text(output)
    if code != 0:
        tail = output.strip().splitlines()
        raise StepFailed(f"drift job exited {code}: {tail[-1] if tail else 'no output'}")
    reports = [k for k in set(r.store.keys("mlflow/")) - before if k.endswith(".html")]
    if not reports:
        raise StepFailed("drift job: no HTML report reached the object store through MLflow")
    pushed = [path for path, body in r.pushgateway.pushes if "fraud_drift" in body]
    if not pushed:
        raise StepFailed("drift job: nothing pushed to the Pushgateway")
    skew = judge_skew(skew_summary(r))
    verdict = next((line for line in output.splitlines() if line.startswith("exit ")), "exit ?")
    return f"{verdict}; report s3://{BUCKET}/{reports[0]}; metrics pushed to {pushed[0]}; {skew}"
