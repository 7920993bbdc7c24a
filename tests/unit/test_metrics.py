"""Fraud metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from training.metrics import (
    average_precision,
    card_precision_at_k,
    f1_at_threshold,
    fraud_metrics,
    net_benefit,
    net_benefit_curve,
    recall_at_fpr,
    roc_auc,
)

# Four transactions: fraud ranked 1st and 3rd.
Y = np.array([1, 0, 1, 0])
S = np.array([0.9, 0.8, 0.7, 0.1])
AMOUNTS = np.array([100.0, 50.0, 30.0, 20.0])


def test_average_precision_by_hand() -> None:
    # precision at each fraud's rank: 1/1 and 2/3 -> mean 5/6
    assert average_precision(Y, S) == pytest.approx(5 / 6)


def test_average_precision_undefined_without_fraud() -> None:
    assert math.isnan(average_precision([0, 0, 0], [0.1, 0.2, 0.3]))


def test_roc_auc_by_hand() -> None:
    # (fraud, genuine) pairs ordered right: (.9,.8) (.9,.1) (.7,.1) yes, (.7,.8) no -> 3/4
    assert roc_auc(Y, S) == pytest.approx(0.75)


def test_recall_at_fpr_budget_by_hand() -> None:
    y = np.array([1, 1, 0, 1, 0, 0, 0, 0, 0, 0])
    s = np.array([0.95, 0.9, 0.85, 0.8, 0.3, 0.2, 0.1, 0.05, 0.04, 0.03])
    # 7 genuine: a 0.15 budget allows one false positive (1/7) -> cut at 0.8 catches all 3
    assert recall_at_fpr(y, s, 0.15) == pytest.approx(1.0)
    # a 0.10 budget allows none -> cut at 0.9 catches 2 of 3
    assert recall_at_fpr(y, s, 0.10) == pytest.approx(2 / 3)


def test_card_precision_at_k_by_hand() -> None:
    frame = pd.DataFrame(
        [
            # day 1: A max .9 (compromised: its .2 tx is fraud), B .8 genuine, C .1 compromised
            ("2026-01-01 10:00", "A", 0, 0.9),
            ("2026-01-01 11:00", "A", 1, 0.2),
            ("2026-01-01 12:00", "B", 0, 0.8),
            ("2026-01-01 13:00", "C", 1, 0.1),
            # day 2: B .7 compromised, C .6 compromised, A .3 genuine
            ("2026-01-02 10:00", "A", 0, 0.3),
            ("2026-01-02 11:00", "B", 1, 0.7),
            ("2026-01-02 12:00", "C", 1, 0.6),
        ],
        columns=["when", "customer", "fraud", "score"],
    )
    got = card_precision_at_k(frame["when"], frame["customer"], frame["fraud"], frame["score"], k=2)
    # day 1 top-2 = A (compromised), B (not) -> 1/2; day 2 top-2 = B, C -> 2/2; mean 0.75
    assert got == pytest.approx(0.75)


def test_card_precision_divides_by_k_like_the_handbook() -> None:
    # one compromised customer on the day, k = 2: the unused alert slot counts against it
    got = card_precision_at_k(["2026-01-01"], ["A"], [1], [0.9], k=2)
    assert got == pytest.approx(0.5)


def test_f1_at_threshold_by_hand() -> None:
    # cut 0.75 flags the first two: TP 1, FP 1, FN 1 -> F1 = 2/(2+1+1)
    assert f1_at_threshold(Y, S, 0.75) == pytest.approx(0.5)
    assert f1_at_threshold(Y, S, 0.95) == 0.0


def test_net_benefit_by_hand() -> None:
    # cut 0.75: fraud caught $100, two alerts at $5
    assert net_benefit(Y, S, AMOUNTS, 0.75, review_cost=5.0) == pytest.approx(90.0)
    # cut 0.5: fraud caught $130, three alerts
    assert net_benefit(Y, S, AMOUNTS, 0.5, review_cost=5.0) == pytest.approx(115.0)


def test_net_benefit_curve_by_hand_with_ties() -> None:
    y = np.array([1, 0, 1, 0])
    s = np.array([0.9, 0.7, 0.7, 0.1])  # a tie: both 0.7 rows are flagged together
    curve = net_benefit_curve(y, s, AMOUNTS, review_cost=5.0)
    assert curve["threshold"].tolist() == [np.inf, 0.9, 0.7, 0.1]
    assert curve["alerts"].tolist() == [0, 1, 3, 4]
    assert curve["net_benefit"].tolist() == pytest.approx([0.0, 95.0, 115.0, 110.0])


def test_fraud_metrics_reports_no_accuracy() -> None:
    frame = pd.DataFrame(
        {
            "y": Y,
            "amount": AMOUNTS,
            "customer": [1, 2, 3, 4],
            "when": pd.to_datetime(["2026-01-01"] * 4),
        }
    )
    metrics = fraud_metrics(
        frame,
        S,
        0.75,
        fpr_budget=0.5,
        top_k_per_day=2,
        review_cost=5.0,
        label="y",
        amount="amount",
        customer="customer",
        when="when",
    )
    assert "accuracy" not in metrics
    assert metrics["average_precision"] == pytest.approx(5 / 6)
    assert metrics["net_benefit"] == pytest.approx(90.0)
    assert metrics["card_precision_at_k"] == pytest.approx(0.5)
    assert metrics["alerts"] == 2
    assert metrics["precision"] == pytest.approx(0.5)
    assert metrics["recall"] == pytest.approx(0.5)
