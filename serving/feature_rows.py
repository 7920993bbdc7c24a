"""Model-ready feature rows on the wire: what the predictor and the explainer accept.

The transformer sends ``{"instances": [[...], ...], "feature_names": [...]}``: rows in the
model's order *and* the names of that order, so the receiving model checks the order by
name instead of trusting a position. A human (or the L3-alone demo) may instead send rows
as objects keyed by feature name. ``null`` is a missing value (XGBoost's native NaN);
anything else that is not a finite number is refused with the field named.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serving.errors import InvalidRequest

#: Keys a feature-row body may carry besides ``instances``.
_OPTIONAL_KEYS = ("feature_names", "transactions")
_FLOAT32_MAX = float(np.finfo(np.float32).max)
#: JSON numbers a row may hold (bool is refused: it is not a number here), besides null.
_NUMBER_TYPES = (int, float)


@dataclass(frozen=True)
class FeatureRows:
    """Validated rows: the float32 matrix in the model's order, plus optional context."""

    matrix: np.ndarray
    transactions: list[dict[str, Any]] = field(default_factory=list)


def _reject(field_name: str, rule: str, got: Any = None) -> InvalidRequest:
    detail = {"field": field_name, "rule": rule}
    text = f"{field_name}: {rule}"
    if got is not None:
        shown = repr(got) if len(repr(got)) <= 60 else repr(got)[:57] + "..."
        detail["got"] = shown
        text += f", got {shown}"
    return InvalidRequest(text, [detail])


def _number(value: Any, where: str) -> float:
    # bool is an int subclass, and a string that looks numeric is still a type error.
    if value is None:
        return float("nan")
    if type(value) not in _NUMBER_TYPES:
        raise _reject(where, "must be a number or null (missing)", value)
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float64
        number = float("inf")
    if not np.isfinite(number) or abs(number) > _FLOAT32_MAX:
        raise _reject(where, "must be a finite number within float32 range", value)
    return number


def _row_values(row: Any, i: int, names: tuple[str, ...]) -> list[float]:
    if isinstance(row, dict):
        unknown = [k for k in row if k not in names]
        if unknown:
            raise _reject(f"instances[{i}].{unknown[0]}", "not a model feature", row[unknown[0]])
        missing = [n for n in names if n not in row]
        if missing:
            raise _reject(
                f"instances[{i}].{missing[0]}", "required feature is missing (null = missing value)"
            )
        return [_number(row[n], f"instances[{i}].{n}") for n in names]
    if isinstance(row, list):
        if len(row) != len(names):
            raise _reject(
                f"instances[{i}]", f"must hold {len(names)} values in feature_names order", len(row)
            )
        return [_number(v, f"instances[{i}][{j}]") for j, v in enumerate(row)]
    raise _reject(
        f"instances[{i}]",
        "must be a list of feature values or an object keyed by feature name",
        row,
    )


def _listed_matrix(instances: list[Any], width: int) -> np.ndarray | None:
    """The float32 matrix of well-formed positional rows, checked in one pass; else ``None``.

    The transformer's rows take this path: a type and range test per value in one loop and
    one array conversion -- no per-value call, and no array arithmetic, which costs more
    than the whole test for the one-row requests of fraud scoring. Anything it does not
    accept goes through :func:`_row_values`, which names the field.
    """
    top = _FLOAT32_MAX
    for row in instances:
        if type(row) is not list or len(row) != width:
            return None
        for value in row:
            # NaN and inf fail the range test; so does an int beyond float32 (compared exactly).
            if value is not None and (type(value) not in _NUMBER_TYPES or not -top <= value <= top):
                return None
    return np.array(instances, dtype=np.float32)  # None -> NaN, the missing value


def parse_feature_rows(
    payload: Any, feature_names: tuple[str, ...], max_batch_size: int
) -> FeatureRows:
    """Validate a v1 feature-row body against the model's features; the float32 matrix."""
    if not isinstance(payload, dict):
        raise _reject("body", "must be a JSON object with an 'instances' list", payload)
    extra = [k for k in payload if k != "instances" and k not in _OPTIONAL_KEYS]
    if extra:
        raise _reject(extra[0], f"unknown field (allowed: instances, {', '.join(_OPTIONAL_KEYS)})")
    instances = payload.get("instances")
    if not isinstance(instances, list):
        raise _reject("instances", "required: a list of feature rows", instances)
    if not 1 <= len(instances) <= max_batch_size:
        raise _reject(
            "instances",
            f"must hold 1 to {max_batch_size} rows (FRAUD_MAX_BATCH_SIZE)",
            len(instances),
        )
    sent_names = payload.get("feature_names")
    if sent_names is not None and (
        not isinstance(sent_names, list) or tuple(sent_names) != tuple(feature_names)
    ):
        raise _reject(
            "feature_names",
            f"must be the model's features in its order: {', '.join(feature_names)}",
            sent_names,
        )
    matrix = _listed_matrix(instances, len(feature_names))
    if matrix is None:  # rows keyed by name, or something to refuse: value by value
        rows = [_row_values(row, i, feature_names) for i, row in enumerate(instances)]
        matrix = np.ascontiguousarray(np.asarray(rows, dtype=np.float32))
    transactions = payload.get("transactions") or []
    if transactions and (not isinstance(transactions, list) or len(transactions) != len(instances)):
        raise _reject("transactions", "must be a list with one object per instance")
    if any(not isinstance(t, dict) for t in transactions):
        raise _reject("transactions", "each entry must be an object")
    return FeatureRows(matrix, transactions)


def parse_feature_tensor(
    array: np.ndarray, feature_names: tuple[str, ...], max_batch_size: int
) -> np.ndarray:
    """A v2 input tensor as the float32 matrix (shape ``[n, len(feature_names)]``, no inf)."""
    if array.ndim != 2 or array.shape[1] != len(feature_names):
        raise _reject(
            "inputs[0].shape",
            f"must be [n, {len(feature_names)}] in the model's feature order",
            list(array.shape),
        )
    if not 1 <= array.shape[0] <= max_batch_size:
        raise _reject("inputs[0].shape", f"must hold 1 to {max_batch_size} rows", list(array.shape))
    matrix = np.ascontiguousarray(array, dtype=np.float32)
    if np.isinf(matrix).any():
        raise _reject("inputs[0].data", "must be finite numbers (NaN = missing)")
    return matrix
