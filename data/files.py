"""Atomic file writes: a stage's output is either the old file or the complete new one.

A crash or a failed check half-way never leaves a truncated parquet behind for DVC to
hash or for the next stage to read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path``.

    The temporary file lives in the same directory so the final ``os.replace`` is atomic;
    on an exception it is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_parquet_atomic(df: pd.DataFrame, path: Path) -> Path:
    """Write ``df`` (without its index) to ``path`` as parquet, atomically."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return Path(path)


def write_json_atomic(payload: object, path: Path) -> Path:
    """Write ``payload`` as indented JSON to ``path``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
    return Path(path)


def live_batches(live_dir: Path) -> list[Path]:
    """The live-traffic batches appended by retraining, oldest first (names sort by date)."""
    return sorted(Path(live_dir).glob("*.parquet")) if Path(live_dir).is_dir() else []


def read_history(raw: Path, live_dir: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """The whole transaction history: the raw data followed by every live batch.

    Read as stored (no coercion), so validation sees exactly what was written.
    """
    frames = [pd.read_parquet(path, columns=columns) for path in [raw, *live_batches(live_dir)]]
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
