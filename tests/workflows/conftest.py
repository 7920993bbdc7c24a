"""Shared paths for the workflow tests."""

from __future__ import annotations

from pathlib import Path

from fraudops.config import project_root

WORKFLOWS = project_root() / ".github" / "workflows"
FIXTURES = Path(__file__).parent / "fixtures"
