"""Quiet pipeline output (issue #16): the terminal gets steps, gates and the summary; the log
file gets everything; ``FRAUD_VERBOSE=1`` shows everything again."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import console
from pipelines.run_local import failure_message, gates_from_log

#: What a kfp.local run writes, abridged: its own log lines, a step's echoed inputs, the gates.
KFP_LIKE = [
    "\x1b[36mExecuting task \x1b[1m'validate-data'\x1b[0m",
    "    Streamed logs:",
    '    {"inputs": {"parameterValues": {"params_yaml": "simulate:\\n  n_customers: 5000"}}}',
    "    GATE data validation: PASS — 1000 transactions, 56 days, fraud rate 0.8000%",
    "Executing task 'evaluate-model'",
    "    GATE registration: PASS — net_benefit: $2,500 > $2,000 (pass)",
    "    GATE champion comparison: LOSE — candidate AP 0.51 vs champion v1 AP 0.60",
    "    promotion deferred to the canary (promote_via=canary): run `make canary`",
]


#: Run in a fresh interpreter: the redirect works on file descriptors, which pytest's own
#: capture replaces, so the test looks at a real process's stdout the way a terminal would.
SCENARIO = r"""
import logging, subprocess, sys
from pathlib import Path
from pipelines import console

lines = sys.argv[3:]
logger = logging.getLogger("kfp-like")
logger.addHandler(logging.StreamHandler(sys.stderr))  # grabs sys.stderr before the redirect
logger.propagate = False
with console.output_to_log(Path(sys.argv[1]), console.choose_echo(sys.argv[2] == "verbose")):
    print(lines[0])
    logger.warning(lines[1])
    child = "import sys; sys.stdout.write(sys.argv[1]); sys.stderr.write('child stderr' + chr(10))"
    subprocess.run([sys.executable, "-c", child, "\n".join(lines[2:]) + "\n"], check=True)
print("after the block")
"""


def run_scenario(log: Path, mode: str) -> str:
    """The scenario's terminal output (stdout and stderr as a user sees them)."""
    result = subprocess.run(
        [sys.executable, "-c", SCENARIO, str(log), mode, *KFP_LIKE],
        check=True,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=Path(console.__file__).resolve().parents[1],
    )
    return result.stdout


def test_quiet_run_prints_steps_and_gates_and_logs_everything(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "pipeline.log"
    shown = run_scenario(log, "quiet").splitlines()
    assert shown == [
        "  … pipeline step validate-data",
        "GATE data validation: PASS — 1000 transactions, 56 days, fraud rate 0.8000%",
        "  … pipeline step evaluate-model",
        "GATE registration: PASS — net_benefit: $2,500 > $2,000 (pass)",
        "GATE champion comparison: LOSE — candidate AP 0.51 vs champion v1 AP 0.60",
        "promotion deferred to the canary (promote_via=canary): run `make canary`",
        "after the block",  # the terminal is the terminal again after the block
    ]
    logged = log.read_text()
    for line in [*KFP_LIKE, "child stderr"]:
        assert line in logged, line
    assert "after the block" not in logged


def test_verbose_run_prints_everything_and_still_logs_it(tmp_path: Path) -> None:
    log = tmp_path / "pipeline.log"
    shown = run_scenario(log, "verbose")
    for line in [*KFP_LIKE, "child stderr"]:
        assert line in shown and line in log.read_text(), line


@pytest.mark.parametrize(
    ("value", "verbose"),
    [(None, False), ("", False), ("0", False), ("false", False), ("1", True), ("yes", True)],
)
def test_verbose_switch(monkeypatch: pytest.MonkeyPatch, value: str | None, verbose: bool) -> None:
    if value is None:
        monkeypatch.delenv(console.VERBOSE_ENV, raising=False)
    else:
        monkeypatch.setenv(console.VERBOSE_ENV, value)
    assert console.verbose_requested() is verbose
    assert console.verbose_requested(flag=True) is True


def test_run_logged_appends_the_whole_output_and_echoes_the_chosen_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "retrain.log"
    child = "import sys; print(sys.argv[1])"
    code, output = console.run_logged(
        [sys.executable, "-c", child, "\n".join(KFP_LIKE)], tmp_path, log, console.quiet_echo
    )
    assert code == 0 and output.splitlines() == KFP_LIKE
    assert capsys.readouterr().out.count("GATE ") == 3
    assert all(line in log.read_text() for line in KFP_LIKE)


def test_progress_from_dvc_kfp_and_an_already_quiet_child() -> None:
    assert console.progress_line("Running stage 'featurize':") == "DVC stage featurize"
    assert console.progress_line(KFP_LIKE[0]) == "pipeline step validate-data"
    assert console.progress_line("  … pipeline step train-model") == "pipeline step train-model"
    assert console.progress_line("training set: 1000 rows") is None


def test_a_quiet_run_still_shows_why_it_stopped() -> None:
    dvc_error = "ERROR: failed to reproduce 'train': failed to run: python -m pipelines.run_local"
    assert console.quiet_echo(dvc_error + "\n") == dvc_error + "\n"
    stopped = "pipeline stopped: pipeline step validate-data failed: DataValidationError: x"
    assert console.quiet_echo(stopped + "\n") == stopped + "\n"
    assert console.quiet_echo("INFO: loading the model\n") is None


def test_gates_are_handed_on_as_records() -> None:
    gates = gates_from_log("\n".join(KFP_LIKE))
    assert [(g["gate"], g["verdict"]) for g in gates] == [
        ("data validation", "PASS"),
        ("registration", "PASS"),
        ("champion comparison", "LOSE"),
    ]
    assert gates[2]["detail"] == "candidate AP 0.51 vs champion v1 AP 0.60"


def test_last_error_line_names_the_exception_that_stopped_a_step() -> None:
    log = (
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1\n'
        "fraudops.registry.RegistryUnavailableError: MLflow registry at http://h:1 is unreachable\n"
        "\x1b[31mTask evaluate-model finished with status FAILURE\x1b[0m\n"
    )
    assert console.last_error_line(log) == (
        "RegistryUnavailableError: MLflow registry at http://h:1 is unreachable"
    )
    assert console.last_error_line("all good\n") is None


def test_a_failed_run_names_the_step_and_the_exception() -> None:
    log = "\n".join(
        [
            KFP_LIKE[0],
            "    data.validate.DataValidationError: tx_amount: must be >= 0, got -5.0",
            "Pipeline 'fraud-detector-training' finished with status FAILURE",
        ]
    )
    assert failure_message("Inner task failed: .", log) == (
        "pipeline step validate-data failed: DataValidationError: tx_amount: must be >= 0, got -5.0"
    )
    assert failure_message("Inner task failed: .", "no steps\n") == "Inner task failed: ."
