"""Instruction/output JSONL -> chat-formatted, tokenized, completion-masked training examples.

Each pair becomes a conversation: the instruction as the user turn, the Go function as the
assistant turn, rendered with the tokenizer's own chat template (the one the model is served
with). Only the assistant turn is trained on (prompt labels are -100) and it ends with the
end-of-turn token (Qwen's ``<|im_end|>``), so the model learns to stop — the blog's adapter
never did. Sequences longer than maxSeqLength are cut and counted; a pair whose prompt alone
fills the budget is dropped and counted.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from golora.api.worker import REASON_INVALID_CONFIG

from .errors import TrainerError

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
# Held out from train when no eval split is given: this fraction, within these bounds.
HOLDOUT_FRACTION = 0.05
HOLDOUT_MIN = 8
HOLDOUT_MAX = 500
# A pair needs at least this many completion tokens left after truncation to be kept.
MIN_COMPLETION_TOKENS = 8


@dataclass(frozen=True)
class Pair:
    instruction: str
    output: str


@dataclass
class ReadStats:
    lines: int = 0
    kept: int = 0
    malformed: int = 0
    empty: int = 0


def read_pairs(path: str | Path, max_samples: int = 0) -> tuple[list[Pair], ReadStats]:
    """Read instruction/output pairs from JSONL. Malformed lines and empty fields are counted and
    skipped; ``max_samples`` > 0 keeps the first N (the file order is the dataset's own)."""
    p = Path(path)
    if not p.is_file():
        raise TrainerError(REASON_INVALID_CONFIG, f"training data {p} does not exist")
    stats = ReadStats()
    pairs: list[Pair] = []
    with p.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            stats.lines += 1
            try:
                obj = json.loads(line)
                instruction, output = obj["instruction"], obj["output"]
                if not isinstance(instruction, str) or not isinstance(output, str):
                    raise TypeError("instruction and output must be strings")
            except (ValueError, KeyError, TypeError):
                stats.malformed += 1
                continue
            if not instruction.strip() or not output.strip():
                stats.empty += 1
                continue
            pairs.append(Pair(instruction, output))
            if max_samples and len(pairs) >= max_samples:
                break
    stats.kept = len(pairs)
    if not pairs:
        raise TrainerError(
            REASON_INVALID_CONFIG,
            f"{p} has no usable instruction/output pairs ({stats.lines} lines, {stats.malformed} malformed, "
            f"{stats.empty} empty)",
        )
    return pairs, stats


def holdout(pairs: list[Pair], seed: int, fraction: float = HOLDOUT_FRACTION) -> tuple[list[Pair], list[Pair]]:
    """Deterministic train/eval split by a hash of (seed, pair): the same pair always lands on the
    same side, whatever the file order or machine."""
    n_eval = min(HOLDOUT_MAX, max(HOLDOUT_MIN, round(len(pairs) * fraction)))
    n_eval = min(n_eval, max(1, len(pairs) // 4))

    def key(pair: Pair) -> str:
        return hashlib.sha256(f"{seed}\0{pair.instruction}\0{pair.output}".encode()).hexdigest()

    ranked = sorted(range(len(pairs)), key=lambda i: key(pairs[i]))
    eval_idx = set(ranked[:n_eval])
    train = [p for i, p in enumerate(pairs) if i not in eval_idx]
    evals = [p for i, p in enumerate(pairs) if i in eval_idx]
    return train, evals


def prompt_messages(instruction: str) -> list[dict]:
    return [{"role": "user", "content": instruction}]


def completion_messages(output: str) -> list[dict]:
    return [{"role": "assistant", "content": output}]


@dataclass
class Formatter:
    """Renders pairs with the tokenizer's chat template (or a plain fallback) and tokenizes them."""

    tokenizer: object
    max_seq_length: int
    eos_token_id: int = field(init=False)
    uses_chat_template: bool = field(init=False)

    def __post_init__(self) -> None:
        tok = self.tokenizer
        self.uses_chat_template = bool(getattr(tok, "chat_template", None))
        if tok.eos_token_id is None:
            raise TrainerError(REASON_INVALID_CONFIG, "the tokenizer has no EOS token: the model could never stop")
        self.eos_token_id = tok.eos_token_id
        if not self.uses_chat_template:
            log.warning("tokenizer has no chat template: using 'instruction\\n' + output + EOS")

    def prompt_text(self, instruction: str) -> str:
        if self.uses_chat_template:
            return self.tokenizer.apply_chat_template(
                prompt_messages(instruction), tokenize=False, add_generation_prompt=True
            )
        return instruction.rstrip() + "\n"

    def full_text(self, pair: Pair) -> str:
        if self.uses_chat_template:
            return self.tokenizer.apply_chat_template(
                prompt_messages(pair.instruction) + completion_messages(pair.output), tokenize=False
            )
        return self.prompt_text(pair.instruction) + pair.output + self.tokenizer.eos_token

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_ids(self, instruction: str) -> list[int]:
        return self.encode(self.prompt_text(instruction))


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]
    prompt_len: int
    truncated_tokens: int = 0
    boundary_mismatch: bool = False
    eos_appended: bool = False


@dataclass
class TokenStats:
    samples: int = 0
    dropped: int = 0  # prompt alone (nearly) fills maxSeqLength
    truncated: int = 0  # samples cut at maxSeqLength
    tokens_truncated: int = 0
    boundary_mismatch: int = 0  # prompt tokens differ from the start of prompt+completion tokens
    eos_appended: int = 0
    tokens: int = 0
    completion_tokens: int = 0
    max_len: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def tokenize_pair(fmt: Formatter, pair: Pair) -> Example | None:
    """One pair -> input_ids + labels (-100 on the prompt), EOS-terminated, truncated to
    max_seq_length (keep start). None when no room is left for the completion."""
    prompt = fmt.prompt_ids(pair.instruction)
    full = fmt.encode(fmt.full_text(pair))
    boundary = len(prompt)
    mismatch = full[:boundary] != prompt
    if mismatch:  # BPE merged across the boundary: mask the longest common prefix
        boundary = 0
        while boundary < min(len(prompt), len(full)) and full[boundary] == prompt[boundary]:
            boundary += 1
    if fmt.eos_token_id not in full[boundary:]:
        full.append(fmt.eos_token_id)
        appended = True
    else:
        appended = False
    cut = max(0, len(full) - fmt.max_seq_length)
    if len(full) - cut - boundary < min(MIN_COMPLETION_TOKENS, len(full) - boundary):
        return None
    ids = full[: len(full) - cut] if cut else full
    labels = [IGNORE_INDEX] * boundary + ids[boundary:]
    return Example(ids, labels, boundary, cut, mismatch, appended)


def tokenize_pairs(fmt: Formatter, pairs: list[Pair]) -> tuple[list[Example], TokenStats]:
    stats = TokenStats()
    out: list[Example] = []
    for pair in pairs:
        ex = tokenize_pair(fmt, pair)
        if ex is None:
            stats.dropped += 1
            continue
        stats.samples += 1
        stats.boundary_mismatch += int(ex.boundary_mismatch)
        stats.eos_appended += int(ex.eos_appended)
        if ex.truncated_tokens:
            stats.truncated += 1
            stats.tokens_truncated += ex.truncated_tokens
        stats.tokens += len(ex.input_ids)
        stats.completion_tokens += len(ex.input_ids) - ex.prompt_len
        stats.max_len = max(stats.max_len, len(ex.input_ids))
        out.append(ex)
    return out, stats


def completion_text(fmt: Formatter, ex: Example) -> str:
    """The trained-on text of an example (what the labels hold), for checks and debugging."""
    return fmt.tokenizer.decode([t for t in ex.labels if t != IGNORE_INDEX])


def to_dataset(examples: list[Example]):
    """A datasets.Dataset TRL takes as already processed (input_ids + labels)."""
    from datasets import Dataset

    return Dataset.from_dict(
        {"input_ids": [e.input_ids for e in examples], "labels": [e.labels for e in examples]}
    )


def data_digest(*paths: str | Path | None) -> str:
    """sha256 over the data files (names the dataset a checkpoint was trained on)."""
    h = hashlib.sha256()
    for path in paths:
        if path is None:
            h.update(b"-")
            continue
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()
