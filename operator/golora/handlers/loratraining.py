"""LoraTraining handlers: thin kopf glue; the decisions live in golora.builders."""

from __future__ import annotations

from typing import Any

import kopf

from ..api import GROUP, VERSION
from ..api.loratraining import KIND
from .common import accept


@kopf.on.create(GROUP, VERSION, KIND.plural)
@kopf.on.update(GROUP, VERSION, KIND.plural)
def validate(spec: kopf.Spec, body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    accept(KIND.spec, spec, body, patch)
