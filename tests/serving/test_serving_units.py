"""In-process units: the request model, feature-row parsing, reason texts, settings, launch plan."""

from __future__ import annotations

import json
import math
import shutil
import threading

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from features.definitions import FEATURE_NAMES
from serving.errors import InvalidRequest
from serving.explain import describe_feature, reason_text, top_reasons
from serving.feature_rows import _row_values, parse_feature_rows
from serving.launch import level_components
from serving.metrics import LATENCY_BUCKETS, SCORE_BUCKETS, ScoringTally
from serving.prediction_log import (
    BackgroundLogWriter,
    PredictionLogWriter,
    PredictionRecord,
    read_prediction_log,
)
from serving.schema import EXAMPLE_TRANSACTION, parse_tx_datetime, validate_transactions
from serving.settings import ServingSettings


def test_request_model_normalises_time_to_naive_utc() -> None:
    moment = parse_tx_datetime("2026-05-02T16:03:27+02:00")
    assert moment.isoformat() == "2026-05-02T14:03:27"
    [transaction] = validate_transactions({"instances": [EXAMPLE_TRANSACTION]}, 4)
    assert transaction.customer_id == 42 and transaction.tx_amount == 57.16


def test_request_errors_list_every_broken_field() -> None:
    bad = {**EXAMPLE_TRANSACTION, "tx_amount": -1.0, "terminal_id": "7", "shop": "x"}
    with pytest.raises(InvalidRequest) as caught:
        validate_transactions({"instances": [EXAMPLE_TRANSACTION, bad]}, 4)
    fields = {d["field"]: d["rule"] for d in caught.value.details}
    assert fields["instances[1].tx_amount"] == "must be >= 0.0"
    assert fields["instances[1].terminal_id"] == "must be an integer"
    assert fields["instances[1].shop"].startswith("unknown field")
    assert (
        caught.value.status == 422
        and "instances[1].tx_amount: must be >= 0.0, got -1.0" in caught.value.message
    )


def test_batch_limit_comes_from_configuration() -> None:
    assert len(validate_transactions({"instances": [EXAMPLE_TRANSACTION] * 3}, 3)) == 3
    with pytest.raises(InvalidRequest, match="at most 2 transactions"):
        validate_transactions({"instances": [EXAMPLE_TRANSACTION] * 3}, 2)


def test_feature_rows_become_float32_in_model_order() -> None:
    named = {name: float(i) for i, name in enumerate(FEATURE_NAMES)}
    named["terminal_risk_1d"] = None
    rows = parse_feature_rows({"instances": [named, list(named.values())]}, FEATURE_NAMES, 8)
    assert rows.matrix.dtype == np.float32 and rows.matrix.flags["C_CONTIGUOUS"]
    assert rows.matrix.shape == (2, len(FEATURE_NAMES))
    position = FEATURE_NAMES.index("terminal_risk_1d")
    assert math.isnan(rows.matrix[0, position]) and math.isnan(rows.matrix[1, position])
    assert rows.matrix[0, 1] == 1.0


def test_rows_may_carry_their_transactions_one_each() -> None:
    rows = [[1.0] * len(FEATURE_NAMES), [2.0] * len(FEATURE_NAMES)]
    carried = parse_feature_rows(
        {"instances": rows, "transactions": [{"transaction_id": 1}, {"transaction_id": 2}]},
        FEATURE_NAMES,
        8,
    )
    assert [t["transaction_id"] for t in carried.transactions] == [1, 2]
    with pytest.raises(InvalidRequest, match="one object per instance"):
        parse_feature_rows(
            {"instances": rows, "transactions": [{"transaction_id": 1}]}, FEATURE_NAMES, 8
        )


