"""The booster's trees as flat arrays walked by one compiled loop: the one-row hot path.

Scoring one transaction with ``booster.inplace_predict`` costs 130-250 µs for the default
300-tree model, and almost none of it is tree walking (about 1,800 node visits, a few µs):
it is XGBoost's fixed cost per call -- a JSON config, an array interface, a proxy DMatrix
-- plus the worker-thread hop that keeps that call off the event loop. Fraud scoring is
one transaction at a time, so that fixed cost *is* the predictor's latency.

Here the trees are flattened into one 8-byte record per node (children, split feature,
threshold, default direction; :class:`WalkLayout`) and walked by a numba-compiled loop
that steps all trees a level at a time (:func:`_walk`), inline on the event loop for up
to ``COMPILED_MAX_ROWS`` rows. It is used only where it reproduces XGBoost exactly -- a
``gbtree`` booster, ``binary:logistic``, numerical splits -- and only after its scores
matched ``inplace_predict`` on probe rows that sit on, just below and just above every
split threshold, with missing values (see :func:`compile_forest`). Anything else keeps
scoring with the booster.

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

#: Largest batch the compiled walk scores, inline on the event loop. It visits one row at
#: a time, XGBoost walks blocks of rows cache-efficiently: on the default model the walk
#: is 30x faster for one row, 2x for 32 (150 µs), and level from about 128 rows on --
#: larger batches go to a worker thread, so the loop is never held for long.
COMPILED_MAX_ROWS = 32

#: Agreement required with ``inplace_predict``: none. The margins are summed and the sigmoid
#: taken in float32 as XGBoost does, so the probabilities are XGBoost's own; one float32 step
#: off (another libm's ``expf``) could flip a decision at a threshold -- which is itself a
#: float32 training score -- between a batch the booster scores and the same rows one by
#: one, so a walk that is not exact is not used.
PROBABILITY_TOLERANCE = 0.0


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


@dataclass(frozen=True)
class WalkLayout:
    """The forest as the compiled walk reads it: 8 bytes a node, siblings side by side.

    Each tree is renumbered breadth-first, so a node's right child is its left child + 1 and
    the top levels of a tree share a cache line. ``nodes[i, 0]`` packs the left child, the
    missing-value direction and the split feature as ``left << shift | default_left <<
    (shift - 1) | feature``; ``nodes[i, 1]`` holds the threshold's float32 bits. A leaf
    points at itself with a NaN threshold, so every tree takes exactly ``depth`` steps and
    the walk needs no branch to know where it stands.
    """

    roots: np.ndarray  # int32 [n_trees]
    nodes: np.ndarray  # int32 [n_nodes, 2]
    leaf_value: np.ndarray  # float32 [n_nodes]: the leaf's margin contribution, 0 elsewhere
    depth: int  # the deepest leaf's depth
    shift: int  # bits below the left child in nodes[:, 0]


def _breadth_first(forest: FlatForest) -> tuple[np.ndarray, np.ndarray, int]:
    """Old node ids in the new order (tree by tree, level by level), the new roots and the
    deepest leaf's depth (0 for a forest of single leaves)."""
    order: list[int] = []
    roots = np.empty(len(forest.roots), dtype=np.int32)
    left, right = forest.left.tolist(), forest.right.tolist()
    depth = 0
    for t, root in enumerate(forest.roots.tolist()):
        roots[t] = len(order)
        level, levels = [root], 0
        while level:
            order.extend(level)
            level = [
                child for node in level if left[node] != -1 for child in (left[node], right[node])
            ]
            levels += 1
        depth = max(depth, levels - 1)
    return np.asarray(order, dtype=np.int64), roots, depth


