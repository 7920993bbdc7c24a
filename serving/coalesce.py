"""Group commit for the live updates: concurrent requests share one state session.

With live updates on, every request opens the state's write lock, reads its entities'
histories and Feast rows, writes the rows back and commits -- fixed costs per *request*
(statements, commits, a thread hop) that dominate a single transaction's own work. The
:class:`UpdateCoalescer` runs one lookup pass at a time; requests that arrive meanwhile
wait together and go as one :meth:`OnlineFeatureLookup.serve_many` pass. Idle, a
request goes at once (no added wait); under load the passes grow with the load, so the
cost per transaction falls as the rate rises.

Where a pass runs: against Redis (network round trips, socket timeouts) in a worker
thread, so the event loop stays free. Against the embedded SQLite store a pass is local
CPU work of a millisecond or two, and it runs on the event loop itself: in a thread it made
the loop wait for the GIL after every system call (a socket send, a poll) while the pass
computed -- at 400 requests/s on the 2-core machine the chain's p50 was 18 ms that way
and 6 ms on the loop. The price is that a pass waiting for SQLite's write lock (another
process writing the same file) holds the loop meanwhile.

A pass has two stages. It serves each request its rows, then writes the update (the
entities' new rows, the state's commit): meanwhile each request has sent its rows to the
predictor, so the write overlaps the predictor's work instead of adding to the answer's
latency (:meth:`UpdateCoalescer.served`). Read-your-writes holds: a request's answer waits
for the pass's commit too, so it never leaves before its update is durable, and a failed
write is its 503. Requests keep their arrival order within and across passes, so the state
is the one sequential requests leave.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import BaseModel

from serving.feature_batch import FeatureBatch
from serving.lookup import OnlineFeatureLookup, ServedRequests

T = TypeVar("T")


@dataclass
class _Waiting:
    transactions: list[BaseModel]
    #: the request's FeatureBatch, once its pass has served it
    answer: asyncio.Future = field(repr=False)
    #: done (None) once the pass's update has committed, or its error
    applied: asyncio.Future = field(repr=False)


class UpdateCoalescer:
    """:meth:`OnlineFeatureLookup.features` for an event loop, concurrent requests in one pass.

    ``max_transactions`` bounds one pass (a request is never split; one larger than the
    bound goes alone). ``in_loop``: run the passes on the event loop, not in a thread.
    """

    #: Loop turns a pass started on the loop waits while requests keep arriving (each turn
    #: lets requests already read from their sockets reach the queue).
    GATHER_TURNS = 4
    #: Loop turns between serving a pass and writing its update, on the loop: enough for
    #: the pass's requests to send their rows upstream (the handlers resume, the batcher
    #: of serving.upstream flushes, aiohttp writes), so the write overlaps the upstream's
    #: work. Turns with nothing to do cost microseconds.
    SEND_TURNS = 6

    def __init__(
        self, lookup: OnlineFeatureLookup, max_transactions: int = 256, in_loop: bool = False
    ) -> None:
        self.lookup = lookup
        self.max_transactions = max_transactions
        self.in_loop = in_loop
        self._waiting: list[_Waiting] = []
        self._drainer: asyncio.Task | None = None
        # Off the loop, one thread: a pass is served and applied on the same connection.
        self._thread = None if in_loop else ThreadPoolExecutor(1, "state-pass")

    async def served(self, transactions: list[BaseModel]) -> tuple[FeatureBatch, asyncio.Future]:
        """The request's feature batch as soon as its pass has served it, and a future done
        once the pass's update has committed (its exception if the write failed). The
        caller may send the batch on meanwhile; its answer must wait for the future."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(transactions, loop.create_future(), loop.create_future())
        self._waiting.append(waiting)
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain())
        return await waiting.answer, waiting.applied

    async def features(self, transactions: list[BaseModel]) -> FeatureBatch:
        """The request's feature batch, once the pass that applied it has committed."""
        batch, applied = await self.served(transactions)
        await applied
        return batch

    def _next_pass(self) -> list[_Waiting]:
        taken, size = 0, 0
        for waiting in self._waiting:
            size += len(waiting.transactions)
            if taken and size > self.max_transactions:
                break
            taken += 1
        group, self._waiting = self._waiting[:taken], self._waiting[taken:]
        return group

    async def _turns(self, turns: int, until_quiet: bool) -> None:
        """Yield the loop up to ``turns`` times (``until_quiet``: stop once nobody joined)."""
        for _ in range(turns):
            before = len(self._waiting)
            await asyncio.sleep(0)
            if until_quiet and len(self._waiting) == before:
                return

    async def _run(self, work: Callable[[], T]) -> T:
        if self._thread is None:
            return work()
        # Blocking network I/O (Redis) off the loop, one thread hop per stage. (Cancelled
        # while the thread serves -- only at shutdown --, that pass's session stays open
        # until the process ends: SQLite rolls it back then, Redis' entity locks expire.)
        return await asyncio.get_running_loop().run_in_executor(self._thread, work)

    async def _drain(self) -> None:
        try:
            while self._waiting:
                if self.in_loop:
                    await self._turns(self.GATHER_TURNS, until_quiet=True)
                group = self._next_pass()
                requests = [w.transactions for w in group]
                try:
                    served = await self._run(functools.partial(self.lookup.serve_many, requests))
                except asyncio.CancelledError:
                    self._waiting[:0] = group  # cancelled with the rest below
                    raise
                except Exception as exc:  # noqa: BLE001 -- a failed pass fails each of its requests
                    served = ServedRequests([exc] * len(group))  # type: ignore[list-item]
                await self._apply(group, served)
        finally:
            self._drainer = None
            for waiting in self._waiting:  # only left when the loop is shutting down
                for future in (waiting.answer, waiting.applied):
                    if not future.done():
                        future.cancel()
            self._waiting = []

    async def _apply(self, group: list[_Waiting], served: ServedRequests) -> None:
        """Hand out the pass's batches, let them go upstream, then write the update."""
        for waiting, answer in zip(group, served.answers, strict=True):
            if waiting.answer.done():  # the caller went away (cancelled)
                continue
            if isinstance(answer, BaseException):
                waiting.answer.set_exception(answer)
                waiting.applied.cancel()  # nobody waits for it
            else:
                waiting.answer.set_result(answer)
        error: BaseException | None = None
        try:
            if served.pending is not None:
                if self.in_loop:
                    await self._turns(self.SEND_TURNS, until_quiet=False)
                await self._run(served.apply)
        except asyncio.CancelledError:  # shutting down: roll the pass back where it runs
            if self._thread is None:
                served.discard()
            else:
                self._thread.submit(served.discard)
            raise
        except Exception as exc:  # noqa: BLE001 -- the write failed: each request's answer
            error = exc
        for waiting in group:
            if waiting.applied.done():
                continue
            if error is None:
                waiting.applied.set_result(None)
            else:
                waiting.applied.set_exception(error)
