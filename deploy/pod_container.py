"""A container of a rendered manifest, run the way its kubelet would run it, on Docker.

From a pod spec (a Deployment's, a CronJob's, an InferenceService component's) this takes
exactly what the cluster would use -- image, command, args, env (``value``,
``secretKeyRef``, ``configMapKeyRef``, with Kubernetes' ``$(VAR)`` expansion in command
and args), the user from ``securityContext`` (container over pod), ``readOnlyRootFilesystem``,
``capabilities.drop`` and ``allowPrivilegeEscalation`` -- and turns it into the arguments of
``docker run`` (docker-py's ``containers.run``). Volumes become what they are on a node:
an ``emptyDir`` is a fresh folder on the host's disk (so what a container wrote there, such
as the prediction log, can be shipped afterwards), a ``configMap`` a read-only folder
holding its keys as files.

What the cluster adds around a container is passed in, never invented: the Secrets' values,
the host names the cluster's DNS would answer (``extra_hosts``) and host folders for the
volumes an operator fills (``binds``: KServe's /mnt/models).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Kubernetes expands ``$(NAME)`` in command and args from the container's env; ``$$`` escapes.
_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


class PodSpecError(ValueError):
    """The manifest asks for something the run cannot provide; the message names it."""


@dataclass(frozen=True)
class ContainerPlan:
    """One container as ``docker run`` must start it."""

    name: str
    image: str
    command: list[str] | None
    args: list[str]
    env: dict[str, str]
    user: str | None
    read_only: bool
    volumes: dict[str, dict[str, str]] = field(default_factory=dict)
    cap_drop: list[str] = field(default_factory=list)
    no_new_privileges: bool = False

    def run_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``client.containers.run`` (the cluster's settings only)."""
        kwargs: dict[str, Any] = {
            "image": self.image,
            "command": self.args or None,
            "environment": dict(self.env),
            "read_only": self.read_only,
            "volumes": {host: dict(bind) for host, bind in self.volumes.items()},
            "cap_drop": list(self.cap_drop),
        }
        if self.command is not None:
            kwargs["entrypoint"] = list(self.command)
        if self.user:
            kwargs["user"] = self.user
        if self.no_new_privileges:
            kwargs["security_opt"] = ["no-new-privileges"]
        return kwargs


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: known names replaced, unknown kept, ``$$`` -> ``$``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _REFERENCE.sub(replace, text)


