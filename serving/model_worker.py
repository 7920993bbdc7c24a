"""A new model prepared in a worker process: loaded, compiled and verified away from requests.

A server swapping models (the alias moved) keeps answering meanwhile, on one event loop.
Reading the bundle from the registry (MLflow, SQLAlchemy), flattening 300 trees from
their JSON dump and checking the compiled walk against XGBoost on every split hold the
GIL for hundreds of milliseconds in all; done by a thread of the server they stalled
requests for as long (issue #15: p99 426 ms during a promotion at 100 requests/s, 9-12 ms
otherwise). So the server has a worker process (``python -m serving.model_worker``) at the
lowest CPU priority (:func:`lowest_cpu_priority`), and the worker writes three files:

* ``DIR/bundle/`` -- the bundle as :func:`fraudops.bundle.save_bundle` writes it (version included);
* ``DIR/walk.npz`` -- the flattened forest and its walk layout, only once the compiled walk
  scored every probe row as ``inplace_predict`` does (:func:`~serving.compiled_forest.compile_forest`);
* ``DIR/prepared.json`` -- ``{"model_version", "compiled", "compile_error"}``.

The server reads them back (:func:`read_prepared`): a booster load in XGBoost's C code
(the GIL released), a few arrays, and a re-check of the walk on a handful of probe rows --
milliseconds, not hundreds of them.

A server that polls the registry keeps one worker warm (:class:`WarmWorker`,
``python -m serving.model_worker --serve``): started with the server, it imports MLflow and
XGBoost and compiles the walk loop once, then prepares each model it is sent, one JSON
line in, one out. A worker started per swap spent ~5 s of CPU importing before it read
the model -- CPU the servers' pod shares (its CPU limit counts the worker too) and that
raised the chain's p99 during a swap even at idle priority. The price: one idle process
of ~250 MB per model server.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import subprocess
import sys
import tempfile
import threading
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from fraudops.bundle import ModelBundle, load_bundle, load_registered_bundle, save_bundle
from fraudops.registry import ensure_reachable, mlflow_client
from serving.compiled_forest import (
    COMPILED_MAX_ROWS,
    PROBABILITY_TOLERANCE,
    CompiledForest,
    FlatForest,
    UnsupportedBooster,
    WalkLayout,
    compile_forest,
    compiled_walk,
    logger,
    probe_rows,
)

#: Seconds a worker may take (registry download + first numba compile on a busy machine).
WORKER_TIMEOUT_SECONDS = 300.0
#: The worker's niceness where ``SCHED_IDLE`` is not available (outside Linux).
WORKER_NICENESS = 19
#: Probe rows the server re-scores after reading the walk back (the worker checked them all).
RECHECK_ROWS = 16

PREPARED_FILE = "prepared.json"
WALK_FILE = "walk.npz"
BUNDLE_DIR = "bundle"


class WorkerFailed(RuntimeError):
    """The worker could not prepare the model (its last error line is the message)."""


@dataclass(frozen=True)
class RegistrySource:
    """Which registered model to prepare: ``models:/<model_name>@<alias>`` at ``tracking_uri``."""

    model_name: str
    alias: str
    tracking_uri: str
    compile_trees: bool


# -- in the worker ------------------------------------------------------------------------------


def lowest_cpu_priority() -> str:
    """Run this process only on CPU time nothing else wants; the policy it got, by name.

    On Linux ``SCHED_IDLE``: a request's thread waking up preempts this process at once.
    A nice value alone (even 19) still wins time slices from the servers: at nice 10 two
    workers (predictor's and explainer's, ~5 s of CPU each to import MLflow and compile)
    raised the chain's p99 at 100 requests/s several times over on a 2-core machine. The
    cost: a node whose CPU is saturated for minutes swaps only when it has time to spare
    (the worker's timeout then leaves the old model serving and the next poll retries).
    """
    os.nice(WORKER_NICENESS)
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except OSError:  # a sandbox refusing the call: the niceness stays
            return f"nice {WORKER_NICENESS}"
        return "idle"
    return f"nice {WORKER_NICENESS}"


def _save_walk(compiled, path: Path) -> None:

    forest, layout = compiled.forest, compiled.layout
    arrays = {f"forest_{f.name}": np.asarray(getattr(forest, f.name)) for f in fields(FlatForest)}
    arrays |= {f"layout_{f.name}": np.asarray(getattr(layout, f.name)) for f in fields(layout)}
    np.savez(path, **arrays)  # type: ignore[arg-type]  # numpy stubs type **kwds as allow_pickle


def prepare(source: RegistrySource, out: Path) -> dict:
    """Load ``source``, compile and verify its trees, write the files into ``out``."""

    ensure_reachable(source.tracking_uri)
    bundle = load_registered_bundle(source.alias, source.model_name, source.tracking_uri)
    save_bundle(bundle, out / BUNDLE_DIR)
    prepared = {"model_version": bundle.model_version, "compiled": False, "compile_error": None}
    if source.compile_trees:
        bundle.booster.set_param({"nthread": 1})  # the other core is the servers'
        try:
            compiled = compile_forest(bundle.booster)
        except (UnsupportedBooster, ImportError) as exc:  # the server's booster keeps scoring
            prepared["compile_error"] = str(exc)
        else:
            _save_walk(compiled, out / WALK_FILE)
            prepared["compiled"] = True
    (out / PREPARED_FILE).write_text(json.dumps(prepared))
    return prepared


def one_line(exc: BaseException) -> str:
    """An error's first line, or its type's name when it has no message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def serve_jobs(jobs, answers) -> None:
    """The warm worker's loop: a job per line of ``jobs`` (``{"out", "source"}``), an answer
    per line of ``answers`` (``{"ok": true}`` or ``{"ok": false, "error": ...}``)."""
    for line in jobs:
        try:
            job = json.loads(line)
            prepare(RegistrySource(**job["source"]), Path(job["out"]))
            answer: dict = {"ok": True}
        except Exception as exc:  # noqa: BLE001 -- any failure is this job's answer, not the end
            error = one_line(exc)  # named by its type, unless the type is all it has
            named = error if error == type(exc).__name__ else f"{type(exc).__name__}: {error}"
            answer = {"ok": False, "error": named}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


def warm_up(tracking_uri: str | None) -> None:
    """What every job needs, once: MLflow's client and artifact code (imported lazily
    elsewhere: seconds of CPU), a client on the registry, the walk loop's compile."""
    import mlflow.artifacts  # noqa: F401 -- imported for its cost, now rather than in a swap

    if tracking_uri:
        try:
            mlflow_client(tracking_uri, check=False)
        except Exception as exc:  # noqa: BLE001 -- a job will say it, with its own error
            logger.warning("model worker: registry %s not opened yet: %s", tracking_uri, exc)
    compiled_walk()  # the loop's compile (or cache load)


def main(argv: list[str] | None = None) -> None:
    """``python -m serving.model_worker --out DIR --model-name N --alias A --tracking-uri U``,
    or ``--serve``: prepare every job read from stdin (:class:`WarmWorker`)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help="take jobs on stdin, stay warm")
    parser.add_argument("--out", type=Path, help="folder to write the files into")
    parser.add_argument("--model-name")
    parser.add_argument("--alias")
    parser.add_argument("--tracking-uri", help="with --serve: the registry to open at start")
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled trees")
    args = parser.parse_args(argv)
    # Requests come first: on a 2-core machine the worker takes the CPU the servers leave.
    lowest_cpu_priority()
    if args.serve:
        # The answers own stdout: anything a library prints goes to stderr, the log.
        answers, sys.stdout = sys.stdout, sys.stderr
        warm_up(args.tracking_uri)
        serve_jobs(sys.stdin, answers)
        return
    missing = [
        f"--{n}" for n in ("out", "model_name", "alias", "tracking_uri") if not getattr(args, n)
    ]
    if missing:
        parser.error(f"{', '.join(m.replace('_', '-') for m in missing)} required without --serve")
    source = RegistrySource(args.model_name, args.alias, args.tracking_uri, not args.no_compile)
    prepare(source, args.out)


# -- in the server ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreparedModel:
    """A model the worker prepared, read back: the bundle and, if it compiled, its walk."""

    bundle: ModelBundle
    walk: dict[str, np.ndarray] | None
    compile_error: str | None


def _compiled_from(walk: dict[str, np.ndarray]):
    """The worker's forest and layout as a scorer (the walk loop must be compiled already)."""

    def unpack(prefix: str, cls):
        values = {f.name: walk[f"{prefix}{f.name}"] for f in fields(cls)}
        return {k: (v if v.ndim else v[()]) for k, v in values.items()}

    forest_values = unpack("forest_", FlatForest)
    forest_values["n_features"] = int(forest_values["n_features"])
    layout_values = unpack("layout_", WalkLayout)
    layout_values["depth"], layout_values["shift"] = (
        int(layout_values["depth"]),
        int(layout_values["shift"]),
    )
    return CompiledForest(FlatForest(**forest_values), WalkLayout(**layout_values))


def attach_prepared_walk(bundle: ModelBundle, walk: dict[str, np.ndarray]) -> bool:
    """Give ``bundle`` the worker's compiled walk after re-scoring a few probe rows with it.

    The worker checked every probe row; this re-check costs well under a millisecond and
    catches files that did not make it across intact. False (booster keeps scoring) if not.
    """

    compiled = _compiled_from(walk)
    rows = probe_rows(compiled.forest, min_rows=RECHECK_ROWS)[:RECHECK_ROWS]
    expected = np.asarray(bundle.booster.inplace_predict(rows), dtype=np.float64)
    if not float(np.max(np.abs(compiled(rows) - expected))) <= PROBABILITY_TOLERANCE:
        logger.warning("compiled trees of version %s failed the re-check", bundle.model_version)
        return False
    bundle.fast_max_rows = COMPILED_MAX_ROWS  # the limit first, as attach_compiled does
    bundle.fast_scorer = compiled
    return True


def read_prepared(directory: Path) -> PreparedModel:
    """The files a worker wrote into ``directory``, as a :class:`PreparedModel`."""

    prepared = json.loads((directory / PREPARED_FILE).read_text())
    bundle = load_bundle(directory / BUNDLE_DIR)
    walk = None
    if prepared["compiled"]:
        with np.load(directory / WALK_FILE) as archive:
            walk = {name: archive[name] for name in archive.files}
    return PreparedModel(bundle, walk, prepared["compile_error"])


class WarmWorker:
    """``python -m serving.model_worker --serve``, started once and kept for every swap.

    :meth:`prepare` sends it a job and reads the files back; a worker that died, hung past
    the timeout or answered garbage is stopped, and the next :meth:`prepare` starts a new one.
    """

    def __init__(self, tracking_uri: str | None = None) -> None:
        self.tracking_uri = tracking_uri  # opened at start, so the first job does not
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()  # one job at a time: the answers come back in order

    def start(self) -> None:
        """Start the worker now (its imports overlap the server's start, not a swap)."""
        with self._lock:
            self._running()

    def _running(self) -> subprocess.Popen:
        if self._process is None or self._process.poll() is not None:
            command = [sys.executable, "-m", "serving.model_worker", "--serve"]
            if self.tracking_uri:
                command += ["--tracking-uri", self.tracking_uri]
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,  # answers; its log lines go to the server's stderr
                text=True,
            )
        return self._process

    def _failed(self, message: str) -> WorkerFailed:
        self._stop()
        return WorkerFailed(message)

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
        if process is not None:
            process.wait()
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    pipe.close()

    def prepare(
        self, source: RegistrySource, timeout_s: float = WORKER_TIMEOUT_SECONDS
    ) -> PreparedModel:
        """The model of ``source`` as the worker prepared it; :class:`WorkerFailed` if not."""
        with self._lock, tempfile.TemporaryDirectory(prefix="fraud-model-") as tmp:
            process = self._running()
            assert process.stdin is not None and process.stdout is not None  # both PIPE
            try:
                process.stdin.write(json.dumps({"out": tmp, "source": asdict(source)}) + "\n")
                process.stdin.flush()
            except BrokenPipeError:
                raise self._failed(f"model worker exited (code {process.wait()})") from None
            readable, _, _ = select.select([process.stdout], [], [], timeout_s)
            if not readable:
                raise self._failed(f"model worker gave no answer within {timeout_s:.0f}s")
            line = process.stdout.readline()
            if not line:
                raise self._failed(f"model worker exited (code {process.wait()})")
            try:
                answer = json.loads(line)
            except json.JSONDecodeError:
                raise self._failed(f"model worker answered {line.strip()[:200]!r}") from None
            if not answer.get("ok"):
                raise WorkerFailed(str(answer.get("error") or "model worker failed"))
            return read_prepared(Path(tmp))

    def close(self) -> None:
        """Stop the worker (it also ends with its stdin when the server exits)."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()  # without the lock: a job in progress then fails at once
        with self._lock:
            self._stop()


def prepare_in_worker(
    source: RegistrySource, timeout_s: float = WORKER_TIMEOUT_SECONDS
) -> PreparedModel:
    """One model prepared by a worker started for it, then stopped."""
    worker = WarmWorker()
    try:
        return worker.prepare(source, timeout_s)
    finally:
        worker.close()


if __name__ == "__main__":
    main()