_ROW_VALUES = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e6, max_value=1e6),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.integers(min_value=-1000, max_value=1000),
    st.booleans(),
    st.text(max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.lists(_ROW_VALUES, min_size=3, max_size=3),
            st.lists(st.one_of(st.none(), st.floats(-1e3, 1e3)), min_size=3, max_size=3),
            st.lists(_ROW_VALUES, max_size=4),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_bulk_row_check_agrees_with_the_value_by_value_check(instances: list) -> None:
    names = ("amount", "count", "rate")
    try:
        expected = np.asarray(
            [_row_values(row, i, names) for i, row in enumerate(instances)], dtype=np.float32
        )
    except InvalidRequest as refusal:
        with pytest.raises(InvalidRequest) as bulk:
            parse_feature_rows({"instances": instances}, names, 8)
        assert str(bulk.value) == str(refusal)
        return
    np.testing.assert_array_equal(
        parse_feature_rows({"instances": instances}, names, 8).matrix, expected
    )


@pytest.mark.parametrize(
    "feature,value,expected",
    [
        ("customer_amount_ratio_30d", 5.23, "amount is 5.2× this customer's 30-day average"),
        (
            "customer_amount_ratio_30d",
            None,
            "no 30-day spending history to compare the amount with",
        ),
        ("tx_amount", 1234.5, "amount is 1,234.50"),
        ("tx_during_night", 1.0, "made at night (before 06:00)"),
        ("tx_during_weekend", 0.0, "made on a weekday"),
        ("customer_tx_count_1d", 1.0, "customer made 1 transaction in the last day"),
        ("terminal_tx_count_7d", 12.0, "terminal processed 12 transactions in the last 7 days"),
        ("customer_mean_amount_7d", None, "customer has no transactions in the last 7 days"),
        (
            "terminal_risk_30d",
            0.25,
            "25% of this terminal's labelled transactions in its 30-day window were fraud",
        ),
        ("terminal_risk_1d", None, "no labelled transactions at this terminal in its 1-day window"),
    ],
)
def test_feature_descriptions_read_as_plain_language(feature: str, value, expected: str) -> None:
    assert describe_feature(feature, value) == expected


def test_reasons_are_the_largest_contributions_with_their_direction() -> None:
    row = np.array([900.0, 0.0, 1.0] + [1.0] * (len(FEATURE_NAMES) - 3), dtype=np.float32)
    contributions = np.zeros(len(FEATURE_NAMES))
    contributions[0], contributions[2], contributions[5] = 2.5, -0.7, 0.1
    reasons = top_reasons(FEATURE_NAMES, row, contributions, k=2)
    assert [r["feature"] for r in reasons] == ["tx_amount", "tx_during_night"]
    assert reasons[0]["text"] == "amount is 900.00 (raises risk)"
    assert (
        reasons[1]["text"]
        == reason_text("tx_during_night", 1.0, -0.7)
        == "made at night (before 06:00) (lowers risk)"
    )


def test_settings_read_the_fraud_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUD_MODEL_ALIAS", "candidate")
    monkeypatch.setenv("FRAUD_MAX_BATCH_SIZE", "32")
    monkeypatch.setenv("FRAUD_ONLINE_STORE", "redis")
    settings = ServingSettings()
    assert (settings.model_alias, settings.max_batch_size, settings.online_store) == (
        "candidate",
        32,
        "redis",
    )
    monkeypatch.setenv("FRAUD_ONLINE_STORE", "cassandra")
    with pytest.raises(ValueError, match="online_store"):
        ServingSettings()


def test_each_level_answers_on_one_entry_port() -> None:
    for level in ("level1", "level2", "level3", "level4", "level5"):
        components = level_components(level, port=8080, predictor_port=8081, explainer_port=8082)
        assert components[-1].port == 8080
        assert len({c.port for c in components}) == len(components)
    level5 = level_components("level5")
    assert [c.name for c in level5] == ["predictor", "explainer", "transformer"]
    assert "--explainer_host" in level5[-1].args and "127.0.0.1:8081" in level5[-1].args


def _record(i: int) -> PredictionRecord:
    return PredictionRecord(
        request_id=f"r{i}",
        transaction_id=i,
        tx_datetime="2026-03-01T10:00:00",
        customer_id=1,
        terminal_id=2,
        tx_amount=10.0,
        model_version="3",
        fraud_probability=0.25,
        decision="APPROVE",
        latency_ms=1.5,
        features={"tx_amount": 10.0, "terminal_risk_1d": None},
    )


def test_prediction_log_rotates_by_size_and_survives_a_removed_folder(tmp_path) -> None:
    folder = tmp_path / "predictions"
    writer = PredictionLogWriter(folder, max_bytes=1_000)
    for i in range(12):
        writer.write([_record(i)])
    files = sorted(folder.glob("predictions-*.jsonl"))
    assert len(files) > 1  # each part closed once it passed max_bytes
    assert all(f.stat().st_size < 1_000 + 500 for f in files)  # by at most one write
    shutil.rmtree(folder)  # log shipping took the folder away
    writer.write([_record(12)])
    logged = read_prediction_log(folder)
    assert logged["transaction_id"].tolist() == [12]
    assert logged["tx_amount"].iloc[0] == 10.0 and pd.isna(logged["terminal_risk_1d"].iloc[0])


def test_background_log_writer_keeps_every_record_in_order(tmp_path) -> None:
    folder = tmp_path / "predictions"
    # A long interval: the thread has not written yet when flush() is called.
    writer = BackgroundLogWriter(folder, flush_interval_s=60)
    threads = [
        threading.Thread(
            target=lambda k=k: [writer.write([_record(k * 100 + i)]) for i in range(50)]
        )
        for k in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.flush()
    lines = "".join(f.read_text() for f in sorted(folder.glob("predictions-*.jsonl")))
    logged = [json.loads(line)["transaction_id"] for line in lines.splitlines()]
    assert sorted(logged) == sorted(k * 100 + i for k in range(4) for i in range(50))
    for k in range(4):  # each writer's records in the order it wrote them
        mine = [t for t in logged if t // 100 == k]
        assert mine == sorted(mine)
    writer.flush()  # nothing queued: nothing written twice
    assert len(read_prediction_log(folder)) == 200


def _scraped(tally: ScoringTally) -> dict[tuple[str, tuple], float]:
    registry = CollectorRegistry()
    registry.register(tally)
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_scoring_tally_exports_prometheus_histograms_and_counters() -> None:
    tally = ScoringTally()
    # 0.01 sits exactly on a bound: Prometheus buckets are "less than or equal".
    tally.record([0.0005, 0.01, 0.97], ["APPROVE", "APPROVE", "DECLINE"], "3", 0.0007)
    tally.record([0.4], ["REVIEW"], "4", 2.0)
    tally.record_latency(0.003)
    scraped = _scraped(tally)
    bucket = lambda name, le: scraped[(f"{name}_bucket", (("le", le),))]
    assert bucket("fraud_score", "0.001") == 1
    assert bucket("fraud_score", "0.01") == 2
    assert bucket("fraud_score", "0.3") == 2
    assert bucket("fraud_score", "0.5") == 3
    assert bucket("fraud_score", "0.95") == 3
    assert bucket("fraud_score", "0.99") == 4
    assert bucket("fraud_score", "+Inf") == scraped[("fraud_score_count", ())] == 4
    assert scraped[("fraud_score_sum", ())] == pytest.approx(0.0005 + 0.01 + 0.97 + 0.4)
    assert scraped[("fraud_decisions_total", (("decision", "APPROVE"),))] == 2
    assert scraped[("fraud_decisions_total", (("decision", "REVIEW"),))] == 1
    assert scraped[("fraud_predictions_total", (("model_version", "3"),))] == 3
    assert scraped[("fraud_predictions_total", (("model_version", "4"),))] == 1
    assert bucket("fraud_predict_latency_seconds", "0.001") == 1
    assert bucket("fraud_predict_latency_seconds", "0.005") == 2
    # 2 s is above the largest bound: only in +Inf.
    assert bucket("fraud_predict_latency_seconds", "1.0") == 2
    assert scraped[("fraud_predict_latency_seconds_count", ())] == 3
    assert len(SCORE_BUCKETS) + 1 == sum(k[0] == "fraud_score_bucket" for k in scraped)
    assert len(LATENCY_BUCKETS) + 1 == sum(
        k[0] == "fraud_predict_latency_seconds_bucket" for k in scraped
    )


def test_scoring_tally_loses_no_update_across_threads() -> None:
    # The L1/L2 apps score in worker threads: every request must be counted.
    tally = ScoringTally()

    def score_many() -> None:
        for _ in range(2_000):
            tally.record([0.2], ["APPROVE"], "7", 0.001)

    workers = [threading.Thread(target=score_many) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    scraped = _scraped(tally)
    assert scraped[("fraud_predictions_total", (("model_version", "7"),))] == 8_000
    assert scraped[("fraud_score_count", ())] == 8_000
    assert scraped[("fraud_predict_latency_seconds_count", ())] == 8_000
