"""The rehearsal's state and its step runner (``deploy.rehearse`` runs the steps in order).

``Rehearsal`` holds what the steps share: where things are, what runs, what was found; its
``step`` runs one step and prints its one line. The helpers below are the ones more than
one step uses: the rendered manifests, the local images, the host-side environment.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from deploy import images as image_builds
from deploy.dvc_urls import PIPELINE_INPUTS
from deploy.engine import Engine, EngineUnavailable
from deploy.manifests import build
from deploy.pod_container import ContainerPlan, config_maps_of, plan_container
from deploy.rehearse_services import (
    CLUSTER_HOSTS,
    LOCAL_TEST_CREDENTIALS,
    MLFLOW_PORT,
    ObjectStore,
    PostgresDatabase,
    PushgatewayStandIn,
    Redis,
    ServiceError,
)

LABEL = "fraud-mlops.rehearse"
#: The data the pipeline reads, as DVC tracks it (pushed to the S3 remote).
DATA_OUTPUTS = PIPELINE_INPUTS
DVC_REMOTE = "rehearse"
PREDICTION_LOG_PREFIX = "prediction-log"
#: Transactions sent through level 5 before the drift job (drift.min_current_rows is 200).
TRAFFIC_ROWS = 400
TRAFFIC_BATCH = 50


#: A step's time bound when the step table gives none (seconds).
DEFAULT_STEP_BOUND_S = 600.0
#: A host command's time bound when its caller gives none (seconds).
HOST_COMMAND_TIMEOUT_S = 900.0


class StepFailed(RuntimeError):
    """A step's check did not hold; the message is the step's one line."""


class StepTimedOut(BaseException):
    """A step ran past its time bound.

    A BaseException, like KeyboardInterrupt: it is raised into whatever the step waits on,
    and a library's ``except Exception`` on the way must not turn it into a retry.
    """


@contextlib.contextmanager
def time_bound(seconds: float) -> Iterator[None]:
    """Raise :class:`StepTimedOut` in the block once ``seconds`` have passed.

    SIGALRM interrupts whatever the main thread blocks in (a socket read, a pool's result,
    a sleep), so no wait can outlast it. An alarm set before (a test runner's timeout)
    is re-armed afterwards with what it had left. Off the main thread (signals cannot
    reach there) the block runs unbounded: the rehearsal's steps run on the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(_signum: int, _frame: Any) -> None:
        raise StepTimedOut(f"still running after its bound of {seconds:.0f}s")

    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, expire)
    outer_left, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_left > 0:
            left = outer_left - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 0.001))


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
    #: the newest transaction of the loaded online state: smoke transactions are dated then
    replay_clock: str = ""
    containers: dict[str, Any] = field(default_factory=dict)
    results: list[StepResult] = field(default_factory=list)
    #: What the running step waits on now (named in its line if it runs out of time).
    activity: str = ""

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

    def step(
        self, name: str, action: Callable[[], str], bound_s: float = DEFAULT_STEP_BOUND_S
    ) -> bool:
        """Run one step within ``bound_s``; print ``ok|FAIL  <seconds>  <name>: <detail>``.

        True when it passed. A step still running at its bound fails, naming what it
        waited on: a failed step after a bounded time, never a hang.
        """
        started = time.monotonic()
        self.activity = ""
        try:
            with time_bound(bound_s):
                detail, ok = action(), True
        except StepTimedOut as exc:
            waiting = f" while {self.activity}" if self.activity else ""
            detail, ok = f"timed out: {exc}{waiting} (logs: {self.logs})", False
        except EngineUnavailable:
            raise  # not a step that failed: the whole run cannot start (main says how)
        except (StepFailed, ServiceError, image_builds.ImageBuildError) as exc:
            detail, ok = str(exc), False
        except Exception as exc:  # noqa: BLE001 -- any other failure is this step's failure, named
            detail, ok = f"{type(exc).__name__}: {one_line(exc)}", False
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

    def plan_from(self, docs: list[dict], pod: dict, name: str) -> ContainerPlan:
        """The pod's first container as the rendered manifests ``docs`` run it, here.

        One change: the manifests check event times against the server clock, and the
        rehearsal replays simulated days from the past, so it runs on the replay clock (the
        newest transaction the online state has seen), as a backfill would.
        """
        plan = plan_container(
            pod,
            pod["containers"][0],
            name=name,
            secrets=self.secrets(),
            config_maps=config_maps_of(docs),
            volume_dir=self.workdir / "volumes",
        )
        if plan.env.get("FRAUD_EVENT_CLOCK") == "server":
            plan.env["FRAUD_EVENT_CLOCK"] = "replay"
        return plan

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
            # One line per step on the console: no download progress bars in between.
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
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


