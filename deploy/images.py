"""The project's images: which Dockerfile builds which image, and the base they start from.

Every Dockerfile takes ``ARG BASE_IMAGE`` (default: the official ``python`` image). Where no
image registry can be reached, :func:`debian_base_image` builds an equivalent base from
Debian packages (``debootstrap --variant=minbase bookworm`` + python3, 3.11 on bookworm),
imports it into the engine and caches the root file system as a tarball, so the next run
imports it in seconds instead of bootstrapping again.

Images are tagged ``fraud-mlops-<name>:rehearse``; :func:`local_image` maps the manifests'
placeholder (``ghcr.io/OWNER/fraud-mlops-<name>``) onto them, as a release's kustomize
``images:`` patch maps it onto the registry's digests.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.engine import apt_install
from fraudops.config import project_root
from fraudops.settings import DeploySettings

#: The default of every Dockerfile's ``ARG BASE_IMAGE``.
OFFICIAL_BASE = "python:3.11.13-slim-bookworm"
#: The same Python from Debian's packages, when the official image cannot be pulled (the
#: tag ends in a digest of the local CA certificates it trusts: see ``local_ca_files``).
DEBIAN_BASE_REPOSITORY = "fraud-mlops/python-debian"
#: The image configuration an import does not carry: Debian's PATH, python3 by default.
IMAGE_CONFIG = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    'CMD ["python3"]',
)
#: Certificates an administrator added to the host (a proxy's CA): the base trusts them too,
#: or pip and uv cannot reach PyPI from a build where the host can.
LOCAL_CA_DIR = Path("/usr/local/share/ca-certificates")
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
#: What the official image gives that a minbase system lacks: python3 + pip + venv, CA
#: certificates for uv's downloads, ``python`` as a command.
DEBIAN_PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates", "python-is-python3")
#: The manifests' placeholder repository (``ghcr.io/OWNER/fraud-mlops-<name>``); a release
#: replaces it with the registry's (deploy.gitops_patch), the rehearsal with the local tag.
MANIFEST_PREFIX = "ghcr.io/OWNER/fraud-mlops-"
#: Local tags: an engine's image names are lower case, so the placeholder cannot be one.
LOCAL_PREFIX = "fraud-mlops-"
LOCAL_TAG = "rehearse"


@dataclass(frozen=True)
class ImageSpec:
    """One image: its short name, its Dockerfile (from the repo root) and its tag."""

    name: str
    dockerfile: str

    @property
    def tag(self) -> str:
        """The local tag the rehearsal builds."""
        return f"{LOCAL_PREFIX}{self.name}:{LOCAL_TAG}"

    @property
    def manifest_image(self) -> str:
        """The image name the manifests use for it (without a tag)."""
        return f"{MANIFEST_PREFIX}{self.name}"


#: Built in this order: images of one extra follow each other, so they share their layers.
IMAGES: tuple[ImageSpec, ...] = (
    ImageSpec("train", "pipelines/Dockerfile"),
    ImageSpec("monitor", "monitoring/Dockerfile"),
    ImageSpec("predictor", "serving/docker/predictor.Dockerfile"),
    ImageSpec("transformer", "serving/docker/transformer.Dockerfile"),
    ImageSpec("explainer", "serving/docker/explainer.Dockerfile"),
    ImageSpec("level2", "serving/docker/level2.Dockerfile"),
)
#: Needs a model bundle (``--build-arg MODEL_IMAGE``): built once a champion exists.
LEVEL1 = ImageSpec("level1", "serving/docker/level1.Dockerfile")
#: Every image a manifest can name.
ALL_IMAGES: tuple[ImageSpec, ...] = (*IMAGES, LEVEL1)
#: The image level 1's Dockerfile takes its model from (``MODEL_IMAGE``): the two bundle files.
MODEL_IMAGE_DOCKERFILE = "FROM scratch\nCOPY model.ubj bundle.json /\n"


@dataclass(frozen=True)
class BuiltImage:
    """An image the engine now has: its tag, size and how long the build took."""

    name: str
    tag: str
    size_bytes: int
    seconds: float


def local_image(manifest_image: str, specs: Iterable[ImageSpec] = ALL_IMAGES) -> str:
    """The local tag for a manifest's image (ValueError when no Dockerfile builds it)."""
    repository = manifest_image.split("@")[0].rsplit(":", 1)[0] if "/" in manifest_image else ""
    for spec in specs:
        if spec.manifest_image == repository:
            return spec.tag
    raise ValueError(f"image {manifest_image}: no Dockerfile of this repo builds it")