def layout_nodes(forest: FlatForest) -> WalkLayout:
    """:class:`WalkLayout` of ``forest``; :class:`UnsupportedBooster` if it is too large
    for 32-bit node words."""
    order, roots, depth = _breadth_first(forest)
    n = len(order)
    new_id = np.empty(n, dtype=np.int64)
    new_id[order] = np.arange(n)
    left = forest.left[order]
    is_leaf = left == -1
    feature_bits = max(1, int(forest.n_features - 1).bit_length())
    shift = feature_bits + 1
    if (n - 1) << shift >= 2**31 - 1:
        raise UnsupportedBooster(f"trees: {n} nodes of {forest.n_features} features exceed 32 bits")
    child = np.where(is_leaf, np.arange(n), new_id[np.where(is_leaf, 0, left)])
    # A leaf sends missing values "left" -- to itself, as every other value goes.
    goes_left = np.where(is_leaf, 1, forest.default_left[order]).astype(np.int64)
    feature = np.where(is_leaf, 0, forest.feature[order]).astype(np.int64)
    nodes = np.empty((n, 2), dtype=np.int32)
    nodes[:, 0] = (child << shift) | (goes_left << feature_bits) | feature
    # NaN: no value is >= it, so a leaf never sends anything right.
    nodes[:, 1] = np.where(is_leaf, np.float32(np.nan), forest.threshold[order]).view(np.int32)
    leaf_value = np.where(is_leaf, forest.leaf_value[order], np.float32(0)).astype(np.float32)
    return WalkLayout(roots, nodes, leaf_value, depth, shift)


def _walk(X, roots, nodes, thresholds, leaf_value, depth, shift, base, margins, probabilities):
    """Margins and probabilities of the rows of ``X`` (compiled by :func:`compiled_walk`).

    ``roots``, ``nodes``, ``leaf_value``, ``depth`` and ``shift`` are a :class:`WalkLayout`,
    ``thresholds`` the nodes read as float32. All trees step one level at a time: the
    trees' next nodes are independent loads, so the CPU fetches many at once instead of
    waiting on one tree's node after another -- the forest is cold in the cache when a
    request arrives, and those waits were most of the walk. Margins are summed in float32,
    base margin first, trees in order -- as XGBoost's CPU predictor sums -- and the sigmoid
    is XGBoost's float32 ``common::Sigmoid``, so both are XGBoost's own, not merely close.
    """
    n_trees = roots.shape[0]
    feature_mask = (1 << (shift - 1)) - 1
    left_bit = 1 << (shift - 1)
    at = np.empty(n_trees, dtype=np.int32)
    for r in range(X.shape[0]):
        for t in range(n_trees):
            at[t] = roots[t]
        for _ in range(depth):
            for t in range(n_trees):
                i = at[t]
                word = nodes[i, 0]
                value = X[r, word & feature_mask]
                # Right when value >= threshold, or when it is missing and defaults right.
                right = (value >= thresholds[i, 1]) | (np.isnan(value) & ((word & left_bit) == 0))
                at[t] = (word >> shift) + right
        total = base
        for t in range(n_trees):
            total += leaf_value[at[t]]
        margins[r] = total
        # XGBoost: min(-x, 88.7f), then 1.0f / (expf(x) + 1.0f + 1e-16f), all in float32.
        exponent = min(-total, np.float32(88.7))
        one = np.float32(1.0)
        probabilities[r] = one / (np.exp(exponent) + one + np.float32(1e-16))


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
    nodes = np.array([[0, 0]], dtype=np.int32)
    # Compile now, for exactly the types scoring passes, so no request pays for it.
    compiled(
        np.zeros((1, 1), dtype=np.float32),
        np.zeros(1, dtype=np.int32),
        nodes,
        nodes.view(np.float32),
        np.zeros(1, dtype=np.float32),
        0,
        2,
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

    def __init__(self, forest: FlatForest, layout: WalkLayout | None = None) -> None:
        self.forest = forest
        # A layout made elsewhere (the model worker's) is taken as it is: laying out a big
        # forest is work a serving process should not do while it answers requests.
        self.layout = layout if layout is not None else layout_nodes(forest)
        self._thresholds = self.layout.nodes.view(np.float32)
        self._walk = compiled_walk()

    def score(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Margins and probabilities (XGBoost's float32 values; probabilities held in a
        float64 array) per row of ``X``: C-contiguous float32 ``[n, n_features]`` in the
        model's feature order."""
        f, layout = self.forest, self.layout
        if X.dtype != np.float32 or X.ndim != 2 or X.shape[1] != f.n_features:
            raise ValueError(f"X: expected float32 [n, {f.n_features}], got {X.dtype} {X.shape}")
        margins = np.empty(X.shape[0], dtype=np.float32)
        probabilities = np.empty(X.shape[0], dtype=np.float64)
        self._walk(
            np.ascontiguousarray(X),
            layout.roots,
            layout.nodes,
            self._thresholds,
            layout.leaf_value,
            layout.depth,
            layout.shift,
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
