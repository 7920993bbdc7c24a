"""Quiet by default: a run's whole output goes to a log file, the terminal gets what matters.

``kfp.local`` echoes every component's inputs (the whole of ``params.yaml`` once per step)
and every library's chatter, so a local run wrote hundreds of lines where a person needs
three: which step is running, the gates, the summary table -- and where the rest is. The
functions here send everything to a log file under ``run/logs/`` and echo only those lines;
``FRAUD_VERBOSE=1`` (``make pipeline VERBOSE=1``) or ``--verbose`` echoes everything again.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from fraudops.settings import ConsoleSettings

#: The environment switch (``make ... VERBOSE=1`` sets it; read through ConsoleSettings).
VERBOSE_ENV = "FRAUD_VERBOSE"
#: A gate decision, as the pipeline's components print it.
GATE_PREFIXES = ("GATE ", "promotion deferred")
#: The one line a failing stage or CLI prints (DVC's errors, this project's CLIs): a quiet run
#: still shows why it stopped.
FAILURE_PREFIXES = ("ERROR: ", "pipeline stopped: ", "validation failed: ", "retrain stopped: ")

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_PROGRESS = re.compile(
    r"Running stage '(?P<stage>[^']+)'"
    r"|Executing task '(?P<task>[^']+)'"
    r"|… (?P<echoed>(?:DVC stage|pipeline step) \S+)"
)

#: How long the end of a run waits for the last lines of its output to reach the log.
READER_GRACE_SECONDS = 30.0
#: Chooses what of a line reaches the terminal: the text to print, or None to keep it quiet.
Echo = Callable[[str], str | None]


def verbose_requested(flag: bool = False) -> bool:
    """``--verbose`` or ``FRAUD_VERBOSE`` set to anything but empty/0/false/no."""
    value = ConsoleSettings().verbose.strip().lower()
    return flag or value not in ("", "0", "false", "no")


def plain(text: str) -> str:
    """``text`` without the ANSI colours kfp puts in its messages."""
    return _ANSI.sub("", text)


def progress_line(line: str) -> str | None:
    """``DVC stage validate`` / ``pipeline step train-model`` when ``line`` starts one.

    Also recognises such a line already echoed by a quiet run (``  … pipeline step x``),
    so a caller one process further up sees the same progress.
    """
    match = _PROGRESS.search(plain(line))
    if not match:
        return None
    if match.group("stage"):
        return f"DVC stage {match.group('stage')}"
    if match.group("task"):
        return f"pipeline step {match.group('task')}"
    return match.group("echoed")


def gate_line(line: str) -> str | None:
    """The gate decision in ``line`` (steps' logs arrive indented), else None."""
    text = plain(line).strip()
    return text if text.startswith(GATE_PREFIXES) else None


def quiet_echo(line: str) -> str | None:
    """What a quiet run shows of ``line``: step progress, gate decisions and failures only."""
    if (step := progress_line(line)) is not None:
        return f"  … {step}\n"
    if (gate := gate_line(line)) is not None:
        return gate + "\n"
    if plain(line).startswith(FAILURE_PREFIXES):
        return plain(line).rstrip("\n") + "\n"
    return None


def echo_everything(line: str) -> str:
    """What a verbose run shows of ``line``: all of it."""
    return line


def choose_echo(verbose: bool) -> Echo:
    """Everything when ``verbose``, else :func:`quiet_echo`."""
    return echo_everything if verbose else quiet_echo


@contextmanager
def output_to_log(log_path: Path, echo: Echo) -> Iterator[Path]:
    """Send everything written to this process's stdout and stderr -- by Python, by logging
    handlers and by child processes alike -- to ``log_path``; ``echo`` picks what still
    reaches the terminal.

    It works on the file descriptors (1 and 2), not on ``sys.stdout``: kfp.local's steps are
    subprocesses and its loggers hold their own stream objects, which only a descriptor-level
    redirect catches. A reader thread copies the pipe to the log line by line.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    read_end, write_end = os.pipe()
    terminal = os.fdopen(os.dup(saved_out), "w", buffering=1, encoding="utf-8", errors="replace")
    log = log_path.open("w", encoding="utf-8")

    def copy() -> None:
        with os.fdopen(read_end, encoding="utf-8", errors="replace") as pipe:
            for line in pipe:
                log.write(line)
                shown = echo(line)
                if shown:
                    terminal.write(shown)
        log.flush()

    reader = threading.Thread(target=copy, name="output-to-log", daemon=True)
    reader.start()
    os.dup2(write_end, 1)
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield log_path
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        # Restoring 1 and 2 closes the pipe's last write ends: the reader sees EOF and ends.
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        os.close(saved_out)
        os.close(saved_err)
        # A stray grandchild that still holds the pipe must not hang the run: past the
        # timeout the (daemon) reader keeps copying on its own until the process ends.
        reader.join(timeout=READER_GRACE_SECONDS)
        if not reader.is_alive():
            log.close()
            terminal.close()


def run_logged(
    command: Sequence[str],
    cwd: Path,
    log: Path,
    echo: Echo,
    env: Mapping[str, str] | None = None,
) -> tuple[int, str]:
    """Run ``command``, appending its output to ``log`` and printing what ``echo`` keeps.

    Returns the exit code and the whole output (for the caller's error message).
    """
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    with log.open("a", encoding="utf-8") as handle:
        handle.write(f"$ {' '.join(command)}\n")
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=None if env is None else dict(env),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert process.stdout is not None  # PIPE was asked for
        for line in process.stdout:
            lines.append(line)
            handle.write(line)
            shown = echo(line)
            if shown:
                print(shown, end="", flush=True)
        returncode = process.wait()
    return returncode, "".join(lines)


def last_error_line(text: str) -> str | None:
    """The last ``SomeError: message`` line of a log (the exception that stopped a step)."""
    found = None
    for line in plain(text).splitlines():
        match = re.match(r"\s*([\w.]+(?:Error|Exception|Exit)): (.+)", line)
        if match:
            found = f"{match.group(1).rsplit('.', 1)[-1]}: {match.group(2).strip()}"
    return found
