"""Jobs 2 and 3 of the ML pipeline: did the gate promote a new champion, and where are its files?

::

    python -m deploy.champion --github-output                       # before training
    python -m deploy.champion --previous-version 6 --github-output  # after: promoted=?

Reads the registry (MLFLOW_TRACKING_URI) and prints, for ``<name>@<alias>``: the version,
its run, ``models:/`` URI and its **storage location**: the run's ``bundle/`` folder
(``model.ubj`` + ``bundle.json``), which KServe's storage initializer downloads to
``/mnt/models`` and the predictor loads (the STORAGE_URI the GitOps job writes into the
overlay). Not the MLflow model folder: the servers load the bundle, not an MLmodel.
With ``--previous-version`` it also says whether the alias moved (``promoted``): a
candidate that lost leaves it where it was, and the workflow skips deployment, green.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Any

from fraudops.registry import mlflow_client
from fraudops.settings import DEFAULT_ALIAS, ModelSettings


@dataclass(frozen=True)
class AliasTarget:
    """The model version an alias points at, and where its files are."""

    name: str
    alias: str
    version: str
    run_id: str
    storage_uri: str

    @property
    def model_uri(self) -> str:
        """The registry URI of this exact version."""
        return f"models:/{self.name}/{self.version}"


def bundle_storage_uri(client: Any, run_id: str) -> str:
    """Where the run's bundle lives in the artifact store: what the predictor must download."""
    # fraudops.bundle imports XGBoost: the other commands of this light CLI need none of it.
    from fraudops.bundle import BUNDLE_ARTIFACT_PATH

    artifact_root = client.get_run(run_id).info.artifact_uri.rstrip("/")
    return f"{artifact_root}/{BUNDLE_ARTIFACT_PATH}"


def resolve_alias(client: Any, name: str, alias: str) -> AliasTarget | None:
    """The version ``name@alias`` points at, or None when the alias (or model) does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    if not version.run_id:
        raise MlflowException(
            f"{name} version {version.version}: no training run, so no bundle to serve"
        )
    storage_uri = bundle_storage_uri(client, version.run_id)
    return AliasTarget(name, alias, str(version.version), version.run_id, storage_uri)


def promoted(current: AliasTarget | None, previous_version: str | None) -> bool:
    """Whether the alias now points at a different version than before training."""
    if current is None:
        return False
    return current.version != (previous_version or None)


def outputs(current: AliasTarget | None, previous_version: str | None) -> dict[str, str]:
    """The step outputs: version, model_uri, storage_uri, run_id, promoted."""
    values = {"promoted": "true" if promoted(current, previous_version) else "false"}
    if current is not None:
        values.update(
            version=current.version,
            model_uri=current.model_uri,
            storage_uri=current.storage_uri,
            run_id=current.run_id,
        )
    else:
        values.update(version="", model_uri="", storage_uri="", run_id="")
    return values


def main(argv: list[str] | None = None) -> int:
    """CLI: print the alias target (and the gate outcome); exit 1 if the registry fails."""
    parser = argparse.ArgumentParser(
        prog="python -m deploy.champion", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--name", default=ModelSettings().model_name)
    parser.add_argument("--alias", default=DEFAULT_ALIAS)
    parser.add_argument(
        "--previous-version",
        default=None,
        help="the alias's version before training (empty: there was none)",
    )
    parser.add_argument("--require", action="store_true", help="exit 1 when the alias is missing")
    parser.add_argument("--github-output", action="store_true", help="append to $GITHUB_OUTPUT")
    args = parser.parse_args(argv)

    from mlflow.exceptions import MlflowException

    try:
        current = resolve_alias(mlflow_client(check=False)[0], args.name, args.alias)
    except MlflowException as error:
        print(f"error: registry: {error.message}", file=sys.stderr)
        return 1
    if current is None:
        print(f"{args.name}@{args.alias}: no such alias")
        if args.require:
            return 1
    else:
        print(f"{args.name}@{args.alias}: version {current.version} at {current.storage_uri}")
    values = outputs(current, args.previous_version)
    if args.previous_version is not None:
        print(f"promoted: {values['promoted']} (before: {args.previous_version or 'none'})")
    output = os.environ.get("GITHUB_OUTPUT")
    if args.github_output and output:
        with open(output, "a") as handle:
            handle.writelines(f"{key}={value}\n" for key, value in values.items())
    return 0


if __name__ == "__main__":
    sys.exit(main())
