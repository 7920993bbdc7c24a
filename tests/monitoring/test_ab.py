"""A/B analysis: known answers for the statistics, and the no-peeking rule."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fraudops.config import ABParams
from monitoring.ab import (
    analyse_ab,
    planned_sample_size,
    required_sample_size_means,
    required_sample_size_proportions,
    two_proportion_z_test,
    welch_t_test,
)

Z_975 = 1.959963984540054  # standard normal 97.5% quantile
Z_80 = 0.8416212335729143  # standard normal 80% quantile


def test_sample_size_matches_the_textbook_value() -> None:
    # 50% vs 55%, alpha 0.05 two-sided, power 0.8: 1,565 per arm (Fleiss, by hand below).
    p1, p2 = 0.5, 0.55
    p_bar = (p1 + p2) / 2
    by_hand = (
        Z_975 * math.sqrt(2 * p_bar * (1 - p_bar)) + Z_80 * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    ) ** 2 / (p2 - p1) ** 2
    assert math.ceil(by_hand) == 1565
    assert required_sample_size_proportions(0.5, 0.05, 0.05, 0.8) == 1565
    # Smaller effects need more data; more power needs more data.
    assert required_sample_size_proportions(0.5, 0.025, 0.05, 0.8) > 1565 * 3.9
    assert required_sample_size_proportions(0.5, 0.05, 0.05, 0.9) > 1565


def test_sample_size_for_means_is_the_normal_approximation() -> None:
    assert required_sample_size_means(0.2, 0.05, 0.8) == math.ceil(2 * (Z_975 + Z_80) ** 2 / 0.04)
    assert required_sample_size_means(0.2, 0.05, 0.8) == 393


def test_two_proportion_z_test_known_answer() -> None:
    # control 200/1000 = 20%, treatment 250/1000 = 25%, computed by hand:
    pooled = 450 / 2000
    se_pooled = math.sqrt(pooled * (1 - pooled) * (2 / 1000))
    z = 0.05 / se_pooled
    p_value = 2 * (1 - 0.5 * (1 + math.erf(z / math.sqrt(2))))
    se = math.sqrt(0.2 * 0.8 / 1000 + 0.25 * 0.75 / 1000)
    result = two_proportion_z_test(200, 1000, 250, 1000, alpha=0.05)
    assert result.difference == pytest.approx(0.05)
    assert result.statistic == pytest.approx(z) == pytest.approx(2.6774, abs=1e-4)
    assert result.p_value == pytest.approx(p_value) == pytest.approx(0.00742, abs=1e-4)
    assert result.ci_low == pytest.approx(0.05 - Z_975 * se)
    assert result.ci_high == pytest.approx(0.05 + Z_975 * se)
    assert (result.ci_low, result.ci_high) == pytest.approx((0.01346, 0.08654), abs=1e-4)
    h = 2 * math.asin(math.sqrt(0.25)) - 2 * math.asin(math.sqrt(0.2))
    assert result.effect_size == pytest.approx(h) == pytest.approx(0.1199, abs=1e-4)


def test_z_test_is_symmetric_and_quiet_without_a_difference() -> None:
    same = two_proportion_z_test(300, 1000, 300, 1000, alpha=0.05)
    assert same.statistic == 0 and same.p_value == pytest.approx(1.0)
    forward = two_proportion_z_test(200, 1000, 250, 1000, alpha=0.05)
    backward = two_proportion_z_test(250, 1000, 200, 1000, alpha=0.05)
    assert backward.statistic == pytest.approx(-forward.statistic)
    assert backward.p_value == pytest.approx(forward.p_value)


def test_welch_t_test_agrees_with_scipy_and_the_formula() -> None:
    rng = np.random.default_rng(3)
    control, treatment = rng.normal(10, 4, 400), rng.normal(11, 6, 300)
    result = welch_t_test(control, treatment, alpha=0.05)
    reference = stats.ttest_ind(treatment, control, equal_var=False)
    assert result.statistic == pytest.approx(reference.statistic)
    assert result.p_value == pytest.approx(reference.pvalue)
    va, vb = control.var(ddof=1) / 400, treatment.var(ddof=1) / 300
    df = (va + vb) ** 2 / (va**2 / 399 + vb**2 / 299)
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    diff = treatment.mean() - control.mean()
    assert (result.ci_low, result.ci_high) == pytest.approx((diff - half, diff + half))
    pooled = math.sqrt((399 * control.var(ddof=1) + 299 * treatment.var(ddof=1)) / 698)
    assert result.effect_size == pytest.approx(diff / pooled)


@pytest.mark.parametrize(
    ("control", "treatment", "alpha", "expected"),
    [
        # Values the hand-written Welch formula gave before scipy took over the test.
        (
            np.random.default_rng(7).normal(10, 3, 200),
            None,
            0.05,
            (
                1.0730333840604356,
                0.19596664844053147,
                1.9501001196803398,
                2.411700206250352,
                0.016733082810061993,
                0.28238199395252844,
            ),
        ),
        (
            np.array([1.0, 2.0, 3.0, 4.0]),
            np.array([2.5, 3.5, 7.0]),
            0.1,
            (
                1.833333333333333,
                -1.769507272732036,
                5.436173939398702,
                1.214746786823312,
                0.3140699890201201,
                1.0195679969200888,
            ),
        ),
        # Two constant arms: no t statistic; reported as no evidence, as before.
        (np.array([1.0, 1.0]), np.array([2.0, 2.0]), 0.05, (1.0, 1.0, 1.0, 0.0, 1.0, 0.0)),
    ],
)
def test_welch_t_test_gives_the_values_of_the_former_formula(
    control: np.ndarray, treatment: np.ndarray | None, alpha: float, expected: tuple
) -> None:
    if treatment is None:  # drawn after the control, from the same generator
        rng = np.random.default_rng(7)
        control, treatment = rng.normal(10, 3, 200), rng.normal(11, 5, 150)
    result = welch_t_test(control, treatment, alpha)
    observed = (
        result.difference,
        result.ci_low,
        result.ci_high,
        result.statistic,
        result.p_value,
        result.effect_size,
    )
    assert observed == pytest.approx(expected, rel=1e-9, abs=1e-12)


def outcomes(
    n_fraud: int, caught_control: float, caught_treatment: float, seed: int = 0
) -> pd.DataFrame:
    """A 50/50 split's matured outcomes: labelled frauds per arm with a catch rate each."""
    rng = np.random.default_rng(seed)
    frames = []
    for version, rate in (("1", caught_control), ("2", caught_treatment)):
        caught = rng.random(n_fraud) < rate
        frames.append(
            pd.DataFrame(
                {
                    "model_version": version,
                    "decision": np.where(caught, "DECLINE", "APPROVE"),
                    "tx_fraud": 1,
                    "tx_amount": 100.0,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def test_no_p_value_before_the_planned_sample_size() -> None:
    params = ABParams(baseline_rate=0.5, minimum_detectable_effect=0.05)
    # A huge difference on too little data: tempting, but the plan is not met.
    analysis = analyse_ab(outcomes(200, 0.3, 0.9), "1", "2", "recall", params, review_cost=5.0)
    assert analysis.required_per_arm == 1565 == planned_sample_size("recall", params)
    assert not analysis.enough_data and analysis.result is None and not analysis.significant
    assert "keep the test running" in analysis.conclusion and "1,565" in analysis.conclusion


def test_once_the_plan_is_met_the_better_arm_is_named() -> None:
    params = ABParams(baseline_rate=0.5, minimum_detectable_effect=0.05)
    analysis = analyse_ab(outcomes(2000, 0.50, 0.58), "1", "2", "recall", params, review_cost=5.0)
    assert analysis.enough_data and analysis.significant
    assert analysis.result is not None and analysis.result.difference > 0
    assert analysis.result.ci_low > 0
    assert analysis.conclusion.startswith("v2 is better on recall")
    tie = analyse_ab(outcomes(2000, 0.5, 0.5, seed=1), "1", "2", "recall", params, 5.0)
    assert tie.enough_data and tie.result is not None
    assert (tie.result.ci_low < 0 < tie.result.ci_high) == (not tie.significant)


def test_net_benefit_uses_welch_on_dollars_per_transaction() -> None:
    params = ABParams(minimum_detectable_d=0.2)
    frame = outcomes(1000, 0.4, 0.7)
    analysis = analyse_ab(frame, "1", "2", "net_benefit", params, review_cost=5.0)
    assert analysis.required_per_arm == required_sample_size_means(0.2, 0.05, 0.8) == 393
    assert analysis.result is not None and analysis.result.test == "Welch t-test"
    # caught fraud is worth its amount minus the review: 95 dollars each here
    assert analysis.result.control_value == pytest.approx(
        95.0 * (frame[frame.model_version == "1"].decision != "APPROVE").mean()
    )
    assert analysis.significant and analysis.result.difference > 0