class ImageBuildError(RuntimeError):
    """A build failed; the message names the Dockerfile and the failing instruction's error."""


def cache_dir() -> Path:
    """Where the Debian base tarball is kept between runs (``FRAUD_REHEARSE_CACHE``)."""
    configured = DeploySettings().rehearse_cache
    if configured:
        return configured
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fraud-mlops"


def has_image(client: Any, tag: str) -> bool:
    """Whether the engine already has ``tag``."""
    import docker.errors

    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def try_pull(client: Any, image: str) -> bool:
    """Pull ``image``; False (not an error) when no registry answers."""
    import docker.errors

    try:
        client.images.pull(image)
    except (docker.errors.APIError, docker.errors.DockerException):
        return False
    return True


def local_ca_files(directory: Path = LOCAL_CA_DIR) -> list[Path]:
    """The host's added CA certificates (``*.crt``), sorted; none on a stock machine."""
    return sorted(directory.glob("*.crt")) if directory.is_dir() else []


def debian_base_tag(ca_files: Iterable[Path]) -> str:
    """The Debian base's tag: the suite plus a digest of the recipe and the CAs baked in."""
    digest = hashlib.sha256("\n".join((*DEBIAN_PACKAGES, *IMAGE_CONFIG)).encode())
    for path in ca_files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return f"{DEBIAN_BASE_REPOSITORY}:3.11-{DEBIAN_SUITE}-{digest.hexdigest()[:12]}"


def debootstrap_rootfs(
    target: Path, ca_files: Iterable[Path] = (), run: Callable[..., Any] = subprocess.run
) -> Path:
    """A minimal bookworm with python3 in ``target`` (root only: debootstrap chroots)."""
    if shutil.which("debootstrap") is None and os.geteuid() == 0:
        apt_install("debootstrap")
    if shutil.which("debootstrap") is None:
        raise ImageBuildError(
            "debootstrap not found: apt-get install -y debootstrap (needed to build the base "
            "image from Debian packages)"
        )
    run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(DEBIAN_PACKAGES)}",
            DEBIAN_SUITE,
            str(target),
            DEBIAN_MIRROR,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    ca_files = list(ca_files)
    if ca_files:
        for path in ca_files:
            shutil.copy(path, target / "usr/local/share/ca-certificates" / path.name)
        # Captured: its warnings (a bundle file among the certificates) are not a step's line.
        run(["chroot", str(target), "update-ca-certificates"], check=True, capture_output=True)
    # The official image's pip installs into the system Python; Debian's refuses (PEP 668)
    # unless this marker is gone. The Dockerfiles `pip install` uv in their dependency RUN.
    for marker in target.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
        marker.unlink()
    # Package lists and the .deb cache are not part of a base image.
    for leftover in ("var/lib/apt/lists", "var/cache/apt/archives"):
        for entry in (target / leftover).glob("*"):
            if entry.is_file():
                entry.unlink()
    return target


def debian_base_image(client: Any, cache: Path | None = None) -> str:
    """The Debian-built base in the engine: imported from the cached tarball, else built."""
    ca_files = local_ca_files()
    base = debian_base_tag(ca_files)
    if has_image(client, base):
        return base
    cache = cache or cache_dir()
    tarball = cache / f"{base.split('/')[-1].replace(':', '-')}.tar"
    if not tarball.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="rootfs-", dir=cache) as tmp:
            rootfs = debootstrap_rootfs(Path(tmp) / "rootfs", ca_files)
            partial = tarball.with_suffix(".partial")
            with tarfile.open(partial, "w") as archive:
                archive.add(rootfs, arcname=".")
            partial.rename(tarball)  # only a complete tarball is ever reused
    repository, tag = base.rsplit(":", 1)
    with tarball.open("rb") as data:
        client.api.import_image_from_data(
            data.read(),
            repository=repository,
            tag=tag,
            changes=list(IMAGE_CONFIG),
        )
    return base


