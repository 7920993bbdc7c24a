"""Submit the compiled pipeline to a Kubeflow Pipelines cluster: ``python -m pipelines.submit``.

The run executes ``pipelines/compiled/fraud_training_pipeline.yaml`` (or ``--package``) on
the KFP API at ``--host`` / ``KFP_HOST``. The data inputs are URIs the cluster can read
(``s3://…``); ``params.yaml`` travels as text so the run uses exactly the submitter's
params; git commit and DVC data hash are recorded for lineage. The bearer token is read
from an environment variable (``--token-env``, default ``KFP_TOKEN``), never from argv.

Prints ``run_id=…`` and ``run_url=…``. Exit codes: 0 submitted (with ``--wait``: the run
succeeded), 1 the API is unreachable or refused, or the waited-for run did not succeed,
2 bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlparse

import kfp
import kfp_server_api
import urllib3
import yaml

from fraudops.config import MODEL_NAME, ConfigError, load_params, params_path
from pipelines.compile import compiled_pipeline_path
from pipelines.run_local import PipelineInputs

#: KFP experiment of the runs: named after the model, like the MLflow training experiment.
DEFAULT_EXPERIMENT = MODEL_NAME
DEFAULT_TOKEN_ENV = "KFP_TOKEN"
HEALTHZ_PATH = "/apis/v2beta1/healthz"
#: Run states after which KFP never changes a run again (v2beta1 ``RuntimeState``).
TERMINAL_STATES = frozenset({"SUCCEEDED", "SKIPPED", "FAILED", "CANCELED"})
#: Stores that live on the submitter's machine: a pod in the cluster cannot reach them.
LOCAL_TRACKING_SCHEMES = frozenset({"", "file", "sqlite"})


class SubmitArgumentError(ValueError):
    """An argument is missing or malformed; the message names the flag."""


class SubmitError(RuntimeError):
    """The KFP API is unreachable or refused a call; the message names the host and status."""


def resolve_host(cli_host: str | None, environ: Mapping[str, str]) -> str:
    """The KFP API base URL from ``--host`` or ``KFP_HOST``, without a trailing slash."""
    host = (cli_host or environ.get("KFP_HOST", "")).strip()
    if not host:
        raise SubmitArgumentError(
            "--host: required (or set KFP_HOST), e.g. --host https://kubeflow.example.com/pipeline"
        )
    if not host.startswith(("http://", "https://")):
        raise SubmitArgumentError(f"--host: must start with http:// or https://, got {host!r}")
    return host.rstrip("/")


def resolve_token(token_env: str | None, environ: Mapping[str, str]) -> str | None:
    """The bearer token from the environment variable ``token_env`` (default ``KFP_TOKEN``).

    A variable named explicitly with ``--token-env`` must be set; the default one is optional
    (a port-forwarded or unauthenticated KFP needs no token).
    """
    name = token_env or DEFAULT_TOKEN_ENV
    token = environ.get(name, "").strip()
    if token_env and not token:
        raise SubmitArgumentError(
            f"--token-env: environment variable {token_env} is not set or empty"
        )
    return token or None


def resolve_tracking_uri(cli_uri: str | None, environ: Mapping[str, str]) -> str:
    """The MLflow server the pipeline's steps log to: ``--mlflow-tracking-uri`` or the env."""
    uri = (cli_uri or environ.get("MLFLOW_TRACKING_URI", "")).strip()
    if not uri:
        raise SubmitArgumentError(
            "--mlflow-tracking-uri: required (or set MLFLOW_TRACKING_URI), "
            "e.g. http://mlflow.mlflow.svc:5000"
        )
    if urlparse(uri).scheme in LOCAL_TRACKING_SCHEMES and uri != "databricks":
        raise SubmitArgumentError(
            f"--mlflow-tracking-uri: must be a tracking server the cluster can reach, got {uri!r} "
            "(a local store), e.g. http://mlflow.mlflow.svc:5000"
        )
    return uri


def resolve_git_commit(cli_commit: str | None, environ: Mapping[str, str]) -> str:
    """``--git-commit``, else ``GITHUB_SHA`` (CI), else ``git rev-parse HEAD``."""
    if cli_commit:
        return cli_commit
    if environ.get("GITHUB_SHA"):
        return environ["GITHUB_SHA"]
    from training.tracking import git_commit  # lazy: pulls in the training stack

    return git_commit()


def resolve_data_hash(cli_hash: str | None) -> str:
    """``--data-hash``, else the DVC hash of the validated data recorded in ``dvc.lock``."""
    if cli_hash:
        return cli_hash
    from training.tracking import dvc_data_hash  # lazy: pulls in the training stack

    return dvc_data_hash()


def read_params_text(path: Path) -> str:
    """The text of ``params.yaml``, validated here so a typo fails before the cluster runs."""
    try:
        load_params(path)
    except (ConfigError, yaml.YAMLError) as exc:
        raise SubmitArgumentError(f"--params: {exc}") from None
    return path.read_text()


