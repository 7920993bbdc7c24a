"""``make rehearse``: the production deployment rehearsed on one machine, then torn down.

``python -m deploy.rehearse`` runs, in order, and prints one line per step with its time:

1. a container engine (the running one, or Debian's dockerd when root);
2. every image, built from the repo's Dockerfiles (``BASE_IMAGE``: the official python
   image, else a base built from Debian packages), checked to run non-root;
3. the services: S3 (moto), Redis, a PostgreSQL database, and MLflow started from
   ``k8s/infra/mlflow`` (PostgreSQL backend, S3 artifact root, ``--no-serve-artifacts``);
4. the data pushed to the DVC remote on S3, the Feast registry applied to S3 and the
   online features materialised into Redis;
5. the committed compiled pipeline run with ``kfp.local.DockerRunner`` in the training
   image, reading its inputs from the DVC remote; it registers and promotes in MLflow;
6. ``python -m deploy.champion`` for STORAGE_URI, downloaded to /mnt/models by KServe's
   own storage code, and level 5 started from ``kubectl kustomize k8s/overlays/level5``
   (predictor, explainer, transformer with the manifests' image, args, env, user and
   read-only root); ``python -m deploy.smoke`` against it;
7. traffic, its prediction log shipped to S3, and the drift CronJob's container run from
   its manifest (report to S3 through MLflow, metrics to the Pushgateway);
8. the faults: a wrong STORAGE_URI stops the predictor naming it; the object store down
   while serving keeps serving; the object store down during a pipeline run fails the run
   and leaves the champion where it was;

then tears everything down. Exit 0 only when every step passed; 1 otherwise (the failing
step's line says why); 2 when no container engine can be had (one line says how).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy import images as image_builds
from deploy.dvc_urls import PIPELINE_INPUTS, remote_urls
from deploy.engine import Engine, EngineUnavailable, bridge_gateway, ensure_engine
from deploy.pod_container import ContainerPlan, config_maps_of, find, plan_container, pod_of
from deploy.rehearse_services import (
    BUCKET,
    CLUSTER_HOSTS,
    LOCAL_TEST_CREDENTIALS,
    MLFLOW_PORT,
    ObjectStore,
    PostgresDatabase,
    PushgatewayStandIn,
    Redis,
    ServiceError,
    port_is_free,
    wait_for_port,
)

LABEL = "fraud-mlops.rehearse"
MODEL_NAME = "fraud-detector"
#: The data the pipeline reads, as DVC tracks it (pushed to the S3 remote).
DATA_OUTPUTS = PIPELINE_INPUTS
DVC_REMOTE = "rehearse"
PREDICTION_LOG_PREFIX = "prediction-log"
#: Transactions sent through level 5 before the drift job (drift.min_current_rows is 200).
TRAFFIC_ROWS = 400
TRAFFIC_BATCH = 50


class StepFailed(RuntimeError):
    """A step's check did not hold; the message is the step's one line."""


@dataclass
class StepResult:
    """One line of the rehearsal's record."""

    name: str
    ok: bool
    seconds: float
    detail: str


