"""The explainer's fast path (XGBoost's ``pred_contribs``) gives the SHAP values ``shap`` gives.

The serving explainer computes reason codes with XGBoost's own TreeSHAP on a bare DMatrix
(one thread, no feature names); training explains models with ``shap.TreeExplainer``. Both
must be the same numbers, or a reason code could disagree with the run's global picture.

Two references, on a tiny model trained the way the pipeline trains (monotone constraints,
missing values in the rows):

- ``shap.TreeExplainer(booster)``: for an XGBoost booster shap itself calls
  ``pred_contribs``, so the values must be identical (tolerance 0);
- shap's own TreeSHAP (its C extension) on shap's parse of the same trees: an independent
  implementation. Tolerance 1e-5 in log-odds: XGBoost accumulates in float32, shap in
  float64, so they differ by rounding only -- measured at most 3e-7 on this 20-tree model
  and 1.4e-6 on a 300-tree depth-6 one (the default params) -- while a reason code that
  matters moves the log-odds by 1e-2 or more.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraudops.bundle import ModelBundle
from serving.explain import contributions
from tests.model.synthetic import small_params, synthetic_training_set
from training.train import feature_matrix, train_models

#: Largest |difference| allowed between the fast path and shap's own TreeSHAP (log-odds).
INDEPENDENT_ATOL = 1e-5


@pytest.fixture(scope="module")
def champion() -> ModelBundle:
    """A tiny model trained by the training code on the synthetic history."""
    return train_models(synthetic_training_set(seed=3), small_params()).bundle


@pytest.fixture(scope="module")
def rows(champion: ModelBundle) -> np.ndarray:
    """200 rows of the history in model order, with missing values kept (NaN)."""
    frame = synthetic_training_set(seed=4).sample(n=200, random_state=0)
    X = feature_matrix(frame, champion.feature_names)
    assert np.isnan(X).any(), "the rows must exercise the missing-value branches"
    return X


def _node_means(tree) -> np.ndarray:
    """Leaf values with each inner node set to its cover-weighted mean of its children.

    shap's parse of XGBoost trees leaves inner nodes at 0 (its XGBoost path never reads
    them); its own TreeSHAP takes the bias -- E[f(x)] -- from the root's value.
    """
    values = np.array(tree.values, dtype=np.float64)
    weights = np.asarray(tree.node_sample_weight, dtype=np.float64)

    def fill(node: int) -> float:
        left, right = tree.children_left[node], tree.children_right[node]
        if left < 0:
            return float(values[node, 0])
        mean = (weights[left] * fill(left) + weights[right] * fill(right)) / weights[node]
        values[node, 0] = mean
        return mean

    fill(0)
    return values


def _independent_tree_explainer(booster):
    """shap's TreeSHAP on shap's own copy of the trees (never XGBoost's pred_contribs)."""
    import shap

    parsed = shap.TreeExplainer(booster).model
    model = {
        "trees": [
            {
                "children_left": tree.children_left,
                "children_right": tree.children_right,
                "children_default": tree.children_default,
                "features": tree.features,
                "thresholds": tree.thresholds,
                "values": _node_means(tree),
                "node_sample_weight": tree.node_sample_weight,
            }
            for tree in parsed.trees
        ],
        "base_offset": parsed.base_offset,
        "tree_output": "log_odds",
        "objective": "binary_crossentropy",
        "input_dtype": parsed.input_dtype,
        "internal_dtype": parsed.internal_dtype,
    }
    explainer = shap.TreeExplainer(model)
    assert explainer.model.model_type == "internal"
    return explainer


def test_fast_path_equals_shap_tree_explainer(champion: ModelBundle, rows: np.ndarray) -> None:
    import shap

    fast = contributions(champion, rows)
    frame = pd.DataFrame(rows, columns=list(champion.feature_names))
    explainer = shap.TreeExplainer(champion.booster, model_output="raw")
    reference = explainer.shap_values(frame)
    np.testing.assert_array_equal(fast.values, reference)
    assert fast.base_value == pytest.approx(float(explainer.expected_value), abs=1e-6)


def test_fast_path_equals_an_independent_tree_shap(champion: ModelBundle, rows: np.ndarray) -> None:
    fast = contributions(champion, rows)
    explainer = _independent_tree_explainer(champion.booster)
    reference = explainer.shap_values(rows.astype(np.float64))
    assert reference.shape == fast.values.shape
    np.testing.assert_allclose(fast.values, reference, rtol=0, atol=INDEPENDENT_ATOL)
    expected_value = float(np.ravel(explainer.expected_value)[0])
    assert fast.base_value == pytest.approx(expected_value, abs=INDEPENDENT_ATOL)
    # The contributions explain the served score: bias + sum = margin, sigmoid = probability.
    np.testing.assert_allclose(
        1.0 / (1.0 + np.exp(-fast.margin)), fast.probabilities, rtol=0, atol=1e-6
    )
