"""Drift detection: quiet on traffic of the same process, loud (and specific) on each drift.

Every current window here is the simulator's next week, featurised with the ONE feature
definition after the history and scored by the champion -- what the drift job does with a
transactions file.
"""

from __future__ import annotations

import numpy as np
import pytest

from fraudops.bundle import SCORE_COLUMN
from monitoring.drift_analysis import (
    ALL_MISSING,
    DATA_DRIFT,
    MISSING_VALUES,
    PREDICTION_DRIFT,
    PSI_ALERT,
    detect_drift,
    feature_gain,
    psi_level,
    top_features,
)
from monitoring.window import MonitoringInputError, bounded_sample
from tests.monitoring.conftest import World


def test_no_drift_on_held_out_traffic_of_the_same_process(world: World) -> None:
    current = world.live_window("none")
    analysis = detect_drift(world.reference, current, world.bundle, world.params.drift)
    assert not analysis.drift_detected, analysis.signals
    assert analysis.signals == []
    assert analysis.drifted_features == []
    psi = analysis.statistics["psi"]["features"]
    assert all(entry["level"] == "ok" for entry in psi.values()), psi
    assert not analysis.statistics["prediction"]["drifted"]


def test_a_single_weekday_is_not_drift_just_because_it_has_no_weekend(world: World) -> None:
    current = world.live_window("none")
    weekday = current[current["tx_during_weekend"] == 0]
    one_day = weekday[
        weekday["tx_datetime"].dt.normalize() == weekday["tx_datetime"].min().normalize()
    ]
    analysis = detect_drift(world.reference, one_day, world.bundle, world.params.drift)
    weekend = analysis.statistics["data_drift"]["features"]["tx_during_weekend"]
    # The weekend share really moved (reference ~2/7 -> 0) and the report says so ...
    assert weekend["drifted"] and weekend["judged"] is False
    # ... but the calendar is not the customers: no verdict rests on it.
    assert "tx_during_weekend" not in analysis.drifted_features
    assert DATA_DRIFT not in analysis.signals, analysis.signals


@pytest.mark.parametrize(
    ("scenario", "strength", "signal", "expected_features"),
    [
        # genuine spend x1.5: the amount and everything computed from it
        ("amount_shift", 1.0, DATA_DRIFT, {"tx_amount", "customer_amount_ratio_30d"}),
        # 30% of payments moved to the night
        ("night_shift", 1.0, DATA_DRIFT, {"tx_during_night"}),
        # 15% of payments at terminals never seen before: no terminal history at all
        ("missing_values", 1.0, MISSING_VALUES, {"terminal_risk_7d", "terminal_risk_30d"}),
        # card testing is a concept drift first (the performance job sees it at strength 1);
        # its data footprint -- many tiny payments per victim per day -- needs volume
        ("new_fraud_pattern", 10.0, DATA_DRIFT, {"tx_amount", "customer_tx_count_1d"}),
    ],
)
def test_each_simulated_drift_is_detected_and_names_its_features(
    world: World, scenario: str, strength: float, signal: str, expected_features: set[str]
) -> None:
    current = world.live_window(scenario, strength)
    analysis = detect_drift(world.reference, current, world.bundle, world.params.drift)
    assert analysis.drift_detected
    assert signal in analysis.signals
    assert expected_features <= set(analysis.drifted_features), analysis.drifted_features
    # Drift names what moved, not everything: the night shift leaves amounts alone.
    if scenario == "night_shift":
        assert "tx_amount" not in analysis.drifted_features


def test_amount_shift_raises_a_psi_alert_on_a_top_feature_and_moves_predictions(
    world: World,
) -> None:
    analysis = detect_drift(
        world.reference, world.live_window("amount_shift"), world.bundle, world.params.drift
    )
    psi = analysis.statistics["psi"]["features"]
    alerts = {name for name, entry in psi.items() if entry["level"] == "alert"}
    assert PSI_ALERT in analysis.signals
    assert alerts & {"tx_amount", "customer_amount_ratio_30d"}
    assert all(psi[name]["psi"] > world.params.drift.psi_threshold for name in alerts)
    # More genuine spend above the review threshold: the alert rate jumps.
    assert PREDICTION_DRIFT in analysis.signals
    rate = analysis.statistics["prediction"]["alert_rate"]
    assert rate["ratio"] >= world.params.drift.max_alert_rate_ratio


