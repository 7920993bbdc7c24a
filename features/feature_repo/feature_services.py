"""Feast feature services: one per model, used by historical retrieval and online lookup."""

from feast import FeatureService

from features.definitions import FEATURE_SERVICE

if __package__:  # imported by the project's code as features.feature_repo.feature_services
    from .feature_views import customer_spending, terminal_risk
else:  # imported as a top-level module by `feast apply` run in this folder
    from feature_views import customer_spending, terminal_risk

fraud_detector_v1 = FeatureService(
    name=FEATURE_SERVICE,
    features=[customer_spending, terminal_risk],
    description="Entity aggregates of the fraud-detector model (features.definitions).",
)
