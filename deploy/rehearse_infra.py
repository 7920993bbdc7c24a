"""The rehearsal's first steps: engine, images, services, MLflow, the data and Feast.

Everything the pipeline and the servers need before they run: a container engine, every
image built non-root, S3 (moto), Redis, PostgreSQL and the Pushgateway stand-in, MLflow
from ``k8s/infra/mlflow``, the data pushed to the DVC remote, the Feast registry and the
online features.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import replace

from data.schema import TX_DATETIME
from deploy import images as image_builds
from deploy.dvc_urls import remote_urls
from deploy.engine import bridge_gateway, ensure_engine
from deploy.gitops_patch import DATA_URL_KEYS
from deploy.pod_container import ContainerPlan, find, pod_of
from deploy.rehearsal import (
    DATA_OUTPUTS,
    DVC_REMOTE,
    Rehearsal,
    StepFailed,
    environment,
    local_images,
    remove_labelled,
    render,
    run_host,
    wait_exit,
)
from deploy.rehearse_services import (
    BUCKET,
    MLFLOW_PORT,
    ObjectStore,
    PostgresDatabase,
    PushgatewayStandIn,
    Redis,
    ServiceError,
    port_is_free,
    wait_for_port,
)


def step_engine(r: Rehearsal) -> str:
    """A container engine that answers; containers an interrupted run left are removed."""
    r.engine = ensure_engine(r.logs)
    r.gateway = bridge_gateway(r.client)
    remove_labelled(r.client)  # what an interrupted run left
    how = "started Debian's dockerd" if r.engine.started else "the running engine"
    return f"{how}, server {r.client.version()['Version']}, bridge gateway {r.gateway}"


def step_base_image(r: Rehearsal) -> str:
    """The base every Dockerfile's ``ARG BASE_IMAGE`` gets."""
    r.base = image_builds.base_image(r.client)
    return r.base


def step_build_images(r: Rehearsal) -> str:
    """Every image from the repo's Dockerfiles; each must run as a non-root user."""
    import docker

    connect = lambda: docker.from_env(timeout=3600)  # one client per build thread
    for built in image_builds.build_all(connect, r.root, r.base, r.logs):
        user = image_builds.image_user(r.client, built.tag)
        if not user or user.split(":")[0] in {"0", "root"}:
            raise StepFailed(f"{built.tag}: runs as root (USER {user or 'unset'})")
        r.built.append(built)
    # The committed pipeline names this image: the local build answers to it.
    # heavy: imports kfp; only this step needs the pipeline's image name
    from pipelines.pipeline import DEFAULT_IMAGE

    repository, tag = DEFAULT_IMAGE.rsplit(":", 1)
    r.client.images.get(image_builds.IMAGES[0].tag).tag(repository, tag)
    image_builds.write_sizes(r.built, r.workdir / "images.json")
    sizes = ", ".join(f"{b.name} {b.size_bytes / 1e9:.2f} GB" for b in r.built)
    return f"{len(r.built)} images, non-root: {sizes}"


def step_services(r: Rehearsal) -> str:
    """S3 (moto), Redis, PostgreSQL and the Pushgateway stand-in, on the bridge address."""
    for port in (9000, 6379, MLFLOW_PORT, 9091):
        if not port_is_free(r.gateway, port):
            raise StepFailed(f"{r.gateway}:{port} is taken: stop what listens there")
    r.store = ObjectStore(r.gateway)
    r.store.start()
    r.store.create_bucket()
    r.redis = Redis(r.gateway, log=r.logs / "redis.log")
    r.redis.start()
    r.database = PostgresDatabase("mlflow_rehearse")
    r.database.create()
    r.pushgateway = PushgatewayStandIn(r.gateway)
    r.pushgateway.start()
    return (
        f"s3://{BUCKET} at {r.store.endpoint}, redis {r.gateway}:6379, postgres db mlflow_rehearse"
    )


def mlflow_plan(r: Rehearsal) -> ContainerPlan:
    """The MLflow container of ``k8s/infra/mlflow``, as its Deployment runs it."""
    docs = render(r.root, "k8s/infra/mlflow")
    pod = pod_of(find(docs, "Deployment", "mlflow"))
    plan = r.plan_from(docs, pod, "mlflow")
    # Two rehearsal-only changes, both about where it listens, none about how it stores:
    # the host network (PostgreSQL listens on the host's loopback) bound to the bridge
    # address only (0.0.0.0 would collide with other servers on a shared machine), and that
    # address as one more allowed Host for the host-side clients.
    args = list(plan.args)
    args[args.index("--host") + 1] = r.gateway
    hosts = args.index("--allowed-hosts") + 1
    args[hosts] += f",{r.gateway}:{MLFLOW_PORT}"
    return local_images(replace(plan, args=args))


