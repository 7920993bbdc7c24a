"""The registration gate: net benefit > $40,000 AND F1 > 0.20, with a reason per rule."""

from __future__ import annotations

from fraudops.config import RegisterParams
from training.register import passes_registration_gate

SERIES_GATE = RegisterParams()  # min_net_benefit 40,000, min_f1 0.20


def test_series_gate_values() -> None:
    assert SERIES_GATE.min_net_benefit == 40_000
    assert SERIES_GATE.min_f1 == 0.20


def test_candidate_above_both_bars_passes() -> None:
    result = passes_registration_gate({"net_benefit": 52_310.0, "f1": 0.61}, SERIES_GATE)
    assert result.passed and bool(result)
    assert result.reasons == (
        "net_benefit: $52,310 > $40,000 (pass)",
        "f1: 0.610 > 0.20 (pass)",
    )


def test_low_net_benefit_fails_with_reason() -> None:
    result = passes_registration_gate({"net_benefit": 39_999.0, "f1": 0.61}, SERIES_GATE)
    assert not result.passed
    assert "net_benefit: $39,999 is not > $40,000 (fail)" in result.reasons
    assert "f1: 0.610 > 0.20 (pass)" in result.reasons


def test_low_f1_fails_with_reason() -> None:
    result = passes_registration_gate({"net_benefit": 90_000.0, "f1": 0.15}, SERIES_GATE)
    assert not result.passed
    assert "f1: 0.150 is not > 0.20 (fail)" in result.reasons


def test_the_bar_itself_does_not_pass() -> None:
    result = passes_registration_gate({"net_benefit": 40_000.0, "f1": 0.20}, SERIES_GATE)
    assert not result.passed
    assert all("(fail)" in reason for reason in result.reasons)


def test_missing_or_nan_metric_fails_and_says_so() -> None:
    result = passes_registration_gate({"net_benefit": float("nan")}, SERIES_GATE)
    assert not result.passed
    assert result.reasons[0].startswith("net_benefit: missing")
    assert result.reasons[1].startswith("f1: missing")


def test_gate_reads_its_bars_from_params() -> None:
    lenient = RegisterParams(min_net_benefit=1_000.0, min_f1=0.05)
    assert passes_registration_gate({"net_benefit": 5_000.0, "f1": 0.10}, lenient).passed
