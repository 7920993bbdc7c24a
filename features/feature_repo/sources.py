"""Feast offline sources: the Parquet tables written by ``python -m features.featurize``.

Paths are relative to this feature repo (Feast resolves them against the repo path), so the
project works from any working directory and when copied elsewhere. They are derived from
``fraudops.paths`` -- the one place file locations come from.
"""

import os
from pathlib import Path

from feast import FileSource

from features.definitions import EVENT_TIMESTAMP
from fraudops.paths import paths

# Any root will do: only the layout relative to the feature repo matters here.
_LAYOUT = paths(Path("/project"))


def _relative_to_repo(target: Path) -> str:
    return Path(os.path.relpath(target, _LAYOUT.feature_repo)).as_posix()


customer_features_source = FileSource(
    name="customer_features",
    path=_relative_to_repo(_LAYOUT.customer_features),
    timestamp_field=EVENT_TIMESTAMP,
    description="Per customer and transaction: spending aggregates including that transaction.",
)

terminal_features_source = FileSource(
    name="terminal_features",
    path=_relative_to_repo(_LAYOUT.terminal_features),
    timestamp_field=EVENT_TIMESTAMP,
    description="Per terminal and transaction: volume and label-delayed fraud risk.",
)
