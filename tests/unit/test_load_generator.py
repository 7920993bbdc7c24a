"""The benchmarks' fixed-rate load generator: what it records of each request, and its phases."""

from __future__ import annotations

import asyncio
import gc

import pytest

from bench import load
from bench.load import LOOPBACK, fixed_rate
from bench.swap_load import _phases


async def _answer_ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A keep-alive HTTP server that answers every POST 200 with an empty JSON object."""
    try:
        while True:
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if not line:
                return
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()
    finally:
        writer.close()


def _run(rate: float, seconds: float, during=None):
    async def main():
        server = await asyncio.start_server(_answer_ok, LOOPBACK, 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await fixed_rate(port, "/x", b"{}", rate, seconds, during=during)

    return asyncio.run(main())


def test_every_answer_has_its_send_time_and_collection_is_back_on_after_the_run() -> None:
    result = _run(rate=200.0, seconds=0.5)
    assert result.requests == 100 and result.errors == 0 and result.timeouts == 0
    assert len(result.sent_at_s) == len(result.latencies_s) == 100
    # The schedule: request i leaves at i / rate after the start.
    assert sorted(round(s * 200) for s in result.sent_at_s) == list(range(100))
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_slow_requests_are_placed_in_the_phase_they_were_sent_in() -> None:
    result = _run(rate=100.0, seconds=0.4)
    result.latencies_s = [0.001] * len(result.latencies_s)
    late = min(range(len(result.sent_at_s)), key=lambda i: abs(result.sent_at_s[i] - 0.25))
    result.latencies_s[late] = 0.5
    phases = _phases(result, [("promoted", 0.2)])
    assert phases["after_start"]["max_ms"] == 1.0
    assert phases["after_promoted"]["max_ms"] == 500.0
    assert phases["after_start"]["requests"] + phases["after_promoted"]["requests"] == 40


def _record_dialled(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hosts the generator opens connections to, from now on."""
    dialled: list[str] = []
    open_connection = asyncio.open_connection

    async def recording(host, port, **kwargs):
        dialled.append(host)
        return await open_connection(host, port, **kwargs)

    monkeypatch.setattr(asyncio, "open_connection", recording)
    return dialled


def test_a_run_sends_at_most_its_bound_of_requests_to_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(load, "MAX_REQUESTS_PER_RUN", 30)  # shrunk: the test stays quick
    dialled = _record_dialled(monkeypatch)
    result = _run(rate=1000.0, seconds=60.0)  # asked for 60,000
    assert result.requests == 30
    assert dialled and set(dialled) == {LOOPBACK}


def test_a_run_stops_at_its_time_bound_even_while_its_side_task_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A run lasts while its side task (a promotion) runs -- but never past the bound.
    monkeypatch.setattr(load, "MAX_SECONDS_PER_RUN", 0.3)

    async def never_ends() -> None:
        await asyncio.Event().wait()

    result = _run(rate=100.0, seconds=60.0, during=never_ends)
    assert result.seconds == 0.3
    # 100/s for 0.3 s of schedule; unbounded, it would go on to MAX_REQUESTS_PER_RUN.
    assert 1 <= result.requests <= 31
