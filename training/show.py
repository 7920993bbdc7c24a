"""``python -m training.show``: the current champion, its metrics, lineage and recent history."""

from __future__ import annotations

import argparse
import sys

from fraudops.bundle import MODEL_NAME, load_registered_bundle
from training.cli import run_cli
from training.register import CANDIDATE, champion_history, current_version
from training.run import SUMMARY_METRICS

#: The run summary's metrics, less the alert count (a champion line stays one line).
SHOWN_METRICS = tuple(key for key in SUMMARY_METRICS if key != "alerts")


def describe_champion(
    model_name: str = MODEL_NAME, tracking_uri: str | None = None, history: int = 5
) -> str:
    """A few lines: champion version, run, thresholds, test metrics, lineage, last moves."""
    bundle = load_registered_bundle("champion", model_name, tracking_uri)
    meta = bundle.metadata
    metrics = meta.get("metrics", {})
    lines = [
        f"{model_name}@champion = version {bundle.model_version} (run {bundle.run_id})",
        f"  @candidate = version {current_version(CANDIDATE, model_name, tracking_uri) or '-'}",
        (
            f"  thresholds: review >= {bundle.thresholds.review:.4f}, "
            f"decline >= {bundle.thresholds.decline:.4f}"
        ),
        f"  test window {meta.get('windows', {}).get('test', '?')}: "
        + ", ".join(
            f"{key} {metrics[key]:,.4g}" if key != "net_benefit" else f"{key} ${metrics[key]:,.0f}"
            for key in SHOWN_METRICS
            if key in metrics
        ),
        (
            f"  lineage: git {meta.get('git_commit', 'unknown')}, "
            f"data {meta.get('data_hash', 'unknown')}, params {meta.get('params_hash', 'unknown')}"
        ),
    ]
    events = champion_history(model_name, tracking_uri)[-history:]
    if events:
        lines.append("  recent champion moves:")
        lines += [
            f"    {e['time']} {e['event']} v{e['previous'] or '-'} -> v{e['version']} "
            f"by {e['actor']}: {e['reason']}"
            for e in events
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the champion summary."""
    parser = argparse.ArgumentParser(prog="python -m training.show", description=__doc__)
    parser.add_argument("--model-name", default=MODEL_NAME)
    parser.add_argument("--tracking-uri", help="default: MLFLOW_TRACKING_URI or the local SQLite")
    args = parser.parse_args(argv)

    def show() -> int:
        print(describe_champion(args.model_name, args.tracking_uri))
        return 0

    return run_cli(show)


if __name__ == "__main__":
    sys.exit(main())
