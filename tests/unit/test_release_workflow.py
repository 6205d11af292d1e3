"""The release workflow (.github/workflows/release.yml) cannot run here: its YAML and the
contract it implements are checked instead — on a tag, the three images for both platforms
from the Dockerfiles `make images` builds, and manifests/install rendered with their digests."""

from __future__ import annotations

import re

import yaml

from tests.conftest import REPO

WORKFLOW = REPO / ".github" / "workflows" / "release.yml"


def _load() -> dict:
    doc = yaml.safe_load(WORKFLOW.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as a boolean
    return doc


def test_release_workflow_builds_the_three_images_for_both_platforms_on_a_tag():
    doc = _load()
    assert doc["on"]["push"]["tags"]
    assert doc["permissions"]["packages"] == "write" and doc["permissions"]["contents"] == "write"
    assert set(doc["env"]["PLATFORMS"].split(",")) == {"linux/amd64", "linux/arm64"}
    images = doc["jobs"]["images"]
    matrix = {m["name"]: (m["file"], m["context"]) for m in images["strategy"]["matrix"]["include"]}
    build = (REPO / "hack" / "images" / "build.sh").read_text()
    assert set(matrix) == {"operator", "extractor", "trainer"}
    for name, (file, context) in matrix.items():
        assert (REPO / file).is_file() and (REPO / context).is_dir()
        assert f"{name}) file={file}; context={context}" in build, "make images builds it the same way"
    (push,) = [s for s in images["steps"] if s.get("uses", "").startswith("docker/build-push-action@")]
    assert push["with"]["push"] is True and push["with"]["platforms"] == "${{ env.PLATFORMS }}"
    assert push["with"]["file"] == "${{ matrix.file }}" and push["with"]["context"] == "${{ matrix.context }}"


def test_release_workflow_pins_every_image_of_the_install_by_digest():
    doc = _load()
    job = doc["jobs"]["manifests"]
    assert job["needs"] == "images"
    script = "\n".join(s.get("run", "") for s in job["steps"])
    install = (REPO / "manifests" / "install" / "operator.yaml").read_text()
    # Every image reference the install makes is rewritten (the Deployment's and the two worker images).
    for ref in re.findall(r"(?:image|value): (golora/\w+):", install):
        assert ref in script, ref
    assert "kustomize build" in script and "golora-install.yaml" in script
    (release,) = [s for s in job["steps"] if s.get("uses", "").startswith("softprops/action-gh-release@")]
    assert release["with"]["files"] == "golora-install.yaml"
    digest = "\n".join(s.get("run", "") for s in doc["jobs"]["images"]["steps"])
    assert "steps.build.outputs.digest" in digest


def test_release_workflow_actions_are_pinned_to_a_major_version():
    doc = _load()
    for job in doc["jobs"].values():
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", step["uses"]), step["uses"]
