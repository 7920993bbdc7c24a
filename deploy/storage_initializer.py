"""KServe's storage initializer as a process of its own: ``STORAGE_URI`` -> a folder.

``python -m deploy.storage_initializer URI DIR`` runs what KServe's storage-initializer
container runs before a model server starts (``kserve_storage.Storage.download``), so the
rehearsal fetches the model with KServe's own code. It is a process of its own, as on a
cluster (an init container): kserve_storage downloads S3 objects with a ``fork``-started
``multiprocessing.Pool``, and forking the rehearsal's process -- which runs the object
store's and the Pushgateway's server threads -- risks a child blocked forever on a lock
some thread held at the fork. Exit 1 with one line naming the URI when the download fails.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """CLI: download ``URI`` into ``DIR``; 0 on success, 1 with one line otherwise."""
    parser = argparse.ArgumentParser(
        prog="python -m deploy.storage_initializer", description=__doc__.splitlines()[0]
    )
    parser.add_argument("uri", help="the STORAGE_URI (s3://..., gs://..., file://...)")
    parser.add_argument("out_dir", help="where the files go (KServe: /mnt/models)")
    args = parser.parse_args(argv)
    from kserve_storage import Storage

    try:
        Storage.download(args.uri, args.out_dir)
    except Exception as exc:  # noqa: BLE001 -- kserve_storage raises plain Exception types
        first = str(exc).strip().splitlines()
        print(f"error: {args.uri}: {first[0] if first else type(exc).__name__}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
