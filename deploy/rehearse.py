"""``make rehearse``: the production deployment rehearsed on one machine, then torn down.

``python -m deploy.rehearse`` runs, in order, and prints one line per step with its time:

1. a container engine (the running one, or Debian's dockerd when root);
2. every image, built from the repo's Dockerfiles (``BASE_IMAGE``: the official python
   image, else a base built from Debian packages), checked to run non-root;
3. the services: S3 (moto), Redis, a PostgreSQL database, and MLflow started from
   ``k8s/infra/mlflow`` (PostgreSQL backend, S3 artifact root, ``--no-serve-artifacts``);
4. the data pushed to the DVC remote on S3; ``k8s/infra/feast``'s load-online Job run from
   its manifest on those URLs: the Feast registry applied to S3, the online features
   materialised into Redis and the live state seeded there; run again, it leaves it alone;
5. the committed compiled pipeline run with ``kfp.local.DockerRunner`` in the training
   image, reading its inputs from the DVC remote; it registers and promotes in MLflow;
6. ``python -m deploy.champion`` for STORAGE_URI, downloaded to /mnt/models by KServe's
   own storage code, and level 5 started from ``kubectl kustomize k8s/overlays/level5``
   (predictor, explainer, transformer with the manifests' image, args, env, user and
   read-only root); ``python -m deploy.smoke`` against it;
7. level 1: the champion exported and baked into ``serving/docker/level1.Dockerfile``'s
   image, started from ``k8s/overlays/level1``; ``python -m deploy.smoke`` against it;
8. live traffic (the day after the data), its prediction log shipped to S3 in the
   shipper's format, and the drift CronJob's container run from its manifest (report to S3
   through MLflow, metrics to the Pushgateway; the skew job must stay within its budget);
9. the faults: a wrong STORAGE_URI stops the predictor naming it; the object store down
   while serving keeps serving; the object store down during a pipeline run fails the run
   and leaves the champion where it was;

then tears everything down. Every step has a time bound: one still running at its bound
fails, naming what it waited on. Exit 0 only when every step passed; 1 otherwise (the
failing step's line says why); 2 when no container engine can be had (one line says how).

The steps live by job: ``deploy.rehearsal`` (the state and the step runner),
``deploy.rehearse_infra`` (1-4), ``deploy.rehearse_pipeline`` (5), ``deploy.rehearse_level5``
(6), ``deploy.rehearse_level1`` (7), ``deploy.rehearse_drift`` (8), ``deploy.rehearse_faults``
(9).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from deploy import images as image_builds
from deploy.engine import EngineUnavailable
from deploy.rehearsal import Rehearsal, StepFailed, one_line, remove_labelled
from deploy.rehearse_drift import step_drift, step_traffic
from deploy.rehearse_faults import (
    step_fault_store_down_pipeline,
    step_fault_store_down_serving,
    step_fault_wrong_storage_uri,
)
from deploy.rehearse_infra import (
    step_base_image,
    step_build_images,
    step_data,
    step_engine,
    step_feast,
    step_mlflow,
    step_services,
)
from deploy.rehearse_level1 import step_level1
from deploy.rehearse_level5 import step_champion, step_level5, step_smoke
from deploy.rehearse_pipeline import step_pipeline
from fraudops.config import project_root


def teardown(r: Rehearsal) -> str:
    """Every container, service and database this run started; the engine if it started it.

    Each part is attempted even when one before it fails (a left-over dockerd or Redis
    would hold the machine); the failures are named together.
    """
    done: list[str] = []
    problems: list[str] = []

    def attempt(what: str, action: Callable[[], object]) -> None:
        try:
            action()
        except Exception as exc:  # noqa: BLE001 -- named below; the other parts still run
            problems.append(f"{what}: {type(exc).__name__}: {one_line(exc)}")
        else:
            done.append(what)

    if r.engine is not None:
        attempt("containers removed", lambda: remove_labelled(r.client))
    for name, service in (("pushgateway", r.pushgateway), ("redis", r.redis), ("s3", r.store)):
        if service is not None:
            attempt(f"{name} stopped", service.stop)
    if r.database is not None:
        attempt("database dropped", r.database.drop)
    if r.engine is not None:
        # Only a dockerd this run started is stopped; a running engine is left as found.
        started = r.engine.started is not None
        attempt("dockerd stopped" if started else "engine left running", r.engine.stop)
    if problems:
        raise StepFailed("; ".join(problems))
    return ", ".join(done)


#: The steps in order, each with its time bound in seconds: a step still running at its
#: bound fails naming what it waited on (generous: a cold machine installs, downloads and
#: builds; a warm run takes a fraction of each).
STEPS: tuple[tuple[str, Callable[[Rehearsal], str], float], ...] = (
    ("container engine", step_engine, 600),
    ("base image", step_base_image, 1200),
    ("build images", step_build_images, 2400),
    ("services", step_services, 120),
    ("mlflow (k8s/infra/mlflow)", step_mlflow, 420),
    ("data -> DVC remote on S3", step_data, 900),
    ("online store: load-online Job (k8s/infra/feast)", step_feast, 600),
    ("pipeline in containers (kfp DockerRunner)", step_pipeline, 1800),
    ("champion STORAGE_URI -> /mnt/models", step_champion, 420),
    ("level 5 from k8s/overlays/level5", step_level5, 420),
    ("smoke tests (deploy.smoke)", step_smoke, 180),
    ("level 1: champion baked in, k8s/overlays/level1, smoke", step_level1, 900),
    ("traffic + prediction log to S3", step_traffic, 420),
    ("drift CronJob (k8s/infra/drift)", step_drift, 1000),
    ("fault: wrong STORAGE_URI", step_fault_wrong_storage_uri, 600),
    ("fault: object store down while serving", step_fault_store_down_serving, 300),
    ("fault: object store down during a pipeline run", step_fault_store_down_pipeline, 1800),
)
#: Teardown's bound: removing containers and stopping services takes seconds.
TEARDOWN_BOUND_S = 300


def rehearse(root: Path, workdir: Path, keep: bool = False) -> Rehearsal:
    """Run the steps in order, stopping at the first failure; always tear down."""
    r = Rehearsal(root=root, workdir=workdir)
    r.logs.mkdir(parents=True, exist_ok=True)
    try:
        for name, action, bound_s in STEPS:
            if not r.step(name, lambda action=action: action(r), bound_s):
                break
    finally:
        if not keep and r.engine is not None:
            r.step("teardown", lambda: teardown(r), TEARDOWN_BOUND_S)
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
