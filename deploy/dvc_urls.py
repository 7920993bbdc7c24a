"""Where the pipeline's inputs are in the DVC remote: ``python -m deploy.dvc_urls``.

A Kubeflow run (and the rehearsal's containers) read the validated transactions and the
two feature tables straight from the DVC remote on S3, by the content-addressed URL DVC
stores each version at: the run reads exactly the data version ``dvc.lock`` names.

::

    python -m deploy.dvc_urls --github-output     # transactions=s3://…/files/md5/…

Prints ``name=url`` per input (and appends them to $GITHUB_OUTPUT with --github-output).
Exit 1 with one line when DVC cannot say (no remote configured, file not tracked).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from fraudops.config import project_root

#: Pipeline input -> the DVC-tracked file it reads.
PIPELINE_INPUTS = {
    "transactions": "data/validated/transactions.parquet",
    "customer_features": "data/features/customer_features.parquet",
    "terminal_features": "data/features/terminal_features.parquet",
}


def remote_urls(
    root: Path, remote: str | None = None, config: dict[str, Any] | None = None
) -> dict[str, str]:
    """The remote URL of every pipeline input (``remote``: default remote when None)."""
    import dvc.api

    return {
        name: dvc.api.get_url(path, repo=str(root), remote=remote, config=config)
        for name, path in PIPELINE_INPUTS.items()
    }


def main(argv: list[str] | None = None) -> int:
    """CLI: print (and optionally export) the inputs' URLs in the DVC remote."""
    parser = argparse.ArgumentParser(
        prog="python -m deploy.dvc_urls", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--remote", default=None, help="DVC remote (default: the default one)")
    parser.add_argument("--github-output", action="store_true", help="append to $GITHUB_OUTPUT")
    args = parser.parse_args(argv)
    from dvc.exceptions import DvcException

    try:
        urls = remote_urls(project_root(), args.remote)
    except DvcException as exc:
        print(f"error: dvc: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    lines = [f"{name}={url}" for name, url in urls.items()]
    print("\n".join(lines))
    output = os.environ.get("GITHUB_OUTPUT")
    if args.github_output and output:
        with open(output, "a") as handle:
            handle.writelines(line + "\n" for line in lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
