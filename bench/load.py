"""A fixed-rate (open-loop) load generator for loopback servers, bounded in time and requests.

Requests leave on a fixed schedule whatever the server does, each on a free keep-alive
connection (a new one when all are busy, up to ``MAX_CONNECTIONS``), and a request's
latency is counted from its *scheduled* send time: when the server falls behind, the
queueing counts (no coordinated omission). A request unanswered after ``timeout_s`` is an
error and its connection is dropped. Every run is bounded -- ``MAX_REQUESTS_PER_RUN``
requests, ``MAX_SECONDS_PER_RUN`` seconds of schedule -- and targets 127.0.0.1 only.

:func:`capacity` finds the highest rate a server sustains within a p99 budget with zero
errors: a geometric ladder of rates until a step fails, then bisection between the last
rate that passed and the first that failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeAlias

import numpy as np

from bench.bench_serving import Connection

#: One body for every request, or the body of request ``i`` (distinct transactions: a server
#: folding each transaction into its online state must not see the same one twice).
Body: TypeAlias = bytes | Callable[[int], bytes]

LOOPBACK = "127.0.0.1"
MAX_CONNECTIONS = 256
MAX_REQUESTS_PER_RUN = 30_000
MAX_SECONDS_PER_RUN = 120.0


@dataclass
class RunResult:
    """What one fixed-rate run measured."""

    rate: float
    seconds: float
    latencies_s: list[float] = field(default_factory=list)
    #: When each of ``latencies_s`` was scheduled, in seconds after the run's start.
    sent_at_s: list[float] = field(default_factory=list)
    errors: int = 0
    timeouts: int = 0
    elapsed_s: float = 0.0

    @property
    def requests(self) -> int:
        """Requests sent (answered, refused or timed out)."""
        return len(self.latencies_s) + self.timeouts

    def percentile_ms(self, q: float) -> float:
        """The ``q``-th percentile latency in ms (timed-out requests count as the timeout)."""
        if not self.latencies_s:
            return float("inf")
        return float(np.percentile(np.asarray(self.latencies_s) * 1000, q))

    def summary(self) -> dict[str, float]:
        """Rate asked and reached, p50/p99 and the error counts, for the JSON report."""
        return {
            "rate": round(self.rate, 1),
            "reached_rps": round(self.requests / self.elapsed_s, 1) if self.elapsed_s else 0.0,
            "requests": self.requests,
            "errors": self.errors,
            "timeouts": self.timeouts,
            "p50_ms": round(self.percentile_ms(50), 3),
            "p99_ms": round(self.percentile_ms(99), 3),
        }


class _Pool:
    """Idle keep-alive connections to one loopback port; opens more when all are busy."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[Connection] = []
        self.opened = 0

    def take(self) -> Connection | None:
        if self.idle:
            return self.idle.pop()
        if self.opened >= MAX_CONNECTIONS:
            return None
        self.opened += 1
        return Connection(self.port)

    def give_back(self, connection: Connection) -> None:
        self.idle.append(connection)

    def drop(self, connection: Connection) -> None:
        connection.close()
        self.opened -= 1

    def close(self) -> None:
        for connection in self.idle:
            connection.close()
        self.idle.clear()


async def fixed_rate(
    port: int,
    path: str,
    body: Body,
    rate: float,
    seconds: float,
    timeout_s: float = 2.0,
    during: Callable[[], asyncio.Future] | None = None,
) -> RunResult:
    """Send ``body`` to ``http://127.0.0.1:port/path`` at ``rate``/s for ``seconds``.

    ``during``, if given, is started with the load and awaited before the run ends (the
    run lasts at least ``seconds``, at most ``MAX_SECONDS_PER_RUN``): a promotion, say.
    """
    seconds = min(seconds, MAX_SECONDS_PER_RUN)
    total = min(int(rate * seconds), MAX_REQUESTS_PER_RUN)
    result = RunResult(rate, seconds)
    pool = _Pool(port)
    with _no_collections():
        await _send(pool, path, body, rate, total, timeout_s, during, result)
    pool.close()
    return result