@dataclass
class Rehearsal:
    """State shared by the steps: where things are, what runs, what was found."""

    root: Path
    workdir: Path
    engine: Engine | None = None
    gateway: str = ""
    base: str = ""
    built: list[image_builds.BuiltImage] = field(default_factory=list)
    store: ObjectStore | None = None
    redis: Redis | None = None
    database: PostgresDatabase | None = None
    pushgateway: PushgatewayStandIn | None = None
    data_urls: dict[str, str] = field(default_factory=dict)
    champion: dict[str, str] = field(default_factory=dict)
    transformer_url: str = ""
    containers: dict[str, Any] = field(default_factory=dict)
    results: list[StepResult] = field(default_factory=list)

    # -- bookkeeping -------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        """The Docker client (after the engine step)."""
        assert self.engine is not None, "the engine step runs first"
        return self.engine.client

    @property
    def logs(self) -> Path:
        """Every step's detailed output (the console gets one line per step)."""
        return self.workdir / "logs"

    def step(self, name: str, action: Callable[[], str]) -> bool:
        """Run one step, print ``ok|FAIL  <seconds>  <name>: <detail>``; True when it passed."""
        started = time.monotonic()
        try:
            detail, ok = action(), True
        except EngineUnavailable:
            raise  # not a step that failed: the whole run cannot start (main says how)
        except (StepFailed, ServiceError, image_builds.ImageBuildError) as exc:
            detail, ok = str(exc), False
        except Exception as exc:  # noqa: BLE001 -- any other failure is this step's failure, named
            detail, ok = f"{type(exc).__name__}: {_one_line(exc)}", False
        result = StepResult(name, ok, time.monotonic() - started, detail)
        self.results.append(result)
        print(f"{'ok  ' if ok else 'FAIL'} {result.seconds:6.1f}s  {name}: {detail}", flush=True)
        return ok

    # -- environment every container gets ----------------------------------------------------
    def cluster_hosts(self, **extra: str) -> dict[str, str]:
        """The cluster's service names, answered by the host's bridge address (+ ``extra``)."""
        return {**{name: self.gateway for name in CLUSTER_HOSTS}, **extra}

    def secrets(self) -> dict[str, dict[str, str]]:
        """The Secrets the manifests reference, with the rehearsal's local test values."""
        assert self.database is not None
        return {
            "object-store": {
                key: LOCAL_TEST_CREDENTIALS[key]
                for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
            },
            "mlflow-postgres": {"MLFLOW_BACKEND_STORE_URI": self.database.url},
        }

    def host_env(self) -> dict[str, str]:
        """Environment of the host-side clients (the workflow runner's, in production)."""
        assert self.store is not None
        return {
            **os.environ,
            **LOCAL_TEST_CREDENTIALS,
            "MLFLOW_TRACKING_URI": f"http://{self.gateway}:{MLFLOW_PORT}",
            "MLFLOW_S3_ENDPOINT_URL": self.store.endpoint,
            "AWS_ENDPOINT_URL": self.store.endpoint,
            "FEAST_S3_ENDPOINT_URL": self.store.endpoint,
        }

    def run_container(self, plan: ContainerPlan, *, detach: bool = True, **extra: Any) -> Any:
        """Start ``plan`` (labelled for teardown); ``extra`` adds what the cluster would."""
        kwargs = plan.run_kwargs()
        kwargs.update(extra)
        kwargs.setdefault("labels", {})[LABEL] = "1"
        kwargs.setdefault("name", f"rehearse-{plan.name}")
        self.remove_container(kwargs["name"])
        container = self.client.containers.run(detach=detach, **kwargs)
        self.containers[plan.name] = container
        return container

    def remove_container(self, name: str) -> None:
        """Remove a container of this name if one is left over."""
        import docker.errors

        with contextlib.suppress(docker.errors.NotFound):
            self.client.containers.get(name).remove(force=True)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _ip(container: Any) -> str:
    container.reload()
    return container.attrs["NetworkSettings"]["IPAddress"]


def _render(root: Path, relative: str) -> list[dict[str, Any]]:
    from deploy.manifests import build

    return build(root / relative)


def _local_images(plan: ContainerPlan) -> ContainerPlan:
    """The plan with the manifest's placeholder image replaced by the local build."""
    from dataclasses import replace

    return replace(plan, image=image_builds.local_image(plan.image))


# -- steps ---------------------------------------------------------------------------------


def step_engine(r: Rehearsal) -> str:
    """A container engine that answers; containers an interrupted run left are removed."""
    r.engine = ensure_engine(r.logs)
    r.gateway = bridge_gateway(r.client)
    for leftover in r.client.containers.list(all=True, filters={"label": LABEL}):
        leftover.remove(force=True)
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
    docs = _render(r.root, "k8s/infra/mlflow")
    pod = pod_of(find(docs, "Deployment", "mlflow"))
    plan = plan_container(
        pod,
        pod["containers"][0],
        name="mlflow",
        secrets=r.secrets(),
        config_maps=config_maps_of(docs),
        volume_dir=r.workdir / "volumes",
    )
    # Two rehearsal-only changes, both about where it listens, none about how it stores:
    # the host network (PostgreSQL listens on the host's loopback) bound to the bridge
    # address only (0.0.0.0 would collide with other servers on a shared machine), and that
    # address as one more allowed Host for the host-side clients.
    args = list(plan.args)
    args[args.index("--host") + 1] = r.gateway
    hosts = args.index("--allowed-hosts") + 1
    args[hosts] += f",{r.gateway}:{MLFLOW_PORT}"
    from dataclasses import replace

    return _local_images(replace(plan, args=args))


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
    _run([sys.executable, "-m", "dvc", "repro", "featurize"], r, env, "dvc-repro.log")
    from dvc.repo import Repo

    config = {
        "remote": {DVC_REMOTE: {"url": f"s3://{BUCKET}/dvc", "endpointurl": r.store.endpoint}}
    }
    with _environment(env), Repo(str(r.root), config=config) as repo:
        repo.push(targets=list(DATA_OUTPUTS.values()), remote=DVC_REMOTE)
        r.data_urls = remote_urls(r.root, DVC_REMOTE, config)
    missing = [u for u in r.data_urls.values() if not r.store.keys(u.split(f"{BUCKET}/", 1)[1])]
    if missing:
        raise StepFailed(f"dvc push: not in the remote: {', '.join(missing)}")
    return f"{len(r.data_urls)} files in s3://{BUCKET}/dvc (e.g. {r.data_urls['transactions']})"


