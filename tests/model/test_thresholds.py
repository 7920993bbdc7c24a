"""Decision thresholds: review at max validation net benefit, decline stricter, decide()."""

from __future__ import annotations

import numpy as np
import pytest

from fraudops.bundle import Thresholds
from training.train import choose_thresholds

Y = np.array([1, 0, 1, 0])
S = np.array([0.9, 0.8, 0.7, 0.1])
AMOUNTS = np.array([100.0, 50.0, 30.0, 20.0])


def test_review_maximises_net_benefit_and_decline_meets_precision() -> None:
    # net benefit by cut: .9 -> 95, .8 -> 90, .7 -> 115, .1 -> 110: review = 0.7
    # precision above review: .9 -> 1.0, .8 -> 0.5: decline (>= 0.9 precision) = 0.9
    thresholds = choose_thresholds(Y, S, AMOUNTS, review_cost=5.0, decline_min_precision=0.9)
    assert thresholds == Thresholds(review=0.7, decline=0.9)


def test_no_alert_worth_its_cost_flags_nothing() -> None:
    thresholds = choose_thresholds(Y, S, AMOUNTS, review_cost=1_000.0, decline_min_precision=0.9)
    assert thresholds.review > S.max()
    assert thresholds.decline > thresholds.review
    assert (thresholds.decide(S) == "APPROVE").all()


def test_unreachable_precision_sends_everything_risky_to_review() -> None:
    y = np.array([0, 1, 0, 1])
    s = np.array([0.9, 0.8, 0.7, 0.6])
    thresholds = choose_thresholds(y, s, [10.0, 100.0, 10.0, 100.0], 1.0, decline_min_precision=0.9)
    assert thresholds.review == 0.6
    assert thresholds.decline > s.max()


def test_decide_maps_probabilities_at_the_cut_offs() -> None:
    decisions = Thresholds(review=0.3, decline=0.8).decide(
        np.array([0.0, 0.299, 0.3, 0.79, 0.8, 1.0])
    )
    assert decisions.tolist() == ["APPROVE", "APPROVE", "REVIEW", "REVIEW", "DECLINE", "DECLINE"]


def test_one_probability_decides_as_the_array_does() -> None:
    # The servers' per-transaction path must never disagree with decide(), NaN included.
    thresholds = Thresholds(review=0.3, decline=0.8)
    p = np.array([0.0, 0.299, 0.3, np.nextafter(0.8, 0), 0.8, 1.0, np.nan])
    assert [thresholds.decision(x) for x in p.tolist()] == thresholds.decide(p).tolist()


def test_decline_must_be_above_review() -> None:
    with pytest.raises(ValueError, match="decline must be > review"):
        Thresholds(review=0.5, decline=0.5)
