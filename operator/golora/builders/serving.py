"""AdapterServing as pure functions: read a vLLM container's command line, and compute the
narrow server-side-apply patch that serves a set of golora adapters on a Deployment.

No I/O here. The handler reads the Deployment, calls :func:`plan_deployment`, and applies
``Plan.body`` (if not None) with field manager ``golora``.

How golora edits a Deployment
-----------------------------
* The engine container is found **by name**; nothing else in the pod changes (an llm-d decode
  pod's ``routing-proxy`` init container is never touched).
* golora only ever edits the container's ``args`` (never ``command``): flags it needs are
  appended at the end, or edited in place when the user wrote them in ``args``. vLLM's
  argparse keeps the last occurrence of a flag, ``--lora-modules`` included, so golora's one
  ``--lora-modules`` occurrence is the last one and carries the user's own values too.
* Everything golora added is recorded in the ``golora.dev/lora-serving`` annotation (the
  adapters per Deployment and, per container, which flags it appended or changed and what
  they were before), so :func:`strip_args` undoes exactly golora's part.
* The store PVC is mounted read-only at :data:`STORE_MOUNT` (volume :data:`STORE_VOLUME`).
  With server-side apply, a field golora stops applying is removed only if no other field
  manager owns it: the volume goes away with the last adapter only if golora added it.
* If the result equals what is there, :func:`plan_deployment` returns no body: no write.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from .. import naming, vllm
from . import runtime as rt

STORE_VOLUME = "golora-store"
STORE_MOUNT = "/golora-store"
ANNOTATION = f"{naming.DOMAIN}/lora-serving"
RECORD_VERSION = 1

# Scalar flags golora may raise; in the order golora appends them.
SCALAR_FLAGS = (vllm.FLAG_MAX_LORA_RANK, vllm.FLAG_MAX_LORAS, vllm.FLAG_MAX_CPU_LORAS)

# Why a target cannot be patched (condition reasons).
CONTAINER_NOT_FOUND = "ContainerNotFound"
UNSUPPORTED_COMMAND = "UnsupportedCommand"
SERVED_MODEL_UNKNOWN = "ServedModelUnknown"
BASE_MODEL_MISMATCH = "BaseModelMismatch"
DUPLICATE_SERVED_NAME = "DuplicateServedName"
STORAGE_CONFLICT = "StorageConflict"


# --- Reading a command line ------------------------------------------------------------------

@dataclass(frozen=True)
class Option:
    """One occurrence of a flag. ``start``/``end`` index the combined command + args tokens."""

    flag: str
    values: tuple[str, ...]
    start: int
    end: int
    inline: bool  # --flag=value
    in_args: bool
    raw: str = ""  # the flag as written (e.g. --max_lora_rank), kept when golora edits its value


@dataclass
class Invocation:
    """A container's command line as vLLM will see it.

    ``kind``: ``vllm-serve`` (``vllm serve``), ``api-server`` (``python -m
    vllm.entrypoints.openai.api_server``), ``image-default`` (no command: the image's
    entrypoint, ``vllm serve`` in current vllm/vllm-openai images), ``shell`` (``sh -c
    "..."``: read, never patched) or ``unknown`` (a wrapper golora cannot see through).
    """

    kind: str
    command: list[str]
    args: list[str]
    options: list[Option] = field(default_factory=list)
    positionals: list[str] = field(default_factory=list)

    @property
    def patchable(self) -> bool:
        return self.kind in ("vllm-serve", "api-server", "image-default")

    @property
    def n_command(self) -> int:
        return len(self.command)

    def occurrences(self, flag: str) -> list[Option]:
        return [o for o in self.options if o.flag == flag]

    def last(self, flag: str) -> Option | None:
        occ = self.occurrences(flag)
        return occ[-1] if occ else None

    def value(self, flag: str) -> str | None:
        opt = self.last(flag)
        return opt.values[-1] if opt and opt.values else None

    def int_value(self, flag: str) -> int | None:
        try:
            return int(self.value(flag))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None

    @property
    def model(self) -> str | None:
        """The model vLLM loads: ``vllm serve``'s positional model_tag wins over ``--model``."""
        if self.kind in ("vllm-serve", "image-default", "shell") and self.positionals:
            return self.positionals[0]
        return self.value(vllm.FLAG_MODEL)

    @property
    def served_model_names(self) -> list[str]:
        """Names clients use for the base model (``--served-model-name``, else the model)."""
        opt = self.last(vllm.FLAG_SERVED_MODEL_NAME)
        if opt and opt.values:
            return list(opt.values)
        return [self.model] if self.model else []

    @property
    def lora_modules(self) -> list[vllm.LoraModule]:
        """The effective ``--lora-modules`` values (vLLM keeps only the last occurrence)."""
        opt = self.last(vllm.FLAG_LORA_MODULES)
        return [vllm.parse_lora_module(v) for v in opt.values] if opt else []

    @property
    def lora_enabled(self) -> bool:
        state = False
        for opt in self.options:
            if opt.flag == vllm.FLAG_ENABLE_LORA:
                state = True
            elif opt.flag == vllm.FLAG_NO_ENABLE_LORA:
                state = False
        return state

    @property
    def port(self) -> int | None:
        return self.int_value(vllm.FLAG_PORT)