@contextlib.contextmanager
def _no_collections() -> Iterator[None]:
    """No garbage collection in this process while it keeps the schedule.

    The driver has imported the training stack (~300 000 objects): one full collection
    takes ~160 ms here, more on a busy machine, and during a run it stalls the sending
    loop -- counted as the servers' latency (a lone 300-344 ms request near the end of
    swap windows). A run is bounded (MAX_REQUESTS_PER_RUN): its garbage waits until it ends.
    """
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


async def _send(
    pool: _Pool,
    path: str,
    body: Body,
    rate: float,
    total: int,
    timeout_s: float,
    during: Callable[[], asyncio.Future] | None,
    result: RunResult,
) -> None:
    """The schedule of :func:`fixed_rate`: ``total`` requests at ``rate``/s (and ``during``)."""

    async def one(scheduled: float, payload: bytes) -> None:
        connection = pool.take()
        if connection is None:  # every connection busy: the server is far behind
            result.errors += 1
            return
        try:
            status = await asyncio.wait_for(connection.post(path, payload), timeout_s)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            # Timed out or a broken answer: the connection's state is unknown, drop it.
            pool.drop(connection)
            result.timeouts += 1
            return
        pool.give_back(connection)
        result.latencies_s.append(time.perf_counter() - scheduled)
        result.sent_at_s.append(scheduled - start)
        result.errors += status != 200

    start = time.perf_counter() + 0.05
    side = asyncio.ensure_future(during()) if during is not None else None
    tasks: list[asyncio.Task] = []
    deadline = start + MAX_SECONDS_PER_RUN
    i = 0
    while i < total or (side is not None and not side.done() and time.perf_counter() < deadline):
        scheduled = start + i / rate
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        payload = body(i) if callable(body) else body
        tasks.append(asyncio.create_task(one(scheduled, payload)))
        i += 1
        if i >= MAX_REQUESTS_PER_RUN:
            break
    await asyncio.gather(*tasks)
    result.elapsed_s = time.perf_counter() - start
    if side is not None:
        if not side.done():
            side.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await side


def run_fixed_rate(port: int, path: str, body: Body, rate: float, seconds: float) -> RunResult:
    """:func:`fixed_rate` in its own event loop."""
    return asyncio.run(fixed_rate(port, path, body, rate, seconds))


@dataclass
class CapacitySearch:
    """How :func:`capacity` searches: the ladder, the budget, the time per step."""

    p99_budget_ms: float = 50.0
    start_rate: float = 50.0
    factor: float = 1.4
    max_rate: float = 3000.0
    step_seconds: float = 6.0
    bisections: int = 2
    pause_s: float = 1.5  # lets a server that fell behind drain before the next step

    def passes(self, result: RunResult) -> bool:
        """Zero errors and timeouts, p99 within the budget."""
        return (
            result.errors == 0
            and result.timeouts == 0
            and result.percentile_ms(99) <= self.p99_budget_ms
        )


def capacity(port: int, path: str, body: Body, search: CapacitySearch) -> dict:
    """The highest fixed rate with p99 within budget and zero errors, and every step run."""
    steps: list[dict] = []

    def step(rate: float) -> bool:
        result = run_fixed_rate(port, path, body, rate, search.step_seconds)
        ok = search.passes(result)
        steps.append(result.summary() | {"passed": ok})
        time.sleep(search.pause_s)
        return ok

    best, failed = 0.0, None
    rate = search.start_rate
    while rate <= search.max_rate:
        if not step(rate):
            failed = rate
            break
        best = rate
        rate *= search.factor
    if failed is not None and best > 0:
        low, high = best, failed
        for _ in range(search.bisections):
            middle = (low + high) / 2
            if step(middle):
                low = middle
            else:
                high = middle
        best = low
    return {"capacity_rps": round(best, 1), "first_failed_rps": failed, "steps": steps}
