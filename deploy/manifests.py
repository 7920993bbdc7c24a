"""Build every kustomize root under ``k8s/`` and validate what it renders, offline.

* core kinds (Deployment, Service, CronJob, NetworkPolicy, ...) against the Kubernetes
  OpenAPI schemas of ``kubernetes-validate`` in strict mode (an unknown field fails);
* custom resources (InferenceService, VirtualService, DestinationRule, PrometheusRule,
  ServiceMonitor, Application) against the ``openAPIV3Schema`` of the upstream CRDs kept in
  ``k8s/crds/``, made strict the way the API server's strict field validation is: an
  object that lists its ``properties`` rejects any other field unless the CRD marks it
  ``x-kubernetes-preserve-unknown-fields``;
* the project's workload rules: non-root, no privilege escalation, all capabilities
  dropped, a read-only root filesystem, requests and limits, probes on long-running
  servers, pinned images and no credential in a manifest.

``python -m deploy.manifests`` checks every root (exit 1 with one line per problem).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from fraudops.config import project_root

#: The Kubernetes version the core kinds are validated against.
KUBERNETES_VERSION = "1.33"

#: Kinds whose pods run until stopped: they need liveness and readiness probes.
LONG_RUNNING_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "InferenceService"})
#: Seconds ``kubectl kustomize`` may take to render one root (it takes about one).
RENDER_TIMEOUT_S = 120
#: The InferenceService components that run containers.
KSERVE_COMPONENTS = ("predictor", "transformer", "explainer")
#: Env var names that hold credentials: their value must come from a Secret.
CREDENTIAL_MARKERS = ("PASSWORD", "SECRET", "TOKEN", "ACCESS_KEY", "PRIVATE_KEY")

# ObjectMeta as a manifest may write it; the CRDs only say `type: object`.
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
METADATA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string"},
        "generateName": {"type": "string"},
        "namespace": {"type": "string"},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
        "finalizers": {"type": "array", "items": {"type": "string"}},
    },
}


class ManifestError(Exception):
    """A kustomize root that cannot be built or a manifest that cannot be checked."""


def k8s_dir() -> Path:
    """The ``k8s/`` folder of the project."""
    return project_root() / "k8s"


def kubectl() -> str | None:
    """Path of ``kubectl`` (its built-in kustomize renders the roots), or None."""
    return shutil.which("kubectl")


def kustomize_roots(base: Path) -> list[Path]:
    """Every folder under ``base`` whose kustomization.yaml is a Kustomization (not a Component)."""
    roots = []
    for file in sorted(base.rglob("kustomization.yaml")):
        kind = (yaml.safe_load(file.read_text()) or {}).get("kind", "Kustomization")
        if kind == "Kustomization":
            roots.append(file.parent)
    return roots


def build(root: Path) -> list[dict[str, Any]]:
    """Render one kustomize root with ``kubectl kustomize`` and parse the documents."""
    binary = kubectl()
    if binary is None:
        raise ManifestError("kubectl not found on PATH: cannot run `kubectl kustomize`")
    try:
        # A local render takes a second; bounded so that no caller (the rehearsal) can hang.
        done = subprocess.run(
            [binary, "kustomize", str(root)],
            capture_output=True,
            text=True,
            check=False,
            timeout=RENDER_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise ManifestError(
            f"{root}: kubectl kustomize gave no answer within {RENDER_TIMEOUT_S}s"
        ) from None
    if done.returncode != 0:
        raise ManifestError(f"{root}: kubectl kustomize failed: {done.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


# --- CRD schemas --------------------------------------------------------------------------


def strict_schema(node: Any) -> Any:
    """Turn a CRD ``openAPIV3Schema`` into a JSON Schema that rejects unknown fields.

    Follows the API server: ``additionalProperties: false`` on every object that lists
    ``properties`` unless it preserves unknown fields; ``nullable`` admits null;
    ``x-kubernetes-int-or-string`` admits both; embedded resources accept their own
    apiVersion / kind / metadata.
    """
    if isinstance(node, list):
        return [strict_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    schema = {key: strict_schema(value) for key, value in node.items()}
    preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
    if schema.get("x-kubernetes-embedded-resource") is True:
        properties = schema.setdefault("properties", {})
        properties.setdefault("apiVersion", {"type": "string"})
        properties.setdefault("kind", {"type": "string"})
        properties.setdefault("metadata", {"type": "object"})
    if schema.get("x-kubernetes-int-or-string") is True and "type" not in schema:
        schema.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if schema.get("nullable") is True and isinstance(schema.get("type"), str):
        schema["type"] = [schema["type"], "null"]
    if "properties" in schema and "additionalProperties" not in schema and not preserve:
        schema["additionalProperties"] = False
    return schema


@dataclass(frozen=True)
class CrdVersion:
    """One served version of a CRD: its kind, ``group/version`` and the strict schema."""

    kind: str
    api_version: str
    schema: dict[str, Any]


def load_crds(crd_dir: Path) -> dict[tuple[str, str], CrdVersion]:
    """The strict schema of every served version in ``crd_dir``, keyed by (apiVersion, kind)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    versions: dict[tuple[str, str], CrdVersion] = {}
    for file in sorted(crd_dir.glob("*.yaml")):
        crd = yaml.load(file.read_text(), Loader=loader)
        if not crd or crd.get("kind") != "CustomResourceDefinition":
            raise ManifestError(f"{file}: not a CustomResourceDefinition")
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = strict_schema(version["schema"]["openAPIV3Schema"])
            properties = schema.setdefault("properties", {})
            # Some CRDs (Istio's) leave the root's apiVersion / kind implicit.
            properties.setdefault("apiVersion", {"type": "string"})
            properties.setdefault("kind", {"type": "string"})
            properties["metadata"] = METADATA_SCHEMA
            schema["additionalProperties"] = False
            api_version = f"{group}/{version['name']}"
            versions[(api_version, kind)] = CrdVersion(kind, api_version, schema)
    return versions


