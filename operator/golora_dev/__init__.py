"""The local cluster: etcd, kube-apiserver, kube-scheduler and kube-controller-manager built
from the pinned Go modules (``cluster``), each Pod on its own IP (``podnet``), and the node
agent that stands in for the kubelet (``nodeagent``). Used by ``python -m golora_dev``,
the tests and ``make demo``."""

from .cluster import ControlPlane

__all__ = ["ControlPlane"]