def pipeline_parameters(package: Path) -> tuple[set[str], set[str]]:
    """(all, required) input parameter names declared by the compiled pipeline package."""
    if not package.is_file():
        raise SubmitArgumentError(
            f"--package: {package} not found (run `python -m pipelines.compile`)"
        )
    spec = yaml.safe_load(package.read_text()) or {}
    declared = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    required = {name for name, rule in declared.items() if "defaultValue" not in rule}
    return set(declared), required


def build_arguments(inputs: PipelineInputs, package: Path) -> dict[str, str]:
    """The run's parameter values, checked against the inputs ``package`` declares."""
    for name in ("transactions", "customer_features", "terminal_features"):
        if not getattr(inputs, name).strip():
            raise SubmitArgumentError(f"--{name.replace('_', '-')}: must not be empty")
    arguments = inputs.as_arguments()
    declared, required = pipeline_parameters(package)
    unknown = sorted(set(arguments) - declared)
    missing = sorted(required - set(arguments))
    if unknown or missing:
        # A stale or foreign package: KFP would reject the run only after it is queued.
        raise SubmitArgumentError(
            f"--package: {package} declares inputs {sorted(declared)}; "
            f"unknown {unknown}, missing {missing} (recompile with `python -m pipelines.compile`)"
        )
    return arguments


def run_url(host: str, run_id: str) -> str:
    """The KFP UI page of a run (``KF_PIPELINES_UI_ENDPOINT`` overrides the API host)."""
    ui_host = os.environ.get("KF_PIPELINES_UI_ENDPOINT", host).rstrip("/")
    return f"{ui_host}/#/runs/details/{run_id}"


def _describe_failure(host: str, exc: BaseException) -> str:
    """One line naming the host and the HTTP status (or the network error) of ``exc``."""
    if isinstance(exc, kfp_server_api.ApiException):
        if not exc.status:  # SSL errors and the like: no HTTP exchange happened
            return f"KFP {host}: {exc.reason}"
        detail = (exc.body or b"").decode() if isinstance(exc.body, bytes) else (exc.body or "")
        first_line = " ".join(detail.split())[:200]
        suffix = f" — {first_line}" if first_line else ""
        return f"KFP {host}: HTTP {exc.status} {exc.reason or ''}".rstrip() + suffix
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        return f"KFP {host}: unreachable ({type(exc.reason).__name__}: {exc.reason})"
    return f"KFP {host}: {type(exc).__name__}: {exc}"


def check_reachable(host: str, token: str | None, timeout_s: float = 10.0) -> None:
    """GET the healthz endpoint once, with a timeout, and fail with one line if it is not KFP.

    ``kfp.Client()`` calls healthz too, but retries 5 times 5 s apart, logs a traceback on each
    failure and waits without a timeout on a black-holed host; one probe first gives a fast,
    readable error. It uses the same transport as the client (kfp_server_api / urllib3).
    """
    config = kfp_server_api.Configuration(host=host)
    if token:
        config.api_key["authorization"] = token
        config.api_key_prefix["authorization"] = "Bearer"
    api = kfp_server_api.HealthzServiceApi(kfp_server_api.ApiClient(config))
    try:
        response = api.healthz_service_get_healthz(
            _preload_content=False, _request_timeout=timeout_s
        )
    except (kfp_server_api.ApiException, urllib3.exceptions.HTTPError) as exc:
        raise SubmitError(_describe_failure(host, exc)) from None
    content_type = response.headers.get("Content-Type", "")
    response.release_conn()
    if "json" not in content_type:
        # An auth proxy (Dex, IAP, oauth2-proxy) answers 200 with its login page.
        raise SubmitError(
            f"KFP {host}: HTTP {response.status} on {HEALTHZ_PATH} returned {content_type or 'no'} "
            "content, not JSON (a login page? check --host and the token)"
        )


def make_client(host: str, token: str | None, namespace: str | None) -> kfp.Client:
    """A ``kfp.Client`` for ``host`` authenticated with ``token`` (if any)."""
    with warnings.catch_warnings():
        # "This client only works with KFP v2.0.0-beta.2 and later": true, and noise.
        warnings.filterwarnings("ignore", category=FutureWarning, module="kfp.client")
        if namespace:
            return kfp.Client(host=host, existing_token=token, namespace=namespace)
        return kfp.Client(host=host, existing_token=token)


def submit_run(
    client: kfp.Client,
    package: Path,
    arguments: dict[str, str],
    experiment: str,
    run_name: str | None = None,
    namespace: str | None = None,
) -> str:
    """Create (or reuse) the experiment and start a run of ``package``; the run id."""
    # The client prints its own "Experiment/Run details" links; keep stdout for our lines.
    with contextlib.redirect_stdout(sys.stderr):
        result = client.create_run_from_pipeline_package(
            pipeline_file=str(package),
            arguments=arguments,
            run_name=run_name,
            experiment_name=experiment,
            namespace=namespace,
        )
    return str(result.run_id)


