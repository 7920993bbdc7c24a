"""Write a release into a kustomize overlay: the model location, image digests, canary share.

The ML pipeline's GitOps job runs::

    python -m deploy.gitops_patch --overlay k8s/overlays/level5 \\
        --model-uri s3://fraud-mlops/mlflow/1/<run>/artifacts/model \\
        --image ghcr.io/OWNER/fraud-mlops-predictor=ghcr.io/acme/fraud-mlops-predictor@sha256:<hex>

and pushes the commit; Argo CD syncs it. Exactly these fields change, nothing else in the
files (comments and layout included), because the edits replace the spans of the YAML
scalars concerned:

* ``STORAGE_URI=...`` in the overlay's ``fraud-model-release`` configMapGenerator (the
  overlay's replacements copy it into every model-loading container's STORAGE_URI);
* the overlay's ``images:`` entry named NAME: ``newName`` and ``newTag`` -> ``digest``;
* with ``--canary-percent``, the ``canaryTrafficPercent`` value in ``canary-traffic.yaml``;
* with ``--data-url NAME=URL`` (``--overlay k8s/infra/feast``), the released data version in
  the ``versioned-data`` configMapGenerator, which the online store's load-online Job reads.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

KUSTOMIZATION = "kustomization.yaml"
CANARY_PATCH = "canary-traffic.yaml"
RELEASE_CONFIGMAP = "fraud-model-release"
MODEL_URI_KEY = "STORAGE_URI"
CANARY_PATH = "/spec/predictor/canaryTrafficPercent"
#: Locations KServe's storage initializer can download.
MODEL_URI_SCHEMES = (
    "s3://",
    "gs://",
    "https://",
    "http://",
    "pvc://",
    "hdfs://",
    "webhdfs://",
    "oci://",
)
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
DATA_CONFIGMAP = "versioned-data"
#: ``--data-url`` NAME (as ``python -m deploy.dvc_urls`` prints it) -> its literal's key
DATA_URL_KEYS = {
    "transactions": "TRANSACTIONS_URL",
    "customer_features": "CUSTOMER_FEATURES_URL",
    "terminal_features": "TERMINAL_FEATURES_URL",
}


class PatchError(ValueError):
    """The overlay or an argument does not allow the requested edit (the message says why)."""


@dataclass(frozen=True)
class ImagePin:
    """``--image NAME=REF``: the images entry NAME gets REF's repository (if any) and digest."""

    name: str
    new_name: str | None
    digest: str

    @classmethod
    def parse(cls, text: str) -> ImagePin:
        """Parse ``NAME=sha256:<hex>`` or ``NAME=<repository>@sha256:<hex>``."""
        name, sep, ref = text.partition("=")
        if not sep or not name or not ref:
            raise PatchError(f"--image: expected NAME=REF, got {text!r}")
        repository, at, digest = ref.rpartition("@")
        if not at:
            repository, digest = "", ref
        if not DIGEST.match(digest):
            raise PatchError(f"--image {name}: digest must be sha256:<64 hex>, got {digest!r}")
        return cls(name=name, new_name=repository or None, digest=digest)


@dataclass
class PatchResult:
    """What the patch changed, with the values it replaced (for the release notes)."""

    changed_files: list[Path] = field(default_factory=list)
    previous_model_uri: str | None = None
    previous_images: dict[str, str] = field(default_factory=dict)
    previous_canary_percent: int | None = None
    previous_data_urls: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Edit:
    start: int
    end: int
    text: str


