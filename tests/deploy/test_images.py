"""Every Dockerfile is built by the rehearsal, from a base it is given (no daemon needed)."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from deploy.images import (
    IMAGES,
    LEVEL1,
    OFFICIAL_BASE,
    BuiltImage,
    debian_base_tag,
    debootstrap_rootfs,
    sizes_table,
)
from deploy.lint import dockerfiles
from fraudops.config import project_root


def test_the_rehearsal_builds_every_dockerfile_of_the_repo():
    repo = {path.relative_to(project_root()).as_posix() for path in dockerfiles(project_root())}
    assert repo == {spec.dockerfile for spec in (*IMAGES, LEVEL1)}


def test_every_dockerfile_takes_its_base_defaulting_to_the_official_image():
    for spec in (*IMAGES, LEVEL1):
        text = (project_root() / spec.dockerfile).read_text()
        assert f"ARG BASE_IMAGE={OFFICIAL_BASE}" in text, spec.dockerfile
        froms = re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE)
        # One stage from the base: the venv is built where it runs (no copy of it to commit).
        assert froms.count("${BASE_IMAGE}") == 1, (spec.dockerfile, froms)
        assert "USER 10001:10001" in text


def test_the_debian_base_tag_follows_the_trusted_certificates(tmp_path: Path):
    ca = tmp_path / "proxy.crt"
    ca.write_text("one")
    first = debian_base_tag([ca])
    ca.write_text("two")
    assert debian_base_tag([ca]) != first
    assert debian_base_tag([]).startswith("fraud-mlops/python-debian:3.11-bookworm-")


def test_debootstrap_installs_python_and_lets_pip_install(tmp_path: Path, monkeypatch):
    commands = []
    marker = tmp_path / "usr/lib/python3.11/EXTERNALLY-MANAGED"
    marker.parent.mkdir(parents=True)
    marker.write_text("managed")
    monkeypatch.setattr("shutil.which", lambda name: f"/usr/sbin/{name}")
    debootstrap_rootfs(tmp_path, [], run=lambda command, **_: commands.append(command))
    assert commands[0][:2] == ["debootstrap", "--variant=minbase"]
    assert "python3" in commands[0][2] and "bookworm" in commands[0]
    assert not marker.exists()  # Debian's pip refuses to install into the system otherwise


def test_sizes_are_reported_against_the_training_image():
    table = sizes_table(
        [BuiltImage("train", "t", 2_000_000_000, 1), BuiltImage("predictor", "p", 1_000_000_000, 1)]
    )
    assert "predictor     1.00 GB  (0.50x train)" in table


def test_images_with_the_same_extras_share_one_venv_build():
    from deploy.images import extras_of

    sets = {spec.name: extras_of(project_root(), spec) for spec in IMAGES}
    # The batch jobs (pipeline steps, monitoring CronJobs) share one venv; the servers another.
    assert sets["train"] == sets["monitor"] == ("train", "pipeline", "monitor")
    assert {sets[name] for name in ("predictor", "transformer", "explainer", "level2")} == {
        ("serve",)
    }


def test_one_image_per_dependency_set_builds_at_once_the_rest_from_its_layers(tmp_path: Path):
    from deploy import images

    calls = []

    class FakeImages:
        def get(self, tag):
            return type("Image", (), {"attrs": {"Size": 1}})()

    class FakeApi:
        def build(self, **kwargs):
            calls.append((threading.current_thread().name, kwargs["dockerfile"]))
            return iter([{"stream": "ok\n"}])

    class FakeClient:
        api, images = FakeApi(), FakeImages()

    built = images.build_all(lambda: FakeClient(), project_root(), "base:1")
    assert [b.name for b in built] == [spec.name for spec in IMAGES]
    at_once = {dockerfile for thread, dockerfile in calls if thread.startswith("build-")}
    # One per set of extras (each installs its own venv); the others reuse that layer.
    assert at_once == {"pipelines/Dockerfile", "serving/docker/predictor.Dockerfile"}
    assert sorted(dockerfile for _, dockerfile in calls) == sorted(s.dockerfile for s in IMAGES)


def test_a_failed_parallel_build_is_raised_in_the_caller():
    from deploy import images

    def fails() -> images.BuiltImage:
        raise images.ImageBuildError("pipelines/Dockerfile: uv sync failed")

    with pytest.raises(images.ImageBuildError, match="uv sync failed"):
        images.in_parallel([lambda: BuiltImage("x", "x", 1, 1), fails])


def test_the_serving_images_share_one_dependency_layer():
    """The same instructions up to the venv in every serving Dockerfile: built once."""

    def dependency_part(spec) -> str:
        text = (project_root() / spec.dockerfile).read_text()
        lines = [line for line in text.splitlines() if line and not line.startswith("#")]
        final = max(i for i, line in enumerate(lines) if line.startswith("FROM ${BASE_IMAGE}"))
        end = next(i for i, line in enumerate(lines) if line.startswith("ENV PATH="))
        return "\n".join(lines[final:end])

    serving = [s for s in (*IMAGES, LEVEL1) if s.dockerfile.startswith("serving/")]
    assert len({dependency_part(spec) for spec in serving}) == 1
    assert "uv sync" in dependency_part(serving[0]) and "COPY --from" not in dependency_part(
        serving[0]
    )


def test_level1_gets_its_model_as_an_image_of_the_two_bundle_files(tmp_path: Path):
    """What --build-context model=<dir> gives BuildKit, for the classic builder."""
    import io
    import tarfile

    from deploy import images

    for name in ("model.ubj", "bundle.json", "registration.json"):
        (tmp_path / name).write_text(name)
    sent = {}

    class FakeApi:
        def build(self, **kwargs):
            sent.update(kwargs)
            return iter([{"stream": "Successfully built\n"}])

    client = type("Client", (), {"api": FakeApi()})()
    assert images.build_model_image(client, tmp_path, "m:1") == "m:1"
    with tarfile.open(fileobj=io.BytesIO(sent["fileobj"].getvalue())) as context:
        assert sorted(context.getnames()) == ["Dockerfile", "bundle.json", "model.ubj"]
        dockerfile = context.extractfile("Dockerfile").read().decode()
    assert dockerfile.startswith("FROM scratch") and sent["custom_context"] is True
