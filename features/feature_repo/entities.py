"""Feast entities: whose history a feature row describes (join keys from the schema)."""

from feast import Entity, ValueType

from data.schema import CUSTOMER_ID, TERMINAL_ID
from features.definitions import CUSTOMER_ENTITY, TERMINAL_ENTITY

customer = Entity(
    name=CUSTOMER_ENTITY,
    join_keys=[CUSTOMER_ID],
    value_type=ValueType.INT64,
    description="A card holder; spending aggregates are kept per customer.",
)

terminal = Entity(
    name=TERMINAL_ENTITY,
    join_keys=[TERMINAL_ID],
    value_type=ValueType.INT64,
    description="A point-of-sale terminal; fraud risk aggregates are kept per terminal.",
)
