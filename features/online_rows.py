"""The feature service's rows in Feast's online store, read and written through its provider.

``FeatureStore.get_online_features`` re-reads the registry, type-checks and builds a
request context on every call (~4 ms for one transaction here), and
``FeatureStore.write_to_online_store`` goes DataFrame -> Arrow -> protos (~2 ms per view
for one row). The provider's ``online_read`` and ``online_write_batch`` -- the interface
every Feast online store implements, and what those two end in -- take entity keys and
``ValueProto`` values directly: tens of microseconds. The feature views stay the source of
truth: they are resolved once from the ``fraud_detector_v1`` service (the one
``features.store.online_entity_features`` reads), and each value is typed by its view's
own schema with Feast's own scalar conversion table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.type_map import PYTHON_SCALAR_VALUE_TYPE_TO_PROTO_VALUE

from features.definitions import (
    CUSTOMER_FEATURES,
    CUSTOMER_VIEW,
    FEATURE_SERVICE,
    TERMINAL_FEATURES,
    TERMINAL_VIEW,
)

_EPOCH = datetime(1970, 1, 1)
_ONE_US = timedelta(microseconds=1)

#: Each view's features in the order the serving code holds them.
VIEW_COLUMNS: dict[str, tuple[str, ...]] = {
    CUSTOMER_VIEW: CUSTOMER_FEATURES,
    TERMINAL_VIEW: TERMINAL_FEATURES,
}


class FeatureRepoIncomplete(RuntimeError):
    """The applied feature repo lacks a view the model needs (re-apply the definitions)."""


def stamp_us(moment: datetime) -> int:
    """A row's event timestamp as int64 µs since the epoch (naive = UTC), exactly."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return (moment - _EPOCH) // _ONE_US


class _View:
    """One feature view, resolved once: its object, join key, and how each value is typed."""

    def __init__(self, view, features: list[str], columns: tuple[str, ...]) -> None:
        self.view = view
        self.features = features
        self.columns = columns
        (entity,) = view.entity_columns  # each of these views has one entity
        self.join_key = entity.name
        self.key_field, self.key_convert, _ = PYTHON_SCALAR_VALUE_TYPE_TO_PROTO_VALUE[
            entity.dtype.to_value_type()
        ]
        types = {f.name: f.dtype.to_value_type() for f in view.features}
        missing = [c for c in columns if c not in types]
        if missing:
            raise FeatureRepoIncomplete(f"feature view {view.name}: feature {missing[0]} missing")
        # (proto field, conversion) per column: the table Feast's own ingestion converts with.
        self.typing = [PYTHON_SCALAR_VALUE_TYPE_TO_PROTO_VALUE[types[c]][:2] for c in columns]

    def entity_keys(self, ids: Sequence[int]) -> list:
        field, convert = self.key_field, self.key_convert
        return [
            EntityKey(join_keys=[self.join_key], entity_values=[Value(**{field: convert(i)})])
            for i in ids
        ]

    def values(self, row: Sequence[float]) -> dict:
        # NaN (a risk with no labelled transaction) is an empty value, as Feast writes it.
        return {
            name: Value() if math.isnan(v) else Value(**{field: convert(v)})
            for name, (field, convert), v in zip(self.columns, self.typing, row)
        }


class OnlineRows:
    """Reads and writes the customer and terminal rows of the feature service's views."""

    def __init__(self, store) -> None:
        self.store = store
        self.config = store.config
        self.provider = store._get_provider()
        #: How finely the store keeps a row's event timestamp, in µs: Feast's SQLite store
        #: keeps whole seconds (an integer epoch column), Redis a protobuf Timestamp (ns).
        self.stamp_precision_us = 1_000_000 if self.config.online_store.type == "sqlite" else 1
        service = store.get_feature_service(FEATURE_SERVICE)
        found = {
            p.name: (store.get_feature_view(p.name), [f.name for f in p.features])
            for p in service.feature_view_projections
        }
        self.views: dict[str, _View] = {}
        for name, columns in VIEW_COLUMNS.items():
            if name not in found:
                raise FeatureRepoIncomplete(
                    f"feature service {FEATURE_SERVICE}: view {name} missing"
                )
            view, features = found[name]
            self.views[name] = _View(view, features, columns)

    def read(self, view_name: str, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(values, stamps)`` aligned with ``ids``: float rows in the view's column order
        (NaN rows for ids without a row) and each row's event timestamp in µs (-1: none)."""
        view = self.views[view_name]
        # Each entity once, however often it comes in the request.
        unique = list(dict.fromkeys(ids))
        values = np.full((len(unique), len(view.columns)), np.nan)
        stamps = np.full(len(unique), -1, np.int64)
        found = (
            self.provider.online_read(
                self.config, view.view, view.entity_keys(unique), view.features
            )
            if unique
            else []
        )
        for i, (stamp, row) in enumerate(found):
            # An unseen id (no row, or Redis' empty values at time 0) stays a NaN row with
            # no stamp, which the features flag as unknown.
            seen = False
            for j, column in enumerate(view.columns):
                value = (row or {}).get(column)
                kind = value.WhichOneof("val") if value is not None else None
                if kind is not None:
                    values[i, j] = float(getattr(value, kind))
                    seen = True
            if seen and stamp is not None:
                stamps[i] = stamp_us(stamp)
        if len(unique) == len(ids):
            return values, stamps
        at = {entity: i for i, entity in enumerate(unique)}
        positions = [at[entity] for entity in ids]
        return values[positions], stamps[positions]

    def write(
        self, view_name: str, ids: Sequence[int], rows: Sequence[Sequence[float]], stamps_us
    ) -> None:
        """Write each entity's row (view column order) stamped ``stamps_us`` (µs, naive UTC)."""
        view = self.views[view_name]
        data = [
            (key, view.values(row), _EPOCH + int(stamp) * _ONE_US, None)
            for key, row, stamp in zip(view.entity_keys(ids), rows, stamps_us, strict=True)
        ]
        if data:
            self.provider.online_write_batch(self.config, view.view, data, None)
