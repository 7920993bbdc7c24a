"""Feast feature views: the customer and terminal aggregates of ``features.definitions``.

TTL is 0 (rows never expire), on purpose: a row is valid until the entity's next
transaction, however long that takes. Offline, Feast's point-in-time join then picks the
latest row with ``event_timestamp <= t`` whatever its age, and online the latest
materialised row is served whatever its age -- the same row, so offline training and
online serving agree. Any finite TTL would turn an idle-but-known entity into "unknown"
offline while the online store (which does not expire rows) still served it: skew.
"""

from datetime import timedelta

from feast import FeatureView, Field
from feast.types import Float64, Int64

from data.schema import CUSTOMER_ID, TERMINAL_ID
from features.definitions import (
    CUSTOMER_MEAN_AMOUNT,
    CUSTOMER_TX_COUNT,
    CUSTOMER_VIEW,
    TERMINAL_RISK,
    TERMINAL_TX_COUNT,
    TERMINAL_VIEW,
)

if __package__:  # imported by the project's code as features.feature_repo.feature_views
    from .entities import customer, terminal
    from .sources import customer_features_source, terminal_features_source
else:  # imported as a top-level module by `feast apply` run in this folder
    from entities import customer, terminal
    from sources import customer_features_source, terminal_features_source

NO_EXPIRY = timedelta(0)

customer_spending = FeatureView(
    name=CUSTOMER_VIEW,
    entities=[customer],
    ttl=NO_EXPIRY,
    # The join key is declared so apply never has to read the source to infer it.
    schema=[Field(name=CUSTOMER_ID, dtype=Int64)]
    + [Field(name=name, dtype=Int64) for name in CUSTOMER_TX_COUNT]
    + [Field(name=name, dtype=Float64) for name in CUSTOMER_MEAN_AMOUNT],
    source=customer_features_source,
    online=True,
    description="Customer transaction counts and mean amounts over 1/7/30 days.",
    tags={"team": "fraud"},
)

terminal_risk = FeatureView(
    name=TERMINAL_VIEW,
    entities=[terminal],
    ttl=NO_EXPIRY,
    schema=[Field(name=TERMINAL_ID, dtype=Int64)]
    + [Field(name=name, dtype=Int64) for name in TERMINAL_TX_COUNT]
    + [Field(name=name, dtype=Float64) for name in TERMINAL_RISK],
    source=terminal_features_source,
    online=True,
    description="Terminal transaction counts and fraud share (labels delayed) over 1/7/30 days.",
    tags={"team": "fraud"},
)