def remove_labelled(client: Any) -> int:
    """Remove every container carrying the rehearsal's label; how many were there.

    From the engine's plain listing: a container that removes itself meanwhile (a pipeline
    step's, ``auto_remove``) is gone, not an error.
    """
    import docker.errors

    found = client.api.containers(all=True, filters={"label": LABEL})
    for container in found:
        try:
            client.api.remove_container(container["Id"], force=True)
        except docker.errors.NotFound:
            continue
        except docker.errors.APIError as exc:
            # 409 "removal ... is already in progress": it is removing itself right now.
            if exc.status_code != 409 or "already in progress" not in str(exc):
                raise
    return len(found)


def wait_exit(r: Rehearsal, container: Any, timeout_s: float, what: str) -> int:
    """The exit code of ``container``; StepFailed (and the container killed) after ``timeout_s``.

    Polls the engine rather than holding one long ``wait`` request open: each call is short,
    so no client or socket timeout decides how long this takes.
    """
    import docker.errors

    r.activity = f"waiting for {what} to exit (up to {timeout_s:.0f}s)"
    deadline = time.monotonic() + timeout_s
    while True:
        container.reload()
        if container.status in ("exited", "dead"):
            r.activity = ""
            return int(container.attrs["State"]["ExitCode"])
        if time.monotonic() > deadline:
            tail = last_log_line(container)
            with contextlib.suppress(docker.errors.APIError):
                container.kill()  # already gone is fine: it stopped on its own meanwhile
            raise StepFailed(
                f"{what}: still running after {timeout_s:.0f}s, killed (last line: {tail})"
            )
        time.sleep(1)


def last_log_line(container: Any) -> str:
    """The container's last output line (``no output`` when it printed nothing)."""
    lines = container.logs(tail=5).decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else "no output"


def _text(output: str | bytes | None) -> str:
    """A child's captured output as text (a timeout may leave bytes, or nothing)."""
    if isinstance(output, bytes):
        return output.decode("utf-8", "replace")
    return output or ""


def one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def container_ip(container: Any) -> str:
    container.reload()
    return container.attrs["NetworkSettings"]["IPAddress"]


def render(root: Path, relative: str) -> list[dict[str, Any]]:
    return build(root / relative)


def local_images(plan: ContainerPlan) -> ContainerPlan:
    """The plan with the manifest's placeholder image replaced by the local build."""
    return replace(plan, image=image_builds.local_image(plan.image))


@contextlib.contextmanager
def environment(env: dict[str, str], **extra: str) -> Iterator[None]:
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


def run_host(
    command: list[str],
    r: Rehearsal,
    env: dict[str, str],
    log: str,
    timeout_s: float = HOST_COMMAND_TIMEOUT_S,
) -> str:
    """Run a host command, its output in the log; StepFailed with its last line.

    Killed after ``timeout_s``: a StepFailed naming the command and the bound.
    """
    what = " ".join(command[:4])
    r.activity = f"running {what} (up to {timeout_s:.0f}s)"
    try:
        done = subprocess.run(
            command,
            cwd=r.root,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired as exc:
        (r.logs / log).write_text(_text(exc.stdout) + _text(exc.stderr))
        raise StepFailed(f"{what}: no result after {timeout_s:.0f}s, killed (see {log})") from None
    r.activity = ""
    (r.logs / log).write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        # A check that failed says so on its own line (deploy.smoke: FAIL ...): that one.
        failed = [line for line in lines if line.startswith(("FAIL", "error"))]
        reason = (failed or lines or [f"exit {done.returncode}"])[-1]
        raise StepFailed(f"{' '.join(command[:4])}: {reason}")
    return done.stdout
