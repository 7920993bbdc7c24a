"""``python -m training.promote [--version N]``: move @champion to the candidate (or version N)."""

from __future__ import annotations

import argparse
import sys

from fraudops.bundle import MODEL_NAME
from training.cli import run_cli
from training.register import promote


def main(argv: list[str] | None = None) -> int:
    """Promote explicitly and print what changed."""
    parser = argparse.ArgumentParser(prog="python -m training.promote", description=__doc__)
    parser.add_argument("--version", help="registry version to promote (default: @candidate)")
    parser.add_argument("--model-name", default=MODEL_NAME)
    parser.add_argument("--tracking-uri", help="default: MLFLOW_TRACKING_URI or the local SQLite")
    parser.add_argument("--reason", default="manual promotion")
    args = parser.parse_args(argv)

    def promote_champion() -> int:
        change = promote(args.version, args.model_name, args.tracking_uri, reason=args.reason)
        print(change.describe())
        return 0

    return run_cli(promote_champion)


if __name__ == "__main__":
    sys.exit(main())
