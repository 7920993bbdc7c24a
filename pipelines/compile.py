"""Compile the pipeline to its committed IR YAML: ``python -m pipelines.compile [--image …]``.

The committed file is what a cluster runs and what ``kfp.local`` runs here; a test
recompiles with the default image and fails if the committed file is stale. CI compiles a
deployable copy with ``--image <registry>/fraud-mlops-train@sha256:…``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kfp import compiler

from fraudops.config import project_root
from pipelines.pipeline import DEFAULT_IMAGE, build_pipeline


def compiled_pipeline_path() -> Path:
    """Where the committed pipeline IR lives."""
    return project_root() / "pipelines" / "compiled" / "fraud_training_pipeline.yaml"


def compile_pipeline(out: Path, image: str = DEFAULT_IMAGE) -> Path:
    """Write the pipeline IR for ``image`` to ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(image), str(out))
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI: compile to the committed path (or ``--out``)."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.compile", description=__doc__)
    parser.add_argument("--image", default=DEFAULT_IMAGE, help="training image for every step")
    parser.add_argument("--out", type=Path, help="default: pipelines/compiled/…yaml")
    args = parser.parse_args(argv)
    out = compile_pipeline(args.out or compiled_pipeline_path(), args.image)
    print(f"compiled {out} (image {args.image})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
