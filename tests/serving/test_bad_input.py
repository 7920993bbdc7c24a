"""Bad input never gets a 5xx or a score: the JSON corpus, then hypothesis-generated bodies."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from features.definitions import FEATURE_NAMES
from serving.errors import InvalidRequest
from serving.schema import validate_transactions

from .conftest import MAX_BATCH, MODEL, Server, Stack, World

PAYLOADS = Path(__file__).parent / "payloads"
TRANSACTION_CASES = sorted((PAYLOADS / "transactions").glob("*.json"))
FEATURE_ROW_CASES = sorted((PAYLOADS / "feature_rows").glob("*.json"))


def _send(server: Server, case: dict, verb: str = "predict"):
    body = case["raw"].encode() if "raw" in case else json.dumps(case["body"]).encode()
    headers = {"content-type": case["content_type"]} if case.get("content_type") else {}
    return server.client.post(f"/v1/models/{MODEL}:{verb}", content=body, headers=headers)


def _check(answer, case: dict) -> None:
    assert answer.status_code in case["status"], (case["why"], answer.status_code, answer.text)
    body = answer.json()
    assert "predictions" not in body and "explanations" not in body
    if "field" in case:
        assert case["field"] in body["error"], (case["why"], body)


def test_the_corpus_covers_every_rule() -> None:
    names = {path.stem for path in TRANSACTION_CASES}
    for required in (
        "missing_amount",
        "extra_field",
        "amount_as_string",
        "nan_amount",
        "negative_amount",
        "absurd_amount",
        "timestamp_words",
        "empty_batch",
        "oversized_batch",
        "malformed_json",
        "wrong_content_type",
    ):
        assert required in names


@pytest.mark.parametrize("target", ["level1", "level2", "transformer"])
@pytest.mark.parametrize("path", TRANSACTION_CASES, ids=lambda p: p.stem)
def test_bad_transactions_get_a_4xx_naming_the_field(stack: Stack, target: str, path: Path) -> None:
    _check(
        _send(getattr(stack, target), json.loads(path.read_text())), json.loads(path.read_text())
    )


@pytest.mark.parametrize("path", TRANSACTION_CASES, ids=lambda p: p.stem)
def test_bad_transactions_get_no_explanation_either(stack: Stack, path: Path) -> None:
    case = json.loads(path.read_text())
    _check(_send(stack.transformer, case, verb="explain"), case)


@pytest.mark.parametrize("target,verb", [("predictor", "predict"), ("explainer", "explain")])
@pytest.mark.parametrize("path", FEATURE_ROW_CASES, ids=lambda p: p.stem)
def test_bad_feature_rows_get_a_4xx_naming_the_field(
    stack: Stack, target: str, verb: str, path: Path
) -> None:
    case = json.loads(path.read_text())
    _check(_send(getattr(stack, target), case, verb), case)


# -- hypothesis: anything a client could send -------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
VALID = {
    "transaction_id": 1,
    "tx_datetime": "2026-02-15T10:00:00",  # just after the test world's history
    "customer_id": 3,
    "terminal_id": 7,
    "tx_amount": 42.5,
}
FIELD_VALUES = {
    "transaction_id": st.integers(min_value=-(2**70), max_value=2**70) | json_values,
    "tx_datetime": st.datetimes().map(lambda d: d.isoformat()) | st.text(max_size=30) | json_values,
    "customer_id": st.integers(min_value=-(2**70), max_value=2**70) | json_values,
    "terminal_id": st.integers(min_value=-(2**70), max_value=2**70) | json_values,
    "tx_amount": st.floats(allow_nan=False)
    | st.integers(min_value=-(2**70), max_value=2**70)
    | json_values,
}


@st.composite
def near_valid_transaction(draw) -> dict:
    """A valid transaction with some fields replaced, dropped, or added."""
    transaction = dict(VALID)
    for name, values in FIELD_VALUES.items():
        choice = draw(st.sampled_from(["keep", "keep", "replace", "drop"]))
        if choice == "replace":
            transaction[name] = draw(values)
        elif choice == "drop":
            transaction.pop(name)
    if draw(st.booleans()) and draw(st.booleans()):
        transaction[draw(st.text(min_size=1, max_size=10))] = draw(json_values)
    return transaction


transaction_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"instances": st.lists(near_valid_transaction(), max_size=MAX_BATCH + 2)}
    ),
    st.dictionaries(
        st.sampled_from(["instances", "inputs", "parameters"]), json_values, max_size=2
    ),
)
_SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))


def _assert_sane(answer, body) -> None:
    assert answer.status_code < 500, (body, answer.text)
    if answer.status_code == 200:
        # Only a body the one request model accepts may be scored, one answer per transaction.
        transactions = validate_transactions(body, MAX_BATCH)
        assert len(answer.json()["predictions"]) == len(transactions)
    else:
        assert answer.status_code in (400, 415, 422), answer.text


@_SETTINGS
@given(body=transaction_bodies)
def test_transformer_never_answers_5xx(stack: Stack, body) -> None:
    answer = stack.transformer.client.post(f"/v1/models/{MODEL}:predict", content=json.dumps(body))
    _assert_sane(answer, body)


@_SETTINGS
@given(
    raw=st.binary(max_size=200),
    content_type=st.sampled_from(["application/json", "text/plain", None]),
)
def test_transformer_survives_arbitrary_bytes(stack: Stack, raw: bytes, content_type) -> None:
    headers = {"content-type": content_type} if content_type else {}
    answer = stack.transformer.client.post(
        f"/v1/models/{MODEL}:predict", content=raw, headers=headers
    )
    assert answer.status_code in (400, 415, 422), answer.text


feature_values = (
    st.none() | st.floats(allow_nan=False, allow_infinity=False, width=32) | json_values
)
feature_rows = st.one_of(
    st.lists(feature_values, min_size=len(FEATURE_NAMES) - 1, max_size=len(FEATURE_NAMES) + 1),
    st.dictionaries(
        st.sampled_from(FEATURE_NAMES) | st.text(max_size=8),
        feature_values,
        max_size=len(FEATURE_NAMES) + 1,
    ),
    json_values,
)
feature_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"instances": st.lists(feature_rows, max_size=MAX_BATCH + 2)},
        optional={"feature_names": st.just(list(FEATURE_NAMES)) | json_values},
    ),
)


@_SETTINGS
@given(body=feature_bodies)
def test_predictor_never_answers_5xx(stack: Stack, body) -> None:
    answer = stack.predictor.client.post(
        f"/v1/models/{MODEL}:predict",
        content=json.dumps(body),
        headers={"content-type": "application/json"},
    )
    assert answer.status_code < 500, (body, answer.text)
    if answer.status_code == 200:
        assert len(answer.json()["predictions"]) == len(body["instances"])
    else:
        assert answer.status_code in (400, 422), answer.text


@_SETTINGS
@given(
    data=st.lists(json_values | st.floats(allow_nan=False), max_size=20),
    shape=st.lists(st.integers(min_value=-2, max_value=20), max_size=3),
    datatype=st.sampled_from(["FP32", "FP64", "INT64", "BYTES", "BOOL", "nonsense"]),
)
# Found by this test once: a float beyond int64 declared INT64 overflowed inside numpy.
@example(data=[9.223372036854776e18], shape=[], datatype="INT64")
def test_predictor_v2_never_answers_5xx(stack: Stack, data, shape, datatype) -> None:
    body = {"inputs": [{"name": "features", "shape": shape, "datatype": datatype, "data": data}]}
    answer = stack.predictor.client.post(
        f"/v2/models/{MODEL}/infer",
        content=json.dumps(body),
        headers={"content-type": "application/json"},
    )
    assert answer.status_code < 500, (body, answer.text)


def test_the_request_model_agrees_with_the_corpus() -> None:
    for path in TRANSACTION_CASES:
        case = json.loads(path.read_text())
        if "body" in case and case["content_type"] == "application/json":
            with pytest.raises(InvalidRequest):
                validate_transactions(case["body"], MAX_BATCH)


@pytest.mark.parametrize("level", ["transformer", "level1"])
def test_event_times_the_online_state_cannot_take_are_a_422_and_late_ones_count(
    stack: Stack, world: World, level: str
) -> None:
    server = getattr(stack, level)
    first_id = 55_000_000 + (0 if level == "transformer" else 10)
    future = world.transaction(transaction_id=first_id, tx_datetime="2099-01-01T00:00:00")
    answer = server.predict({"instances": [future]})
    assert answer.status_code == 422, answer.text
    (detail,) = answer.json()["details"]
    assert detail["field"] == "instances[0].tx_datetime"
    assert "ahead of the replay clock" in detail["rule"]
    assert detail["got"].startswith("2099-01-01")

    long_ago = (world.last_time - pd.Timedelta(days=60)).isoformat()
    answer = server.predict(
        {"instances": [world.transaction(transaction_id=first_id + 1, tx_datetime=long_ago)]}
    )
    assert answer.status_code == 422, answer.text
    assert "days (longest window + label delay) before" in answer.json()["error"]

    # Late but within the horizon: scored, applied, and counted as late.
    on_time = (world.last_time + pd.Timedelta(hours=4)).isoformat()
    late = (world.last_time + pd.Timedelta(hours=3, minutes=30)).isoformat()
    for tx_id, when in ((first_id + 2, on_time), (first_id + 3, late)):
        tx = world.transaction(transaction_id=tx_id, tx_datetime=when, customer_id=4242 + first_id)
        assert server.predict({"instances": [tx]}).status_code == 200
    assert 'fraud_online_updates_total{outcome="late"}' in server.metrics()
