"""A condition evaluator for ``kfp.local`` that understands what the KFP compiler emits.

kfp 2.16's local orchestrator substitutes task outputs into the compiled condition text and
``eval``s it, but the compiled form is ``inputs.parameter_values['pipelinechannel--…'] ==
true`` — neither ``inputs`` nor ``true`` exist in Python, so every ``dsl.If`` evaluates to
False locally (and ``dsl.Else`` branches run regardless). Rather than keep a second,
local-only pipeline, we give the local orchestrator an evaluator for the compiled syntax;
the compiled YAML stays exactly what a cluster runs.
"""

from __future__ import annotations

import re
from typing import Any

_PARAMETER = re.compile(r"inputs\.parameter_values\['(pipelinechannel--[^']+)'\]")


def _channel_value(channel: str, io_store: Any) -> Any:
    """A channel is a parent-DAG input inside a branch, or a task output at the root."""
    try:
        return io_store.get_parent_input(channel)
    except ValueError:
        # Not an input of this branch: at the root DAG it is ``<task>-<output>``.
        task, _, output = channel.removeprefix("pipelinechannel--").rpartition("-")
        return io_store.get_task_output(task, output)


def evaluate_condition(condition: str, io_store: Any) -> bool:
    """Evaluate a compiled KFP condition against the values known to the local run."""
    values: dict[str, Any] = {}

    def bind(match: re.Match[str]) -> str:
        name = f"_v{len(values)}"
        values[name] = _channel_value(match.group(1), io_store)
        return name

    expression = _PARAMETER.sub(bind, condition)
    expression = re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", expression))
    expression = expression.replace("&&", " and ").replace("||", " or ")
    expression = re.sub(r"!(?!=)", " not ", expression)
    # Only the bound channel values are visible: the expression cannot reach anything else.
    return bool(eval(expression, {"__builtins__": {}}, values))


def install() -> None:
    """Make ``kfp.local`` use :func:`evaluate_condition` for ``dsl.If`` branches."""
    from kfp.local.orchestrator import enhanced_dag_orchestrator

    enhanced_dag_orchestrator.ConditionEvaluator.evaluate_condition = staticmethod(
        evaluate_condition
    )