def _find_start(tokens: list[str]) -> tuple[str, int]:
    """Where vLLM's own options begin, and which kind of invocation this is."""
    for i, tok in enumerate(tokens):
        if PurePosixPath(tok).name == vllm.CLI and i + 1 < len(tokens) and tokens[i + 1] == vllm.SERVE:
            return "vllm-serve", i + 2
        if tok.startswith(vllm.API_SERVER_MODULE_PREFIX) and i > 0 and tokens[i - 1] == "-m":
            return "api-server", i + 1
    return "unknown", 0


def _parse_options(tokens: list[str], start: int, n_command: int, inv: Invocation) -> None:
    i = start
    n = len(tokens)
    while i < n:
        tok = tokens[i]
        if tok == "--":
            inv.positionals.extend(tokens[i + 1:])
            return
        if not vllm.is_flag_token(tok):
            inv.positionals.append(tok)
            i += 1
            continue
        begin = i
        if tok.startswith("--"):
            name, eq, inline_value = tok.partition("=")
            flag = vllm.normalize_flag(name)
            if eq:
                values: tuple[str, ...] = (inline_value,)
                i += 1
            elif flag in vllm.MULTI_VALUE_FLAGS:
                j = i + 1
                while j < n and not vllm.is_flag_token(tokens[j]):
                    j += 1
                values, i = tuple(tokens[i + 1:j]), j
            elif vllm.takes_value(flag) and i + 1 < n and not vllm.is_flag_token(tokens[i + 1]):
                values, i = (tokens[i + 1],), i + 2
            else:
                values, i = (), i + 1
            inv.options.append(Option(flag, values, begin, i, bool(eq), begin >= n_command, name))
            continue
        # short flags: -tp 2, -q awq, -O3
        if tok in vllm.SHORT_FLAGS_WITH_VALUE and i + 1 < n and not vllm.is_flag_token(tokens[i + 1]):
            inv.options.append(Option(tok, (tokens[i + 1],), i, i + 2, False, i >= n_command, tok))
            i += 2
        else:
            inv.options.append(Option(tok, (), i, i + 1, False, i >= n_command, tok))
            i += 1


def parse_invocation(command: list[str] | None, args: list[str] | None) -> Invocation:
    """Read a container's ``command`` + ``args`` the way vLLM's argparse will (see
    :class:`Invocation`). Flags may be anywhere: in command or args, ``--flag value`` or
    ``--flag=value``, with underscores or dashes."""
    command, args = list(command or []), list(args or [])
    tokens = command + args
    if command and PurePosixPath(command[0]).name in vllm.SHELLS and "-c" in tokens:
        idx = tokens.index("-c")
        script = tokens[idx + 1] if idx + 1 < len(tokens) else ""
        try:
            inner = shlex.split(script)
        except ValueError:
            inner = script.split()
        sub = parse_invocation(inner, [])
        return Invocation("shell", command, args, sub.options, sub.positionals)
    if not command:
        kind, start = _find_start(args)
        if kind == "unknown":
            kind, start = "image-default", 0
    else:
        kind, start = _find_start(tokens)
    inv = Invocation(kind, command, args)
    _parse_options(tokens, start, len(command), inv)
    return inv


# --- Adapters and the annotation ---------------------------------------------------------------

@dataclass(frozen=True)
class AdapterEntry:
    """One golora adapter on a Deployment (what an AdapterServing contributes)."""

    name: str  # served name (the "model" clients send)
    owner: str  # AdapterServing name
    path: str  # adapter directory relative to the store
    rank: int
    base_model: str | None = None
    claim: str = "golora-store"
    container: str = "vllm"
    max_lora_rank: int | None = None  # explicit spec.vllm options (None = auto)
    max_loras: int | None = None
    max_cpu_loras: int | None = None
    loading: str = rt.RESTART  # Runtime: loaded through vLLM's API, not in --lora-modules

    @property
    def runtime(self) -> bool:
        return self.loading == rt.RUNTIME

    @property
    def mount_path(self) -> str:
        return f"{STORE_MOUNT}/{self.path.strip('/')}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "owner": self.owner, "path": self.path, "rank": self.rank,
                               "claim": self.claim, "container": self.container}
        for key, value in (("baseModel", self.base_model), ("maxLoraRank", self.max_lora_rank),
                           ("maxLoras", self.max_loras), ("maxCpuLoras", self.max_cpu_loras)):
            if value is not None:
                out[key] = value
        if self.runtime:
            out["loading"] = self.loading
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AdapterEntry:
        return cls(name=str(data["name"]), owner=str(data["owner"]), path=str(data["path"]),
                   rank=int(data["rank"]), base_model=data.get("baseModel"),
                   claim=str(data.get("claim") or "golora-store"), container=str(data.get("container") or "vllm"),
                   max_lora_rank=data.get("maxLoraRank"), max_loras=data.get("maxLoras"),
                   max_cpu_loras=data.get("maxCpuLoras"), loading=str(data.get("loading") or rt.RESTART))


