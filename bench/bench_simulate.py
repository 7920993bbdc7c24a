"""Benchmark: seconds the simulator needs per million transactions (target <= 20 s).

Also times an in-run baseline (building and time-sorting a 1M-row frame of random
columns with the schema's dtypes, the least any simulator must do) so the ratio says how
much the generative process costs on top, whatever the machine.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd

from data.schema import TRANSACTION_DTYPES
from data.simulate import simulate_transactions
from fraudops.config import SimulateParams

TARGET_SECONDS_PER_MILLION: float = 20.0
#: The handbook's world (5000 customers, 10000 terminals) makes ~9,800 transactions a day.
BENCH_PARAMS = SimulateParams(n_days=103)


def _baseline_seconds(n_rows: int, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    frame = pd.DataFrame(
        {
            column: rng.integers(0, 1_000_000, n_rows).astype(dtype)
            if dtype != "float64"
            else rng.random(n_rows)
            for column, dtype in TRANSACTION_DTYPES.items()
        }
    )
    frame.sort_values("tx_datetime", kind="stable", ignore_index=True)
    return time.perf_counter() - start


def bench_simulate(repeats: int = 2) -> dict[str, float | int | bool | str]:
    """Time ``simulate_transactions`` on ~1M transactions (best of ``repeats``)."""
    best, rows = float("inf"), 0
    for _ in range(repeats):
        start = time.perf_counter()
        rows = len(simulate_transactions(BENCH_PARAMS))
        best = min(best, time.perf_counter() - start)
    per_million = best * 1_000_000 / rows
    baseline = min(_baseline_seconds(rows) for _ in range(repeats))
    return {
        "name": "simulate",
        "rows": rows,
        "seconds": round(best, 3),
        "seconds_per_million_tx": round(per_million, 3),
        "target_seconds_per_million_tx": TARGET_SECONDS_PER_MILLION,
        "ratio_to_target": round(per_million / TARGET_SECONDS_PER_MILLION, 4),
        "baseline_seconds": round(baseline, 3),
        "ratio_to_baseline": round(best / baseline, 2),
        "passed": per_million <= TARGET_SECONDS_PER_MILLION,
    }


if __name__ == "__main__":
    print(json.dumps(bench_simulate(), indent=2))