def resolve_env(
    container: Mapping[str, Any],
    secrets: Mapping[str, Mapping[str, str]],
    config_maps: Mapping[str, Mapping[str, str]],
) -> dict[str, str]:
    """The container's environment, references resolved in order as the kubelet does."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        if "configMapRef" in source:
            env.update(_lookup_map(config_maps, source["configMapRef"]["name"], "ConfigMap"))
        elif "secretRef" in source:
            env.update(_lookup_map(secrets, source["secretRef"]["name"], "Secret"))
    for item in container.get("env") or []:
        name = item["name"]
        if "value" in item:
            env[name] = expand(str(item["value"]), env)
            continue
        ref = item.get("valueFrom") or {}
        if "secretKeyRef" in ref:
            env[name] = _lookup_key(secrets, ref["secretKeyRef"], "Secret")
        elif "configMapKeyRef" in ref:
            env[name] = _lookup_key(config_maps, ref["configMapKeyRef"], "ConfigMap")
        else:
            raise PodSpecError(f"env {name}: unsupported valueFrom {sorted(ref)}")
    return env


def _lookup_map(maps: Mapping[str, Mapping[str, str]], name: str, kind: str) -> Mapping[str, str]:
    if name not in maps:
        raise PodSpecError(f"{kind} {name}: not provided")
    return maps[name]


def _lookup_key(maps: Mapping[str, Mapping[str, str]], ref: Mapping[str, str], kind: str) -> str:
    values = _lookup_map(maps, ref["name"], kind)
    if ref["key"] not in values:
        raise PodSpecError(f"{kind} {ref['name']}: no key {ref['key']}")
    return str(values[ref["key"]])


def user_of(pod: Mapping[str, Any], container: Mapping[str, Any]) -> str | None:
    """``uid[:gid]`` from the security contexts (the container's wins over the pod's)."""
    merged = {**(pod.get("securityContext") or {}), **(container.get("securityContext") or {})}
    uid, gid = merged.get("runAsUser"), merged.get("runAsGroup")
    if uid is None:
        return None  # the image's USER applies
    return f"{uid}:{gid}" if gid is not None else str(uid)


def plan_container(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    *,
    name: str,
    secrets: Mapping[str, Mapping[str, str]],
    config_maps: Mapping[str, Mapping[str, str]],
    volume_dir: Path,
    binds: Mapping[str, str] | None = None,
) -> ContainerPlan:
    """The ``docker run`` plan of ``container`` in ``pod`` (see the module doc)."""
    env = resolve_env(container, secrets, config_maps)
    context = container.get("securityContext") or {}
    volumes_by_name = {volume["name"]: volume for volume in pod.get("volumes") or []}
    mounts: dict[str, dict[str, str]] = {}
    for mount in container.get("volumeMounts") or []:
        volume = volumes_by_name.get(mount["name"])
        if volume is None:
            raise PodSpecError(f"volumeMount {mount['name']}: no such volume in the pod")
        path = mount["mountPath"]
        folder = volume_dir / name / mount["name"]
        if "emptyDir" in volume:
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o1777)  # writable by the container's user, as fsGroup makes it
            mounts[str(folder)] = {"bind": path, "mode": "rw"}
        elif "configMap" in volume:
            _write_config_map(config_maps, volume["configMap"]["name"], folder)
            mounts[str(folder)] = {"bind": path, "mode": "ro"}
        else:
            raise PodSpecError(f"volume {mount['name']}: only emptyDir and configMap are run here")
    for host, path in (binds or {}).items():
        mounts[host] = {"bind": path, "mode": "ro"}
    return ContainerPlan(
        name=name,
        image=container["image"],
        command=[expand(part, env) for part in container["command"]]
        if container.get("command")
        else None,
        args=[expand(str(part), env) for part in container.get("args") or []],
        env=env,
        user=user_of(pod, container),
        read_only=bool(context.get("readOnlyRootFilesystem")),
        volumes=mounts,
        cap_drop=list((context.get("capabilities") or {}).get("drop") or []),
        no_new_privileges=context.get("allowPrivilegeEscalation") is False,
    )


def _write_config_map(
    config_maps: Mapping[str, Mapping[str, str]], name: str, folder: Path
) -> Path:
    """The ConfigMap's keys as files in ``folder`` (what the kubelet mounts)."""
    folder.mkdir(parents=True, exist_ok=True)
    for key, value in _lookup_map(config_maps, name, "ConfigMap").items():
        (folder / key).write_text(value)
    folder.chmod(0o755)
    return folder


def config_maps_of(docs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Every ConfigMap's data in rendered documents, by name."""
    return {
        doc["metadata"]["name"]: dict(doc.get("data") or {})
        for doc in docs
        if doc.get("kind") == "ConfigMap"
    }


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The one document of ``kind`` named ``name`` (PodSpecError when absent)."""
    for doc in docs:
        if doc.get("kind") == kind and doc["metadata"]["name"] == name:
            return doc
    raise PodSpecError(f"{kind} {name}: not in the rendered manifests")


def pod_of(doc: dict[str, Any], component: str | None = None) -> dict[str, Any]:
    """The pod spec of a Deployment, a CronJob or an InferenceService ``component``."""
    kind, spec = doc["kind"], doc["spec"]
    if kind == "CronJob":
        return spec["jobTemplate"]["spec"]["template"]["spec"]
    if kind == "InferenceService":
        if component not in spec:
            raise PodSpecError(f"InferenceService {doc['metadata']['name']}: no {component}")
        return spec[component]
    return spec["template"]["spec"]
