"""Load a deployment's online store from the versioned data: ``python -m features.load_online``.

On a cluster nothing else fills it: the transformer's live updates continue from the state
this loads, and only move it with traffic. So the Job ``k8s/infra/feast/load-online-job.yaml``
(an Argo CD sync hook) runs this against the cluster's Feast config (registry on S3, Redis
online store) with the three tables the DVC remote holds for the released data version::

    python -m features.load_online --config /etc/feast/feature_store.yaml \\
        --transactions s3://…/md5/… --customer-features s3://… --terminal-features s3://…

It is a bootstrap, not a refresh: when the live state already holds transactions, the
traffic has moved it past any versioned data, and loading again would put every entity
back in time. Then it does nothing and says so (``--reload`` rebuilds it anyway, e.g. after
serving with ``FRAUD_LIVE_UPDATES=false``, where rows move only by this load).

Exit 0 loaded or already live, 1 with one line on bad input or an unreachable store.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from features.featurize import live_state_of, load_online
from features.store import feature_store
from fraudops.paths import Paths


@dataclass(frozen=True)
class VersionedTables:
    """Where the three versioned tables are: local paths or object-store URIs."""

    transactions: str
    customer_features: str
    terminal_features: str

    def placed(self, layout: Paths) -> dict[str, Path]:
        """Each table's path in ``layout``: where the Feast file sources look for it."""
        return {
            "transactions": layout.validated_transactions,
            "customer_features": layout.customer_features,
            "terminal_features": layout.terminal_features,
        }


def fetch(source: str, target: Path) -> None:
    """Copy one table (``s3://…``, ``file://…`` or a local path) to ``target``.

    pyarrow's filesystems read the object store with the standard AWS variables
    (``AWS_ENDPOINT_URL`` for MinIO), as the drift job reads the shipped prediction log.
    """
    from pyarrow import fs

    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        if "://" in source:
            fs.copy_files(source, str(target))
        else:
            shutil.copyfile(source, target)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{source}: cannot read the versioned table ({exc})") from None


def live_state_watermark(store) -> int | None:
    """The newest transaction the store's live state holds (None: never loaded)."""
    with live_state_of(store).session([], []) as session:
        return session.watermark_us()


def _require_lasting(store, config: Path) -> None:
    """Refuse a config whose registry or online store would land in the scratch folder."""
    online = store.config.online_store
    where = {
        "registry": str(store.config.registry.path),
        "online_store.path": str(getattr(online, "path", "") or ""),
    }
    for field, value in where.items():
        if value and "://" not in value and not Path(value).is_absolute():
            raise ValueError(
                f"--config {config}: {field} {value!r} is relative, so it would be loaded into "
                "a scratch folder and lost; give the deployment's config (registry on S3, "
                "Redis online store) or absolute paths"
            )


def load(config: Path, tables: VersionedTables, workdir: Path, reload: bool = False) -> str:
    """Load the store of ``config`` from ``tables`` unless its live state is already moving.

    The Feast file sources name the tables relative to the project's feature repo, so the
    tables are placed in that layout under ``workdir`` and the config is read from there.
    """
    layout = Paths(workdir)
    layout.feature_repo.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copyfile(config, layout.feature_repo / "feature_store.yaml")
    except OSError as exc:
        raise ValueError(f"--config {config}: cannot read the Feast config ({exc})") from None
    store = feature_store(layout.feature_repo)
    _require_lasting(store, config)
    newest = None if reload else live_state_watermark(store)
    if newest is not None:
        return (
            f"online store already live (its state's newest transaction is "
            f"{pd.Timestamp(newest * 1000).isoformat()}): not loaded again (--reload rebuilds it)"
        )
    placed = tables.placed(layout)
    for name, source in vars(tables).items():
        fetch(source, placed[name])
    until, seeded = load_online(
        store,
        pd.read_parquet(placed["customer_features"]),
        pd.read_parquet(placed["terminal_features"]),
        pd.read_parquet(placed["transactions"]),
    )
    return (
        f"online store {store.config.online_store.type} loaded: materialised until "
        f"{until.isoformat()}, live state seeded with {seeded} transactions"
    )


def main(argv: list[str] | None = None) -> int:
    """CLI: one line on stdout when loaded or already live; one line on stderr and 1 on error."""
    from redis.exceptions import RedisError

    parser = argparse.ArgumentParser(
        prog="python -m features.load_online", description=__doc__.splitlines()[0]
    )
    layout = Paths(Path.cwd())
    parser.add_argument("--config", type=Path, required=True, help="Feast feature_store.yaml")
    parser.add_argument("--transactions", default=str(layout.validated_transactions))
    parser.add_argument("--customer-features", default=str(layout.customer_features))
    parser.add_argument("--terminal-features", default=str(layout.terminal_features))
    parser.add_argument("--reload", action="store_true", help="load even when already live")
    args = parser.parse_args(argv)
    tables = VersionedTables(args.transactions, args.customer_features, args.terminal_features)
    # The tables only pass through: a scratch folder (an emptyDir in the Job's pod).
    with tempfile.TemporaryDirectory(prefix="load-online-") as workdir:
        try:
            print(load(args.config, tables, Path(workdir), args.reload))
        except (ValueError, FileNotFoundError, RedisError) as exc:
            print(f"load_online failed: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
