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


def is_current(image: str = DEFAULT_IMAGE) -> bool:
    """Whether the committed YAML is exactly what the code compiles to now (says which)."""
    import tempfile

    committed = compiled_pipeline_path()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = compile_pipeline(Path(tmp) / "pipeline.yaml", image).read_text()
    if committed.exists() and committed.read_text() == fresh:
        print(f"{committed}: up to date")
        return True
    print(
        f"{committed}: stale — run `python -m pipelines.compile` and commit the result",
        file=sys.stderr,
    )
    return False


def main(argv: list[str] | None = None) -> int:
    """CLI: compile to the committed path (or ``--out``)."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.compile", description=__doc__)
    parser.add_argument("--image", default=DEFAULT_IMAGE, help="training image for every step")
    parser.add_argument("--out", type=Path, help="default: pipelines/compiled/…yaml")
    parser.add_argument(
        "--check",
        action="store_true",
        help="compile to a temp file and exit 1 if the committed YAML differs (CI)",
    )
    args = parser.parse_args(argv)
    if args.check:
        return 0 if is_current(args.image) else 1
    out = compile_pipeline(args.out or compiled_pipeline_path(), args.image)
    print(f"compiled {out} (image {args.image})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
