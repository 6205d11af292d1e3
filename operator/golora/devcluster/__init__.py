"""The real local control plane (etcd + kube-apiserver built from Go modules) and the
local Job runner that stands in for the kubelet. Used by tests and ``make demo``."""

from .cluster import ControlPlane

__all__ = ["ControlPlane"]
