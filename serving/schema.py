"""The ONE request model, built from ``data.schema``: L1/L2 and the transformer all use it.

A transaction is validated field by field against ``FIELD_RULES`` (types strict: ``"12"``
is not an amount, ``true`` is not an id; no NaN/inf; ranges from the rules), unknown fields
are refused, and the batch size is bounded (``FRAUD_MAX_BATCH_SIZE``). A failure becomes an
:class:`~serving.errors.InvalidRequest` naming each field, its rule and the value received.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any, Final

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
    create_model,
)
from pydantic_core import PydanticCustomError

from data.schema import (
    FIELD_RULES,
    REQUEST_COLUMNS,
    TRANSACTION_DTYPES,
    TX_DATETIME,
)
from serving.errors import InvalidRequest

#: ids are int64 in storage, but a JSON API promises only what every JSON client (and
#: JSON Schema tooling) round-trips exactly: integers up to 2**53 - 1.
MAX_JSON_ID: Final = 2**53 - 1
#: A transaction time outside this range is a clock or parsing error, not a purchase.
MIN_TX_DATETIME: Final = datetime(2000, 1, 1)
MAX_TX_DATETIME: Final = datetime(2100, 1, 1)
#: Errors listed in the message (all of them are in ``details``).
_MESSAGE_ERRORS: Final = 5

EXAMPLE_TRANSACTION: Final[dict[str, Any]] = {
    "transaction_id": 9000001,
    "tx_datetime": "2026-05-02T14:03:27",
    "customer_id": 42,
    "terminal_id": 1337,
    "tx_amount": 57.16,
}


def parse_tx_datetime(value: object) -> datetime:
    """An ISO 8601 string as naive UTC (aware times are converted), within the sane range."""
    if not isinstance(value, str):
        raise PydanticCustomError(
            "datetime_type", "must be an ISO 8601 date-time string, e.g. 2026-05-02T14:03:27"
        )
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError(
            "datetime_parsing", "must be an ISO 8601 date-time, e.g. 2026-05-02T14:03:27"
        ) from None
    # The range applies to the time as written (the year 20xx the schema's pattern states),
    # before an offset moves it across midnight of 2000-01-01.
    if not MIN_TX_DATETIME <= moment.replace(tzinfo=None) < MAX_TX_DATETIME:
        raise PydanticCustomError(
            "datetime_range",
            "must be between {low} and {high}",
            {"low": MIN_TX_DATETIME.date().isoformat(), "high": MAX_TX_DATETIME.date().isoformat()},
        )
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


TxDateTime = Annotated[
    datetime,
    PlainValidator(parse_tx_datetime),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            # The year range, as JSON Schema can say it: 2000..2099.
            "pattern": "^20[0-9]{2}-",
            "description": "ISO 8601; naive = UTC; between 2000-01-01 and 2100-01-01",
        }
    ),
]


def integral(value: object) -> object:
    """JSON Schema counts 42.0 as an integer: accept it as 42; 42.5, "42" and true stay errors."""
    if type(value) is float and value.is_integer() and abs(value) <= MAX_JSON_ID:
        return int(value)
    return value


def _field(column: str) -> tuple[Any, Any]:
    """The pydantic type and constraints of one request column, from its dtype and FieldRule."""
    rule, dtype = FIELD_RULES[column], TRANSACTION_DTYPES[column]
    example = EXAMPLE_TRANSACTION[column]
    if dtype.startswith("datetime"):
        return TxDateTime, Field(examples=[example])
    if dtype.startswith("int"):
        high = MAX_JSON_ID if rule.max_value is None else min(int(rule.max_value), MAX_JSON_ID)
        low = None if rule.min_value is None else int(rule.min_value)
        return Annotated[int, BeforeValidator(integral)], Field(
            strict=True, ge=low, le=high, examples=[example]
        )
    if dtype.startswith("float"):
        return float, Field(
            strict=True,
            allow_inf_nan=False,
            ge=rule.min_value,
            le=rule.max_value,
            examples=[example],
        )
    raise TypeError(f"{column}: no request type for dtype {dtype}")


# Typed as Any: unpacked into create_model, a precisely typed dict could (for the checker)
# hold its reserved __config__/__doc__ keys.
_TRANSACTION_FIELDS: dict[str, Any] = {column: _field(column) for column in REQUEST_COLUMNS}
#: One raw transaction as a client sends it (the fields of ``data.schema.REQUEST_COLUMNS``).
Transaction: type[BaseModel] = create_model(
    "Transaction",
    __config__=ConfigDict(extra="forbid"),
    __doc__="A raw card transaction to score (data.schema.REQUEST_COLUMNS).",
    **_TRANSACTION_FIELDS,
)


@lru_cache(maxsize=8)
def predict_request_model(max_batch_size: int) -> type[BaseModel]:
    """``{"instances": [Transaction, ...]}`` holding 1..max_batch_size transactions."""
    return create_model(
        "PredictRequest",
        __config__=ConfigDict(
            extra="forbid",
            json_schema_extra={"examples": [{"instances": [EXAMPLE_TRANSACTION]}]},
        ),
        __doc__="KServe v1 body: the transactions to score.",
        instances=(
            list[Transaction],
            Field(min_length=1, max_length=max_batch_size),
        ),
    )


class Prediction(BaseModel):
    """The answer for one transaction."""

    request_id: str
    transaction_id: int
    fraud_probability: float = Field(ge=0, le=1)
    decision: str = Field(description="APPROVE / REVIEW / DECLINE (the model's thresholds)")
    model_version: str
    unknown_customer: bool = Field(description="no feature row for the customer: defaults used")
    unknown_terminal: bool = Field(description="no feature row for the terminal: defaults used")


class PredictResponse(BaseModel):
    """KServe v1 answer: one prediction per transaction, in request order."""

    predictions: list[Prediction]
    model_version: str
    request_id: str


class ErrorResponse(BaseModel):
    """Every 4xx/5xx body: the message names the field and the rule."""

    error: str
    details: list[dict[str, Any]] = []


def _field_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "body"


def _rule(error: Mapping[str, Any]) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    rules = {
        "missing": "required field is missing",
        "extra_forbidden": f"unknown field (allowed: {', '.join(REQUEST_COLUMNS)})",
        "int_type": "must be an integer",
        "float_type": "must be a number",
        "finite_number": "must be a finite number (no NaN or infinity)",
        "list_type": "must be a list of transactions",
        "model_type": "must be a JSON object",
        "dict_type": "must be a JSON object",
    }
    if kind in rules:
        return rules[kind]
    if kind == "greater_than_equal":
        return f"must be >= {ctx['ge']}"
    if kind == "less_than_equal":
        return f"must be <= {ctx['le']}"
    if kind == "too_short":
        return f"must hold at least {ctx.get('min_length', 1)} transaction"
    if kind == "too_long":
        return f"must hold at most {ctx.get('max_length')} transactions (FRAUD_MAX_BATCH_SIZE)"
    return str(error["msg"])


def _got(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def invalid_request(
    errors: Sequence[Mapping[str, Any]], prefix: tuple[Any, ...] = ()
) -> InvalidRequest:
    """An :class:`InvalidRequest` listing every broken rule of pydantic ``errors()``."""
    details = []
    for error in errors:
        detail = {"field": _field_path(prefix + tuple(error["loc"])), "rule": _rule(error)}
        if error["type"] != "missing":
            detail["got"] = _got(error.get("input"))
        details.append(detail)
    shown = [
        f"{d['field']}: {d['rule']}" + (f", got {d['got']}" if "got" in d else "")
        for d in details[:_MESSAGE_ERRORS]
    ]
    more = len(details) - len(shown)
    message = "; ".join(shown) + (f" (and {more} more)" if more > 0 else "")
    return InvalidRequest(message, details)


def validate_transactions(payload: Any, max_batch_size: int) -> list[BaseModel]:
    """The transactions of a ``{"instances": [...]}`` body, or :class:`InvalidRequest`."""
    if not isinstance(payload, dict):
        raise InvalidRequest(
            f"body: must be a JSON object with an 'instances' list, got {_got(payload)}",
            [{"field": "body", "rule": "must be a JSON object", "got": _got(payload)}],
        )
    try:
        request = predict_request_model(max_batch_size).model_validate(payload)
    except ValidationError as exc:
        raise invalid_request(exc.errors(include_url=False)) from None
    # A model made by create_model: the checker cannot know its fields.
    return list(request.instances)  # type: ignore[attr-defined]


def transaction_json(transaction: BaseModel) -> dict[str, Any]:
    """A validated transaction as JSON-ready values (time as ISO 8601, naive UTC)."""
    row = transaction.model_dump()
    row[TX_DATETIME] = row[TX_DATETIME].isoformat()
    return row
