"""The compiled-condition evaluator kfp.local uses for ``dsl.If`` branches."""

from __future__ import annotations

import pytest
from kfp.local.io import IOStore

from pipelines.local_conditions import evaluate_condition


@pytest.fixture
def store() -> IOStore:
    io_store = IOStore()
    io_store.put_task_output("evaluate-model", "gate_passed", True)
    io_store.put_task_output("evaluate-model", "promote_now", False)
    return io_store


def test_a_root_condition_reads_the_task_output(store: IOStore) -> None:
    gate = "inputs.parameter_values['pipelinechannel--evaluate-model-gate_passed'] == true"
    assert evaluate_condition(gate, store) is True
    promote = "inputs.parameter_values['pipelinechannel--evaluate-model-promote_now'] == true"
    assert evaluate_condition(promote, store) is False


def test_a_nested_condition_reads_the_branch_input() -> None:
    branch = IOStore()
    branch.put_parent_input("pipelinechannel--evaluate-model-promote_now", True)
    expr = "inputs.parameter_values['pipelinechannel--evaluate-model-promote_now'] == true"
    assert evaluate_condition(expr, branch) is True


def test_negation_and_conjunction(store: IOStore) -> None:
    expr = (
        "!(inputs.parameter_values['pipelinechannel--evaluate-model-promote_now'] == true) && "
        "inputs.parameter_values['pipelinechannel--evaluate-model-gate_passed'] == true"
    )
    assert evaluate_condition(expr, store) is True


def test_an_unknown_channel_is_an_error_not_a_silent_false(store: IOStore) -> None:
    with pytest.raises(ValueError, match="no-such-task"):
        evaluate_condition(
            "inputs.parameter_values['pipelinechannel--no-such-task-x'] == true", store
        )
