"""The golora API: one pydantic model per CRD, the only source of ``crds/*.yaml``."""

from . import adapterserving, godataset, loratraining
from .common import API_VERSION, CATEGORY, GROUP, VERSION, KindInfo

KINDS: tuple[KindInfo, ...] = (godataset.KIND, loratraining.KIND, adapterserving.KIND)
KINDS_BY_NAME: dict[str, KindInfo] = {k.kind: k for k in KINDS}

__all__ = ["API_VERSION", "CATEGORY", "GROUP", "KINDS", "KINDS_BY_NAME", "VERSION", "KindInfo"]