def base_image(client: Any, cache: Path | None = None) -> str:
    """The official python image when it is there or can be pulled, else the Debian base."""
    if has_image(client, OFFICIAL_BASE) or try_pull(client, OFFICIAL_BASE):
        return OFFICIAL_BASE
    return debian_base_image(client, cache)


def _build_error(dockerfile: str, chunks: Iterable[dict]) -> str | None:
    """The first error of a build log, with the last output line before it."""
    last = ""
    for chunk in chunks:
        if "error" in chunk:
            detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
            return f"{dockerfile}: {detail.strip()} (after: {last.strip()[-200:]})"
        if chunk.get("stream", "").strip():
            last = chunk["stream"]
    return None


def build_image(
    client: Any,
    root: Path,
    spec: ImageSpec,
    base: str,
    build_args: dict[str, str] | None = None,
    log: Path | None = None,
) -> BuiltImage:
    """Build ``spec`` from the repo root with ``BASE_IMAGE=base``; the image and its size."""
    started = time.monotonic()
    chunks = []
    tag = spec.tag
    stream = client.api.build(
        path=str(root),
        dockerfile=spec.dockerfile,
        tag=tag,
        buildargs={"BASE_IMAGE": base, **(build_args or {})},
        rm=True,
        forcerm=True,
        decode=True,
    )
    # Line-buffered: a build cut short at its bound leaves its log up to the last line.
    handle = log.open("a", buffering=1) if log else None
    try:
        for chunk in stream:
            chunks.append(chunk)
            if handle and "stream" in chunk:
                handle.write(chunk["stream"])
    finally:
        if handle:
            handle.close()
    error = _build_error(spec.dockerfile, chunks)
    if error:
        raise ImageBuildError(error)
    image = client.images.get(tag)
    return BuiltImage(spec.name, tag, int(image.attrs["Size"]), time.monotonic() - started)


def build_model_image(client: Any, bundle_dir: Path, tag: str) -> str:
    """An image holding ``/model.ubj`` and ``/bundle.json``: level 1's ``MODEL_IMAGE``.

    What ``--build-context model=<dir>`` gives BuildKit, for a builder without named
    contexts: the exported bundle, and nothing else, as a stage to copy from.
    """
    import io

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as context:
        dockerfile = MODEL_IMAGE_DOCKERFILE.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        context.addfile(info, io.BytesIO(dockerfile))
        for name in ("model.ubj", "bundle.json"):
            context.add(bundle_dir / name, arcname=name)
    buffer.seek(0)
    chunks = client.api.build(
        fileobj=buffer, custom_context=True, tag=tag, rm=True, forcerm=True, decode=True
    )
    error = _build_error("the model image", chunks)
    if error:
        raise ImageBuildError(error)
    return tag


def extras_of(root: Path, spec: ImageSpec) -> tuple[str, ...]:
    """The uv extras a Dockerfile installs: images with the same extras share their layers."""
    return tuple(re.findall(r"--extra (\w+)", (root / spec.dockerfile).read_text()))