@dataclass
class ContainerRecord:
    """What golora changed in one container's args (so :func:`strip_args` can undo it)."""

    enable_lora: bool = False  # golora appended --enable-lora
    # flag -> [value golora set, the user's value before (None: golora appended the flag)]
    scalars: dict[str, list[str | None]] = field(default_factory=dict)
    # "appended": golora's own --lora-modules occurrence at the end (carrying ``copied``, the
    # user's values it repeats); "extended": golora's values added to the user's occurrence.
    lora_modules: str | None = None
    copied: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.enable_lora:
            out["enableLora"] = True
        if self.scalars:
            out["scalars"] = {k: {"value": v[0], "was": v[1]} for k, v in sorted(self.scalars.items())}
        if self.lora_modules:
            out["loraModules"] = self.lora_modules
        if self.copied:
            out["copied"] = list(self.copied)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ContainerRecord:
        scalars = {k: [v.get("value"), v.get("was")] for k, v in (data.get("scalars") or {}).items()
                   if isinstance(v, dict)}
        return cls(bool(data.get("enableLora")), scalars, data.get("loraModules"), list(data.get("copied") or []))


@dataclass
class Record:
    """The ``golora.dev/lora-serving`` annotation of a Deployment."""

    adapters: list[AdapterEntry] = field(default_factory=list)
    containers: dict[str, ContainerRecord] = field(default_factory=dict)

    def dumps(self) -> str:
        return json.dumps({
            "version": RECORD_VERSION,
            "adapters": [a.to_json() for a in sorted(self.adapters, key=lambda a: (a.container, a.name))],
            "containers": {k: v.to_json() for k, v in sorted(self.containers.items())},
        }, sort_keys=True, separators=(",", ":"))

    def owners(self) -> set[str]:
        return {a.owner for a in self.adapters}

    def by_name(self, name: str) -> AdapterEntry | None:
        return next((a for a in self.adapters if a.name == name), None)