def test_a_missing_value_jump_is_detected_for_that_field(world: World) -> None:
    current = world.live_window("none")
    rng = np.random.default_rng(0)
    hit = rng.random(len(current)) < 0.15
    current.loc[hit, "customer_mean_amount_30d"] = np.nan
    analysis = detect_drift(world.reference, current, world.bundle, world.params.drift)
    field = analysis.statistics["missing_values"]["fields"]["customer_mean_amount_30d"]
    assert MISSING_VALUES in analysis.signals
    assert field["alert"]
    assert field["current"] == pytest.approx(current["customer_mean_amount_30d"].isna().mean())
    assert field["increase"] > 0.1
    assert "customer_mean_amount_30d" in analysis.drifted_features
    untouched = analysis.statistics["missing_values"]["fields"]["tx_amount"]
    assert not untouched["alert"]


def test_prediction_drift_is_detected_when_only_the_scores_move(world: World) -> None:
    current = world.live_window("none")
    # The served scores inflate (a broken model build, a bad threshold file...) while the
    # inputs stay the same: only the prediction signal may fire.
    current[SCORE_COLUMN] = np.clip(current[SCORE_COLUMN] * 4 + 0.05, 0, 1)
    current["decision"] = world.bundle.thresholds.decide(current[SCORE_COLUMN].to_numpy())
    analysis = detect_drift(world.reference, current, world.bundle, world.params.drift)
    assert analysis.signals == [PREDICTION_DRIFT]
    prediction = analysis.statistics["prediction"]
    assert prediction["score"]["drifted"]
    assert prediction["score"]["current_mean"] > prediction["score"]["reference_mean"]
    assert prediction["alert_rate"]["drifted"]
    assert analysis.drifted_features == []


def test_a_feature_missing_everywhere_in_the_window_is_drift_not_a_crash(world: World) -> None:
    current = world.live_window("none")
    current["terminal_risk_30d"] = np.nan
    analysis = detect_drift(world.reference, current, world.bundle, world.params.drift)
    entry = analysis.statistics["data_drift"]["features"]["terminal_risk_30d"]
    assert entry["statistic"] == ALL_MISSING
    assert entry["drifted"]
    assert {DATA_DRIFT, MISSING_VALUES} <= set(analysis.signals)
    assert "terminal_risk_30d" in analysis.drifted_features


def test_large_windows_are_bounded_and_tiny_windows_refused(world: World) -> None:
    window = world.live_window("none")
    sampled = bounded_sample(window, 1000, seed=1)
    assert len(sampled) == 1000 and sampled["tx_datetime"].is_monotonic_increasing
    assert sampled["transaction_id"].isin(window["transaction_id"]).all()
    assert bounded_sample(window, len(window), seed=1) is window  # within the bound: untouched
    params = world.params.drift.model_copy(update={"min_current_rows": 500})
    with pytest.raises(MonitoringInputError, match="min_current_rows=500"):
        detect_drift(world.reference, world.live_window("none").head(100), world.bundle, params)


def test_a_window_without_a_model_feature_names_it(world: World) -> None:
    current = world.live_window("none").drop(columns=["terminal_risk_7d"])
    with pytest.raises(MonitoringInputError, match="terminal_risk_7d: model feature missing"):
        detect_drift(world.reference, current, world.bundle, world.params.drift)


def test_psi_features_are_the_champions_top_gain_features(world: World) -> None:
    gain = feature_gain(world.bundle)
    top = top_features(world.bundle, 5)
    assert len(top) == 5
    assert set(gain) == set(world.bundle.feature_names)
    assert min(gain[name] for name in top) >= max(
        gain[name] for name in world.bundle.feature_names if name not in top
    )
    analysis = detect_drift(
        world.reference, world.live_window("none"), world.bundle, world.params.drift
    )
    assert list(analysis.statistics["psi"]["features"]) == top


def test_psi_levels_follow_the_configured_thresholds(world: World) -> None:
    params = world.params.drift
    assert psi_level(0.05, params) == "ok"
    assert psi_level(0.15, params) == "warning"
    assert psi_level(0.2, params) == "warning"  # the series' alert is PSI > 0.2
    assert psi_level(0.21, params) == "alert"
    assert psi_level(None, params) == "n/a"
