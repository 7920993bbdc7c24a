"""The rehearsal's monitoring steps: traffic through level 5, then the drift CronJob.

A day of real transactions scored by the transformer, its prediction log shipped to S3
(standing in for the cluster's log shipper), and the drift CronJob's container run from its
manifest: the report reaches S3 through MLflow, the metrics the Pushgateway.
"""

from __future__ import annotations

from data import schema
from deploy.pod_container import config_maps_of, find, plan_container, pod_of
from deploy.rehearsal import (
    DATA_OUTPUTS,
    MODEL_NAME,
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

#: Where k8s/infra/drift's skew job reads the versioned transactions (`--transactions`).
VERSIONED_TRANSACTIONS_KEY = "data/transactions.parquet"
#: Seconds the drift CronJob's container may run (drift + skew on a few hundred records).
DRIFT_JOB_EXIT_S = 900.0


def step_traffic(r: Rehearsal) -> str:
    """A day of real transactions through level 5; its prediction log shipped to S3."""
    import httpx
    import pandas as pd

    frame = pd.read_parquet(r.root / DATA_OUTPUTS["transactions"])
    columns = [
        schema.TRANSACTION_ID,
        schema.TX_DATETIME,
        schema.CUSTOMER_ID,
        schema.TERMINAL_ID,
        schema.TX_AMOUNT,
    ]
    rows = frame.sort_values(schema.TX_DATETIME).tail(TRAFFIC_ROWS)[columns]
    rows[schema.TX_DATETIME] = rows[schema.TX_DATETIME].dt.strftime("%Y-%m-%dT%H:%M:%S")
    records = rows.to_dict(orient="records")
    url = f"{r.transformer_url}/v1/models/{MODEL_NAME}:predict"
    scored = 0
    with httpx.Client(timeout=30) as client:
        for start in range(0, len(records), TRAFFIC_BATCH):
            answer = client.post(url, json={"instances": records[start : start + TRAFFIC_BATCH]})
            if answer.status_code != 200:
                raise StepFailed(f"POST {url}: HTTP {answer.status_code}: {answer.text[:200]}")
            scored += len(answer.json()["predictions"])
    # Stands in for the cluster's log shipper: the transformer's log folder to the store.
    log_dir = r.workdir / "volumes" / "transformer" / "prediction-log" / "predictions"
    keys = r.store.upload_folder(log_dir, PREDICTION_LOG_PREFIX)
    if not keys:
        raise StepFailed(f"{log_dir}: the transformer wrote no prediction log")
    # The versioned transactions the traffic came from, where the CronJob's skew job reads them.
    r.store.client().upload_file(
        str(r.root / DATA_OUTPUTS["transactions"]), BUCKET, VERSIONED_TRANSACTIONS_KEY
    )
    return f"{scored} transactions scored; {len(keys)} log file(s) in s3://{BUCKET}/{PREDICTION_LOG_PREFIX}/"


def step_drift(r: Rehearsal) -> str:
    """The drift CronJob's container, from its manifest, on the prediction log in S3."""
    docs = render(r.root, "k8s/infra/drift")
    pod = pod_of(find(docs, "CronJob", "fraud-drift"))
    plan = local_images(
        plan_container(
            pod,
            pod["containers"][0],
            name="drift",
            secrets=r.secrets(),
            config_maps=config_maps_of(docs),
            volume_dir=r.workdir / "volumes",
        )
    )
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
    skew = next((line for line in output.splitlines() if line.startswith("skew: ")), None)
    if skew is None:
        raise StepFailed("drift job: the skew job printed no result (see drift.log)")
    verdict = next((line for line in output.splitlines() if line.startswith("exit ")), "exit ?")
    return f"{verdict}; report s3://{BUCKET}/{reports[0]}; metrics pushed to {pushed[0]}; {skew}"
