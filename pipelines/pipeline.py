"""The Kubeflow training pipeline: the series' gated steps as one KFP v2 pipeline.

validate data → point-in-time training set → train → evaluate (+ MLflow run, registration
gate, champion comparison) → [gate passed] register ``@candidate`` → [candidate wins]
promote ``@champion``. The gates are ``dsl.If`` branches, so a losing candidate ends a
*successful* run with the later steps visibly skipped, while bad data or an unreachable
registry fails the run in the step that found it.

The same compiled YAML (``pipelines/compiled/fraud_training_pipeline.yaml``) runs on a
cluster (``python -m pipelines.submit``) and locally with ``kfp.local``
(``python -m pipelines.run_local``).
"""

# No ``from __future__ import annotations``: KFP reads the real annotation objects.
from kfp import dsl
from kfp.dsl import Artifact
from kfp.dsl.base_component import BaseComponent

from pipelines import components

PIPELINE_NAME = "fraud-detector-training"
#: The training image (pipelines/Dockerfile). CI compiles with the pushed digest instead.
DEFAULT_IMAGE = "ghcr.io/fraud-mlops/fraud-mlops-train:latest"


def _component(func, image: str) -> BaseComponent:
    # The image already has kfp and this project installed: no pip install at step start.
    return dsl.component(func, base_image=image, install_kfp_package=False)


def build_pipeline(image: str = DEFAULT_IMAGE) -> BaseComponent:
    """The pipeline with every step running in ``image``."""
    validate_data = _component(components.validate_data, image)
    build_training_set = _component(components.build_training_set, image)
    train_model = _component(components.train_model, image)
    evaluate_model = _component(components.evaluate_model, image)
    register_model = _component(components.register_model, image)
    promote_model = _component(components.promote_model, image)

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Fraud detector: validate → features → train → evaluate → register → promote",
    )
    def fraud_training_pipeline(
        transactions: str,
        customer_features: str,
        terminal_features: str,
        params_yaml: str,
        mlflow_tracking_uri: str = "",
        git_commit: str = "unknown",
        data_hash: str = "unknown",
        promote_via: str = "pipeline",
    ) -> Artifact:
        validated = validate_data(transactions=transactions, params_yaml=params_yaml)
        validated.set_display_name("1 validate data")
        features = build_training_set(
            validated=validated.outputs["validated"],
            customer_features=customer_features,
            terminal_features=terminal_features,
        )
        features.set_display_name("2 training set (point-in-time)")
        trained = train_model(
            training_set=features.outputs["training_set"],
            params_yaml=params_yaml,
            git_commit=git_commit,
            data_hash=data_hash,
        )
        trained.set_display_name("3 train")
        evaluated = evaluate_model(
            model=trained.outputs["model"],
            training_set=features.outputs["training_set"],
            params_yaml=params_yaml,
            mlflow_tracking_uri=mlflow_tracking_uri,
            promote_via=promote_via,
        )
        evaluated.set_display_name("4 evaluate vs champion")
        with dsl.If(evaluated.outputs["gate_passed"] == True, name="registration-gate"):
            registered = register_model(
                run_id=evaluated.outputs["run_id"],
                params_yaml=params_yaml,
                mlflow_tracking_uri=mlflow_tracking_uri,
            )
            registered.set_display_name("5 register @candidate")
            with dsl.If(evaluated.outputs["promote_now"] == True, name="champion-gate"):
                promoted = promote_model(
                    version=registered.output,
                    verdict=evaluated.outputs["verdict"],
                    params_yaml=params_yaml,
                    mlflow_tracking_uri=mlflow_tracking_uri,
                )
                promoted.set_display_name("6 promote @champion")
        return evaluated.outputs["evaluation"]

    return fraud_training_pipeline