def in_parallel(jobs: list[Callable[[], BuiltImage]]) -> list[BuiltImage]:
    """Run ``jobs`` at once, one thread each; their results in order, or the first error.

    Daemon threads: a step cut short at its time bound (SIGALRM interrupts the join) leaves
    no worker the interpreter would wait for at exit.
    """
    results: list[BuiltImage | BaseException | None] = [None] * len(jobs)

    def run(index: int, job: Callable[[], BuiltImage]) -> None:
        try:
            results[index] = job()
        except BaseException as exc:  # noqa: BLE001 -- handed to the caller's thread below
            results[index] = exc

    threads = [
        threading.Thread(target=run, args=(i, job), daemon=True, name=f"build-{i}")
        for i, job in enumerate(jobs)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [result for result in results if isinstance(result, BuiltImage)]


def build_all(
    connect: Callable[[], Any],
    root: Path,
    base: str,
    log_dir: Path | None = None,
    specs: Iterable[ImageSpec] = IMAGES,
) -> list[BuiltImage]:
    """Every image; the first of each set of extras in parallel, the rest from their layers.

    A cold build spends its time installing one venv per set of extras (unpacking wheels,
    compiling bytecode, committing the layer): those run at once. The other images of a set
    find its dependency layer cached (the same RUN on the same parent), so they follow one
    by one in seconds. ``connect`` gives each thread a client of its own.
    """
    specs = list(specs)
    first: dict[tuple[str, ...], ImageSpec] = {}
    for spec in specs:
        first.setdefault(extras_of(root, spec), spec)

    def build(spec: ImageSpec) -> BuiltImage:
        log = log_dir / f"build-{spec.name}.log" if log_dir else None
        return build_image(connect(), root, spec, base, log=log)

    leaders = list(first.values())
    built = {b.name: b for b in in_parallel([lambda s=s: build(s) for s in leaders])}
    for spec in specs:
        if spec.name not in built:
            built[spec.name] = build(spec)
    return [built[spec.name] for spec in specs]


def image_user(client: Any, tag: str) -> str:
    """The ``USER`` an image runs as (empty: root)."""
    return str(client.images.get(tag).attrs.get("Config", {}).get("User") or "")


def sizes_table(images: Iterable[BuiltImage], reference: str = "train") -> str:
    """Image sizes, each against the training image's (the issue's comparison)."""
    images = list(images)
    sizes = {image.name: image.size_bytes for image in images}
    ref = sizes.get(reference)
    lines = []
    for image in images:
        ratio = f"  ({image.size_bytes / ref:.2f}x {reference})" if ref else ""
        lines.append(f"{image.name:<12} {image.size_bytes / 1e9:5.2f} GB{ratio}")
    return "\n".join(lines)


def write_sizes(images: Iterable[BuiltImage], path: Path) -> Path:
    """The built images as JSON (name, tag, size, seconds) for the run record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([image.__dict__ for image in images], indent=2))
    return path


def push_image(client: Any, built: BuiltImage, registry: str, tag: str) -> str:
    """Tag ``built`` as ``<registry>/fraud-mlops-<name>:<tag>``, push it; its digest."""
    repository = f"{registry.rstrip('/')}/{LOCAL_PREFIX}{built.name}"
    image = client.images.get(built.tag)
    image.tag(repository, tag)
    for chunk in client.images.push(repository, tag=tag, stream=True, decode=True):
        if "error" in chunk:
            raise ImageBuildError(f"push {repository}:{tag}: {chunk['error']}")
    image.reload()
    for digest in image.attrs.get("RepoDigests", []):
        if digest.startswith(f"{repository}@"):
            return digest.split("@", 1)[1]
    raise ImageBuildError(f"push {repository}:{tag}: the registry returned no digest")


def main(argv: list[str] | None = None) -> int:
    """CLI: build every image as ``make rehearse`` does; optionally push and export digests."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m deploy.images", description="Build every image of the repo's Dockerfiles."
    )
    parser.add_argument("--push", metavar="REGISTRY", help="push to REGISTRY (e.g. ghcr.io/acme)")
    parser.add_argument("--tag", default="latest", help="tag to push (default: %(default)s)")
    parser.add_argument("--github-output", action="store_true", help="digests to $GITHUB_OUTPUT")
    args = parser.parse_args(argv)
    import docker
    import docker.errors

    try:
        client = docker.from_env(timeout=3600)
        base = base_image(client)
        lines = []
        connect = lambda: docker.from_env(timeout=3600)  # one client per build thread
        for built in build_all(connect, project_root(), base):
            print(
                f"{built.name}: {built.tag} {built.size_bytes / 1e9:.2f} GB ({built.seconds:.0f}s)"
            )
            if args.push:
                lines.append(f"{built.name}={push_image(client, built, args.push, args.tag)}")
    except (ImageBuildError, docker.errors.DockerException) as exc:
        print(f"error: {_first_line(exc)}", file=sys.stderr)
        return 1
    output = os.environ.get("GITHUB_OUTPUT")
    if args.github_output and output:
        with open(output, "a") as handle:
            handle.writelines(line + "\n" for line in lines)
    print("\n".join(lines))
    return 0


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


if __name__ == "__main__":
    raise SystemExit(main())
