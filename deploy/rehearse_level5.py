"""The rehearsal's serving steps: the champion's STORAGE_URI, level 5 from its manifests, smoke.

``python -m deploy.champion`` names STORAGE_URI, KServe's storage code downloads it to
/mnt/models, and the predictor, explainer and transformer of the rendered
``k8s/overlays/level5`` InferenceService run with the manifests' image, args, env, user and
read-only root; ``python -m deploy.smoke`` checks the transformer.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from deploy.pod_container import ContainerPlan, find, pod_of
from deploy.rehearsal import (
    Rehearsal,
    StepFailed,
    container_ip,
    local_images,
    render,
    run_host,
)
from fraudops.settings import MODEL_NAME

#: Seconds the storage initializer may take for one model (a few MB from the local store).
STORAGE_TIMEOUT_S = 300.0
#: Seconds a server may take to report ready (model load, compiled trees, Feast registry).
READY_TIMEOUT_S = 240.0


def step_champion(r: Rehearsal) -> str:
    """STORAGE_URI from ``python -m deploy.champion``; KServe's storage code downloads it."""
    outputs = r.workdir / "champion-outputs"
    outputs.unlink(missing_ok=True)
    env = {**r.host_env(), "GITHUB_OUTPUT": str(outputs)}
    run_host(
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
    storage_initializer(r, r.champion["storage_uri"], mnt)
    files = sorted(p.name for p in mnt.iterdir())
    if "bundle.json" not in files:
        raise StepFailed(f"{r.champion['storage_uri']}: downloaded {files}, no bundle.json")
    return f"version {r.champion['version']}: {r.champion['storage_uri']} -> /mnt/models {files}"


def storage_initializer(
    r: Rehearsal, uri: str, out_dir: Path, log: str = "storage-initializer.log"
) -> None:
    """What KServe's storage-initializer container does: kserve_storage downloads ``uri``.

    In a process of its own (``deploy.storage_initializer`` says why), bounded in time.
    """
    run_host(
        [sys.executable, "-m", "deploy.storage_initializer", uri, str(out_dir)],
        r,
        r.host_env(),
        log,
        timeout_s=STORAGE_TIMEOUT_S,
    )
    for path in [out_dir, *out_dir.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # readable by the servers' uid


def level5_plans(r: Rehearsal, storage_uri: str) -> dict[str, tuple[ContainerPlan, dict]]:
    """Predictor, explainer and transformer of the rendered level-5 InferenceService."""
    docs = render(r.root, "k8s/overlays/level5")
    isvc = find(docs, "InferenceService", MODEL_NAME)
    plans = {}
    for component in ("predictor", "explainer", "transformer"):
        pod = pod_of(isvc, component)
        plan = r.plan_from(docs, pod, component)
        if "STORAGE_URI" in plan.env:
            # What the GitOps job patches into the overlay (deploy.gitops_patch --model-uri).
            plan.env["STORAGE_URI"] = storage_uri
        plans[component] = (local_images(plan), pod)
    return plans


def wait_ready(container: Any, url: str, timeout_s: float, ready_key: str | None = "ready") -> None:
    """Return once ``url`` answers 200 (with ``ready: true`` when ``ready_key`` is set).

    StepFailed naming the container when it exits or ``timeout_s`` passes.
    """
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        container.reload()
        if container.status == "exited":
            tail = container.logs(tail=3).decode("utf-8", "replace").strip().splitlines()
            raise StepFailed(f"{container.name} exited: {tail[-1] if tail else '?'}")
        with contextlib.suppress(httpx.HTTPError):
            answer = httpx.get(url, timeout=5)
            if answer.status_code == 200 and (
                ready_key is None or answer.json().get(ready_key) is True
            ):
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
    hosts = {name: container_ip(c) for name, c in started.items()}
    plan, _ = plans["transformer"]
    args = list(plan.args)
    explainer_at = args.index("--explainer_host") + 1
    # KServe's Services map port 80 to the container's 8080; here the address is direct.
    args[explainer_at] = f"{args[explainer_at]}:8080"
    # The KServe controller passes the predictor's address to a transformer.
    args += ["--predictor_host", f"{hosts['predictor']}:8080"]
    extra_hosts = r.cluster_hosts(
        **{plans["transformer"][0].args[explainer_at].split(":")[0]: hosts["explainer"]}
    )
    transformer = r.run_container(replace(plan, args=args), extra_hosts=extra_hosts)
    for container in {**started, "transformer": transformer}.values():
        wait_ready(
            container,
            f"http://{container_ip(container)}:8080/v1/models/{MODEL_NAME}",
            READY_TIMEOUT_S,
        )
    r.transformer_url = f"http://{container_ip(transformer)}:8080"
    users = {
        name: c.attrs["Config"]["User"]
        for name, c in {**started, "transformer": transformer}.items()
    }
    read_only = all(c.attrs["HostConfig"]["ReadonlyRootfs"] for c in r.containers.values())
    return f"3 containers ready at {r.transformer_url}, users {users}, read-only root {read_only}"


def step_smoke(r: Rehearsal, log: str = "smoke.log") -> str:
    """The workflow's three smoke tests against the transformer (the entry point)."""
    output = run_host(
        [
            sys.executable,
            "-m",
            "deploy.smoke",
            "--url",
            r.transformer_url,
            "--ready-wait",
            "60",
            "--tx-datetime",
            r.replay_clock,
        ],
        r,
        dict(os.environ),
        log,
    )
    return "; ".join(line.strip() for line in output.strip().splitlines())
