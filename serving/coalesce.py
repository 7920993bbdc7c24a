"""Group commit for the live updates: concurrent requests share one state session.

With live updates on, every request opens the state's write lock, reads its entities'
histories and Feast rows, writes the rows back and commits -- fixed costs per *request*
(statements, commits, a thread hop) that dominate a single transaction's own work. The
:class:`UpdateCoalescer` runs one lookup at a time in a worker thread; requests that arrive
meanwhile wait together and go as one :meth:`OnlineFeatureLookup.features_of_many` pass.
Idle, a request goes at once (no added wait); under load the batches grow with the load,
so the cost per transaction falls as the rate rises.

Read-your-writes holds: a request's features come back only once the pass that applied it
has committed, so its answer never leaves before its update is durable. Requests keep their
arrival order within and across passes, so the state is the one sequential requests leave.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel

from serving.lookup import FeatureBatch, OnlineFeatureLookup


@dataclass
class _Waiting:
    transactions: list[BaseModel]
    answer: asyncio.Future = field(repr=False)


class UpdateCoalescer:
    """:meth:`OnlineFeatureLookup.features` for an event loop, concurrent requests in one pass.

    ``max_transactions`` bounds one pass (a request is never split; one larger than the
    bound goes alone).
    """

    def __init__(self, lookup: OnlineFeatureLookup, max_transactions: int = 256) -> None:
        self.lookup = lookup
        self.max_transactions = max_transactions
        self._waiting: list[_Waiting] = []
        self._drainer: asyncio.Task | None = None

    async def features(self, transactions: list[BaseModel]) -> FeatureBatch:
        """The request's feature batch, once the pass that applied it has committed."""
        waiting = _Waiting(transactions, asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain())
        return await waiting.answer

    def _next_pass(self) -> list[_Waiting]:
        taken, size = 0, 0
        for waiting in self._waiting:
            size += len(waiting.transactions)
            if taken and size > self.max_transactions:
                break
            taken += 1
        group, self._waiting = self._waiting[:taken], self._waiting[taken:]
        return group

    async def _drain(self) -> None:
        try:
            while self._waiting:
                group = self._next_pass()
                try:
                    # Blocking I/O (SQLite, Redis): off the event loop, one thread hop a pass.
                    answers: Sequence[FeatureBatch | Exception] = await asyncio.to_thread(
                        self.lookup.features_of_many, [w.transactions for w in group]
                    )
                except asyncio.CancelledError:
                    self._waiting[:0] = group  # cancelled with the rest below
                    raise
                except Exception as exc:  # noqa: BLE001 -- a failed pass fails each of its requests
                    answers = [exc] * len(group)
                for waiting, answer in zip(group, answers, strict=True):
                    if waiting.answer.done():  # the caller went away (cancelled)
                        continue
                    if isinstance(answer, BaseException):
                        waiting.answer.set_exception(answer)
                    else:
                        waiting.answer.set_result(answer)
        finally:
            self._drainer = None
            for waiting in self._waiting:  # only left when the loop is shutting down
                if not waiting.answer.done():
                    waiting.answer.cancel()
            self._waiting = []
