"""The booster's trees as flat arrays walked by one compiled loop: the one-row hot path.

Scoring one transaction with ``booster.inplace_predict`` costs 130-250 µs for the default
300-tree model, and almost none of it is tree walking (about 1,800 node visits, a few µs):
it is XGBoost's fixed cost per call -- a JSON config, an array interface, a proxy DMatrix
-- plus the worker-thread hop that keeps that call off the event loop. Fraud scoring is
one transaction at a time, so that fixed cost *is* the predictor's latency.

Here the trees are flattened into one 16-byte record per node (children, split feature,
threshold, default direction; a leaf's value) and walked by a numba-compiled loop, inline
on the event loop for up to ``COMPILED_MAX_ROWS`` rows. It is used only where it
reproduces XGBoost exactly -- a ``gbtree`` booster, ``binary:logistic``, numerical splits
-- and only after its scores matched ``inplace_predict`` on probe rows that sit on, just
below and just above every split threshold, with missing values (see
:func:`compile_forest`). Anything else keeps scoring with the booster.

The loop is compiled once per process (1-2 s, partly saved by numba's on-disk cache), so
servers compile it in the background once the model is loaded, and the booster scores
until then (:class:`serving.model_source.ModelHolder`).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger("serving.compiled")

#: Largest batch the compiled walk scores. It visits one row at a time, XGBoost walks
#: blocks of rows cache-efficiently: on the default model the walk is 25x faster for one
#: row, 2x for 32, and slower from about 50 rows on.
COMPILED_MAX_ROWS = 32

#: Agreement required with ``inplace_predict``: float32 sums in the same order differ, if
#: at all, by float32 rounding of the sigmoid.
PROBABILITY_TOLERANCE = 1e-6


class UnsupportedBooster(ValueError):
    """The booster uses something the compiled walk does not reproduce (it keeps scoring)."""


@dataclass(frozen=True)
class FlatForest:
    """All trees of a booster in flat arrays; node ids are global across trees."""

    roots: np.ndarray  # int32 [n_trees]: each tree's root node
    left: np.ndarray  # int32 [n_nodes]: left child, -1 at a leaf
    right: np.ndarray  # int32 [n_nodes]
    feature: np.ndarray  # int32 [n_nodes]: split feature index
    threshold: np.ndarray  # float32 [n_nodes]: go left when value < threshold
    default_left: np.ndarray  # uint8 [n_nodes]: where a missing value (NaN) goes
    leaf_value: np.ndarray  # float32 [n_nodes]: the leaf's margin contribution
    base_margin: np.float32  # the model's base score, in margin (log-odds) space
    n_features: int


def _base_score(learner: dict) -> float:
    # XGBoost 2+ writes a vector ("[4.58E-1]"), older releases a scalar ("4.58E-1").
    raw = str(learner["learner_model_param"]["base_score"]).strip("[]")
    values = [float(v) for v in raw.split(",") if v.strip()]
    if len(values) != 1:
        raise UnsupportedBooster(f"base_score: one value expected, got {raw!r}")
    return values[0]


def flatten_trees(booster) -> FlatForest:
    """The booster's trees as :class:`FlatForest`; :class:`UnsupportedBooster` if it can't be."""
    learner = json.loads(booster.save_raw("json"))["learner"]
    objective = learner["objective"]["name"]
    if objective != "binary:logistic":
        raise UnsupportedBooster(f"objective: only binary:logistic is compiled, got {objective}")
    gbm = learner["gradient_booster"]
    if gbm["name"] != "gbtree":
        raise UnsupportedBooster(f"booster: only gbtree is compiled, got {gbm['name']}")
    trees = gbm["model"]["trees"]
    if not trees:
        raise UnsupportedBooster("booster: has no trees")
    roots, left, right, feature, threshold, default_left, leaf_value = ([] for _ in range(7))
    offset = 0
    for tree in trees:
        if any(split_type != 0 for split_type in tree["split_type"]):
            raise UnsupportedBooster(f"tree {tree['id']}: categorical splits are not compiled")
        if int(tree["tree_param"].get("size_leaf_vector", "1")) > 1:
            raise UnsupportedBooster(f"tree {tree['id']}: vector leaves are not compiled")
        children_left = np.asarray(tree["left_children"], dtype=np.int64)
        children_right = np.asarray(tree["right_children"], dtype=np.int64)
        is_leaf = children_left == -1
        roots.append(offset)
        left.append(np.where(is_leaf, -1, children_left + offset))
        right.append(np.where(is_leaf, -1, children_right + offset))
        feature.append(np.asarray(tree["split_indices"], dtype=np.int64))
        # A leaf keeps its value where a split keeps its threshold (XGBoost's own layout).
        conditions = np.asarray(tree["split_conditions"], dtype=np.float32)
        threshold.append(np.where(is_leaf, np.float32(0), conditions))
        leaf_value.append(np.where(is_leaf, conditions, np.float32(0)))
        default_left.append(np.asarray(tree["default_left"], dtype=np.uint8))
        offset += len(children_left)
    base_score = _base_score(learner)
    if not 0.0 < base_score < 1.0:
        raise UnsupportedBooster(f"base_score: must be a probability in (0, 1), got {base_score}")
    n_features = int(learner["learner_model_param"]["num_feature"])
    forest = FlatForest(
        roots=np.asarray(roots, dtype=np.int32),
        left=np.concatenate(left).astype(np.int32),
        right=np.concatenate(right).astype(np.int32),
        feature=np.concatenate(feature).astype(np.int32),
        threshold=np.concatenate(threshold).astype(np.float32),
        default_left=np.concatenate(default_left),
        leaf_value=np.concatenate(leaf_value).astype(np.float32),
        # float32 throughout, as XGBoost computes it: -logf(1 / base_score - 1).
        base_margin=np.float32(-np.log(np.float32(1) / np.float32(base_score) - np.float32(1))),
        n_features=n_features,
    )
    if forest.feature.size and int(forest.feature.max()) >= n_features:
        raise UnsupportedBooster("split_indices: a split names a feature beyond num_feature")
    return forest


def pack_nodes(forest: FlatForest) -> np.ndarray:
    """One 16-byte record per node -- ``[left, right, feature, threshold]`` as int32, the
    threshold (a leaf's value at a leaf) stored as float32 bits, a missing value's default
    direction as the feature's sign (``~feature`` = left) -- so visiting a node reads one
    cache line, not one per array: a request finds the forest cold in the cache."""
    nodes = np.empty((len(forest.left), 4), dtype=np.int32)
    nodes[:, 0] = forest.left
    nodes[:, 1] = forest.right
    nodes[:, 2] = np.where(forest.default_left == 1, ~forest.feature, forest.feature)
    is_leaf = forest.left == -1
    nodes[:, 3] = np.where(is_leaf, forest.leaf_value, forest.threshold).view(np.int32)
    return nodes


def _walk(X, roots, nodes, values, base, margins, probabilities):
    """Margins and probabilities of the rows of ``X`` (compiled by :func:`compiled_walk`).

    ``nodes`` is :func:`pack_nodes`, ``values`` the same memory read as float32. Margins
    are summed in float32, base margin first, trees in order -- as XGBoost's CPU
    predictor sums -- so they are XGBoost's own, not merely close to them.
    """
    for r in range(X.shape[0]):
        total = base
        for t in range(roots.shape[0]):
            node = roots[t]
            while True:
                left = nodes[node, 0]
                if left == -1:
                    total += values[node, 3]
                    break
                code = nodes[node, 2]
                value = X[r, code if code >= 0 else ~code]
                if np.isnan(value):
                    node = left if code < 0 else nodes[node, 1]
                elif value < values[node, 3]:
                    node = left
                else:
                    node = nodes[node, 1]
        margins[r] = total
        probabilities[r] = 1.0 / (1.0 + np.exp(-np.float64(total)))


@functools.cache
def compiled_walk() -> Callable[..., None]:
    """``_walk`` compiled (once per process; from numba's on-disk cache when it can be)."""
    import numba

    try:
        # The GIL is kept: a walk of at most COMPILED_MAX_ROWS rows is shorter than a handoff.
        compiled = numba.njit(cache=True)(_walk)
    except RuntimeError as exc:
        # No writable cache folder (a read-only image without NUMBA_CACHE_DIR): compile anyway.
        logger.warning("numba cache unavailable (%s); compiling without it", exc)
        compiled = numba.njit()(_walk)
    nodes = np.array([[-1, -1, 0, 0]], dtype=np.int32)
    # Compile now, for exactly the types scoring passes, so no request pays for it.
    compiled(
        np.zeros((1, 1), dtype=np.float32),
        np.zeros(1, dtype=np.int32),
        nodes,
        nodes.view(np.float32),
        np.float32(0),
        np.empty(1, dtype=np.float32),
        np.empty(1, dtype=np.float64),
    )
    return compiled


def kernel_ready() -> bool:
    """True once the loop is compiled in this process (compiling a booster is then cheap)."""
    return compiled_walk.cache_info().currsize > 0


class CompiledForest:
    """Scores float32 rows in the model's feature order with the compiled walk."""

    def __init__(self, forest: FlatForest) -> None:
        self.forest = forest
        self._nodes = pack_nodes(forest)
        self._values = self._nodes.view(np.float32)
        self._walk = compiled_walk()

    def score(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Margins (float32, XGBoost's exactly) and probabilities (float64) per row of
        ``X``: C-contiguous float32 ``[n, n_features]`` in the model's feature order."""
        f = self.forest
        if X.dtype != np.float32 or X.ndim != 2 or X.shape[1] != f.n_features:
            raise ValueError(f"X: expected float32 [n, {f.n_features}], got {X.dtype} {X.shape}")
        margins = np.empty(X.shape[0], dtype=np.float32)
        probabilities = np.empty(X.shape[0], dtype=np.float64)
        self._walk(
            np.ascontiguousarray(X),
            f.roots,
            self._nodes,
            self._values,
            f.base_margin,
            margins,
            probabilities,
        )
        return margins, probabilities

    def margins(self, X: np.ndarray) -> np.ndarray:
        """Log-odds per row (float32), equal to ``inplace_predict(X, predict_type="margin")``."""
        return self.score(X)[0]

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """Fraud probability per row (float64), as ``booster.inplace_predict`` gives it."""
        return self.score(X)[1]


def probe_rows(forest: FlatForest, min_rows: int = 512, seed: int = 0) -> np.ndarray:
    """Rows whose values sit on, just below and just above every split threshold, or are
    missing -- each of those values in at least one row, columns shuffled independently.

    Random rows would pass most splits on the same side; these take every kind of branch,
    including the ``value == threshold`` edge and the default direction of missing values.
    """
    rng = np.random.default_rng(seed)
    splits = forest.left != -1
    columns = []
    for j in range(forest.n_features):
        cuts = np.unique(forest.threshold[splits & (forest.feature == j)])
        if cuts.size == 0:
            values = rng.normal(size=8).astype(np.float32)
        else:
            values = np.concatenate(
                [
                    cuts,
                    np.nextafter(cuts, np.float32(-np.inf)),
                    np.nextafter(cuts, np.float32(np.inf)),
                    [cuts.min() - 1, cuts.max() + 1],
                ]
            ).astype(np.float32)
        # About one value in ten missing, as unknown customers and terminals leave them.
        columns.append(np.concatenate([values, np.full(len(values) // 10 + 1, np.nan)]))
    n_rows = max(min_rows, max(len(c) for c in columns))
    X = np.empty((n_rows, forest.n_features), dtype=np.float32)
    for j, column in enumerate(columns):
        X[:, j] = rng.permutation(np.resize(column, n_rows))
    return X


def check_against_booster(compiled: CompiledForest, booster) -> None:
    """Raise :class:`UnsupportedBooster` unless ``compiled`` scores :func:`probe_rows` as
    ``booster.inplace_predict`` does."""
    rows = probe_rows(compiled.forest)
    expected = np.asarray(booster.inplace_predict(rows), dtype=np.float64)
    worst = float(np.max(np.abs(compiled(rows) - expected)))
    if not worst <= PROBABILITY_TOLERANCE:
        raise UnsupportedBooster(
            f"compiled scores differ from inplace_predict by up to {worst:.3g} "
            f"(tolerance {PROBABILITY_TOLERANCE:g})"
        )


def compile_forest(booster) -> CompiledForest:
    """The booster compiled and checked against ``inplace_predict`` on :func:`probe_rows`.

    Raises :class:`UnsupportedBooster` when the booster is outside what the walk
    reproduces or when any probe row disagrees -- the caller keeps the booster then.
    """
    compiled = CompiledForest(flatten_trees(booster))
    check_against_booster(compiled, booster)
    return compiled


def attach_compiled(bundle) -> bool:
    """Give ``bundle`` its compiled scorer; False (logged) when the booster keeps scoring."""
    try:
        compiled = compile_forest(bundle.booster)
    except (UnsupportedBooster, ImportError) as exc:  # ImportError: numba not installed
        logger.warning("compiled trees not used for version %s: %s", bundle.model_version, exc)
        return False
    # The limit first: a request reading the bundle in between sees no fast path yet.
    bundle.fast_max_rows = COMPILED_MAX_ROWS
    bundle.fast_scorer = compiled
    logger.info(
        "compiled trees score version %s (%d trees) for batches up to %d rows",
        bundle.model_version or "local",
        len(compiled.forest.roots),
        COMPILED_MAX_ROWS,
    )
    return True
