"""Benchmarks: each ``bench/bench_<name>.py`` exposes ``bench_<name>() -> dict``.

A result always carries ``name`` and ``passed`` and reports its figures as ratios against a
baseline measured in the same run (or against the target), never as timed test assertions.
The other modules are their helpers; ``bench.workspace`` (a throw-away copy of the project)
is shared with the end-to-end tests, the one other place that needs it.
"""
