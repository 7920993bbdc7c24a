"""A batch through the level-4 chain answers exactly as its transactions sent one by one.

Batches of 1, 10 and 100 transactions (hypothesis draws them: known and unknown customers
and terminals, any valid amount, times moving forward after the materialised history) go
through one chain's public endpoint as one request, and through a twin chain one
transaction per request; the answers must agree transaction for transaction --
probability, decision, version, unknown flags, order. Larger batches take other paths
inside (the predictor's booster above 32 rows, one online read for all of a request's
entities), so this is what keeps those paths honest.

Two chains, each on its own copy of the online store, see the same transactions in the
same order: where serving folds every scored transaction into the online state, both
states move alike, and the comparison still holds.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import Chain, World, level4_chain

#: What must agree between the batch answer and the one-by-one answers.
COMPARED = ("transaction_id", "decision", "model_version", "unknown_customer", "unknown_terminal")


#: Minutes after the history of each example's first transaction: time only moves forward,
#: and no transaction id comes twice (as live traffic would be).
_CLOCK = itertools.count(1)
_IDS = itertools.count(50_000_000)


@dataclass
class Twins:
    """Two identical chains: one gets batches, the other the same transactions one by one."""

    batched: Chain
    single: Chain


@contextlib.contextmanager
def _chain_on_copy(world: World, name: str) -> Iterator[Chain]:
    root = world.root / name
    root.mkdir()
    repo = shutil.copytree(world.feature_repo, root / "feature_repo")
    env = {
        "MLFLOW_TRACKING_URI": world.tracking_uri,
        "FRAUD_FEAST_REPO": str(repo),
        "FRAUD_RELOAD_INTERVAL_SECONDS": "0",
        "FRAUD_MAX_BATCH_SIZE": "100",
        # Live updates on, as served: each chain folds every transaction into its own state.
        "FRAUD_LIVE_UPDATES": "true",
    }
    with level4_chain(root, env) as started:
        yield started


@pytest.fixture(scope="module")
def twins(world: World) -> Iterator[Twins]:
    with (
        _chain_on_copy(world, "batched") as batched,
        _chain_on_copy(world, "single") as single,
    ):
        yield Twins(batched, single)


@st.composite
def transactions(draw: st.DrawFn, world: World, size: int) -> list[dict]:
    """``size`` valid transactions after the history: mostly known entities, some unseen."""
    known_customers = sorted(world.transactions["customer_id"].unique().tolist())
    known_terminals = sorted(world.transactions["terminal_id"].unique().tolist())
    customer = st.one_of(st.sampled_from(known_customers), st.integers(900_000, 900_100))
    terminal = st.one_of(st.sampled_from(known_terminals), st.integers(800_000, 800_100))
    start = world.last_time + pd.Timedelta(minutes=next(_CLOCK))
    batch = []
    for _ in range(size):
        offset = draw(st.integers(min_value=0, max_value=50), label="ms after the previous")
        start += pd.Timedelta(milliseconds=offset)
        batch.append(
            {
                "transaction_id": next(_IDS),
                "tx_datetime": start.isoformat(),
                "customer_id": draw(customer),
                "terminal_id": draw(terminal),
                "tx_amount": draw(
                    st.floats(min_value=0.0, max_value=20_000.0, allow_nan=False), label="amount"
                ),
            }
        )
    return batch


def _answers(chain: Chain, batch: list[dict]) -> list[dict]:
    answer = chain.transformer.predict({"instances": batch})
    assert answer.status_code == 200, answer.text
    return answer.json()["predictions"]


@pytest.mark.parametrize("size", [1, 10, 100])
def test_a_batch_answers_as_its_transactions_one_by_one(
    twins: Twins, world: World, size: int
) -> None:
    @settings(
        max_examples=6 if size == 100 else 12,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(batch=transactions(world, size))
    def check(batch: list[dict]) -> None:
        together = _answers(twins.batched, batch)
        alone = [_answers(twins.single, [transaction])[0] for transaction in batch]
        assert len(together) == len(batch)
        for joint, single in zip(together, alone, strict=True):
            assert {k: joint[k] for k in COMPARED} == {k: single[k] for k in COMPARED}
            # Above 32 rows XGBoost scores, below the compiled walk: the same float32 bits.
            assert joint["fraud_probability"] == single["fraud_probability"]
        assert [a["transaction_id"] for a in together] == [t["transaction_id"] for t in batch]

    check()
