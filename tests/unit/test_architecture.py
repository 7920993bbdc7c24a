"""The contracts in pyproject.toml hold: imports go one way, no package has a cycle, one HTTP
client (httpx; aiohttp only on the transformer's measured hot path)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), "--no-cache"],
        check=False,  # the return code is asserted below, with the output
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout
    assert "One HTTP client: httpx" in result.stdout and "3 kept" in result.stdout
