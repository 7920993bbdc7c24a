"""The deployment levels' catalogue: which server processes make up ``level1`` .. ``level5``.

L1 and L2 are one FastAPI process each; L3 is the KServe predictor; L4 puts the transformer
(validation + Feast online features) in front of the predictor; L5 adds the SHAP explainer.
"""

from __future__ import annotations

from pathlib import Path

from fraudops.settings import MODEL_NAME
from serving.processes import Component, LaunchError

LEVELS = ("level1", "level2", "level3", "level4", "level5")


def kserve_ready_path(model_name: str) -> str:
    """KServe's model readiness route (200 once the model is loaded)."""
    return f"/v1/models/{model_name}"


def level_components(
    level: str,
    model_name: str = MODEL_NAME,
    port: int = 8080,
    predictor_port: int = 8081,
    explainer_port: int = 8082,
    model_dir: Path | None = None,
) -> list[Component]:
    """The processes of a level, in start order (the entry point on ``port`` last)."""
    ready = kserve_ready_path(model_name)
    if level == "level1":
        env = {"FRAUD_MODEL_DIR": str(model_dir)} if model_dir else {}
        return [
            Component(
                "level1",
                "serving.level1",
                ("--host", "127.0.0.1", "--port", str(port)),
                port,
                "/readyz",
                env,
            )
        ]
    if level == "level2":
        return [
            Component(
                "level2",
                "serving.level2",
                ("--host", "127.0.0.1", "--port", str(port)),
                port,
                "/readyz",
            )
        ]
    if level == "level3":
        return [
            Component("predictor", "serving.predictor", ("--http_port", str(port)), port, ready)
        ]
    predictor = Component(
        "predictor",
        "serving.predictor",
        ("--http_port", str(predictor_port)),
        predictor_port,
        ready,
    )
    transformer_args = ["--http_port", str(port), "--predictor_host", f"127.0.0.1:{predictor_port}"]
    components = [predictor]
    if level == "level5":
        components.append(
            Component(
                "explainer",
                "serving.explainer",
                ("--http_port", str(explainer_port)),
                explainer_port,
                ready,
            )
        )
        transformer_args += ["--explainer_host", f"127.0.0.1:{explainer_port}"]
    elif level != "level4":
        raise LaunchError(f"level: must be one of {', '.join(LEVELS)}, got {level!r}")
    components.append(
        Component("transformer", "serving.transformer", tuple(transformer_args), port, ready)
    )
    return components