def _run(command: list[str], r: Rehearsal, env: dict[str, str], log: str) -> str:
    """Run a host command, its output in the log; StepFailed with its last line."""
    done = subprocess.run(command, cwd=r.root, env=env, capture_output=True, text=True, check=False)
    (r.logs / log).write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise StepFailed(f"{' '.join(command[:4])}: {lines[-1] if lines else done.returncode}")
    return done.stdout


def step_feast(r: Rehearsal) -> str:
    """The Feast registry on S3 and the online features in Redis, from the overlay's config."""
    import pandas as pd
    import yaml
    from feast import FeatureStore, RepoConfig

    from features.store import apply_definitions, materialize
    from fraudops.paths import paths

    docs = _render(r.root, "k8s/overlays/level5")
    text = config_maps_of(docs)["feast-feature-store"]["feature_store.yaml"]
    log = (r.logs / "feast.log").open("w")
    with (
        log,
        contextlib.redirect_stdout(log),
        _environment(r.host_env(), FEAST_REDIS_CONNECTION_STRING=f"{r.gateway}:6379"),
    ):
        config = RepoConfig(**yaml.safe_load(os.path.expandvars(text)))
        # The definitions' offline sources are paths relative to the project's feature repo.
        config.repo_path = paths(r.root).feature_repo
        store = FeatureStore(repo_path=str(config.repo_path), config=config)
        apply_definitions(store)
        end = pd.read_parquet(r.root / DATA_OUTPUTS["transactions"], columns=["tx_datetime"])
        materialize(store, end["tx_datetime"].max())
    keys = r.store.keys("feast/")
    return f"registry s3://{BUCKET}/{keys[0] if keys else '?'}, online store redis {r.gateway}:6379"


@contextlib.contextmanager
def _environment(env: dict[str, str], **extra: str) -> Iterator[None]:
    """``os.environ`` set to ``env`` + ``extra`` for the block (in-process clients read it)."""
    saved = dict(os.environ)
    os.environ.update(
        {**{k: v for k, v in env.items() if k not in saved or saved[k] != v}, **extra}
    )
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def pipeline_runner_args(r: Rehearsal) -> dict[str, Any]:
    """How each pipeline step's container runs: the pod a KFP step gets, on Docker."""
    return {
        "environment": {
            **LOCAL_TEST_CREDENTIALS,
            "MLFLOW_S3_ENDPOINT_URL": "http://minio.mlops.svc.cluster.local:9000",
            "AWS_ENDPOINT_URL": "http://minio.mlops.svc.cluster.local:9000",
            "HOME": "/tmp",
        },
        "extra_hosts": r.cluster_hosts(),
        "user": "10001:10001",
        "read_only": True,
        "tmpfs": {"/tmp": "mode=1777"},
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
    }


def run_pipeline_in_containers(r: Rehearsal, log_name: str) -> Path:
    """The committed compiled pipeline, each step in the training image (kfp DockerRunner)."""
    from kfp import components, local

    from pipelines import local_conditions
    from pipelines.compile import compiled_pipeline_path
    from pipelines.run_local import PipelineFailed, PipelineInputs, _plain
    from training.tracking import dvc_data_hash, git_commit

    root = Path(tempfile.mkdtemp(prefix="pipeline-", dir=r.workdir))
    root.chmod(0o777)  # the steps run as uid 10001 and write their outputs here
    inputs = PipelineInputs(
        transactions=r.data_urls["transactions"],
        customer_features=r.data_urls["customer_features"],
        terminal_features=r.data_urls["terminal_features"],
        params_yaml=(r.root / "params.yaml").read_text(),
        mlflow_tracking_uri=f"http://mlflow.mlops.svc.cluster.local:{MLFLOW_PORT}",
        git_commit=git_commit(r.root),
        data_hash=dvc_data_hash(r.root),
        promote_via="pipeline",
    )
    local_conditions.install()
    local.init(
        local.DockerRunner(**pipeline_runner_args(r)),
        pipeline_root=str(root),
        raise_on_error=True,
    )
    pipeline = components.load_component_from_file(str(compiled_pipeline_path()))
    # kfp creates each step's output folders here as this (root) process; the steps write
    # into them as uid 10001, like a pod's fsGroup-owned volume: so no umask while it runs.
    umask = os.umask(0)
    with (r.logs / log_name).open("w") as log, contextlib.redirect_stdout(log):
        try:
            task = pipeline(**inputs.as_arguments())
        except RuntimeError as exc:
            raise PipelineFailed(_plain(_one_line(exc))) from None
        finally:
            os.umask(umask)
    return Path(task.output.path)


