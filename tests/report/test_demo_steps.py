"""``make demo`` as a list of steps over one context; steps read the jobs' JSON, not stdout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data.files import write_json_atomic
from fraudops.paths import paths
from pipelines.retrain import retrain_summary_path
from pipelines.run_local import pipeline_summary_path
from tutorial import demo


class ScriptedDemo(demo.DemoContext):
    """A context whose commands are recorded, not run; ``on_command`` plays their effect."""

    def __init__(self, root: Path, on_command=None) -> None:
        super().__init__(root)
        self.commands: list[tuple[str, ...]] = []
        self.on_command = on_command

    def sh(self, *command: str, quiet: bool = False, progress: bool = False) -> str:
        self.commands.append(command)
        if self.on_command:
            self.on_command(command)
        return "console text the steps must not parse\n"


def test_steps_run_in_order_numbered_and_a_failure_names_the_step_and_cleans_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stopped = []

    def start(context: demo.DemoContext) -> str:
        context.cleanups.append(lambda: stopped.append("servers"))
        return "started"

    def broken(context: demo.DemoContext) -> str:
        raise demo.StepFailed("the registry is gone")

    steps = [demo.Step("Start", start), demo.Step("Break", broken), demo.Step("Never", start)]
    with pytest.raises(demo.StepFailed, match=r"^step 2 \(Break\) failed: the registry is gone$"):
        demo.run_demo(tmp_path, steps)
    printed = capsys.readouterr().out
    assert "[1] Start" in printed and "→ started" in printed and "[2] Break" in printed
    assert "[3] Never" not in printed
    assert stopped == ["servers"]


def test_the_story_is_ten_steps_with_their_functions() -> None:
    assert [step.action.__name__ for step in demo.STEPS] == [
        "environment",
        "data",
        "pipeline",
        "serve",
        "traffic",
        "drift",
        "retrain",
        "canary",
        "stop",
        "where",
    ]


def test_pipeline_step_shows_the_gates_and_summary_from_the_run_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(demo, "describe_champion", lambda **_: "fraud-detector@champion = v2\n…")
    summary_path = pipeline_summary_path(paths(tmp_path))

    def run_pipeline(command: tuple[str, ...]) -> None:
        if command[1:] == ("repro",):  # the pipeline ran: it writes its summary
            write_json_atomic(
                {
                    "started_at": demo._now(),
                    "gate_lines": ["GATE registration: PASS — f1: 0.5 > 0.2 (pass)"],
                    "summary": ["test window 2026-04-17..2026-04-30", "mlflow run: abc"],
                },
                summary_path,
            )

    assert demo.pipeline(ScriptedDemo(tmp_path, run_pipeline)) == "fraud-detector@champion = v2"
    printed = capsys.readouterr().out
    assert "  GATE registration: PASS" in printed and "  mlflow run: abc" in printed
    assert "console text" not in printed

    # A summary from an earlier run is not this run's: DVC reused every stage.
    old = json.loads(summary_path.read_text()) | {"started_at": "2000-01-01T00:00:00+00:00"}
    write_json_atomic(old, summary_path)
    demo.pipeline(ScriptedDemo(tmp_path))
    printed = capsys.readouterr().out
    assert "nothing changed: DVC reused every stage" in printed and "GATE" not in printed


def test_retrain_step_reads_the_retrain_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [
        "new data: none generated (--days 0): retrain on what data/live holds",
        "GATE champion comparison: WIN — candidate AP 0.61 vs champion v1 AP 0.60",
        "@champion: unchanged at v1; @candidate = v2",
        "next gates: deploy via canary",
    ]
    write_json_atomic(
        {"lines": lines, "promotion_deferred_to_canary": True},
        retrain_summary_path(paths(tmp_path)),
    )
    context = ScriptedDemo(tmp_path)
    assert demo.retrain(context) == "@champion: unchanged at v1; @candidate = v2"
    assert context.candidate_won is True
    assert "  GATE champion comparison: WIN" in capsys.readouterr().out
