"""AdapterServing as pure functions, one concern per module; the handler does the I/O.

* :mod:`.record`: the ``golora.dev/lora-serving`` annotation golora leaves on a Deployment.
* :mod:`.args`: a container's args with golora's part taken out or put in.
* :mod:`.checks`: what must hold before a patch (each failure a condition reason).
* :mod:`.plan`: refuse or plan; the server-side-apply body (None when the Deployment already matches).
* :mod:`.rollout`: rolled out, engine crashes, surge risk, vLLM's port.
* :mod:`.targets`: which Deployments an AdapterServing targets, no longer targets, shares.
* :mod:`.facts`: what is known about the adapter, and whether it may be served.
* :mod:`.probe`: whom ``GET /v1/models`` asks and what the answers mean.
* :mod:`.outcome`: phase, message and conditions from all of the above.
* :mod:`.events`: which AdapterServings an event (a Deployment, a LoraTraining, a Job) concerns.

``loading: Runtime`` adds :mod:`golora.builders.runtime` (the Deployment side),
:mod:`golora.builders.runtime_load` (the pods) and :mod:`golora.builders.runtime_status`.
Reading a vLLM command line is :mod:`golora.vllm.cli`. The names below are re-exported so
callers write ``serving.plan_deployment``.
"""

from .args import LoraOptions, desired_args, desired_scalars, golora_modules, strip_args
from .checks import (
                     BASE_MODEL_MISMATCH,
                     CONTAINER_NOT_FOUND,
                     DUPLICATE_SERVED_NAME,
                     SERVED_MODEL_UNKNOWN,
                     STORAGE_CONFLICT,
                     UNSUPPORTED_COMMAND,
                     Problem,
                     check_target,
                     deployment_name,
                     find_container,
                     pod_spec,
)
from .facts import Facts, Hold
from .outcome import ROLLED_OUT, ROLLING_OUT, SERVER_REJECTED_ADAPTER, SERVING, Outcome
from .plan import (
                     Owned,
                     Plan,
                     entries_for,
                     owned_fields,
                     plan_deployment,
                     plan_for_owner,
                     resolver_cache_dir,
                     runtime_gaps,
                     store_mount,
                     store_volume,
)
from .probe import Probe
from .record import ANNOTATION, STORE_MOUNT, STORE_VOLUME, AdapterEntry, ContainerRecord, Record, read_record
from .rollout import EngineCrash, Rollout, container_port, engine_crash, rollout_state, surge_risk
from .targets import select_targets, selector_matches

__all__ = [
    "ANNOTATION", "BASE_MODEL_MISMATCH", "CONTAINER_NOT_FOUND", "DUPLICATE_SERVED_NAME", "ROLLED_OUT",
    "ROLLING_OUT", "SERVED_MODEL_UNKNOWN", "SERVER_REJECTED_ADAPTER", "SERVING", "STORAGE_CONFLICT",
    "STORE_MOUNT", "STORE_VOLUME", "UNSUPPORTED_COMMAND", "AdapterEntry", "ContainerRecord", "EngineCrash",
    "Facts", "Hold", "LoraOptions", "Outcome", "Owned", "Plan", "Probe", "Problem", "Record", "Rollout",
    "check_target", "container_port", "deployment_name", "desired_args", "desired_scalars", "engine_crash",
    "entries_for", "find_container", "golora_modules", "owned_fields", "plan_deployment", "plan_for_owner",
    "pod_spec", "read_record", "resolver_cache_dir", "rollout_state", "runtime_gaps", "select_targets",
    "selector_matches", "store_mount", "store_volume", "strip_args", "surge_risk",
]