def champion_version(r: Rehearsal) -> str | None:
    """The registry's @champion version now (None: no champion)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri = f"http://{r.gateway}:{MLFLOW_PORT}"
    try:
        return MlflowClient(uri, uri).get_model_version_by_alias(MODEL_NAME, "champion").version
    except MlflowException:
        return None


def step_pipeline(r: Rehearsal) -> str:
    """The pipeline in containers: validate -> training set -> train -> evaluate -> register."""
    from pipelines.run_local import PipelineFailed, highlights

    with _environment(r.host_env()):
        try:
            run_pipeline_in_containers(r, "pipeline.log")
        except PipelineFailed as exc:
            raise StepFailed(f"pipeline: {exc}") from None
        version = champion_version(r)
    gates = [line for line in highlights((r.logs / "pipeline.log").read_text()) if "GATE" in line]
    if version is None:
        raise StepFailed(f"no @champion after the run: {gates[-1] if gates else 'no gate line'}")
    return f"@champion = version {version}; " + " | ".join(g.split(" — ")[0] for g in gates)


def step_champion(r: Rehearsal) -> str:
    """STORAGE_URI from ``python -m deploy.champion``; KServe's storage code downloads it."""
    outputs = r.workdir / "champion-outputs"
    outputs.unlink(missing_ok=True)
    env = {**r.host_env(), "GITHUB_OUTPUT": str(outputs)}
    _run(
        [sys.executable, "-m", "deploy.champion", "--require", "--github-output"],
        r,
        env,
        "champion.log",
    )
    r.champion = dict(
        line.split("=", 1) for line in outputs.read_text().splitlines() if "=" in line
    )
    mnt = r.workdir / "mnt-models"
    shutil.rmtree(mnt, ignore_errors=True)
    _storage_initializer(r, r.champion["storage_uri"], mnt)
    files = sorted(p.name for p in mnt.iterdir())
    if "bundle.json" not in files:
        raise StepFailed(f"{r.champion['storage_uri']}: downloaded {files}, no bundle.json")
    return f"version {r.champion['version']}: {r.champion['storage_uri']} -> /mnt/models {files}"


