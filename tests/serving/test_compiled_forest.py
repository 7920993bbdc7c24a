"""Compiled trees score exactly as XGBoost does, or are not used at all."""

from __future__ import annotations

import sys
import time
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import xgboost
from prometheus_client import REGISTRY

from fraudops.bundle import ModelBundle, Thresholds, save_bundle
from serving.compiled_forest import (
    COMPILED_MAX_ROWS,
    CompiledForest,
    UnsupportedBooster,
    attach_compiled,
    check_against_booster,
    compile_forest,
    compiled_walk,
    flatten_trees,
    layout_nodes,
    probe_rows,
)
from serving.model_source import ModelHolder
from serving.settings import ServingSettings

N_FEATURES = 6


def fraud_like_rows(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Skewed amounts, counts and rates with missing values, and a rare positive class."""
    rng = np.random.default_rng(seed)
    X = np.column_stack(
        [
            rng.lognormal(3.5, 1.2, n),  # amount
            rng.poisson(3, n),  # transactions in a window
            rng.beta(1, 30, n),  # terminal fraud rate
            rng.normal(0, 1, n),
            rng.integers(0, 2, n),  # weekend flag
            rng.exponential(2.0, n),
        ]
    ).astype(np.float32)
    X[rng.random(X.shape) < 0.08] = np.nan  # unknown entities leave features missing
    risk = 0.02 * np.nan_to_num(X[:, 0]) + 40 * np.nan_to_num(X[:, 2]) + X[:, 1] - 6
    y = (rng.random(n) < 1 / (1 + np.exp(-risk))).astype(int)
    return X, y


def train(params: dict, rounds: int = 40, seed: int = 0) -> xgboost.Booster:
    X, y = fraud_like_rows(3000, seed)
    booster = xgboost.train(
        {"objective": "binary:logistic", "seed": seed, **params},
        xgboost.DMatrix(X, y),
        num_boost_round=rounds,
    )
    booster.set_param({"nthread": 1})
    return booster


@pytest.mark.parametrize(
    "params, rounds",
    [
        ({"max_depth": 6, "eta": 0.1}, 60),
        ({"max_depth": 1}, 5),  # stumps
        ({"max_depth": 10, "min_child_weight": 0}, 30),  # deep, uneven trees
        ({"max_depth": 4, "scale_pos_weight": 20, "base_score": 0.1}, 40),
        ({"max_depth": 3, "tree_method": "exact"}, 20),
        ({"max_depth": 4, "num_parallel_tree": 3, "subsample": 0.8}, 10),  # boosted forests
    ],
    ids=["default-like", "stumps", "deep", "weighted-base-score", "exact", "boosted-forest"],
)
def test_margins_and_probabilities_are_xgboosts_own(params: dict, rounds: int) -> None:
    booster = train(params, rounds)
    compiled = compile_forest(booster)
    edges = probe_rows(compiled.forest, 4000, seed=7)
    ordinary, _ = fraud_like_rows(4000, seed=99)
    for X in (edges, ordinary):
        expected = booster.inplace_predict(X, predict_type="margin")
        # Same float32 sums in the same order: equal, not merely close.
        np.testing.assert_array_equal(compiled.margins(X), expected)
        # And XGBoost's float32 sigmoid: a decision at a threshold cannot depend on the path.
        np.testing.assert_array_equal(compiled(X), booster.inplace_predict(X))


def test_probe_rows_sit_on_both_sides_of_every_threshold_and_are_missing() -> None:
    forest = flatten_trees(train({"max_depth": 5}))
    X = probe_rows(forest)
    splits = np.flatnonzero(forest.left != -1)
    for node in splits:
        values = X[:, forest.feature[node]]
        cut = forest.threshold[node]
        assert (values == cut).any() and (values < cut).any() and (values > cut).any()
        assert np.isnan(values).any()


def test_walk_layout_keeps_every_node_siblings_adjacent_and_leaves_still() -> None:
    forest = flatten_trees(train({"max_depth": 7, "min_child_weight": 0}, rounds=15))
    layout = layout_nodes(forest)
    assert layout.nodes.shape == (len(forest.left), 2)
    child = layout.nodes[:, 0] >> layout.shift
    thresholds = layout.nodes[:, 1].view(np.float32)
    is_leaf = np.isnan(thresholds)
    assert is_leaf.sum() == (forest.left == -1).sum()
    # A leaf points at itself; a split's children are two nodes side by side after it.
    assert (child[is_leaf] == np.flatnonzero(is_leaf)).all()
    splits = np.flatnonzero(~is_leaf)
    assert (child[splits] > splits).all()
    assert sorted(np.concatenate([child[splits], child[splits] + 1]).tolist()) == sorted(
        set(range(len(child))) - set(layout.roots.tolist())
    )
    assert sorted(layout.leaf_value[is_leaf].tolist()) == sorted(
        forest.leaf_value[forest.left == -1].tolist()
    )
    assert 1 <= layout.depth <= 7


def test_trees_without_splits_score_their_leaf() -> None:
    # gamma so high that no split pays: every tree is one leaf, the walk takes no step.
    booster = train({"gamma": 1e12}, rounds=3)
    compiled = compile_forest(booster)
    assert compiled.layout.depth == 0
    X, _ = fraud_like_rows(50, seed=3)
    np.testing.assert_array_equal(
        compiled.margins(X), booster.inplace_predict(X, predict_type="margin")
    )


def test_a_forest_too_large_for_32_bit_nodes_is_refused() -> None:
    forest = flatten_trees(train({"max_depth": 3}, rounds=2))
    # 2**28 features leave 2 bits of a node word for the child: only 4 nodes would fit.
    with pytest.raises(UnsupportedBooster, match="exceed 32 bits"):
        layout_nodes(replace(forest, n_features=2**28))


def test_a_wrong_forest_is_caught_before_it_scores() -> None:
    booster = train({"max_depth": 4})
    forest = flatten_trees(booster)
    split = int(np.flatnonzero(forest.left != -1)[0])
    threshold = forest.threshold.copy()
    threshold[split] = np.nextafter(threshold[split], np.float32(np.inf))  # one ulp off
    wrong = CompiledForest(replace(forest, threshold=threshold))
    with pytest.raises(UnsupportedBooster, match="differ from inplace_predict"):
        check_against_booster(wrong, booster)
    # the probes found the difference, not luck: the true forest passes the same check
    check_against_booster(CompiledForest(forest), booster)


@pytest.mark.parametrize(
    "params, rule",
    [
        ({"objective": "reg:squarederror"}, "objective: only binary:logistic"),
        ({"objective": "multi:softprob", "num_class": 3}, "objective: only binary:logistic"),
        ({"booster": "dart", "rate_drop": 0.1}, "booster: only gbtree"),
        ({"booster": "gblinear"}, "booster: only gbtree"),
    ],
    ids=["regression", "multiclass", "dart", "linear"],
)
def test_unsupported_boosters_are_refused_with_the_reason(params: dict, rule: str) -> None:
    X, y = fraud_like_rows(500)
    if params.get("num_class"):
        y = np.random.default_rng(0).integers(0, 3, len(y))
    booster = xgboost.train(
        {"objective": "binary:logistic", **params}, xgboost.DMatrix(X, y), num_boost_round=3
    )
    with pytest.raises(UnsupportedBooster, match=rule):
        compile_forest(booster)


def test_categorical_splits_are_refused() -> None:
    X, y = fraud_like_rows(800)
    frame = pd.DataFrame(X[:, :2], columns=["amount", "count"]).assign(
        channel=pd.Categorical(np.random.default_rng(1).choice(["pos", "web", "atm"], len(y)))
    )
    booster = xgboost.train(
        {"objective": "binary:logistic", "max_cat_to_onehot": 1},
        xgboost.DMatrix(frame, y, enable_categorical=True),
        num_boost_round=5,
    )
    with pytest.raises(UnsupportedBooster, match="categorical splits"):
        compile_forest(booster)


def bundle_of(booster: xgboost.Booster) -> ModelBundle:
    names = tuple(f"f{i}" for i in range(N_FEATURES))
    return ModelBundle(booster, names, Thresholds(review=0.3, decline=0.8), model_version="4")


def test_bundle_uses_compiled_trees_for_small_batches_only() -> None:
    booster = train({"max_depth": 6})
    bundle = bundle_of(booster)
    X, _ = fraud_like_rows(200, seed=3)
    before = bundle.predict_proba(X[:5])
    assert not bundle.has_fast_path(1)
    assert attach_compiled(bundle)
    assert bundle.has_fast_path(1) and bundle.has_fast_path(COMPILED_MAX_ROWS)
    assert not bundle.has_fast_path(COMPILED_MAX_ROWS + 1)
    np.testing.assert_allclose(bundle.predict_proba(X[:5]), before, rtol=0, atol=1e-6)
    # A big batch goes to XGBoost, which is faster there: same answers either way.
    np.testing.assert_allclose(
        bundle.predict_proba(X), booster.inplace_predict(X), rtol=0, atol=1e-6
    )


def test_an_uncompilable_model_keeps_scoring_with_the_booster() -> None:
    X, y = fraud_like_rows(500)
    dart = xgboost.train(
        {"objective": "binary:logistic", "booster": "dart", "rate_drop": 0.1},
        xgboost.DMatrix(X, y),
        num_boost_round=5,
    )
    bundle = bundle_of(dart)
    assert not attach_compiled(bundle)
    assert bundle.fast_scorer is None and not bundle.has_fast_path(1)
    np.testing.assert_allclose(bundle.predict_proba(X[:3]), dart.inplace_predict(X[:3]))


def _holder(tmp_path, **settings) -> ModelHolder:
    save_bundle(bundle_of(train({"max_depth": 4})), tmp_path / "bundle")
    return ModelHolder(ServingSettings(model_dir=tmp_path / "bundle", **settings))


def compiled_gauge() -> float | None:
    return REGISTRY.get_sample_value("fraud_compiled_trees")


def test_holder_compiles_in_the_background_and_says_so(tmp_path) -> None:
    compiled_walk.cache_clear()  # as in a new process: the loop is not compiled yet
    holder = _holder(tmp_path)
    assert holder.load()
    assert holder.ready  # ready at once: the booster scores while the loop compiles
    deadline = time.monotonic() + 120
    while not holder.status()["compiled_trees"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert holder.status()["compiled_trees"] is True
    assert compiled_gauge() == 1
    X, _ = fraud_like_rows(4, seed=5)
    np.testing.assert_allclose(
        holder.bundle.predict_proba(X), holder.bundle.booster.inplace_predict(X), atol=1e-6
    )


def test_compiled_trees_can_be_switched_off(tmp_path) -> None:
    holder = _holder(tmp_path, compiled_trees=False)
    assert holder.load()
    time.sleep(0.2)  # nothing compiles in the background either
    assert holder.bundle.fast_scorer is None
    assert holder.status()["compiled_trees"] is False
    assert compiled_gauge() == 0


def test_without_numba_the_booster_keeps_scoring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "numba", None)  # as if the extra were not installed
    compiled_walk.cache_clear()
    bundle = bundle_of(train({"max_depth": 3}))
    assert not attach_compiled(bundle)
    assert bundle.fast_scorer is None
    X, _ = fraud_like_rows(3, seed=2)
    np.testing.assert_allclose(bundle.predict_proba(X), bundle.booster.inplace_predict(X))
    monkeypatch.undo()
    compiled_walk.cache_clear()
