"""Promotion and rollback under concurrent load at level 4: old or new model, never an error.

A predictor polling its own copy of the registry every second sits behind a transformer;
four clients score through the chain while the alias moves to a challenger and back.
The new model is prepared by a worker process (``serving.model_worker``), so the swap is
one reference assignment in the server: every answer names the old or the new version.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Self

import pytest

from serving.sandbox import register_bundle, set_alias, train_bundle

from .conftest import Chain, Server, World, level4_chain


@dataclass
class SwapChain:
    """A level-4 chain whose predictor polls its own registry copy every second."""

    tracking_uri: str
    chain: Chain


@pytest.fixture(scope="module")
def swap_chain(world: World) -> Iterator[SwapChain]:
    root = world.root / "swap"
    root.mkdir()
    shutil.copy(world.root / "mlflow.db", root / "mlflow.db")
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    env = {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "FRAUD_FEAST_REPO": str(world.feature_repo),
        "FRAUD_RELOAD_INTERVAL_SECONDS": "1",
    }
    with level4_chain(root, env) as chain:
        yield SwapChain(tracking_uri, chain)


class Clients:
    """Threads scoring one transaction after another through a server until stopped."""

    def __init__(self, server: Server, body: dict, n: int = 4) -> None:
        self.server, self.body = server, body
        self.stop = threading.Event()
        self.versions: dict[int, list[str]] = defaultdict(list)
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._run) for _ in range(n)]

    def _run(self) -> None:
        while not self.stop.is_set():
            answer = self.server.predict(self.body)
            if answer.status_code != 200:
                self.failures.append(f"{answer.status_code} {answer.text[:200]}")
                continue
            versions = {p["model_version"] for p in answer.json()["predictions"]}
            self.versions[threading.get_ident()].append(",".join(sorted(versions)))

    def latest(self) -> set[str]:
        """The version each client saw last."""
        return {seen[-1] for seen in self.versions.values() if seen}

    def __enter__(self) -> Self:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def wait_until_served(clients: Clients, version: str, timeout_s: float = 180) -> None:
    """Until every client's latest answer came from ``version`` (the worker takes seconds)."""
    deadline = time.monotonic() + timeout_s
    while clients.latest() != {version} and time.monotonic() < deadline:
        time.sleep(0.2)
    assert clients.latest() == {version}, f"still served: {clients.latest()}"


def switches(versions: list[str]) -> list[str]:
    """The versions in the order a client saw them, repeats collapsed."""
    return [v for i, v in enumerate(versions) if i == 0 or versions[i - 1] != v]


def test_promotion_and_rollback_under_load_answer_old_or_new_never_an_error(
    swap_chain: SwapChain, world: World
) -> None:
    challenger = train_bundle(world.transactions, n_estimators=40, max_depth=5, seed=11)
    new = register_bundle(challenger, swap_chain.tracking_uri, world.root / "mlartifacts")
    body = {"instances": [world.transaction(tx_amount=250.0)]}
    with Clients(swap_chain.chain.transformer, body) as clients:
        wait_until_served(clients, "1")
        set_alias(swap_chain.tracking_uri, new)  # promotion
        wait_until_served(clients, new)
        set_alias(swap_chain.tracking_uri, "1")  # rollback
        wait_until_served(clients, "1")
    assert clients.failures == []
    for versions in clients.versions.values():
        # Every answer from one model; each client saw the old, the new, the old again.
        assert set(versions) <= {"1", new}
        assert switches(versions) == ["1", new, "1"]
    # The worker prepared both models: the server's own thread only swapped them.
    log = swap_chain.chain.predictor.log_text()
    assert f"version {new} prepared in a worker process" in log
    assert "version 1 prepared in a worker process" in log