def _scalar_text(value: str | int) -> str:
    """``value`` as a one-line YAML scalar (quoted only when plain style would misread it)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("...").strip()


def _apply(text: str, edits: list[_Edit]) -> str:
    for edit in sorted(edits, key=lambda e: e.start, reverse=True):
        text = text[: edit.start] + edit.text + text[edit.end :]
    return text


def _get(node: yaml.Node, key: str) -> tuple[yaml.Node, yaml.Node] | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            return key_node, value_node
    return None


def _compose(path: Path) -> tuple[str, yaml.Node]:
    if not path.is_file():
        raise PatchError(f"{path}: no such file")
    text = path.read_text()
    node = yaml.compose(text)
    if node is None:
        raise PatchError(f"{path}: empty file")
    return text, node


def validate_model_uri(uri: str) -> str:
    """A model location KServe can download, or a PatchError saying what is expected."""
    if uri.startswith(("models:/", "runs:/")):
        raise PatchError(
            f"--model-uri: {uri!r} is a registry reference, not a storage location; "
            "pass the version's artifact location (python -m deploy.champion prints it)"
        )
    if not uri.startswith(MODEL_URI_SCHEMES) or any(c.isspace() for c in uri):
        raise PatchError(
            f"--model-uri: must start with one of {', '.join(MODEL_URI_SCHEMES)} "
            f"and contain no spaces, got {uri!r}"
        )
    return uri


def _literal_edit(
    path: Path, root: yaml.Node, configmap: str, key: str, value: str, owner: str
) -> tuple[_Edit, str]:
    """The edit setting literal ``key`` of configMapGenerator ``configmap``, and its old value."""
    generators = _get(root, "configMapGenerator")
    for generator in generators[1].value if generators else []:
        name = _get(generator, "name")
        if not name or name[1].value != configmap:
            continue
        literals = _get(generator, "literals")
        for literal in literals[1].value if literals else []:
            found, sep, previous = literal.value.partition("=")
            if sep and found == key:
                new = _scalar_text(f"{key}={value}")
                return _Edit(literal.start_mark.index, literal.end_mark.index, new), previous
    raise PatchError(
        f"{path}: configMapGenerator {configmap} has no literal {key}=...: "
        f"this overlay does not own {owner}"
    )


def _model_uri_edit(path: Path, root: yaml.Node, uri: str) -> tuple[_Edit, str]:
    return _literal_edit(path, root, RELEASE_CONFIGMAP, MODEL_URI_KEY, uri, "a model location")


def parse_data_url(text: str) -> tuple[str, str]:
    """``--data-url NAME=URL``: a pipeline input's location in the DVC remote."""
    name, sep, url = text.partition("=")
    if name not in DATA_URL_KEYS:
        raise PatchError(
            f"--data-url: NAME must be one of {', '.join(DATA_URL_KEYS)}, got {text!r}"
        )
    if not sep or "://" not in url or any(c.isspace() for c in url):
        raise PatchError(f"--data-url {name}: expected an object-store URL (s3://...), got {url!r}")
    return name, url


def _image_edits(path: Path, root: yaml.Node, pin: ImagePin) -> tuple[list[_Edit], str]:
    images = _get(root, "images")
    for entry in images[1].value if images else []:
        name = _get(entry, "name")
        if not name or name[1].value != pin.name:
            continue
        edits: list[_Edit] = []
        new_name = _get(entry, "newName")
        previous_repo = new_name[1].value if new_name else pin.name
        if pin.new_name is not None:
            if new_name is None:
                raise PatchError(f"{path}: images entry {pin.name} has no newName to replace")
            value = new_name[1]
            edits.append(
                _Edit(value.start_mark.index, value.end_mark.index, _scalar_text(pin.new_name))
            )
        digest = _get(entry, "digest")
        tag = _get(entry, "newTag")
        if digest is not None:
            previous = f"{previous_repo}@{digest[1].value}"
            value = digest[1]
            edits.append(
                _Edit(value.start_mark.index, value.end_mark.index, _scalar_text(pin.digest))
            )
        elif tag is not None:
            previous = f"{previous_repo}:{tag[1].value}"
            key, value = tag
            edits.append(_Edit(key.start_mark.index, value.end_mark.index, f"digest: {pin.digest}"))
        else:
            raise PatchError(f"{path}: images entry {pin.name} has neither newTag nor digest")
        return edits, previous
    raise PatchError(f"{path}: no images entry named {pin.name}")


def _canary_edit(path: Path, root: yaml.Node, percent: int) -> tuple[_Edit, int]:
    for operation in root.value if isinstance(root, yaml.SequenceNode) else []:
        op_path = _get(operation, "path")
        value = _get(operation, "value")
        if op_path and value and op_path[1].value == CANARY_PATH:
            node = value[1]
            return _Edit(node.start_mark.index, node.end_mark.index, str(percent)), int(node.value)
    raise PatchError(f"{path}: no patch operation on {CANARY_PATH}")


