"""The one way golora writes a time: RFC 3339 in UTC with a ``Z``, as Kubernetes does (seconds
for metav1.Time, microseconds for MicroTime); the operator, the trainer and the node agent use it."""

from __future__ import annotations

import datetime as dt


def now_rfc3339(*, micro: bool = False) -> str:
    now = dt.datetime.now(dt.UTC)
    return (now if micro else now.replace(microsecond=0)).isoformat().replace("+00:00", "Z")
