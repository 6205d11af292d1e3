"""Operator settings from the environment (the operator Deployment sets these).

Image defaults match the Dockerfiles in this repo (``extractor/Dockerfile``,
``trainer_image/Dockerfile``, ``Dockerfile``) at this version.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from . import __version__


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


@dataclass(frozen=True)
class Settings:
    extractor_image: str = field(default_factory=lambda: _env("GOLORA_EXTRACTOR_IMAGE", f"golora/extractor:{__version__}"))
    trainer_image: str = field(default_factory=lambda: _env("GOLORA_TRAINER_IMAGE", f"golora/trainer:{__version__}"))
    image_pull_policy: str = field(default_factory=lambda: _env("GOLORA_IMAGE_PULL_POLICY", "IfNotPresent"))
    # A GoDataset Job that has not finished after this long is failed (0 = no deadline).
    dataset_deadline_seconds: int = field(default_factory=lambda: int(_env("GOLORA_DATASET_DEADLINE_SECONDS", "21600")))


def current() -> Settings:
    return Settings()
