"""``python -m pipelines.submit`` against a recording fake of the KFP v2beta1 REST API.

The fake serves the calls ``kfp.Client`` 2.16 makes (healthz, experiment lookup/create, run
create, run get) on a free loopback port and records every request, so the tests assert on
the exact HTTP request the CLI sends: the pipeline spec, the runtime parameters, the
experiment id and the Authorization header.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import kfp
import pytest
import yaml

from fraudops.config import params_path, project_root
from pipelines import submit
from pipelines.compile import compiled_pipeline_path

API = "/apis/v2beta1"
RUN_ID = "run-7f3a"
URIS = {
    "transactions": "s3://fraud-data/validated/transactions.parquet",
    "customer_features": "s3://fraud-data/features/customer_features.parquet",
    "terminal_features": "s3://fraud-data/features/terminal_features.parquet",
}
TRACKING_URI = "http://mlflow.mlflow.svc:5000"


@dataclass
class Recorded:
    """One request as the fake KFP received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: dict | None


@dataclass
class FakeKfp:
    """State and script of the fake API: what exists, what fails, which run states follow."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    experiments: dict[str, str] = field(default_factory=dict)  # display name -> id
    run_states: list[str] = field(default_factory=lambda: ["PENDING"])
    fail: dict[tuple[str, str], int] = field(default_factory=dict)  # (method, path) -> status
    healthz_content_type: str = "application/json"

    def calls(self, method: str, path: str) -> list[Recorded]:
        """The recorded requests to ``method path``."""
        return [r for r in self.requests if r.method == method and r.path == path]

    def run_body(self) -> dict:
        """The JSON body of the one run-create request."""
        (create,) = self.calls("POST", f"{API}/runs")
        assert create.body is not None
        return create.body


def _handler(fake: FakeKfp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep pytest output clean
            return

        def _reply(self, status: int, payload: object, content_type: str = "application/json"):
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method: str) -> None:
            parsed = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            fake.requests.append(
                Recorded(
                    method=method,
                    path=parsed.path,
                    query=parse_qs(parsed.query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=json.loads(raw) if raw else None,
                )
            )
            status = fake.fail.get((method, parsed.path))
            if status:
                self._reply(status, {"error_message": "internal error", "code": 13})
                return
            route = (method, parsed.path)
            if route == ("GET", f"{API}/healthz"):
                if fake.healthz_content_type != "application/json":
                    self._reply(200, b"<html>Log in</html>", fake.healthz_content_type)
                    return
                self._reply(200, {"multi_user": False, "pipeline_store": "database"})
            elif route == ("GET", f"{API}/experiments"):
                wanted = json.loads(parse_qs(parsed.query)["filter"][0])["predicates"][0]
                name = wanted["stringValue"]
                found = (
                    [{"experiment_id": fake.experiments[name], "display_name": name}]
                    if name in fake.experiments
                    else []
                )
                self._reply(200, {"experiments": found, "total_size": len(found)})
            elif route == ("POST", f"{API}/experiments"):
                name = fake.requests[-1].body["display_name"]
                fake.experiments[name] = "exp-created"
                self._reply(200, {"experiment_id": "exp-created", "display_name": name})
            elif route == ("POST", f"{API}/runs"):
                body = fake.requests[-1].body
                self._reply(200, {**body, "run_id": RUN_ID, "state": "PENDING"})
            elif route == ("GET", f"{API}/runs/{RUN_ID}"):
                state = fake.run_states.pop(0) if len(fake.run_states) > 1 else fake.run_states[0]
                self._reply(200, {"run_id": RUN_ID, "state": state})
            else:
                self._reply(404, {"error_message": f"no route {method} {parsed.path}"})

        def do_GET(self) -> None:  # http.server's naming
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

    return Handler


@pytest.fixture
def fake_kfp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeKfp]:
    """A recording fake KFP API on a free loopback port, torn down after the test."""
    # The client reads a user context file and KF_PIPELINES_* variables: isolate both.
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    for name in (
        "KF_PIPELINES_ENDPOINT",
        "KF_PIPELINES_UI_ENDPOINT",
        "KF_PIPELINES_DEFAULT_EXPERIMENT_NAME",
        "KF_PIPELINES_OVERRIDE_EXPERIMENT_NAME",
    ):
        monkeypatch.delenv(name, raising=False)
    fake = FakeKfp(experiments={"fraud-detector": "exp-existing"})
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _argv(host: str | None, *extra: str) -> list[str]:
    argv = [
        "--transactions", URIS["transactions"],
        "--customer-features", URIS["customer_features"],
        "--terminal-features", URIS["terminal_features"],
        "--mlflow-tracking-uri", TRACKING_URI,
        "--git-commit", "0123abcd",
        "--data-hash", "9f8e7d6c5b4a",
    ]  # fmt: skip
    return (["--host", host] if host else []) + argv + list(extra)


def test_submit_sends_the_committed_spec_and_the_run_inputs(
    fake_kfp: FakeKfp, capsys: pytest.CaptureFixture[str]
) -> None:
    code = submit.main(_argv(fake_kfp.url, "--run-name", "nightly"), environ={})

    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines() == [
        f"run_id={RUN_ID}",
        f"run_url={fake_kfp.url}/#/runs/details/{RUN_ID}",
    ]
    run = fake_kfp.run_body()
    committed = yaml.safe_load(compiled_pipeline_path().read_text())
    assert run["pipeline_spec"] == committed
    assert run["experiment_id"] == "exp-existing"
    assert run["display_name"] == "nightly"
    assert run["runtime_config"]["parameters"] == {
        **URIS,
        "params_yaml": params_path().read_text(),
        "mlflow_tracking_uri": TRACKING_URI,
        "git_commit": "0123abcd",
        "data_hash": "9f8e7d6c5b4a",
        "promote_via": "pipeline",
    }
    # The existing experiment is found by its display name and reused, not created again.
    (lookup,) = fake_kfp.calls("GET", f"{API}/experiments")
    predicate = json.loads(lookup.query["filter"][0])["predicates"][0]
    assert (predicate["key"], predicate["stringValue"]) == ("display_name", "fraud-detector")
    assert fake_kfp.calls("POST", f"{API}/experiments") == []
    assert all("authorization" not in r.headers for r in fake_kfp.requests)


def test_bearer_token_comes_from_the_named_environment_variable(fake_kfp: FakeKfp) -> None:
    environ = {"KFP_TOKEN": "default-token", "CI_KFP_TOKEN": "s3cret"}

    assert submit.main(_argv(fake_kfp.url, "--token-env", "CI_KFP_TOKEN"), environ=environ) == 0

    assert fake_kfp.requests, "no request reached the fake KFP"
    assert {r.headers.get("authorization") for r in fake_kfp.requests} == {"Bearer s3cret"}


def test_default_token_variable_is_used_when_set(fake_kfp: FakeKfp) -> None:
    assert submit.main(_argv(fake_kfp.url), environ={"KFP_TOKEN": "tok-1"}) == 0

    assert {r.headers.get("authorization") for r in fake_kfp.requests} == {"Bearer tok-1"}


def test_missing_experiment_is_created_and_its_id_used(fake_kfp: FakeKfp) -> None:
    code = submit.main(_argv(fake_kfp.url, "--experiment", "fraud-retrain"), environ={})

    assert code == 0
    (create,) = fake_kfp.calls("POST", f"{API}/experiments")
    assert create.body is not None and create.body["display_name"] == "fraud-retrain"
    assert fake_kfp.run_body()["experiment_id"] == "exp-created"


def test_host_from_env_and_lineage_defaults(
    fake_kfp: FakeKfp, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from training.tracking import dvc_data_hash

    params = tmp_path / "params.yaml"
    params.write_text(params_path().read_text() + "# submitted from a branch\n")
    argv = [
        "--transactions", URIS["transactions"],
        "--customer-features", URIS["customer_features"],
        "--terminal-features", URIS["terminal_features"],
        "--params", str(params),
    ]  # fmt: skip
    environ = {
        "KFP_HOST": fake_kfp.url + "/",
        "MLFLOW_TRACKING_URI": TRACKING_URI,
        "GITHUB_SHA": "cafef00d" * 5,
    }

    assert submit.main(argv, environ=environ) == 0

    parameters = fake_kfp.run_body()["runtime_config"]["parameters"]
    assert parameters["params_yaml"] == params.read_text()
    assert parameters["mlflow_tracking_uri"] == TRACKING_URI
    assert parameters["git_commit"] == "cafef00d" * 5
    assert parameters["data_hash"] == dvc_data_hash()
    assert f"run_url={fake_kfp.url}/#/runs/details/{RUN_ID}" in capsys.readouterr().out


def test_missing_host_exits_2_with_one_line(tmp_path: Path) -> None:
    # Through the real entry point: exit code and stderr exactly as a user sees them.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.submit", *_argv(None)],
        cwd=project_root(),
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 2
    assert result.stdout == ""
    expected = (
        "submit: --host: required (or set KFP_HOST), "
        "e.g. --host https://kubeflow.example.com/pipeline"
    )
    assert result.stderr.strip().splitlines() == [expected]


@pytest.mark.parametrize(
    ("argv_extra", "environ", "expected"),
    [
        ([], {"KFP_HOST": "kfp.example.com"}, "--host: must start with http:// or https://"),
        (["--token-env", "NOPE"], {"KFP_HOST": "http://kfp"}, "--token-env: environment variable NOPE"),
        (["--mlflow-tracking-uri", "sqlite:///mlflow.db"], {"KFP_HOST": "http://kfp"}, "--mlflow-tracking-uri: must be a tracking server"),
        (["--transactions", " "], {"KFP_HOST": "http://kfp"}, "--transactions: must not be empty"),
        (["--package", "missing.yaml"], {"KFP_HOST": "http://kfp"}, "--package: missing.yaml not found"),
    ],
)  # fmt: skip
def test_bad_arguments_exit_2_naming_the_flag(
    argv_extra: list[str],
    environ: dict[str, str],
    expected: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert submit.main(_argv(None, *argv_extra), environ=environ) == 2

    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert expected in err


def test_broken_params_exit_2_before_any_request(
    fake_kfp: FakeKfp, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("train:\n  no_such_key: 1\n")

    assert submit.main(_argv(fake_kfp.url, "--params", str(params)), environ={}) == 2

    assert capsys.readouterr().err.startswith(f"submit: --params: {params}")
    assert fake_kfp.requests == []


def test_stale_package_exits_2_naming_the_inputs(
    fake_kfp: FakeKfp, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = yaml.safe_load(compiled_pipeline_path().read_text())
    del spec["root"]["inputDefinitions"]["parameters"]["git_commit"]
    stale = tmp_path / "stale.yaml"
    stale.write_text(yaml.safe_dump(spec))

    assert submit.main(_argv(fake_kfp.url, "--package", str(stale)), environ={}) == 2

    assert "unknown ['git_commit']" in capsys.readouterr().err
    assert fake_kfp.requests == []


@pytest.mark.parametrize("failing", [("POST", f"{API}/runs"), ("GET", f"{API}/healthz")])
def test_server_error_exits_1_naming_host_and_status(
    fake_kfp: FakeKfp, failing: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_kfp.fail[failing] = 500

    assert submit.main(_argv(fake_kfp.url), environ={}) == 1

    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert lines[-1].startswith(f"submit: KFP {fake_kfp.url}: HTTP 500 Internal Server Error")
    assert "Traceback" not in captured.err
    assert "run_id=" not in captured.out


def test_login_page_instead_of_api_exits_1(
    fake_kfp: FakeKfp, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_kfp.healthz_content_type = "text/html"

    assert submit.main(_argv(fake_kfp.url), environ={}) == 1

    assert "not JSON (a login page?" in capsys.readouterr().err
    assert fake_kfp.calls("POST", f"{API}/runs") == []


def test_unreachable_host_exits_1_without_traceback(
    fake_kfp: FakeKfp, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on once the probe closes
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"

    assert submit.main(_argv(dead), environ={}) == 1

    err = capsys.readouterr().err
    assert err.startswith(f"submit: KFP {dead}: unreachable (")
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("states", "expected_code", "final"),
    [
        (["PENDING", "RUNNING", "SUCCEEDED"], 0, "SUCCEEDED"),
        (["RUNNING", "FAILED"], 1, "FAILED"),
        (["CANCELED"], 1, "CANCELED"),
    ],
)
def test_wait_polls_until_final_state(
    fake_kfp: FakeKfp,
    states: list[str],
    expected_code: int,
    final: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake_kfp.run_states = list(states)

    code = submit.main(_argv(fake_kfp.url, "--wait", "--poll-seconds", "0"), environ={})

    captured = capsys.readouterr()
    assert code == expected_code
    assert f"run_state={final}" in captured.out
    assert len(fake_kfp.calls("GET", f"{API}/runs/{RUN_ID}")) == len(states)
    if expected_code:
        assert f"run {RUN_ID} ended {final}" in captured.err


def test_wait_times_out_on_a_run_that_never_ends(
    fake_kfp: FakeKfp, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_kfp.run_states = ["RUNNING"]

    argv = _argv(fake_kfp.url, "--wait", "--timeout", "0", "--poll-seconds", "0")
    assert submit.main(argv, environ={}) == 1

    assert f"run {RUN_ID}: still RUNNING after 0 s (--timeout)" in capsys.readouterr().err