@lru_cache(maxsize=4)
def _cached_crds(crd_dir: str) -> dict[tuple[str, str], CrdVersion]:
    return load_crds(Path(crd_dir))


def _path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path) or "<root>"


def _describe(doc: dict[str, Any]) -> str:
    name = (doc.get("metadata") or {}).get("name", "?")
    return f"{doc.get('kind', '?')}/{name}"


def validate_custom(doc: dict[str, Any], crds: dict[tuple[str, str], CrdVersion]) -> list[str]:
    """Errors of a custom resource against its CRD schema (empty when valid)."""
    crd = crds[(doc["apiVersion"], doc["kind"])]
    validator = jsonschema.Draft7Validator(crd.schema)
    return [
        f"{_describe(doc)}: {_path(error)}: {error.message}"
        for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    ]


def validate_core(doc: dict[str, Any], version: str = KUBERNETES_VERSION) -> list[str]:
    """Errors of a core-kind manifest against the strict Kubernetes schema (empty when valid)."""
    import kubernetes_validate  # imported here: it loads its schema index on import

    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{_describe(doc)}: {_path(error)}: {error.message}"]
    except kubernetes_validate.SchemaNotFoundError as error:
        return [f"{_describe(doc)}: {error.message}"]
    return []


def validate_schema(doc: dict[str, Any], crd_dir: Path | None = None) -> list[str]:
    """Schema errors of one manifest: its CRD if it is a custom resource, else core strict."""
    crds = _cached_crds(str(crd_dir or k8s_dir() / "crds"))
    if (doc.get("apiVersion"), doc.get("kind")) in crds:
        return validate_custom(doc, crds)
    return validate_core(doc)


# --- workload rules -------------------------------------------------------------------------


@dataclass(frozen=True)
class PodSpec:
    """A pod template found in a manifest, with where it came from."""

    owner: str
    kind: str
    spec: dict[str, Any]
    long_running: bool


