"""The acquire stage: simulated or ingested raw data, live traffic, atomic writes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from data.acquire import main
from data.files import atomic_path, write_parquet_atomic
from data.simulate import simulate_transactions
from fraudops.config import load_params
from fraudops.paths import Paths


def test_simulated_raw_data(project: Paths, small_transactions: pd.DataFrame) -> None:
    assert main(["--no-progress"]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(project.raw_transactions), small_transactions)


def test_source_file_overrides_params(
    project: Paths, small_transactions: pd.DataFrame, tmp_path: Path
) -> None:
    mine = small_transactions.head(100).rename(columns=str.upper)
    mine.to_csv(tmp_path / "mine.csv", index=False)
    assert main(["--source", str(tmp_path / "mine.csv")]) == 0
    raw = pd.read_parquet(project.raw_transactions)
    pd.testing.assert_frame_equal(raw, small_transactions.head(100))


def test_bad_source_exits_1_and_keeps_existing_raw(
    project: Paths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--no-progress"]) == 0
    before = project.raw_transactions.read_bytes()
    (tmp_path / "broken.csv").write_text("TRANSACTION_ID,TX_DATETIME\n1,2026-01-01\n")
    assert main(["--source", str(tmp_path / "broken.csv")]) == 1
    err = capsys.readouterr().err.strip()
    assert "customer_id: required column is missing" in err and "\n" not in err
    assert project.raw_transactions.read_bytes() == before


def test_next_days_writes_live_traffic_after_raw(
    project: Paths, small_transactions: pd.DataFrame, tmp_path: Path
) -> None:
    assert main(["--no-progress"]) == 0
    out = tmp_path / "live.parquet"
    args = ["--no-progress", "next-days", "--days", "3", "--drift", "night_shift", "--out"]
    assert main([*args, str(out)]) == 0
    live = pd.read_parquet(out)
    assert live["transaction_id"].min() == small_transactions["transaction_id"].max() + 1
    first_day = small_transactions["tx_datetime"].max().normalize() + pd.Timedelta(days=1)
    assert live["tx_datetime"].min().normalize() == first_day
    assert live["tx_datetime"].dt.normalize().nunique() == 3
    # Night shift was applied: more night transactions than the history has.
    night = (live["tx_datetime"].dt.hour < 6).mean()
    assert night > (small_transactions["tx_datetime"].dt.hour < 6).mean() + 0.1


def test_next_days_default_output_without_drift_matches_longer_history(project: Paths) -> None:
    assert main(["--no-progress"]) == 0
    assert main(["--no-progress", "next-days", "--days", "2"]) == 0
    (batch,) = sorted(project.live_dir.glob("*.parquet"))
    live = pd.read_parquet(batch)
    assert batch.name == f"{live.tx_datetime.min():%Y%m%d}-{live.tx_datetime.max():%Y%m%d}.parquet"
    params = load_params().simulate
    longer = simulate_transactions(params.model_copy(update={"n_days": params.n_days + 2}))
    pd.testing.assert_frame_equal(
        live,
        longer[longer["transaction_id"] >= live["transaction_id"].min()].reset_index(drop=True),
    )


def test_second_live_batch_continues_after_the_first_and_validation_reads_all(
    project: Paths,
) -> None:
    from data.validate import run as validate_run

    assert main(["--no-progress"]) == 0
    assert main(["--no-progress", "next-days", "--days", "2"]) == 0
    assert main(["--no-progress", "next-days", "--days", "3"]) == 0
    first, second = (pd.read_parquet(p) for p in sorted(project.live_dir.glob("*.parquet")))
    assert second["tx_datetime"].min() > first["tx_datetime"].max()
    assert second["transaction_id"].min() == first["transaction_id"].max() + 1
    report = validate_run(project.root)
    raw = pd.read_parquet(project.raw_transactions)
    assert report.rows == len(raw) + len(first) + len(second)
    assert len(pd.read_parquet(project.validated_transactions)) == report.rows


def test_atomic_write_leaves_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out" / "file.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half-writ")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in target.parent.iterdir()] == ["file.txt"]


def test_write_parquet_atomic_round_trip(tmp_path: Path, small_transactions: pd.DataFrame) -> None:
    path = write_parquet_atomic(small_transactions, tmp_path / "a" / "t.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(path), small_transactions)


def test_set_source_points_params_at_a_file_and_back(project: Paths, tmp_path: Path) -> None:
    params = project.root / "params.yaml"
    params.write_text("# header\ndata:\n  # where from\n  source: simulate\nsimulate:\n  seed: 1\n")
    csv = tmp_path / "mine.csv"
    csv.write_text("x\n")
    assert main(["set-source", str(csv)]) == 0
    text = params.read_text()
    assert f'source: "{csv}"' in text and "# where from" in text and "seed: 1" in text
    assert yaml.safe_load(params.read_text())["data"]["source"] == str(csv)
    assert main(["set-source", "simulate"]) == 0
    assert 'source: "simulate"' in params.read_text()


def test_set_source_rejects_a_missing_file(project: Paths, capsys) -> None:
    assert main(["set-source", "nope/missing.csv"]) == 1
    assert "data.source:" in capsys.readouterr().err
