"""What each level and scenario deploys, checked on the rendered manifests."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from deploy.manifests import pod_specs
from tests.k8s.conftest import env_of, find, one

pytestmark = pytest.mark.usefixtures("rendered")

#: The serving contract's environment (serving/ reads these; the manifests may set no other FRAUD_*).
CONTRACT_ENV = {
    "FRAUD_MODEL_NAME",
    "FRAUD_MODEL_ALIAS",
    "FRAUD_MODEL_DIR",
    "FRAUD_RELOAD_INTERVAL_SECONDS",
    "FRAUD_ONLINE_STORE",
    "FRAUD_REDIS_URL",
    "FRAUD_FEAST_REPO",
    "FRAUD_EVENT_CLOCK",
    "FRAUD_PREDICTION_LOG_DIR",
    "FRAUD_AUDIT_LOG_DIR",
    "FRAUD_MAX_BATCH_SIZE",
    "FRAUD_PUSHGATEWAY_URL",
}
#: The process each model-server container runs (the contract's modules).
CONTRACT_COMMANDS = {
    "level1": "serving.level1",
    "level2": "serving.level2",
    "predictor": "serving.predictor",
    "transformer": "serving.transformer",
    "explainer": "serving.explainer",
}


def isvc(docs: list[dict[str, Any]], name: str = "fraud-detector") -> dict[str, Any]:
    return one(docs, "InferenceService", name)["spec"]


def container(component: dict[str, Any]) -> dict[str, Any]:
    """The model server's container: the first (a sidecar, if any, follows it)."""
    return component["containers"][0]


def test_level1_is_a_deployment_service_and_hpa_of_the_baked_image(rendered):
    docs = rendered["overlays/level1"]
    deployment = one(docs, "Deployment", "fraud-detector-level1")
    app = container(deployment["spec"]["template"]["spec"])
    assert app["command"] == ["python", "-m", "serving.level1"]
    assert env_of(app)["FRAUD_MODEL_DIR"] == "/models/fraud-detector"
    assert one(docs, "Service", "fraud-detector-level1")["spec"]["ports"][0]["targetPort"] == "http"
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "fraud-detector-level1"
    assert hpa["spec"]["minReplicas"] >= 2
    assert not find(docs, "InferenceService")


