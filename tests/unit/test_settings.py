"""One settings path: every ``FRAUD_*`` variable is a documented field of a floor settings class."""

from __future__ import annotations

import argparse
import inspect
import re
from pathlib import Path

import pytest

from fraudops import settings
from fraudops.config import params_path, project_root
from monitoring.outputs import add_job_arguments
from serving.settings import ServingSettings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_CLASSES = [
    settings.ProjectSettings,
    settings.ModelSettings,
    settings.LogSettings,
    settings.MonitoringSettings,
    settings.DeploySettings,
    settings.PipelineSettings,
    settings.LaunchSettings,
    settings.FeatureStoreSettings,
    settings.ConsoleSettings,
    ServingSettings,
]
#: A read of a FRAUD_* variable: os.environ.get / os.getenv, or os.environ[...] that is not
#: assigned to (a bench pointing its own process at a temp copy sets one; that is no read).
_AD_HOC_READ = re.compile(
    r"""(?:environ\.get\(|getenv\()\s*["'](FRAUD_[A-Z0-9_]+)"""
    r"""|environ\[\s*["'](FRAUD_[A-Z0-9_]+)["']\s*\](?!\s*=[^=])"""
)


#: A module constant naming a FRAUD_* variable (``VERBOSE_ENV = "FRAUD_VERBOSE"``).
_NAME_CONSTANT = re.compile(
    r"""^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*["'](FRAUD_[A-Z0-9_]+)["']""", re.MULTILINE
)


def variables_read(source: str) -> set[str]:
    """The FRAUD_* variables ``source`` reads itself, by literal or through a module constant."""
    found = {get or item for get, item in _AD_HOC_READ.findall(source)}
    for constant, variable in _NAME_CONSTANT.findall(source):
        through = re.compile(
            rf"(?:environ\.get\(|getenv\()\s*{constant}\b"
            rf"|environ\[\s*{constant}\s*\](?!\s*=[^=])"
        )
        if through.search(source):
            found.add(variable)
    return found


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No FRAUD_* variable set (the suite's conftest sets some)."""
    import os

    for name in [name for name in os.environ if name.upper().startswith("FRAUD_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def ad_hoc_reads() -> dict[str, set[str]]:
    """``FRAUD_*`` variables each shipped module reads with os.environ / os.getenv itself."""
    found: dict[str, set[str]] = {}
    packages = ("fraudops", "data", "features", "training", "pipelines", "serving", "monitoring")
    for package in (*packages, "deploy", "tutorial", "bench"):
        for path in sorted((ROOT / package).rglob("*.py")):
            names = variables_read(path.read_text())
            if names:
                found[path.relative_to(ROOT).as_posix()] = names
    return found


def test_no_module_reads_a_fraud_variable_itself() -> None:
    assert ad_hoc_reads() == {}, "read FRAUD_* variables through fraudops.settings"


def test_the_scan_would_see_an_ad_hoc_read() -> None:
    assert variables_read('x = os.environ.get("FRAUD_NEW_KNOB", "1")') == {"FRAUD_NEW_KNOB"}
    assert variables_read("os.getenv('FRAUD_OTHER')") == {"FRAUD_OTHER"}
    assert variables_read('port = int(os.environ["FRAUD_PORT"])') == {"FRAUD_PORT"}
    assert variables_read('os.environ["FRAUD_PROJECT_ROOT"] = str(root)') == set()
    # through a constant naming the variable, as features.store and pipelines.console did
    named = 'KNOB_ENV = "FRAUD_KNOB"\n'
    assert variables_read(named + "url = os.environ.get(KNOB_ENV)") == {"FRAUD_KNOB"}
    assert variables_read(named + "flag = os.environ[KNOB_ENV]") == {"FRAUD_KNOB"}
    # setting it for a child process is no read
    assert variables_read(named + "env = {**os.environ, KNOB_ENV: '1'}") == set()
    assert variables_read(named + "os.environ[KNOB_ENV] = '1'") == set()


@pytest.mark.parametrize("cls", SETTINGS_CLASSES, ids=lambda cls: cls.__name__)
def test_every_field_is_documented_where_it_is_declared(cls: type) -> None:
    for klass in cls.__mro__:
        if "__annotations__" not in vars(klass) or not klass.__module__.endswith("settings"):
            continue
        lines = inspect.getsource(klass).splitlines()
        for name in vars(klass)["__annotations__"]:
            if name == "model_config":
                continue
            [index] = [i for i, line in enumerate(lines) if line.strip().startswith(f"{name}:")]
            assert lines[index - 1].strip().startswith("#:"), f"{klass.__name__}.{name}: no #: doc"


def test_defaults_are_the_ones_the_clis_had(clean_environment: pytest.MonkeyPatch) -> None:
    model = settings.ModelSettings()
    assert (model.model_name, model.model_alias) == ("fraud-detector", "champion")
    launch = settings.LaunchSettings()
    assert (launch.port, launch.predictor_port, launch.explainer_port) == (8080, 8081, 8082)
    assert settings.DeploySettings().serving_url is None
    assert settings.PipelineSettings().promote_via is None
    store = settings.FeatureStoreSettings()
    assert (store.online_store, store.redis_url, store.feast_project) == ("sqlite", None, None)
    assert settings.ConsoleSettings().verbose == ""
    monitoring = settings.MonitoringSettings()
    assert monitoring.prediction_log_dir is None and monitoring.pushgateway_url is None
    assert project_root() == settings.PROJECT_ROOT
    assert params_path() == settings.PROJECT_ROOT / "params.yaml"


def test_the_environment_overrides_the_defaults(
    clean_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_environment.setenv("FRAUD_MODEL_NAME", "fraud-detector-eu")
    clean_environment.setenv("FRAUD_MODEL_ALIAS", "candidate")
    clean_environment.setenv("FRAUD_PREDICTION_LOG_DIR", "s3://bucket/predictions")
    clean_environment.setenv("FRAUD_PROJECT_ROOT", str(tmp_path))
    clean_environment.setenv("FRAUD_PORT", "9090")
    parser = argparse.ArgumentParser()
    add_job_arguments(parser, "drift")
    args = parser.parse_args([])
    assert (args.model_name, args.alias) == ("fraud-detector-eu", "candidate")
    assert ServingSettings().model_name == "fraud-detector-eu"
    # A job's log may be an object-store URI: it must keep its "//".
    assert settings.MonitoringSettings().prediction_log_dir == "s3://bucket/predictions"
    assert project_root() == tmp_path.resolve()
    assert settings.LaunchSettings().port == 9090
