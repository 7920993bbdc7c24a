"""A request's transactions with their assembled features: what every serving stage passes on.

Apart from :mod:`serving.lookup` (which builds batches from the Feast online store) so that
the model servers, which only read batches, do not import Feast: 2.7 s of the predictor's
4 s cold start went to importing it (issue #15's cold-start target is 5 s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from features.definitions import FEATURE_NAMES


@dataclass(frozen=True)
class FeatureBatch:
    """Validated transactions with their assembled features, row for row.

    The answer, the upstream body and the prediction log all read these arrays.
    """

    transactions: list[dict[str, Any]]
    values: np.ndarray  # float64, (n, len(FEATURE_NAMES)), FEATURE_NAMES order, NaN = missing
    unknown_customer: np.ndarray  # bool per transaction
    unknown_terminal: np.ndarray

    def matrix(self, feature_names: tuple[str, ...] = FEATURE_NAMES) -> np.ndarray:
        """C-contiguous float32 rows in ``feature_names`` order (the model's input order)."""
        if tuple(feature_names) == FEATURE_NAMES:
            return np.ascontiguousarray(self.values, dtype=np.float32)
        missing = [name for name in feature_names if name not in FEATURE_NAMES]
        if missing:
            raise ValueError(
                f"{missing[0]}: the model needs a feature the transformer does not build"
            )
        columns = [FEATURE_NAMES.index(name) for name in feature_names]
        return np.ascontiguousarray(self.values[:, columns], dtype=np.float32)

    @classmethod
    def concat(cls, batches: list[FeatureBatch]) -> FeatureBatch:
        """Several requests' batches as one, in order (one upstream call for all)."""
        return cls(
            [t for b in batches for t in b.transactions],
            np.concatenate([b.values for b in batches]),
            np.concatenate([b.unknown_customer for b in batches]),
            np.concatenate([b.unknown_terminal for b in batches]),
        )

    def feature_rows(self) -> list[list[float | None]]:
        """Rows in FEATURE_NAMES order as JSON lists, ``None`` where a value is missing."""
        return [[None if math.isnan(v) else v for v in row] for row in self.values.tolist()]
