"""A vLLM container's args with golora's part taken out (:func:`strip_args`) or put in
(:func:`desired_args`). golora only ever edits ``args`` (never ``command``): flags it needs are
appended at the end, or edited in place when the user wrote them in ``args``; vLLM's argparse
keeps the last occurrence of a flag, so golora's one ``--lora-modules`` occurrence is the last
one and carries the user's own values too."""

from __future__ import annotations

from dataclasses import dataclass

from ... import vllm
from ...vllm import Invocation, Option, parse_invocation
from .. import runtime
from .record import STORE_MOUNT, AdapterEntry, ContainerRecord

# Scalar flags golora may raise; in the order golora appends them.
SCALAR_FLAGS = (vllm.FLAG_MAX_LORA_RANK, vllm.FLAG_MAX_LORAS, vllm.FLAG_MAX_CPU_LORAS)


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
        auto_loras = max(auto_loras, floor.get(vllm.FLAG_MAX_LORAS) or runtime.RUNTIME_MAX_LORAS)
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