def _write(path: Path, text: str, edits: list[_Edit], result: PatchResult) -> None:
    updated = _apply(text, edits)
    yaml.safe_load(updated)  # the edit must leave valid YAML
    if updated != text:
        path.write_text(updated)
        result.changed_files.append(path)


def patch_overlay(
    overlay: Path,
    model_uri: str | None = None,
    images: list[ImagePin] | None = None,
    canary_percent: int | None = None,
    data_urls: dict[str, str] | None = None,
) -> PatchResult:
    """Edit the release fields of ``overlay`` in place; every other byte stays as it was."""
    if not overlay.is_dir():
        raise PatchError(f"--overlay: {overlay} is not a directory")
    if model_uri is None and not images and canary_percent is None and not data_urls:
        raise PatchError(
            "nothing to patch: give --model-uri, --image, --canary-percent or --data-url"
        )
    result = PatchResult()
    if model_uri is not None or images or data_urls:
        path = overlay / KUSTOMIZATION
        text, root = _compose(path)
        edits: list[_Edit] = []
        if model_uri is not None:
            edit, result.previous_model_uri = _model_uri_edit(
                path, root, validate_model_uri(model_uri)
            )
            edits.append(edit)
        for pin in images or []:
            image_edits, result.previous_images[pin.name] = _image_edits(path, root, pin)
            edits.extend(image_edits)
        for name, url in (data_urls or {}).items():
            edit, result.previous_data_urls[name] = _literal_edit(
                path, root, DATA_CONFIGMAP, DATA_URL_KEYS[name], url, "a data version"
            )
            edits.append(edit)
        _write(path, text, edits, result)
    if canary_percent is not None:
        if not 0 <= canary_percent <= 100:
            raise PatchError(f"--canary-percent: must be within 0..100, got {canary_percent}")
        path = overlay / CANARY_PATCH
        text, root = _compose(path)
        edit, result.previous_canary_percent = _canary_edit(path, root, canary_percent)
        _write(path, text, [edit], result)
    return result


def write_github_output(result: PatchResult, output_file: Path) -> None:
    """Append the step outputs (changed, previous_model_uri) for later workflow steps."""
    lines = [f"changed={'true' if result.changed_files else 'false'}"]
    if result.previous_model_uri is not None:
        lines.append(f"previous_model_uri={result.previous_model_uri}")
    with output_file.open("a") as handle:
        handle.write("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    """CLI: patch an overlay; exit 1 with one readable line when the edit is impossible."""
    parser = argparse.ArgumentParser(
        prog="python -m deploy.gitops_patch", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--overlay", type=Path, required=True, help="kustomize overlay directory")
    parser.add_argument("--model-uri", help="the model's storage location (s3://...)")
    parser.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="NAME=REF",
        help="images entry NAME -> [repository@]sha256:<digest>; repeatable",
    )
    parser.add_argument("--canary-percent", type=int, help="canaryTrafficPercent (0..100)")
    parser.add_argument(
        "--data-url",
        action="append",
        default=[],
        metavar="NAME=URL",
        help=f"versioned-data: {', '.join(DATA_URL_KEYS)} -> its DVC remote URL; repeatable",
    )
    parser.add_argument(
        "--github-output", action="store_true", help="append outputs to $GITHUB_OUTPUT"
    )
    args = parser.parse_args(argv)
    try:
        pins = [ImagePin.parse(text) for text in args.image]
        data_urls = dict(parse_data_url(text) for text in args.data_url)
        result = patch_overlay(args.overlay, args.model_uri, pins, args.canary_percent, data_urls)
    except PatchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for path in result.changed_files:
        print(f"patched {path}")
    if not result.changed_files:
        print(f"{args.overlay}: already at the requested release, nothing changed")
    if args.github_output and os.environ.get("GITHUB_OUTPUT"):
        write_github_output(result, Path(os.environ["GITHUB_OUTPUT"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
