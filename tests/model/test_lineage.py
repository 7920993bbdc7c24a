"""Lineage facts a model carries: DVC data hash, params hash, git commit."""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

from fraudops.config import Params
from tests.model.synthetic import small_params
from training.tracking import dvc_data_hash, git_commit, params_hash


def write_validated(root: Path, content: bytes = b"transactions") -> Path:
    path = root / "data" / "validated" / "transactions.parquet"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    return path


def test_data_hash_is_read_from_dvc_lock(tmp_path: Path) -> None:
    write_validated(tmp_path)
    lock = {
        "schema": "2.0",
        "stages": {
            "validate": {
                "cmd": "python -m data.validate",
                "outs": [
                    {"path": "data/validated/report.json", "md5": "0" * 32, "size": 1},
                    {"path": "data/validated/transactions.parquet", "md5": "a" * 32, "size": 9},
                ],
            }
        },
    }
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    assert dvc_data_hash(tmp_path) == "a" * 32


def test_data_hash_of_a_tracked_directory(tmp_path: Path) -> None:
    write_validated(tmp_path)
    lock = {
        "stages": {"validate": {"outs": [{"path": "data/validated", "md5": "b" * 32 + ".dir"}]}}
    }
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    assert dvc_data_hash(tmp_path) == "b" * 32 + ".dir"


def test_data_hash_falls_back_to_the_file_md5(tmp_path: Path) -> None:
    write_validated(tmp_path, b"some parquet bytes")
    assert dvc_data_hash(tmp_path) == hashlib.md5(b"some parquet bytes").hexdigest()


def test_data_hash_unknown_without_data(tmp_path: Path) -> None:
    assert dvc_data_hash(tmp_path) == "unknown"


def test_params_hash_changes_with_any_param() -> None:
    base = small_params()
    assert params_hash(base) == params_hash(small_params())
    assert params_hash(base) != params_hash(small_params(train={"seed": 8}))
    assert params_hash(base) != params_hash(Params())


def test_git_commit_outside_a_checkout_is_unknown(tmp_path: Path) -> None:
    assert git_commit(tmp_path) == "unknown"