def wait_for_run(
    client: kfp.Client,
    run_id: str,
    timeout_s: float,
    poll_s: float = 15.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Poll the run until it reaches a terminal state; that state (e.g. ``SUCCEEDED``).

    Not ``client.wait_for_run_completion``: it does not treat ``CANCELED`` as final and would
    spin until the timeout.
    """
    deadline = clock() + timeout_s
    state = "UNKNOWN"
    while True:
        state = str(client.get_run(run_id).state or "UNKNOWN").upper()
        if state in TERMINAL_STATES:
            return state
        if clock() >= deadline:
            raise SubmitError(f"run {run_id}: still {state} after {timeout_s:.0f} s (--timeout)")
        sleep(poll_s)


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (no usage block), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"submit: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="python -m pipelines.submit",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cluster = parser.add_argument_group("cluster")
    cluster.add_argument("--host", help="KFP API base URL (default: $KFP_HOST)")
    cluster.add_argument(
        "--token-env",
        metavar="NAME",
        help=f"environment variable holding the bearer token (default: {DEFAULT_TOKEN_ENV}, "
        "optional)",
    )
    cluster.add_argument(
        "--namespace", help="profile namespace (multi-user KFP; default: $KFP_NAMESPACE)"
    )
    cluster.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="default: %(default)s")
    cluster.add_argument("--run-name", help="default: <package file> <timestamp>")
    cluster.add_argument(
        "--package", type=Path, help="compiled pipeline (default: the committed YAML)"
    )
    data = parser.add_argument_group("run inputs")
    data.add_argument("--transactions", required=True, help="validated-transactions Parquet URI")
    data.add_argument("--customer-features", required=True, help="customer features Parquet URI")
    data.add_argument("--terminal-features", required=True, help="terminal features Parquet URI")
    data.add_argument(
        "--params", type=Path, help="params.yaml whose text the run uses (default: the project's)"
    )
    data.add_argument("--mlflow-tracking-uri", help="default: $MLFLOW_TRACKING_URI")
    data.add_argument("--git-commit", help="default: $GITHUB_SHA or `git rev-parse HEAD`")
    data.add_argument("--data-hash", help="default: the validated data's hash in dvc.lock")
    data.add_argument(
        "--promote-via",
        choices=("pipeline", "canary"),
        help="who moves @champion when the candidate wins (default: params register.promote_via)",
    )
    wait = parser.add_argument_group("waiting")
    wait.add_argument(
        "--wait", action="store_true", help="wait for the run; exit 1 unless it succeeds"
    )
    wait.add_argument(
        "--timeout", type=float, default=7200.0, help="seconds (default: %(default)s)"
    )
    wait.add_argument("--poll-seconds", type=float, default=15.0, help="default: %(default)s")
    return parser


def _params_promote_via(params_file: Path | None) -> str:
    """``register.promote_via`` of the params file the run will carry."""
    import yaml

    path = Path(params_file) if params_file else params_path()
    raw = yaml.safe_load(path.read_text()) or {}
    return str((raw.get("register") or {}).get("promote_via", "pipeline"))


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """CLI: validate the inputs, submit the run, optionally wait for it."""
    env = os.environ if environ is None else environ
    args = _parser().parse_args(argv)
    try:
        host = resolve_host(args.host, env)
        token = resolve_token(args.token_env, env)
        package = args.package or compiled_pipeline_path()
        inputs = PipelineInputs(
            transactions=args.transactions,
            customer_features=args.customer_features,
            terminal_features=args.terminal_features,
            params_yaml=read_params_text(args.params or params_path()),
            mlflow_tracking_uri=resolve_tracking_uri(args.mlflow_tracking_uri, env),
            git_commit=resolve_git_commit(args.git_commit, env),
            data_hash=resolve_data_hash(args.data_hash),
            promote_via=args.promote_via or _params_promote_via(args.params),
        )
        arguments = build_arguments(inputs, package)
    except SubmitArgumentError as exc:
        print(f"submit: {exc}", file=sys.stderr)
        return 2

    namespace = args.namespace or env.get("KFP_NAMESPACE") or None
    try:
        check_reachable(host, token)
        client = make_client(host, token, namespace)
        run_id = submit_run(client, package, arguments, args.experiment, args.run_name, namespace)
        print(f"run_id={run_id}")
        print(f"run_url={run_url(host, run_id)}")
        if not args.wait:
            return 0
        state = wait_for_run(client, run_id, args.timeout, args.poll_seconds)
    except SubmitError as exc:
        print(f"submit: {exc}", file=sys.stderr)
        return 1
    except (kfp_server_api.ApiException, urllib3.exceptions.HTTPError, ValueError) as exc:
        # ValueError: the client's own checks, e.g. two experiments with the same name.
        print(f"submit: {_describe_failure(host, exc)}", file=sys.stderr)
        return 1
    print(f"run_state={state}")
    if state != "SUCCEEDED":
        print(f"submit: run {run_id} ended {state}: {run_url(host, run_id)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
