"""A vLLM command line as vLLM's argparse reads it: ``vllm serve M``, ``python -m
vllm.entrypoints.openai.api_server --model M``, the image's default entrypoint, or a shell
script (read, never patched); and the values of ``--lora-modules``."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from . import flags


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
        return self.value(flags.FLAG_MODEL)

    @property
    def served_model_names(self) -> list[str]:
        """Names clients use for the base model (``--served-model-name``, else the model)."""
        opt = self.last(flags.FLAG_SERVED_MODEL_NAME)
        if opt and opt.values:
            return list(opt.values)
        return [self.model] if self.model else []

    @property
    def lora_modules(self) -> list[LoraModule]:
        """The effective ``--lora-modules`` values (vLLM keeps only the last occurrence)."""
        opt = self.last(flags.FLAG_LORA_MODULES)
        return [parse_lora_module(v) for v in opt.values] if opt else []

    @property
    def lora_enabled(self) -> bool:
        state = False
        for opt in self.options:
            if opt.flag == flags.FLAG_ENABLE_LORA:
                state = True
            elif opt.flag == flags.FLAG_NO_ENABLE_LORA:
                state = False
        return state

    @property
    def port(self) -> int | None:
        return self.int_value(flags.FLAG_PORT)


def _find_start(tokens: list[str]) -> tuple[str, int]:
    """Where vLLM's own options begin, and which kind of invocation this is."""
    for i, tok in enumerate(tokens):
        if PurePosixPath(tok).name == flags.CLI and i + 1 < len(tokens) and tokens[i + 1] == flags.SERVE:
            return "vllm-serve", i + 2
        if tok.startswith(flags.API_SERVER_MODULE_PREFIX) and i > 0 and tokens[i - 1] == "-m":
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
        if not flags.is_flag_token(tok):
            inv.positionals.append(tok)
            i += 1
            continue
        begin = i
        if tok.startswith("--"):
            name, eq, inline_value = tok.partition("=")
            flag = flags.normalize_flag(name)
            if eq:
                values: tuple[str, ...] = (inline_value,)
                i += 1
            elif flag in flags.MULTI_VALUE_FLAGS:
                j = i + 1
                while j < n and not flags.is_flag_token(tokens[j]):
                    j += 1
                values, i = tuple(tokens[i + 1:j]), j
            elif flags.takes_value(flag) and i + 1 < n and not flags.is_flag_token(tokens[i + 1]):
                values, i = (tokens[i + 1],), i + 2
            else:
                values, i = (), i + 1
            inv.options.append(Option(flag, values, begin, i, bool(eq), begin >= n_command, name))
            continue
        # short flags: -tp 2, -q awq, -O3
        if tok in flags.SHORT_FLAGS_WITH_VALUE and i + 1 < n and not flags.is_flag_token(tokens[i + 1]):
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
    if command and PurePosixPath(command[0]).name in flags.SHELLS and "-c" in tokens:
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


# --- --lora-modules values ------------------------------------------------------------------

@dataclass(frozen=True)
class LoraModule:
    """One value of ``--lora-modules``: ``name=path`` or JSON ``{"name", "path", "base_model_name"}``.
    ``form`` is "pair", "json" or "invalid" (vLLM would refuse to start on an invalid one)."""

    raw: str
    form: str
    name: str | None = None
    path: str | None = None
    base_model_name: str | None = None


def parse_lora_module(value: str) -> LoraModule:
    """Parse a ``--lora-modules`` value exactly as vLLM's LoRAParserAction does: ``name=path``
    when it contains '=' and no ',' (split on '=', so exactly two parts), otherwise JSON."""
    if "=" in value and "," not in value:
        parts = value.split("=")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            return LoraModule(value, "invalid")
        return LoraModule(value, "pair", parts[0], parts[1])
    try:
        data = json.loads(value)
    except ValueError:
        return LoraModule(value, "invalid")
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not isinstance(data.get("path"), str):
        return LoraModule(value, "invalid")
    if set(data) - {"name", "path", "base_model_name"}:
        return LoraModule(value, "invalid")  # vLLM: "Invalid fields for --lora-modules"
    base = data.get("base_model_name")
    return LoraModule(value, "json", data["name"], data["path"], base if isinstance(base, str) else None)


def lora_module_json(name: str, path: str, base_model_name: str | None) -> str:
    """The JSON form golora writes (the ``name=path`` form breaks on '=' or ',')."""
    value: dict[str, str] = {"name": name, "path": path}
    if base_model_name:
        value["base_model_name"] = base_model_name
    return json.dumps(value, separators=(",", ":"))