def test_level2_reads_the_registry_uri_and_alias_from_configuration(rendered):
    docs = rendered["overlays/level2"]
    app = container(one(docs, "Deployment", "fraud-detector-level2")["spec"]["template"]["spec"])
    assert app["command"] == ["python", "-m", "serving.level2"]
    assert {"configMapRef": {"name": "fraud-serving-config"}} in app["envFrom"]
    config = one(docs, "ConfigMap", "fraud-serving-config")["data"]
    assert config["MLFLOW_TRACKING_URI"].startswith("http://mlflow.mlops")
    assert config["FRAUD_MODEL_ALIAS"] == "champion"
    assert config["FRAUD_MODEL_NAME"] == "fraud-detector"
    # A restart for a new champion never drops capacity (k8s/README.md "Level 2").
    assert one(docs, "Deployment")["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert "startupProbe" in app


@pytest.mark.parametrize("level", ["level1", "level2"])
def test_the_fastapi_levels_look_features_up_in_the_redis_online_store(rendered, level):
    """They assemble features themselves: the cluster's Feast config, as the transformer has."""
    docs = rendered[f"overlays/{level}"]
    pod = one(docs, "Deployment", f"fraud-detector-{level}")["spec"]["template"]["spec"]
    env = env_of(container(pod))
    assert env["FRAUD_ONLINE_STORE"] == "redis"
    assert env["FRAUD_REDIS_URL"] == "feast-redis.mlops.svc.cluster.local:6379"
    mounts = {m["name"]: m["mountPath"] for m in container(pod)["volumeMounts"]}
    assert env["FRAUD_FEAST_REPO"] == mounts["feast-config"]
    assert (
        "type: redis" in one(docs, "ConfigMap", "feast-feature-store")["data"]["feature_store.yaml"]
    )
    redis_policy = one(rendered["infra"], "NetworkPolicy", "feast-redis")
    admitted = [
        rule["podSelector"]
        for rule in redis_policy["spec"]["ingress"][0]["from"]
        if "podSelector" in rule
    ]
    assert any(
        level in expression.get("values", [])
        for selector in admitted
        for expression in selector.get("matchExpressions", [])
    )


def test_level3_predictor_scales_to_zero_on_concurrency(rendered):
    spec = isvc(rendered["overlays/level3"])
    assert set(spec) == {"predictor"}
    predictor = spec["predictor"]
    assert predictor["minReplicas"] == 0
    assert predictor["scaleMetric"] == "concurrency" and predictor["scaleTarget"] > 0
    app = container(predictor)
    assert app["readinessProbe"]["httpGet"]["path"] == "/v1/models/fraud-detector"
    assert app["livenessProbe"]["httpGet"]["path"] == "/"
    assert env_of(app)["FRAUD_MODEL_DIR"] == "/mnt/models"
    assert env_of(app)["STORAGE_URI"].startswith("s3://")


def test_level4_transformer_uses_the_feast_redis_online_store(rendered):
    docs = rendered["overlays/level4"]
    spec = isvc(docs)
    assert set(spec) == {"predictor", "transformer"}
    env = env_of(container(spec["transformer"]))
    assert env["FRAUD_ONLINE_STORE"] == "redis"
    assert env["FRAUD_REDIS_URL"] == "feast-redis.mlops.svc.cluster.local:6379"
    feast = one(docs, "ConfigMap", "feast-feature-store")["data"]["feature_store.yaml"]
    assert "type: redis" in feast
    mounted = {v["configMap"]["name"] for v in spec["transformer"]["volumes"] if "configMap" in v}
    assert "feast-feature-store" in mounted
    assert spec["predictor"]["minReplicas"] >= 1  # on the authorisation path: no cold start


def test_level5_adds_the_explainer_and_logs_to_the_prediction_log_sink(rendered):
    docs = rendered["overlays/level5"]
    spec = isvc(docs)
    assert set(spec) == {"predictor", "transformer", "explainer"}
    sink = one(docs, "Service", "prediction-log-sink")
    sink_url = (
        f"http://{sink['metadata']['name']}.{sink['metadata']['namespace']}.svc.cluster.local"
    )
    assert spec["predictor"]["logger"] == {"mode": "all", "url": sink_url}
    assert spec["explainer"]["logger"]["url"] == sink_url
    args = container(spec["transformer"])["args"]
    assert args[args.index("--explainer_host") + 1].startswith("fraud-detector-explainer.")
    assert "FRAUD_AUDIT_LOG_DIR" in env_of(container(spec["explainer"]))


def test_the_transformer_ships_its_prediction_log_where_the_drift_job_reads(rendered):
    """Its sidecar tails the files the transformer writes and writes them to the store."""
    docs = rendered["overlays/level5"]
    transformer = isvc(docs)["transformer"]
    server, shipper = transformer["containers"]
    log_dir = env_of(server)["FRAUD_PREDICTION_LOG_DIR"]
    config = yaml.safe_load(one(docs, "ConfigMap", "prediction-log-shipper")["data"]["vector.yaml"])
    [tailed] = config["sources"]["transformer_records"]["include"]
    assert tailed == f"{log_dir}/predictions-*.jsonl"
    sink = config["sinks"]["prediction_log"]
    assert (sink["compression"], sink["encoding"]["codec"]) == ("gzip", "json")
    assert sink["framing"]["method"] == "newline_delimited"
    shipped_to = "s3://{}/{}".format(
        env_of(shipper)["PREDICTION_LOG_BUCKET"], env_of(shipper)["PREDICTION_LOG_PREFIX"]
    )
    cronjob = one(rendered["infra"], "CronJob", "fraud-drift")
    drift = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert env_of(drift)["FRAUD_PREDICTION_LOG_DIR"] == shipped_to
    # The request logger's CloudEvents (no transaction in them) go elsewhere.
    request_log = one(docs, "Deployment", "prediction-log-sink")
    assert (
        env_of(request_log["spec"]["template"]["spec"]["containers"][0])["REQUEST_LOG_PREFIX"]
        != env_of(shipper)["PREDICTION_LOG_PREFIX"]
    )


def test_release_configmap_sets_the_model_location_of_every_model_loader(rendered):
    docs = rendered["overlays/level5"]
    release = one(docs, "ConfigMap", "fraud-model-release")["data"]["STORAGE_URI"]
    spec = isvc(docs)
    for component in ("predictor", "explainer"):
        assert env_of(container(spec[component]))["STORAGE_URI"] == release


def test_canary_sends_twenty_percent_to_the_new_predictor(rendered):
    spec = isvc(rendered["overlays/canary"])
    assert spec["predictor"]["canaryTrafficPercent"] == 20
    assert set(spec) == {"predictor", "transformer", "explainer"}


def test_ab_splits_fifty_fifty_and_tags_the_serving_variant(rendered):
    docs = rendered["overlays/ab"]
    champion, challenger = isvc(docs), isvc(docs, "fraud-detector-challenger")
    assert env_of(container(challenger["predictor"]))["FRAUD_MODEL_ALIAS"] == "candidate"
    assert env_of(container(champion["predictor"]))["FRAUD_MODEL_ALIAS"] == "champion"
    # Both variants answer the same URL path.
    for spec in (champion, challenger):
        args = container(spec["transformer"])["args"]
        assert args[args.index("--model_name") + 1] == "fraud-detector"
    explainer_host = container(challenger["transformer"])["args"][3]
    assert explainer_host.startswith("fraud-detector-challenger-explainer.")
    rule = one(docs, "DestinationRule")["spec"]
    subsets = {
        s["name"]: s["labels"]["serving.kserve.io/inferenceservice"] for s in rule["subsets"]
    }
    assert subsets == {"champion": "fraud-detector", "challenger": "fraud-detector-challenger"}
    (route,) = one(docs, "VirtualService")["spec"]["http"]
    weights = {r["destination"]["subset"]: r["weight"] for r in route["route"]}
    assert weights == {"champion": 50, "challenger": 50}
    for r in route["route"]:
        assert (
            r["headers"]["response"]["set"]["x-fraud-model-variant"] == r["destination"]["subset"]
        )
        assert r["destination"]["host"] == rule["host"]


def test_model_servers_follow_the_serving_contract(rendered):
    for root, docs in rendered.items():
        for doc in docs:
            for pod in pod_specs(doc):
                for app in pod.spec["containers"]:
                    fraud_env = {name for name in env_of(app) if name.startswith("FRAUD_")}
                    assert fraud_env <= CONTRACT_ENV, (
                        f"{root} {pod.owner}: {fraud_env - CONTRACT_ENV}"
                    )
                    if app.get("command", [])[:2] == ["python", "-m"] and app["command"][
                        2
                    ].startswith("serving."):
                        assert app["command"][2] in CONTRACT_COMMANDS.values()
                        ports = [p["containerPort"] for p in app.get("ports", [])]
                        assert ports == [8080], f"{root} {pod.owner}: model servers listen on 8080"


# --- the NetworkPolicy: only the transformer reaches the predictor and explainer ----------


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        present, value = expr["key"] in labels, labels.get(expr["key"])
        if expr["operator"] == "Exists" and not present:
            return False
        if expr["operator"] == "In" and value not in expr["values"]:
            return False
    return True


def admits(
    policy: dict[str, Any], namespace: str, source: dict[str, str], target: dict[str, str]
) -> bool:
    """Whether ``policy`` (in its own namespace) lets a pod with ``source`` labels reach ``target``."""
    spec = policy["spec"]
    if not _matches(spec["podSelector"], target):
        return True  # the policy does not isolate this pod
    own = policy["metadata"]["namespace"]
    for rule in spec.get("ingress", []):
        for peer in rule.get("from", []):
            ns_ok = (
                _matches(peer["namespaceSelector"], {"kubernetes.io/metadata.name": namespace})
                if "namespaceSelector" in peer
                else namespace == own
            )
            pod_ok = _matches(peer["podSelector"], source) if "podSelector" in peer else True
            if ns_ok and pod_ok:
                return True
    return False


KSERVE_POD = {
    "serving.kserve.io/inferenceservice": "fraud-detector",
    "app.kubernetes.io/name": "fraud-detector",
}


@pytest.mark.parametrize("level", ["overlays/level4", "overlays/level5", "overlays/ab"])
def test_only_the_transformer_reaches_predictor_and_explainer(rendered, level):
    policy = one(rendered[level], "NetworkPolicy", "fraud-detector-backends")
    transformer = {**KSERVE_POD, "component": "transformer"}
    client = {"app": "curl"}
    for component in ("predictor", "explainer"):
        target = {**KSERVE_POD, "component": component}
        assert admits(policy, "fraud-detection", transformer, target)
        assert not admits(policy, "fraud-detection", client, target)
        assert not admits(
            policy, "fraud-detection", {**KSERVE_POD, "component": "predictor"}, target
        )
        assert not admits(policy, "other-team", transformer, target)
    assert admits(policy, "fraud-detection", client, {**KSERVE_POD, "component": "transformer"})


def test_infra_runs_mlflow_feast_drift_monitoring_and_gitops(rendered):
    docs = rendered["infra"]
    mlflow = container(one(docs, "Deployment", "mlflow")["spec"]["template"]["spec"])
    assert (
        "--backend-store-uri" in mlflow["args"] and "$(MLFLOW_BACKEND_STORE_URI)" in mlflow["args"]
    )
    assert mlflow["args"][mlflow["args"].index("--default-artifact-root") + 1].startswith("s3://")
    assert env_of(mlflow)["MLFLOW_BACKEND_STORE_URI"] == {
        "secretKeyRef": {"name": "mlflow-postgres", "key": "MLFLOW_BACKEND_STORE_URI"}
    }
    one(docs, "StatefulSet", "mlflow-postgres")
    one(docs, "StatefulSet", "feast-redis")
    # The online store is loaded once from the released data version, then left to traffic.
    load = one(docs, "Job", "feast-load-online")
    assert load["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "Sync"
    loader = container(load["spec"]["template"]["spec"])
    assert loader["command"] == ["python", "-m", "features.load_online"]
    versioned = loader["envFrom"][0]["configMapRef"]["name"]
    data = one(docs, "ConfigMap", versioned)["data"]
    for key in ("TRANSACTIONS_URL", "CUSTOMER_FEATURES_URL", "TERMINAL_FEATURES_URL"):
        assert f"$({key})" in loader["args"] and data[key].startswith("s3://fraud-mlops/dvc/")
    assert not find(docs, "CronJob", "feast-materialize")
    drift = one(docs, "CronJob", "fraud-drift")["spec"]
    assert drift["schedule"] == "0 6 * * 1"  # weekly
    drift_args = container(drift["jobTemplate"]["spec"]["template"]["spec"])["args"][0]
    assert drift_args.startswith("python -m monitoring.drift")
    assert one(docs, "PrometheusRule")["metadata"]["name"] == "fraud-detector-alerts"
    assert {m["metadata"]["name"] for m in find(docs, "ServiceMonitor")} >= {
        "fraud-detector",
        "pushgateway",
    }
    assert (
        one(docs, "ConfigMap", "fraud-detector-dashboard")["metadata"]["labels"][
            "grafana_dashboard"
        ]
        == "1"
    )
    apps = {a["metadata"]["name"]: a["spec"] for a in find(docs, "Application")}
    assert apps["fraud-detector"]["source"]["path"] == "k8s/overlays/canary"
    assert apps["fraud-detector"]["syncPolicy"]["automated"]["selfHeal"] is True
    assert not find(docs, "Secret"), "credentials come from Secrets created out of band"
