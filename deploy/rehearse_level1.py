"""The rehearsal's level-1 step: the champion baked into an image, served from its manifest.

As the workflow builds it: the champion exported from the registry with its version
(``fraudops.bundle.export_bundle``), handed to ``serving/docker/level1.Dockerfile`` as its
model (``MODEL_IMAGE``: an image holding the two bundle files), the image started from the
rendered ``k8s/overlays/level1`` Deployment (image, env, user, read-only root) and the
workflow's smoke tests run against it.
"""

from __future__ import annotations

import shutil
import sys

from deploy import images as image_builds
from deploy.pod_container import find, pod_of
from deploy.rehearsal import (
    Rehearsal,
    StepFailed,
    container_ip,
    environment,
    local_images,
    render,
    run_host,
)
from deploy.rehearse_level5 import READY_TIMEOUT_S, wait_ready
from deploy.rehearse_services import MLFLOW_PORT

#: The model image's local tag (``MODEL_IMAGE`` of the level-1 build).
MODEL_IMAGE_TAG = f"{image_builds.LOCAL_PREFIX}level1-model:{image_builds.LOCAL_TAG}"
#: The level-1 Deployment of ``k8s/overlays/level1``.
DEPLOYMENT = "fraud-detector-level1"


def build_level1(r: Rehearsal) -> image_builds.BuiltImage:
    """The champion exported (with its registry version) and baked into the level-1 image."""
    # heavy: imports XGBoost and MLflow; only this step exports a bundle
    from fraudops.bundle import export_bundle

    exported = r.workdir / "level1-model"
    shutil.rmtree(exported, ignore_errors=True)
    r.activity = "exporting the champion's bundle from the registry"
    with environment(r.host_env()):
        export_bundle(exported, tracking_uri=f"http://{r.gateway}:{MLFLOW_PORT}")
    image_builds.build_model_image(r.client, exported, MODEL_IMAGE_TAG)
    r.activity = "building the level-1 image"
    built = image_builds.build_image(
        r.client,
        r.root,
        image_builds.LEVEL1,
        r.base,
        build_args={"MODEL_IMAGE": MODEL_IMAGE_TAG},
        log=r.logs / "build-level1.log",
    )
    user = image_builds.image_user(r.client, built.tag)
    if not user or user.split(":")[0] in {"0", "root"}:
        raise StepFailed(f"{built.tag}: runs as root (USER {user or 'unset'})")
    r.built.append(built)
    return built


def step_level1(r: Rehearsal) -> str:
    """Level 1 built with the champion, started from its manifest, smoke-tested."""
    built = build_level1(r)
    docs = render(r.root, "k8s/overlays/level1")
    pod = pod_of(find(docs, "Deployment", DEPLOYMENT))
    plan = local_images(r.plan_from(docs, pod, "level1"))
    container = r.run_container(plan, extra_hosts=r.cluster_hosts())
    url = f"http://{container_ip(container)}:8080"
    wait_ready(container, f"{url}/readyz", READY_TIMEOUT_S, ready_key=None)
    output = run_host(
        [
            sys.executable,
            "-m",
            "deploy.smoke",
            "--url",
            url,
            "--ready-wait",
            "60",
            "--tx-datetime",
            r.replay_clock,
        ],
        r,
        dict(r.host_env()),
        "smoke-level1.log",
    )
    smoke = "; ".join(line.strip() for line in output.strip().splitlines())
    return f"{built.tag} {built.size_bytes / 1e9:.2f} GB ({built.seconds:.0f}s build) at {url}: {smoke}"