def pod_specs(doc: dict[str, Any]) -> Iterator[PodSpec]:
    """Every pod template in a manifest (workloads, CronJobs and InferenceService components)."""
    kind, spec = doc.get("kind"), doc.get("spec") or {}
    owner = _describe(doc)
    if kind in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
        yield PodSpec(owner, kind, spec["template"]["spec"], kind in LONG_RUNNING_KINDS)
    elif kind == "CronJob":
        yield PodSpec(owner, kind, spec["jobTemplate"]["spec"]["template"]["spec"], False)
    elif kind == "InferenceService":
        for component in KSERVE_COMPONENTS:
            if component in spec:
                yield PodSpec(f"{owner}.{component}", kind, spec[component], True)


def _container_rules(pod: PodSpec, container: dict[str, Any]) -> Iterator[str]:
    where = f"{pod.owner} container {container.get('name', '?')}"
    pod_context = pod.spec.get("securityContext") or {}
    context = container.get("securityContext") or {}
    if not (context.get("runAsNonRoot") or pod_context.get("runAsNonRoot")):
        yield f"{where}: must set runAsNonRoot: true (pod or container securityContext)"
    if context.get("allowPrivilegeEscalation") is not False:
        yield f"{where}: must set securityContext.allowPrivilegeEscalation: false"
    if "ALL" not in ((context.get("capabilities") or {}).get("drop") or []):
        yield f"{where}: must drop ALL capabilities"
    if context.get("readOnlyRootFilesystem") is not True:
        yield f"{where}: must set securityContext.readOnlyRootFilesystem: true"
    resources = container.get("resources") or {}
    for bound in ("requests", "limits"):
        missing = {"cpu", "memory"} - set(resources.get(bound) or {})
        if missing:
            yield f"{where}: resources.{bound} must set {', '.join(sorted(missing))}"
    if pod.long_running:
        for probe in ("livenessProbe", "readinessProbe"):
            if probe not in container:
                yield f"{where}: a long-running server needs a {probe}"
    image = container.get("image", "")
    if not ("@sha256:" in image or ":" in image.rsplit("/", 1)[-1]):
        yield f"{where}: image {image!r} must carry a tag or a digest"
    for env in container.get("env") or []:
        name = env.get("name", "")
        if "value" in env and any(marker in name.upper() for marker in CREDENTIAL_MARKERS):
            yield f"{where}: env {name} looks like a credential: take it from a Secret (valueFrom)"


def policy_violations(doc: dict[str, Any]) -> list[str]:
    """The project's workload rules a manifest breaks (empty when it keeps them all)."""
    problems: list[str] = []
    if doc.get("kind") == "Secret" and (doc.get("data") or doc.get("stringData")):
        problems.append(f"{_describe(doc)}: Secrets are created out of band, never committed")
    for pod in pod_specs(doc):
        for container in (pod.spec.get("initContainers") or []) + (
            pod.spec.get("containers") or []
        ):
            problems.extend(_container_rules(pod, container))
    return problems


def check_documents(docs: Iterable[dict[str, Any]], crd_dir: Path | None = None) -> list[str]:
    """Schema errors and rule violations of rendered manifests."""
    problems: list[str] = []
    for doc in docs:
        problems.extend(validate_schema(doc, crd_dir))
        problems.extend(policy_violations(doc))
    return problems


def check_root(root: Path, crd_dir: Path | None = None) -> list[str]:
    """Build one kustomize root and return its problems, each prefixed with the root."""
    try:
        docs = build(root)
    except ManifestError as error:
        return [str(error)]
    return [f"{root}: {problem}" for problem in check_documents(docs, crd_dir)]


def main(argv: list[str] | None = None) -> int:
    """CLI: build and check the given kustomize roots (default: every root under k8s/)."""
    parser = argparse.ArgumentParser(
        prog="python -m deploy.manifests", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "roots", nargs="*", type=Path, help="kustomize roots (default: all under k8s/)"
    )
    args = parser.parse_args(argv)
    if kubectl() is None:
        print("error: kubectl not found on PATH (it renders the kustomize roots)", file=sys.stderr)
        return 2
    roots = args.roots or kustomize_roots(k8s_dir())
    problems = [problem for root in roots for problem in check_root(root)]
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"{len(roots)} kustomize roots checked, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
