"""``python -m training.rollback``: move @champion back to the previous champion, one call."""

from __future__ import annotations

import argparse
import sys

from fraudops.bundle import MODEL_NAME
from training.cli import run_cli
from training.register import rollback


def main(argv: list[str] | None = None) -> int:
    """Roll the champion back and print what changed."""
    parser = argparse.ArgumentParser(prog="python -m training.rollback", description=__doc__)
    parser.add_argument("--model-name", default=MODEL_NAME)
    parser.add_argument("--tracking-uri", help="default: MLFLOW_TRACKING_URI or the local SQLite")
    parser.add_argument("--reason", default="manual rollback")
    args = parser.parse_args(argv)

    def rollback_champion() -> int:
        print(rollback(args.model_name, args.tracking_uri, reason=args.reason).describe())
        return 0

    return run_cli(rollback_champion)


if __name__ == "__main__":
    sys.exit(main())