def _storage_initializer(r: Rehearsal, uri: str, out_dir: Path) -> None:
    """What KServe's storage-initializer container does: kserve_storage downloads ``uri``."""
    from kserve_storage import Storage

    with _environment(r.host_env()):
        Storage.download(uri, str(out_dir))
    for path in [out_dir, *out_dir.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # readable by the servers' uid


def level5_plans(r: Rehearsal, storage_uri: str) -> dict[str, tuple[ContainerPlan, dict]]:
    """Predictor, explainer and transformer of the rendered level-5 InferenceService."""
    docs = _render(r.root, "k8s/overlays/level5")
    isvc = find(docs, "InferenceService", MODEL_NAME)
    plans = {}
    for component in ("predictor", "explainer", "transformer"):
        pod = pod_of(isvc, component)
        plan = plan_container(
            pod,
            pod["containers"][0],
            name=component,
            secrets=r.secrets(),
            config_maps=config_maps_of(docs),
            volume_dir=r.workdir / "volumes",
        )
        if "STORAGE_URI" in plan.env:
            # What the GitOps job patches into the overlay (deploy.gitops_patch --model-uri).
            plan.env["STORAGE_URI"] = storage_uri
        plans[component] = (_local_images(plan), pod)
    return plans


def _wait_ready(container: Any, url: str, timeout_s: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        container.reload()
        if container.status == "exited":
            tail = container.logs(tail=3).decode("utf-8", "replace").strip().splitlines()
            raise StepFailed(f"{container.name} exited: {tail[-1] if tail else '?'}")
        with contextlib.suppress(httpx.HTTPError):
            answer = httpx.get(url, timeout=5)
            if answer.status_code == 200 and answer.json().get("ready") is True:
                return
        time.sleep(1)
    raise StepFailed(f"{container.name}: not ready at {url} after {timeout_s:.0f}s")


def step_level5(r: Rehearsal) -> str:
    """Level 5 from the rendered overlay; /mnt/models holds what STORAGE_URI named."""
    plans = level5_plans(r, r.champion["storage_uri"])
    mnt = str(r.workdir / "mnt-models")
    started = {}
    for component in ("predictor", "explainer"):
        plan, _ = plans[component]
        container = r.run_container(
            plan,
            volumes={**plan.run_kwargs()["volumes"], mnt: {"bind": "/mnt/models", "mode": "ro"}},
        )
        started[component] = container
    hosts = {name: _ip(c) for name, c in started.items()}
    plan, _ = plans["transformer"]
    args = list(plan.args)
    explainer_at = args.index("--explainer_host") + 1
    # KServe's Services map port 80 to the container's 8080; here the address is direct.
    args[explainer_at] = f"{args[explainer_at]}:8080"
    # The KServe controller passes the predictor's address to a transformer.
    args += ["--predictor_host", f"{hosts['predictor']}:8080"]
    from dataclasses import replace

    extra_hosts = r.cluster_hosts(
        **{plans["transformer"][0].args[explainer_at].split(":")[0]: hosts["explainer"]}
    )
    transformer = r.run_container(replace(plan, args=args), extra_hosts=extra_hosts)
    for container in {**started, "transformer": transformer}.values():
        _wait_ready(container, f"http://{_ip(container)}:8080/v1/models/{MODEL_NAME}", 240)
    r.transformer_url = f"http://{_ip(transformer)}:8080"
    users = {
        name: c.attrs["Config"]["User"]
        for name, c in {**started, "transformer": transformer}.items()
    }
    read_only = all(c.attrs["HostConfig"]["ReadonlyRootfs"] for c in r.containers.values())
    return f"3 containers ready at {r.transformer_url}, users {users}, read-only root {read_only}"


def step_smoke(r: Rehearsal, log: str = "smoke.log") -> str:
    """The workflow's three smoke tests against the transformer (the entry point)."""
    output = _run(
        [sys.executable, "-m", "deploy.smoke", "--url", r.transformer_url, "--ready-wait", "60"],
        r,
        dict(os.environ),
        log,
    )
    return "; ".join(line.strip() for line in output.strip().splitlines())


def step_traffic(r: Rehearsal) -> str:
    """A day of real transactions through level 5; its prediction log shipped to S3."""
    import httpx
    import pandas as pd

    from data import schema

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
    return f"{scored} transactions scored; {len(keys)} log file(s) in s3://{BUCKET}/{PREDICTION_LOG_PREFIX}/"


def step_drift(r: Rehearsal) -> str:
    """The drift CronJob's container, from its manifest, on the prediction log in S3."""
    docs = _render(r.root, "k8s/infra/drift")
    pod = pod_of(find(docs, "CronJob", "fraud-drift"))
    plan = _local_images(
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
    code = container.wait(timeout=900)["StatusCode"]
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
    verdict = next((line for line in output.splitlines() if line.startswith("exit ")), "exit ?")
    return f"{verdict}; report s3://{BUCKET}/{reports[0]}; metrics pushed to {pushed[0]}"


def step_fault_wrong_storage_uri(r: Rehearsal) -> str:
    """A wrong STORAGE_URI (the MLflow model folder): the predictor stops, naming it."""
    from mlflow import MlflowClient

    uri = f"http://{r.gateway}:{MLFLOW_PORT}"
    with _environment(r.host_env()):
        wrong = MlflowClient(uri, uri).get_model_version_download_uri(
            MODEL_NAME, r.champion["version"]
        )
        folder = r.workdir / "mnt-models-wrong"
        shutil.rmtree(folder, ignore_errors=True)
        _storage_initializer(r, wrong, folder)
    plan, _ = level5_plans(r, wrong)["predictor"]
    from dataclasses import replace

    plan = replace(plan, name="predictor-wrong-uri")
    container = r.run_container(
        plan,
        volumes={
            **plan.run_kwargs()["volumes"],
            str(folder): {"bind": "/mnt/models", "mode": "ro"},
        },
    )
    code = container.wait(timeout=300)["StatusCode"]
    last = container.logs().decode("utf-8", "replace").strip().splitlines()[-1:]
    if code == 0 or not last or wrong not in last[0]:
        raise StepFailed(f"predictor with STORAGE_URI={wrong}: exit {code}, last line {last}")
    return f"exit {code}: {last[0]}"


def step_fault_store_down_serving(r: Rehearsal) -> str:
    """The object store down while serving: level 5 keeps serving the loaded model."""
    r.store.stop()
    try:
        return "store down: " + step_smoke(r, "smoke-store-down.log")
    finally:
        r.store.start()


def step_fault_store_down_pipeline(r: Rehearsal) -> str:
    """The object store down during a pipeline run: the run fails, @champion stays."""
    from pipelines.run_local import PipelineFailed

    with _environment(r.host_env()):
        before = champion_version(r)
        r.store.stop()
        try:
            run_pipeline_in_containers(r, "pipeline-store-down.log")
        except PipelineFailed as exc:
            failure = str(exc)
        else:
            raise StepFailed("the pipeline succeeded with the object store down")
        finally:
            r.store.start()
        after = champion_version(r)
    if after != before:
        raise StepFailed(f"@champion moved from {before} to {after} during a failed run")
    return f"run failed ({failure[:120]}); @champion still version {after}"


def teardown(r: Rehearsal) -> str:
    """Every container, service and database this run started; the engine if it started it."""
    removed = 0
    if r.engine is not None:
        for container in r.client.containers.list(all=True, filters={"label": LABEL}):
            container.remove(force=True)
            removed += 1
    for service in (r.pushgateway, r.redis, r.store):
        if service is not None:
            service.stop()
    if r.database is not None:
        r.database.drop()
    if r.engine is not None:
        r.engine.stop()
    return f"{removed} containers removed, services stopped, database dropped"


STEPS: tuple[tuple[str, Callable[[Rehearsal], str]], ...] = (
    ("container engine", step_engine),
    ("base image", step_base_image),
    ("build images", step_build_images),
    ("services", step_services),
    ("mlflow (k8s/infra/mlflow)", step_mlflow),
    ("data -> DVC remote on S3", step_data),
    ("feast registry on S3 + Redis", step_feast),
    ("pipeline in containers (kfp DockerRunner)", step_pipeline),
    ("champion STORAGE_URI -> /mnt/models", step_champion),
    ("level 5 from k8s/overlays/level5", step_level5),
    ("smoke tests (deploy.smoke)", step_smoke),
    ("traffic + prediction log to S3", step_traffic),
    ("drift CronJob (k8s/infra/drift)", step_drift),
    ("fault: wrong STORAGE_URI", step_fault_wrong_storage_uri),
    ("fault: object store down while serving", step_fault_store_down_serving),
    ("fault: object store down during a pipeline run", step_fault_store_down_pipeline),
)


def rehearse(root: Path, workdir: Path, keep: bool = False) -> Rehearsal:
    """Run the steps in order, stopping at the first failure; always tear down."""
    r = Rehearsal(root=root, workdir=workdir)
    r.logs.mkdir(parents=True, exist_ok=True)
    try:
        for name, action in STEPS:
            if not r.step(name, lambda action=action: action(r)):
                break
    finally:
        if not keep and r.engine is not None:
            r.step("teardown", lambda: teardown(r))
    return r


def main(argv: list[str] | None = None) -> int:
    """CLI: 0 when every step passed, 1 when one failed, 2 when there is no engine."""
    parser = argparse.ArgumentParser(
        prog="python -m deploy.rehearse", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="logs and volumes (default: run/rehearse)"
    )
    parser.add_argument("--keep", action="store_true", help="leave everything running (debugging)")
    args = parser.parse_args(argv)
    from fraudops.config import project_root

    root = project_root()
    workdir = (args.workdir or root / "run" / "rehearse").resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    # A stop (CI's timeout, Ctrl-C) must still tear down: SIGTERM unwinds like SIGINT.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    try:
        r = rehearse(root, workdir, keep=args.keep)
    except EngineUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = [result for result in r.results if not result.ok]
    total = time.monotonic() - started
    (workdir / "rehearse.json").write_text(json.dumps([x.__dict__ for x in r.results], indent=2))
    if r.built:
        print(image_builds.sizes_table(r.built))
    passed = sum(result.ok for result in r.results)
    print(f"rehearse: {passed} passed, {len(failed)} failed in {total:.0f}s (logs: {r.logs})")
    return 1 if failed or len(r.results) < len(STEPS) + (0 if args.keep else 1) else 0


if __name__ == "__main__":
    sys.exit(main())
