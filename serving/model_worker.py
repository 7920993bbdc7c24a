"""A new model prepared in a worker process: loaded, compiled and verified away from requests.

A server swapping models (the alias moved) keeps answering meanwhile, on one event loop.
Reading the bundle from the registry (MLflow, SQLAlchemy), flattening 300 trees from
their JSON dump and checking the compiled walk against XGBoost on every split hold the
GIL for hundreds of milliseconds in all; done by a thread of the server they stalled
requests for as long (issue #15: p99 426 ms during a promotion at 100 requests/s, 9-12 ms
otherwise). So the server runs ``python -m serving.model_worker --out DIR ...`` at the
lowest CPU priority (:func:`lowest_cpu_priority`), and the worker writes three files:

* ``DIR/bundle/`` -- the bundle as :func:`fraudops.bundle.save_bundle` writes it (version included);
* ``DIR/walk.npz`` -- the flattened forest and its walk layout, only once the compiled walk
  scored every probe row as ``inplace_predict`` does (:func:`~serving.compiled_forest.compile_forest`);
* ``DIR/prepared.json`` -- ``{"model_version", "compiled", "compile_error"}``.

The server reads them back (:func:`prepare_in_worker`): a booster load in XGBoost's C code
(the GIL released), a few arrays, and a re-check of the walk on a handful of probe rows --
milliseconds, not hundreds of them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from fraudops.bundle import ModelBundle, load_bundle, load_registered_bundle, save_bundle
from fraudops.registry import ensure_reachable
from serving.compiled_forest import (
    COMPILED_MAX_ROWS,
    PROBABILITY_TOLERANCE,
    CompiledForest,
    FlatForest,
    UnsupportedBooster,
    WalkLayout,
    compile_forest,
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

    def argv(self, out: Path) -> list[str]:
        """The worker's command line for this source, writing into ``out``."""
        command = [sys.executable, "-m", "serving.model_worker", "--out", str(out)]
        command += ["--model-name", self.model_name, "--alias", self.alias]
        command += ["--tracking-uri", self.tracking_uri]
        return command + ([] if self.compile_trees else ["--no-compile"])


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


def main(argv: list[str] | None = None) -> None:
    """``python -m serving.model_worker --out DIR --model-name N --alias A --tracking-uri U``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the files into")
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--alias", required=True)
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled trees")
    args = parser.parse_args(argv)
    # Requests come first: on a 2-core machine the worker takes the CPU the servers leave.
    lowest_cpu_priority()
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


def prepare_in_worker(
    source: RegistrySource, timeout_s: float = WORKER_TIMEOUT_SECONDS
) -> PreparedModel:
    """Run the worker for ``source`` and read what it prepared; :class:`WorkerFailed` if not."""
    with tempfile.TemporaryDirectory(prefix="fraud-model-") as tmp:
        try:
            done = subprocess.run(
                source.argv(Path(tmp)),
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,  # a failure is read from stderr, below
            )
        except subprocess.TimeoutExpired:
            raise WorkerFailed(f"model worker gave no answer within {timeout_s:.0f}s") from None
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            raise WorkerFailed(lines[-1] if lines else f"model worker exit {done.returncode}")
        return read_prepared(Path(tmp))


if __name__ == "__main__":
    main()
