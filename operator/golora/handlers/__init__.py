"""kopf handlers, one module per kind. Importing this package registers them all."""

from .. import metrics as _metrics  # noqa: F401  (Prometheus endpoint, Job/resource gauges)
from .. import operator as _operator  # noqa: F401  (startup settings, login)
from . import adapterserving, godataset, loratraining, runtime, runtime_pods  # noqa: F401
