"""``python -m bench [NAME ...]`` (``make bench``): run the benchmarks and print the ratios.

Exits 1 when a benchmark misses its target, so a regression is visible in CI logs, while
the test suite itself never asserts on timings.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
from pathlib import Path

import bench


def available() -> list[str]:
    """Benchmark names, from the ``bench_<name>.py`` modules in this package."""
    return sorted(
        info.name.removeprefix("bench_")
        for info in pkgutil.iter_modules([str(Path(bench.__file__).parent)])
        if info.name.startswith("bench_")
    )


def run(name: str) -> dict:
    """Import ``bench.bench_<name>`` and call its ``bench_<name>()``."""
    module = importlib.import_module(f"bench.bench_{name}")
    return getattr(module, f"bench_{name}")()


def main(argv: list[str] | None = None) -> int:
    """Run the chosen (default: all) benchmarks; print each result and a summary line."""
    names = available()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"one of: {', '.join(names)}")
    parser.add_argument("--json", type=Path, help="also write all results to this file")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(names))
    if unknown:
        parser.error(f"NAME: unknown benchmark {', '.join(unknown)} (one of: {', '.join(names)})")
    results = []
    for name in args.names or names:
        print(f"==> bench {name}", flush=True)
        result = run(name)
        results.append(result)
        print(json.dumps(result, indent=2, default=str), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    failed = [r["name"] for r in results if not r.get("passed", False)]
    print(
        f"\n{len(results) - len(failed)} of {len(results)} benchmarks met their targets"
        + (f"; missed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
