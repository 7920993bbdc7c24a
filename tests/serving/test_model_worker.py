"""The model worker: a new model loaded, compiled and checked in a process of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest

from serving.compiled_forest import compiled_walk
from serving.model_worker import (
    WORKER_NICENESS,
    PreparedModel,
    RegistrySource,
    WarmWorker,
    WorkerFailed,
    attach_prepared_walk,
    prepare_in_worker,
)
from serving.sandbox import register_bundle, synthetic_transactions, train_bundle


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("worker-registry")
    bundle = train_bundle(synthetic_transactions(n=3_000, days=20), n_estimators=15, max_depth=4)
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    register_bundle(bundle, tracking_uri, root / "mlartifacts")
    return tracking_uri


@pytest.fixture(scope="module")
def prepared(registry: str) -> PreparedModel:
    return prepare_in_worker(RegistrySource("fraud-detector", "champion", registry, True))


def rows(n_features: int, n: int = 64) -> np.ndarray:
    X = np.random.default_rng(4).normal(scale=50, size=(n, n_features)).astype(np.float32)
    X[::7, 3] = np.nan  # missing values take the default branches
    return X


def test_worker_prepares_the_alias_model_with_a_walk_that_scores_like_xgboost(
    prepared: PreparedModel,
) -> None:
    bundle = replace(prepared.bundle, fast_scorer=None, fast_max_rows=0)
    assert bundle.model_version == "1" and prepared.walk is not None
    compiled_walk()  # the server has compiled its loop before it swaps
    assert attach_prepared_walk(bundle, prepared.walk)
    X = rows(len(bundle.feature_names))
    assert bundle.has_fast_path(len(X[:8]))
    np.testing.assert_allclose(
        bundle.predict_proba(X[:8]), bundle.booster.inplace_predict(X[:8]), rtol=0, atol=1e-6
    )


def test_a_walk_damaged_on_the_way_is_refused_and_the_booster_scores(
    prepared: PreparedModel,
) -> None:
    bundle = replace(prepared.bundle, fast_scorer=None, fast_max_rows=0)
    walk = dict(prepared.walk)
    walk["layout_leaf_value"] = walk["layout_leaf_value"] + np.float32(0.5)
    compiled_walk()
    assert not attach_prepared_walk(bundle, walk)
    assert bundle.fast_scorer is None and not bundle.has_fast_path(1)


def test_a_worker_failure_says_what_went_wrong(registry: str) -> None:
    with pytest.raises(WorkerFailed, match="no-such-alias"):
        prepare_in_worker(RegistrySource("fraud-detector", "no-such-alias", registry, True))


@pytest.fixture()
def warm(registry: str) -> Iterator[WarmWorker]:
    worker = WarmWorker(registry)  # opens the registry as it starts
    yield worker
    worker.close()


def _pid(worker: WarmWorker) -> int:
    assert worker._process is not None and worker._process.poll() is None
    return worker._process.pid


def test_a_warm_worker_prepares_one_model_after_another_in_one_process(
    registry: str, warm: WarmWorker
) -> None:
    source = RegistrySource("fraud-detector", "champion", registry, True)
    warm.start()
    pid = _pid(warm)
    first = warm.prepare(source)
    failed = RegistrySource("fraud-detector", "no-such-alias", registry, True)
    with pytest.raises(WorkerFailed, match="no-such-alias"):  # a failed job is its answer
        warm.prepare(failed)
    second = warm.prepare(replace(source, compile_trees=False))
    assert _pid(warm) == pid  # the same process did all three
    assert first.bundle.model_version == second.bundle.model_version == "1"
    assert first.walk is not None and second.walk is None and second.compile_error is None
    X = rows(len(first.bundle.feature_names))
    np.testing.assert_array_equal(
        first.bundle.booster.inplace_predict(X), second.bundle.booster.inplace_predict(X)
    )


def test_every_job_gets_one_answer_line_even_a_malformed_one(tmp_path) -> None:
    import io
    import json

    from serving.model_worker import serve_jobs

    jobs = io.StringIO(
        "not json\n"
        + json.dumps({"out": str(tmp_path), "source": {"model_name": "fraud-detector"}})
        + "\n"
    )
    answers = io.StringIO()
    serve_jobs(jobs, answers)
    first, second = (json.loads(line) for line in answers.getvalue().splitlines())
    assert first["ok"] is False and "JSONDecodeError" in first["error"]
    assert second["ok"] is False and "alias" in second["error"]  # a field the job lacks


def test_a_dead_or_silent_worker_is_replaced_by_the_next_job(
    registry: str, warm: WarmWorker
) -> None:
    source = RegistrySource("fraud-detector", "champion", registry, False)
    warm.start()
    dying = _pid(warm)
    # Killed while the job waits (a new worker imports for seconds before it reads it).
    threading.Timer(0.5, os.kill, (dying, signal.SIGKILL)).start()
    with pytest.raises(WorkerFailed, match="exited"):
        warm.prepare(source)
    assert warm.prepare(source).bundle.model_version == "1"  # a new worker took the next
    silent = _pid(warm)
    assert silent != dying
    with pytest.raises(WorkerFailed, match="no answer within"):
        warm.prepare(source, timeout_s=0.001)  # no model is read from the registry that fast
    assert warm._process is None  # the silent one was stopped, not left running
    assert warm.prepare(source).bundle.model_version == "1"
    assert _pid(warm) not in (dying, silent)


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
def test_the_worker_runs_at_idle_cpu_priority() -> None:
    # In a child: the policy cannot be raised back without privileges.
    probe = (
        "import os; from serving.model_worker import lowest_cpu_priority; "
        "print(lowest_cpu_priority(), os.sched_getscheduler(0) == os.SCHED_IDLE, os.nice(0))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    policy, idle, niceness = done.stdout.split()
    assert (policy, idle) == ("idle", "True")
    assert int(niceness) == WORKER_NICENESS