def read_record(deployment: dict[str, Any]) -> Record:
    """The record golora left on a Deployment; an empty one if none (or unreadable)."""
    raw = ((deployment.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION)
    if not raw:
        return Record()
    try:
        data = json.loads(raw)
        adapters = [AdapterEntry.from_json(a) for a in data.get("adapters") or []]
        containers = {k: ContainerRecord.from_json(v) for k, v in (data.get("containers") or {}).items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        return Record()
    return Record(adapters, containers)


# --- Strip golora's part / add it -----------------------------------------------------------

def _is_golora_module(value: str) -> bool:
    """A --lora-modules value pointing into golora's mount: only golora writes those."""
    mod = vllm.parse_lora_module(value)
    return bool(mod.path) and (mod.path == STORE_MOUNT or mod.path.startswith(STORE_MOUNT + "/"))


def _rebuild_option(opt: Option, values: list[str]) -> list[str]:
    """The tokens of ``opt`` with new values, in the user's own spelling and form."""
    flag = opt.raw or opt.flag
    if opt.inline:
        return [f"{flag}={values[0]}"] if values else []
    return [flag, *values] if values or opt.flag not in vllm.MULTI_VALUE_FLAGS else []


def strip_args(command: list[str] | None, args: list[str] | None, record: ContainerRecord | None) -> list[str]:
    """The user's own args: ``args`` without what golora added (per ``record``).

    Values the user changed after golora are theirs (kept). ``--lora-modules`` values that
    point into golora's mount are always golora's and go, even without a record.
    """
    command, args = list(command or []), list(args or [])
    inv = parse_invocation(command, args)
    n_cmd = len(command)
    rec = record or ContainerRecord()
    # edits: arg index span -> replacement tokens (applied from the end)
    edits: dict[tuple[int, int], list[str]] = {}
    in_args = [o for o in inv.options if o.in_args]

    if rec.enable_lora:
        opts = [o for o in in_args if o.flag == vllm.FLAG_ENABLE_LORA]
        if opts:
            edits[(opts[-1].start - n_cmd, opts[-1].end - n_cmd)] = []
    for flag, (value, was) in rec.scalars.items():
        opts = [o for o in in_args if o.flag == flag]
        if opts and opts[-1].values == (value,):
            opt = opts[-1]
            span = (opt.start - n_cmd, opt.end - n_cmd)
            edits[span] = [] if was is None else _rebuild_option(opt, [was])
    lm = [o for o in in_args if o.flag == vllm.FLAG_LORA_MODULES]
    appended_done = False
    for opt in reversed(lm):
        kept = [v for v in opt.values if not _is_golora_module(v)]
        span = (opt.start - n_cmd, opt.end - n_cmd)
        if rec.lora_modules == "appended" and not appended_done and len(kept) < len(opt.values) \
                and kept == rec.copied:
            edits[span] = []  # golora's own occurrence, with the user's values it repeated
            appended_done = True
        elif len(kept) < len(opt.values):
            edits[span] = _rebuild_option(opt, kept)
    out = list(args)
    for (a, b), repl in sorted(edits.items(), reverse=True):
        out[a:b] = repl
    return out


@dataclass(frozen=True)
class LoraOptions:
    """Combined vLLM options of the adapters on one container (explicit values, None = auto)."""

    max_lora_rank: int | None = None
    max_loras: int | None = None
    max_cpu_loras: int | None = None

    @classmethod
    def combine(cls, entries: list[AdapterEntry]) -> LoraOptions:
        def top(values: list[int | None]) -> int | None:
            present = [v for v in values if v is not None]
            return max(present) if present else None

        return cls(top([e.max_lora_rank for e in entries]), top([e.max_loras for e in entries]),
                   top([e.max_cpu_loras for e in entries]))


def golora_modules(entries: list[AdapterEntry], base_model_name: str | None) -> list[str]:
    """One JSON ``--lora-modules`` value per adapter, sorted by name (stable)."""
    return [vllm.lora_module_json(e.name, e.mount_path, base_model_name) for e in sorted(entries, key=lambda e: e.name)]


def desired_scalars(user: Invocation, entries: list[AdapterEntry], n_user_modules: int,
                    floor: dict[str, int] | None = None) -> dict[str, str]:
    """The values golora needs for --max-lora-rank / --max-loras / --max-cpu-loras; only those
    that differ from what the user's command line already says (golora never lowers a value).

    ``floor``: the values in effect on a container already prepared for runtime loading; its
    runtime adapters then need nothing more (a bigger one is refused by vLLM, not restarted
    for) unless spec.vllm asks for more explicitly."""
    opts = LoraOptions.combine(entries)
    out: dict[str, str] = {}
    floor = floor or {}
    counted = [e for e in entries if not (e.runtime and floor)]
    need_rank = max([e.rank for e in counted] + [floor.get(vllm.FLAG_MAX_LORA_RANK, 0)])
    user_rank = user.int_value(vllm.FLAG_MAX_LORA_RANK)
    top = vllm.ALLOWED_MAX_LORA_RANKS[-1]
    if user_rank is not None and user_rank > top:
        user_rank_for_max = 0  # not a value vLLM accepts: golora's replaces it
    else:
        user_rank_for_max = user_rank or 0
    rank = vllm.max_lora_rank_for(min(max(need_rank, opts.max_lora_rank or 0, user_rank_for_max), top))
    if user_rank != rank:
        out[vllm.FLAG_MAX_LORA_RANK] = str(rank)
    user_loras = user.int_value(vllm.FLAG_MAX_LORAS)
    auto_loras = len(counted) + n_user_modules
    if any(e.runtime for e in entries):
        auto_loras = max(auto_loras, floor.get(vllm.FLAG_MAX_LORAS) or rt.RUNTIME_MAX_LORAS)
    loras = max(opts.max_loras or auto_loras, user_loras or 0)
    if user_loras != loras:
        out[vllm.FLAG_MAX_LORAS] = str(loras)
    user_cpu = user.int_value(vllm.FLAG_MAX_CPU_LORAS)
    cpu = max(opts.max_cpu_loras or 0, user_cpu or 0, loras)
    if user_cpu != cpu and (opts.max_cpu_loras is not None or user_cpu is not None):
        out[vllm.FLAG_MAX_CPU_LORAS] = str(cpu)
    return out


def desired_args(command: list[str] | None, user_args: list[str], entries: list[AdapterEntry],
                 base_model_name: str | None, floor: dict[str, int] | None = None
                 ) -> tuple[list[str], ContainerRecord]:
    """``user_args`` plus what serving ``entries`` needs, and the record of golora's part.

    Flags the user wrote in ``args`` are edited in place; missing ones are appended in the
    order ``--enable-lora``, ``--max-lora-rank``, ``--max-loras``, ``--max-cpu-loras``,
    ``--lora-modules`` (last, so it is the occurrence vLLM keeps).
    """
    command = list(command or [])
    n_cmd = len(command)
    user = parse_invocation(command, user_args)
    rec = ContainerRecord()
    out = list(user_args)
    tail: list[str] = []
    if not user.lora_enabled:
        tail.append(vllm.FLAG_ENABLE_LORA)
        rec.enable_lora = True
    user_modules = [m for m in user.lora_modules]
    for flag, value in desired_scalars(user, entries, len(user_modules), floor).items():
        opt = user.last(flag)
        if opt is not None and opt.in_args and len(opt.values) == 1:
            a, b = opt.start - n_cmd, opt.end - n_cmd
            out[a:b] = _rebuild_option(opt, [value])  # same length: indices stay valid
            rec.scalars[flag] = [value, opt.values[0]]
        else:
            tail += [flag, value]
            rec.scalars[flag] = [value, None]
    values = golora_modules([e for e in entries if not e.runtime], base_model_name)
    last = user.last(vllm.FLAG_LORA_MODULES)
    if not values:
        pass  # runtime adapters only: no --lora-modules of golora's
    elif last is not None and last.in_args and not last.inline:
        out[last.end - n_cmd:last.end - n_cmd] = values
        rec.lora_modules = "extended"
    else:
        copied = list(last.values) if last is not None else []
        tail += [vllm.FLAG_LORA_MODULES, *copied, *values]
        rec.lora_modules, rec.copied = "appended", copied
    return out + tail, rec


# --- Checks before any patch ------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    reason: str
    message: str


def pod_spec(deployment: dict[str, Any]) -> dict[str, Any]:
    return ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}


def _name(deployment: dict[str, Any]) -> str:
    return (deployment.get("metadata") or {}).get("name", "?")


def find_container(deployment: dict[str, Any], name: str) -> tuple[dict[str, Any] | None, Problem | None]:
    """The container named ``name`` (never another one: an llm-d decode pod also runs a
    ``routing-proxy``)."""
    pod = pod_spec(deployment)
    for c in pod.get("containers") or []:
        if c.get("name") == name:
            return c, None
    names = [c.get("name") for c in pod.get("containers") or []]
    inits = [c.get("name") for c in pod.get("initContainers") or []]
    extra = f"; init containers: {', '.join(inits)}" if inits else ""
    where = "is an init container, not the engine" if name in inits else "does not exist"
    return None, Problem(CONTAINER_NOT_FOUND,
                         f"Deployment {_name(deployment)}: container {name!r} {where} "
                         f"(containers: {', '.join(n or '?' for n in names) or 'none'}{extra}); set spec.containerName")


def check_target(deployment: dict[str, Any], entry: AdapterEntry, live_owners: set[str] | None = None) -> list[Problem]:
    """Everything that must hold before ``entry`` may be added to ``deployment``.

    ``live_owners``: AdapterServings that still exist (entries of others are stale).
    """
    dname = _name(deployment)
    container, problem = find_container(deployment, entry.container)
    if problem:
        return [problem]
    assert container is not None
    inv = parse_invocation(container.get("command"), container.get("args"))
    problems: list[Problem] = []
    if not inv.patchable:
        what = "a shell script (sh -c)" if inv.kind == "shell" else f"{' '.join(inv.command)!r}"
        problems.append(Problem(UNSUPPORTED_COMMAND,
                                f"Deployment {dname}: container {entry.container!r} runs {what}, not `vllm serve` or "
                                f"`python -m vllm.entrypoints.openai.api_server`: golora cannot tell where vLLM's "
                                f"arguments go; write the command and args as lists"))
    served = inv.served_model_names
    if not inv.model:
        hint = " (it may be in a --config file, which golora cannot read)" if inv.last(vllm.FLAG_CONFIG) else ""
        problems.append(Problem(SERVED_MODEL_UNKNOWN,
                                f"Deployment {dname}: no model found in container {entry.container!r}'s command line"
                                f"{hint}; golora checks the adapter's base model against it"))
    elif entry.base_model:
        candidates = [inv.model, *served]
        if not any(vllm.same_family(entry.base_model, cand) for cand in candidates):
            problems.append(Problem(BASE_MODEL_MISMATCH,
                                    f"adapter base model {entry.base_model!r} does not match Deployment {dname}'s "
                                    f"model {inv.model!r} (family {vllm.model_family(entry.base_model)!r} vs "
                                    f"{vllm.model_family(inv.model)!r}); the adapter would not load or would be wrong"))
    if entry.name in served or entry.name == inv.model:
        problems.append(Problem(DUPLICATE_SERVED_NAME,
                                f"servedName {entry.name!r} is the base model's own name on Deployment {dname}"))
    record = read_record(deployment)
    user_args = strip_args(container.get("command"), container.get("args"), record.containers.get(entry.container))
    user_inv = parse_invocation(container.get("command"), user_args)
    for mod in user_inv.lora_modules:
        if mod.name == entry.name:
            problems.append(Problem(DUPLICATE_SERVED_NAME,
                                    f"servedName {entry.name!r} is already served on Deployment {dname} by its own "
                                    f"--lora-modules ({mod.raw})"))
    for other in record.adapters:
        if other.owner == entry.owner or (live_owners is not None and other.owner not in live_owners):
            continue
        if other.name == entry.name:
            problems.append(Problem(DUPLICATE_SERVED_NAME,
                                    f"servedName {entry.name!r} on Deployment {dname} is already claimed by "
                                    f"AdapterServing {other.owner!r}"))
        elif other.claim != entry.claim:
            problems.append(Problem(STORAGE_CONFLICT,
                                    f"Deployment {dname} already mounts store claim {other.claim!r} at {STORE_MOUNT} "
                                    f"for AdapterServing {other.owner!r}; this one uses {entry.claim!r} "
                                    f"(one store per Deployment)"))
    pod = pod_spec(deployment)
    for vol in pod.get("volumes") or []:
        if vol.get("name") == STORE_VOLUME and not record.adapters:
            claim = (vol.get("persistentVolumeClaim") or {}).get("claimName")
            if claim != entry.claim:
                problems.append(Problem(STORAGE_CONFLICT,
                                        f"Deployment {dname} already has a volume named {STORE_VOLUME!r} "
                                        f"(not golora's, claim {claim!r})"))
    for mount in container.get("volumeMounts") or []:
        if mount.get("mountPath") == STORE_MOUNT and mount.get("name") != STORE_VOLUME:
            problems.append(Problem(STORAGE_CONFLICT,
                                    f"Deployment {dname}: container {entry.container!r} already mounts "
                                    f"{mount.get('name')!r} at {STORE_MOUNT}"))
    return problems


# --- The plan -----------------------------------------------------------------------------------

def _fields_owned(deployment: dict[str, Any], manager: str = naming.FIELD_MANAGER) -> dict[str, Any]:
    """The fieldsV1 set that ``manager`` owns through Apply (merged across entries)."""
    merged: dict[str, Any] = {}

    def merge(dst: dict[str, Any], src: dict[str, Any]) -> None:
        for k, v in src.items():
            if isinstance(v, dict):
                merge(dst.setdefault(k, {}), v)
            else:
                dst[k] = v

    for mf in (deployment.get("metadata") or {}).get("managedFields") or []:
        if mf.get("manager") == manager and mf.get("operation") == "Apply":
            merge(merged, mf.get("fieldsV1") or {})
    return merged


@dataclass(frozen=True)
class Owned:
    """Fields of a Deployment that golora owns (from managedFields)."""

    args: frozenset[str] = frozenset()  # container names whose args golora owns
    mounts: frozenset[tuple[str, str]] = frozenset()  # (container, mountPath)
    volumes: frozenset[str] = frozenset()
    annotation: bool = False


def owned_fields(deployment: dict[str, Any]) -> Owned:
    fields = _fields_owned(deployment)
    pod = ((fields.get("f:spec") or {}).get("f:template") or {}).get("f:spec") or {}
    args, mounts, volumes = set(), set(), set()
    for key, sub in (pod.get("f:containers") or {}).items():
        if not key.startswith("k:"):
            continue
        try:
            cname = json.loads(key[2:]).get("name")
        except ValueError:
            continue
        if "f:args" in sub:
            args.add(cname)
        for mkey in (sub.get("f:volumeMounts") or {}):
            if mkey.startswith("k:"):
                try:
                    mounts.add((cname, json.loads(mkey[2:]).get("mountPath")))
                except ValueError:
                    pass
    for vkey in (pod.get("f:volumes") or {}):
        if vkey.startswith("k:"):
            try:
                volumes.add(json.loads(vkey[2:]).get("name"))
            except ValueError:
                pass
    annotations = ((fields.get("f:metadata") or {}).get("f:annotations") or {})
    return Owned(frozenset(args), frozenset(mounts), frozenset(volumes), f"f:{ANNOTATION}" in annotations)


def store_volume(claim: str) -> dict[str, Any]:
    return {"name": STORE_VOLUME, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}


def store_mount() -> dict[str, Any]:
    return {"name": STORE_VOLUME, "mountPath": STORE_MOUNT, "readOnly": True}


def _runtime_part(item: dict[str, Any], container: dict[str, Any], entries: list[AdapterEntry], cache_dir: str,
                  owns_env: bool) -> tuple[dict[str, int] | None, bool]:
    """Runtime loading's part of one container's intent: the env it needs (into ``item``), and
    the scalar floor when it is already prepared. Returns (floor, env changed)."""
    if not any(e.runtime for e in entries):
        return None, owns_env  # golora's runtime env (if any) goes
    env = rt.container_env(container, cache_dir)
    item["env"] = env
    current = parse_invocation(container.get("command"), container.get("args"))
    if rt.missing_for_runtime(container, cache_dir, lora_enabled=current.lora_enabled, store_mount=STORE_MOUNT):
        return None, rt.env_differs(container, env)
    return {vllm.FLAG_MAX_LORA_RANK: current.int_value(vllm.FLAG_MAX_LORA_RANK) or vllm.DEFAULT_MAX_LORA_RANK,
            vllm.FLAG_MAX_LORAS: current.int_value(vllm.FLAG_MAX_LORAS) or vllm.DEFAULT_MAX_LORAS}, False


@dataclass
class Plan:
    """What golora wants on one Deployment.

    ``body``: the server-side-apply body (golora's complete intent for this Deployment), or
    None when the Deployment already matches it (no write). ``args``: the resulting args per
    touched container. ``problems``: entries dropped because their container is unusable.
    """

    body: dict[str, Any] | None
    record: Record
    args: dict[str, list[str]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.body is not None


def plan_deployment(deployment: dict[str, Any], entries: list[AdapterEntry]) -> Plan:
    """golora's intent for ``deployment`` serving exactly ``entries`` (none: remove golora's
    part). Containers are matched by name; the user's own args and ``--lora-modules`` are kept."""
    meta = deployment.get("metadata") or {}
    pod = pod_spec(deployment)
    old = read_record(deployment)
    owned = owned_fields(deployment)
    containers = {c.get("name"): c for c in pod.get("containers") or []}
    cache_dir = f"{STORE_MOUNT}/{rt.resolver_dir(meta.get('namespace') or '', meta.get('name') or '')}"
    fields = _fields_owned(deployment)
    owned_env = {cname for cname in containers if rt.owned_env(fields, cname)}

    by_container: dict[str, list[AdapterEntry]] = {}
    problems: list[Problem] = []
    for e in sorted(entries, key=lambda e: e.name):
        if e.container not in containers:
            _, problem = find_container(deployment, e.container)
            problems.append(problem)  # type: ignore[arg-type]
            continue
        by_container.setdefault(e.container, []).append(e)
    kept = [e for group in by_container.values() for e in group]
    claim = kept[0].claim if kept else None

    new = Record(adapters=kept)
    intent_containers: list[dict[str, Any]] = []
    args_out: dict[str, list[str]] = {}
    changed = False
    touched = sorted(set(by_container) | set(old.containers) | set(owned.args) | {c for c, _ in owned.mounts})
    for cname in touched:
        container = containers.get(cname)
        if container is None:
            continue
        command, current = container.get("command"), list(container.get("args") or [])
        user_args = strip_args(command, current, old.containers.get(cname))
        item: dict[str, Any] = {"name": cname}
        mounts_now = [m for m in container.get("volumeMounts") or [] if m.get("mountPath") == STORE_MOUNT]
        if cname in by_container:
            inv = parse_invocation(command, user_args)
            base = (inv.served_model_names or [None])[0]
            floor, env_changed = _runtime_part(item, container, by_container[cname], cache_dir, cname in owned_env)
            changed = changed or env_changed
            args, crec = desired_args(command, user_args, by_container[cname], base, floor)
            new.containers[cname] = crec
            item["args"] = args
            item["volumeMounts"] = [store_mount()]
            if mounts_now != [store_mount()]:
                changed = True
        else:
            args = user_args
            changed = changed or cname in owned_env  # golora's runtime env goes
            if args and (cname in owned.args or args != current):
                item["args"] = args
            if mounts_now and (cname, STORE_MOUNT) in owned.mounts:
                changed = True  # golora's mount goes
        if "args" in item:
            if item["args"] != current:
                changed = True
        elif cname in owned.args and current:
            changed = True  # golora owned the args and no longer applies them: they go
        if len(item) > 1 or cname in owned.args or (cname, STORE_MOUNT) in owned.mounts:
            intent_containers.append(item)
        args_out[cname] = item.get("args", current if cname not in owned.args else [])

    volumes_now = [v for v in pod.get("volumes") or [] if v.get("name") == STORE_VOLUME]
    intent_pod: dict[str, Any] = {}
    if intent_containers:
        intent_pod["containers"] = intent_containers
    if claim:
        intent_pod["volumes"] = [store_volume(claim)]
        if volumes_now != [store_volume(claim)]:
            changed = True
    elif volumes_now and STORE_VOLUME in owned.volumes:
        changed = True

    annotations_now = meta.get("annotations") or {}
    intent_meta: dict[str, Any] = {"name": meta.get("name"), "namespace": meta.get("namespace")}
    if meta.get("resourceVersion"):
        intent_meta["resourceVersion"] = meta["resourceVersion"]  # optimistic concurrency
    if kept:
        text = new.dumps()
        intent_meta["annotations"] = {ANNOTATION: text}
        if annotations_now.get(ANNOTATION) != text:
            changed = True
    elif ANNOTATION in annotations_now and owned.annotation:
        changed = True

    body = None
    if changed:
        body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": intent_meta,
                "spec": {"template": {"spec": intent_pod}}}
    return Plan(body, new if kept else Record(), args_out, problems)


def entries_for(record: Record, owner: str, entry: AdapterEntry | None,
                live_owners: set[str] | None = None) -> list[AdapterEntry]:
    """The adapters a Deployment should serve once ``owner``'s entry is ``entry`` (None:
    removed). Entries of AdapterServings that no longer exist are dropped."""
    out = [a for a in record.adapters
           if a.owner != owner and (live_owners is None or a.owner in live_owners)]
    if entry is not None:
        out.append(entry)
    return sorted(out, key=lambda a: (a.container, a.name))


# --- Targets, rollout, warnings ------------------------------------------------------------------

def selector_matches(match_labels: dict[str, str], labels: dict[str, str] | None) -> bool:
    labels = labels or {}
    return all(labels.get(k) == v for k, v in match_labels.items())


@dataclass(frozen=True)
class Rollout:
    generation: int | None
    observed_generation: int | None
    replicas: int
    updated_replicas: int
    available_replicas: int
    ready_replicas: int
    done: bool
    message: str


def rollout_state(deployment: dict[str, Any]) -> Rollout:
    """Like ``kubectl rollout status``: the controller saw this generation, every replica is
    updated, no old replica is left, and the updated ones are available."""
    meta, spec, status = deployment.get("metadata") or {}, deployment.get("spec") or {}, deployment.get("status") or {}
    gen, obs = meta.get("generation"), status.get("observedGeneration")
    want = spec.get("replicas", 1)
    total, updated = status.get("replicas") or 0, status.get("updatedReplicas") or 0
    available, ready = status.get("availableReplicas") or 0, status.get("readyReplicas") or 0
    name = meta.get("name", "?")
    if gen is not None and (obs is None or obs < gen):
        done, msg = False, f"{name}: waiting for the Deployment controller to observe generation {gen}"
    elif updated < want:
        done, msg = False, f"{name}: {updated} of {want} replicas updated"
    elif total > updated:
        done, msg = False, f"{name}: {total - updated} old replicas pending termination"
    elif available < updated:
        done, msg = False, f"{name}: {available} of {updated} updated replicas available"
    else:
        done, msg = True, f"{name}: rolled out ({available}/{want} available)"
    return Rollout(gen, obs, want, updated, available, ready, done, msg)


@dataclass(frozen=True)
class EngineCrash:
    """The engine container of a pod from the Deployment's current template exited with an error."""

    pod: str
    exit_code: int | None
    reason: str
    message: str


def engine_crash(deployment: dict[str, Any], pods: list[dict[str, Any]], container: str) -> EngineCrash | None:
    """A pod running the Deployment's *current* engine command line (same args) whose engine
    container failed: exited non-zero (``lastState`` or ``state.terminated``) or is in
    ``CrashLoopBackOff``. That is vLLM refusing to start, e.g. an adapter it cannot load
    (``init_static_loras``): in Restart mode such an adapter takes the whole server down."""
    engine, _ = find_container(deployment, container)
    if engine is None:
        return None
    for pod in pods:
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue  # stopped on purpose (deleted, drained): its exit code says nothing about the adapter
        spec_engine = next((x for x in (pod.get("spec") or {}).get("containers") or [] if x.get("name") == container), None)
        if spec_engine is None or spec_engine.get("args") != engine.get("args") or \
                spec_engine.get("command") != engine.get("command"):
            continue  # a pod of an older template
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            if cs.get("name") != container:
                continue
            state, last = cs.get("state") or {}, cs.get("lastState") or {}
            term = state.get("terminated") or last.get("terminated")
            waiting = state.get("waiting") or {}
            if (term and term.get("exitCode", 0) != 0) or waiting.get("reason") == "CrashLoopBackOff":
                term = term or {}
                return EngineCrash(pod["metadata"]["name"], term.get("exitCode"), term.get("reason") or
                                   waiting.get("reason") or "Error", (term.get("message") or "").strip())
    return None


def _requests_gpu(pod: dict[str, Any]) -> str | None:
    for c in (pod.get("containers") or []) + (pod.get("initContainers") or []):
        res = c.get("resources") or {}
        for section in ("limits", "requests"):
            for key in (res.get(section) or {}):
                if key.endswith("/gpu") or key.endswith(".com/gpu") or "gpu" in key.split("/")[-1]:
                    return key
    return None


def surge_risk(deployment: dict[str, Any]) -> str | None:
    """A warning when a GPU Deployment rolls out with surge: the new pod needs a GPU the old
    one still holds, so on a one-GPU node it stays Pending and the rollout never finishes."""
    spec = deployment.get("spec") or {}
    strategy = spec.get("strategy") or {}
    if strategy.get("type") == "Recreate":
        return None
    surge = (strategy.get("rollingUpdate") or {}).get("maxSurge", "25%")
    if str(surge).strip() in ("0", "0%"):
        return None
    gpu = _requests_gpu(pod_spec(deployment))
    if not gpu:
        return None
    return (f"Deployment {_name(deployment)} requests {gpu} and rolls out with maxSurge {surge}: on a node with one "
            f"GPU the new pod stays Pending and the rollout never finishes; set strategy.type Recreate or "
            f"rollingUpdate.maxSurge 0")


def container_port(container: dict[str, Any]) -> int:
    """Where vLLM listens: its --port, else the container's first port, else 8000."""
    inv = parse_invocation(container.get("command"), container.get("args"))
    if inv.port:
        return inv.port
    for port in container.get("ports") or []:
        if port.get("containerPort"):
            return int(port["containerPort"])
    return vllm.DEFAULT_PORT


def models_for_container(container: dict[str, Any]) -> dict[str, Any]:
    """What ``GET /v1/models`` of a vLLM running this container's command line lists (what
    the unit tests compare against)."""
    inv = parse_invocation(container.get("command"), container.get("args"))
    mods = inv.lora_modules if inv.lora_enabled else []
    return vllm.models_listing(inv.model or "", inv.served_model_names, mods)