def step_mlflow(r: Rehearsal) -> str:
    """MLflow from its manifest: PostgreSQL backend, s3:// artifact root, --no-serve-artifacts."""
    plan = mlflow_plan(r)
    for flag in ("--no-serve-artifacts", "--default-artifact-root"):
        if flag not in plan.args:
            raise StepFailed(f"k8s/infra/mlflow: {flag} missing from the server's args")
    container = r.run_container(plan, network_mode="host", extra_hosts=r.cluster_hosts())
    try:
        wait_for_port(r.gateway, MLFLOW_PORT, "mlflow", timeout_s=180)
        _wait_healthy(f"http://{r.gateway}:{MLFLOW_PORT}/health", 120)
    except ServiceError:
        tail = container.logs(tail=5).decode("utf-8", "replace").strip().splitlines()
        raise StepFailed(f"mlflow did not come up: {tail[-1] if tail else 'no output'}") from None
    root = plan.args[plan.args.index("--default-artifact-root") + 1]
    return f"{plan.image}, backend {r.database.name} on PostgreSQL, artifacts {root}"


def _wait_healthy(url: str, timeout_s: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=5).status_code == 200:
                return
        time.sleep(1)
    raise ServiceError(f"{url}: not healthy after {timeout_s:.0f}s")


def step_data(r: Rehearsal) -> str:
    """The versioned data (DVC stages to featurize), pushed to the DVC remote on S3."""
    env = r.host_env()
    (r.root / "data" / "live").mkdir(parents=True, exist_ok=True)
    run_host([sys.executable, "-m", "dvc", "repro", "featurize"], r, env, "dvc-repro.log")
    from dvc.repo import Repo

    config = {
        "remote": {DVC_REMOTE: {"url": f"s3://{BUCKET}/dvc", "endpointurl": r.store.endpoint}}
    }
    r.activity = f"pushing the data to s3://{BUCKET}/dvc"
    with environment(env), Repo(str(r.root), config=config) as repo:
        repo.push(targets=list(DATA_OUTPUTS.values()), remote=DVC_REMOTE)
        r.data_urls = remote_urls(r.root, DVC_REMOTE, config)
    missing = [u for u in r.data_urls.values() if not r.store.keys(u.split(f"{BUCKET}/", 1)[1])]
    if missing:
        raise StepFailed(f"dvc push: not in the remote: {', '.join(missing)}")
    return f"{len(r.data_urls)} files in s3://{BUCKET}/dvc (e.g. {r.data_urls['transactions']})"


#: Seconds the load-online Job may take (a cold image reads ~700k transactions into Redis).
LOAD_ONLINE_EXIT_S = 540.0


def load_online_plan(r: Rehearsal) -> ContainerPlan:
    """``k8s/infra/feast``'s load-online Job, with the pushed data's URLs in ``versioned-data``
    (what the GitOps job's ``deploy.gitops_patch --data-url`` writes on a release)."""
    docs = render(r.root, "k8s/infra/feast")
    pod = pod_of(find(docs, "Job", "feast-load-online"))
    versioned = pod["containers"][0]["envFrom"][0]["configMapRef"]["name"]
    data = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == versioned)
    data["data"].update({DATA_URL_KEYS[name]: url for name, url in r.data_urls.items()})
    return local_images(r.plan_from(docs, pod, "load-online"))


def _run_load_online(r: Rehearsal, plan: ContainerPlan, log: str) -> str:
    container = r.run_container(plan, extra_hosts=r.cluster_hosts())
    code = wait_exit(r, container, LOAD_ONLINE_EXIT_S, "the load-online Job's container")
    output = container.logs().decode("utf-8", "replace")
    (r.logs / log).write_text(output)
    lines = output.strip().splitlines()
    if code != 0:
        raise StepFailed(f"load-online Job exited {code}: {lines[-1] if lines else 'no output'}")
    return lines[-1] if lines else ""


def step_feast(r: Rehearsal) -> str:
    """The online store loaded by its Job, from the manifest: registry on S3, rows and live
    state in Redis, from the data version in the DVC remote; a second sync leaves it alone."""
    import pandas as pd

    plan = load_online_plan(r)
    r.activity = "the load-online Job (materialise, seed the live state)"
    loaded = _run_load_online(r, plan, "load-online.log")
    if "loaded" not in loaded:
        raise StepFailed(f"load-online Job: {loaded or 'no output'}")
    r.activity = "the load-online Job again (an Argo CD re-sync)"
    again = _run_load_online(r, plan, "load-online-again.log")
    if "already live" not in again:
        raise StepFailed(f"load-online Job on a live store loaded again: {again}")
    # The live traffic is replayed from here: smoke transactions are dated at this instant.
    newest = pd.read_parquet(r.root / DATA_OUTPUTS["transactions"], columns=[TX_DATETIME])
    r.replay_clock = newest[TX_DATETIME].max().floor("s").isoformat()
    keys = r.store.keys("feast/")
    return f"{loaded}; registry s3://{BUCKET}/{keys[0] if keys else '?'}; re-sync: already live"
