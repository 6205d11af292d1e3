"""GoDataset: Go repositories -> instruction/output pairs (JSONL) on the store.

The extraction Job runs ``golora-extract`` with a config rendered from this spec
(``golora.builders.dataset``); the extractor's JSON config mirrors these fields.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .common import (
    DNS_LABEL_PATTERN,
    K8S_NAME_PATTERN,
    CamelModel,
    CommonStatus,
    Failure,
    KindInfo,
    PrinterColumn,
    Resources,
    SecretKeyRef,
    StatusModel,
    StoreRef,
    cel,
    relative_path,
    section,
    validations,
)

# Git URLs golora clones: a remote over https/http/ssh or scp-like user@host:path.
# Everything else (file://, ext::, fd::, local paths, leading '-') is refused at admission.
GIT_URL_CEL = (
    "self.matches('^(https?|ssh)://[A-Za-z0-9.-]+(:[0-9]+)?/[^\\\\s]*$') || "
    "self.matches('^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\\\\s]+$')"
)


class GitSource(CamelModel):
    """A Git repository fetched shallowly at exactly one revision."""

    url: str = Field(
        ...,
        min_length=1,
        max_length=2048,
        description="Remote URL: https://, http://, ssh:// or user@host:path. "
        "Local paths, file://, ext:: and other transports are refused.",
        json_schema_extra=validations(
            cel(GIT_URL_CEL, "url must be an https://, http://, ssh:// or user@host:path Git remote "
                "(file://, ext::, local paths and shell syntax are not accepted)")
        ),
    )
    revision: str = Field(
        ...,
        min_length=1,
        max_length=256,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$",
        description="Tag, branch or commit SHA to fetch. Pin a tag or SHA for a reproducible dataset.",
    )
    credentials_secret: SecretKeyRef | None = Field(
        None,
        description="Secret key holding an access token for private repositories; mounted as a "
        "file and handed to git through an askpass helper, never on a command line.",
    )


class ModuleSource(CamelModel):
    """A Go module downloaded through GOPROXY into a module cache on the store."""

    path: str = Field(
        ...,
        min_length=1,
        max_length=512,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._~/-]*$",
        description="Module path, e.g. go.etcd.io/etcd/server/v3.",
    )
    version: str = Field(
        ...,
        min_length=2,
        max_length=128,
        pattern=r"^v[0-9]+\.[0-9]+\.[0-9]+[A-Za-z0-9.+-]*$",
        description="Exact module version (semver, e.g. v3.6.16).",
    )


class PVCSource(CamelModel):
    """Go sources already on a PersistentVolumeClaim (e.g. a mirror, or GOROOT/src)."""

    claim_name: str = Field(
        ..., max_length=253, pattern=K8S_NAME_PATTERN, description="PersistentVolumeClaim name."
    )
    path: str = relative_path("path", "Directory inside the claim (relative; no '..').", default="",
                              within="the claim")


class DatasetSource(CamelModel):
    """One source of Go code: exactly one of git, module or pvc."""

    one_of = ((("git", "module", "pvc"), "each source needs exactly one of git, module or pvc"),)

    name: str = Field(
        ...,
        min_length=1,
        max_length=63,
        pattern=DNS_LABEL_PATTERN,
        description="Short name of the source; pairs record it and status counts per source.",
    )
    git: GitSource | None = Field(None, description="A Git repository at one revision.")
    module: ModuleSource | None = Field(None, description="A Go module at one version.")
    pvc: PVCSource | None = Field(None, description="A directory on a PersistentVolumeClaim.")


class Filters(CamelModel):
    """Which functions become pairs. Defaults drop the noise found in the blog's 41,805 pairs."""

    min_lines: int = Field(5, ge=1, le=10000, description="Minimum lines of the function.")
    min_doc_words: int = Field(3, ge=0, le=1000, description="Minimum words in the cleaned doc comment.")
    max_output_bytes: int = Field(
        16384, ge=64, le=1048576, description="Functions larger than this are dropped."
    )
    exported_only: bool = Field(False, description="Keep only exported functions and methods.")
    include_tests: bool = Field(False, description="Include _test.go files.")
    include_testdata: bool = Field(False, description="Include testdata/ directories.")
    include_vendor: bool = Field(False, description="Include vendor/, third_party/ and Godeps/.")
    include_generated: bool = Field(
        False, description="Include generated files ('// Code generated ... DO NOT EDIT.')."
    )
    include_build_ignored: bool = Field(False, description="Include files with //go:build ignore.")
    near_dedup: bool = Field(True, description="Drop near-duplicate bodies (MinHash); exact ones are always dropped.")
    near_dedup_threshold: float = Field(
        0.85, gt=0.0, le=1.0, description="Jaccard similarity above which two bodies are near duplicates."
    )


class Split(CamelModel):
    """Deterministic train/eval split: a pair always lands in the same split for a seed."""

    eval_fraction: float = Field(0.05, ge=0.0, le=0.5, description="Fraction of pairs held out for eval.")
    seed: int = Field(42, ge=0, description="Seed of the split hash.")


class GoDatasetSpec(CamelModel):
    """Desired dataset: which Go code, which filters, how to split, where to write."""

    sources: list[DatasetSource] = Field(
        ...,
        min_length=1,
        max_length=64,
        description="Where the Go code comes from (git, module or pvc). At least one.",
        json_schema_extra=validations(
            cel("self.size() >= 1", "at least one source is required"),
            cel("self.all(a, self.exists_one(b, a.name == b.name))", "source names must be unique"),
        ),
    )
    filters: Filters = section(Filters, "Function filters and deduplication.")
    template: Literal["doc", "context"] = Field(
        "doc",
        description="Instruction template: 'doc' is the doc comment alone; 'context' adds the "
        "package, receiver and signature.",
    )
    split: Split = section(Split, "Train/eval split.")
    max_pairs: int = Field(0, ge=0, le=10_000_000, description="Cap on pairs kept (0 = no cap).")
    storage: StoreRef = section(StoreRef, "Store volume for the output.")
    resources: Resources | None = Field(None, description="Resources of the extraction Job.")


class DatasetProgress(StatusModel):
    """Written by the extraction worker while it runs."""

    stage: str | None = Field(None, description="fetching, parsing, deduplicating or writing.")
    files_seen: int | None = Field(None, description="Go files found so far.")
    files_parsed: int | None = Field(None, description="Go files parsed so far.")
    pairs: int | None = Field(None, description="Pairs found so far.")


class LengthStats(StatusModel):
    """Distribution of output lengths (characters)."""

    p50: int | None = None
    p90: int | None = None
    max: int | None = None


class SourceResult(StatusModel):
    """What one source contributed, and where it came from."""

    name: str | None = None
    repo: str | None = Field(None, description="Git URL, module path, or claim/path.")
    revision: str | None = Field(None, description="Commit SHA or module version actually read.")
    license: str | None = Field(None, description="SPDX id detected from the source's LICENSE file.")
    pairs: int | None = None


class DatasetResult(StatusModel):
    """Written by the extraction worker when it ends (also stats.json / result.json on the store)."""

    files_seen: int | None = Field(None, description="Go files found.")
    files_parsed: int | None = Field(None, description="Go files parsed.")
    parse_errors: int | None = Field(None, description="Go files that did not parse (skipped).")
    pairs_kept: int | None = Field(None, description="Pairs written (train + eval).")
    pairs_train: int | None = Field(None, description="Pairs in train.jsonl.")
    pairs_eval: int | None = Field(None, description="Pairs in eval.jsonl.")
    per_source: dict[str, int] = Field(default_factory=dict, description="Pairs kept per source.")
    dropped: dict[str, int] = Field(
        default_factory=dict,
        description="Functions dropped, by reason (for skipped files: the pairs they would have given).",
    )
    skipped_files: dict[str, int] = Field(default_factory=dict, description="Files skipped, by reason.")
    sources: list[SourceResult] = Field(default_factory=list, description="Per-source provenance and counts.")
    digest: str | None = Field(None, description="sha256 of train + eval content.")
    train_path: str | None = Field(None, description="train.jsonl, relative to the store.")
    eval_path: str | None = Field(None, description="eval.jsonl, relative to the store.")
    stats_path: str | None = Field(None, description="stats.json, relative to the store.")
    lengths: LengthStats | None = Field(None, description="Output length distribution.")
    failure: Failure | None = Field(None, description="Set when extraction failed.")


class GoDatasetStatus(CommonStatus):
    """Observed state of a GoDataset."""

    job_name: str | None = Field(None, description="The extraction Job of the current generation.")
    progress: DatasetProgress | None = Field(None, description="Live progress (worker-written).")
    result: DatasetResult | None = Field(None, description="Final counts and paths (worker-written).")


KIND = KindInfo(
    kind="GoDataset",
    plural="godatasets",
    singular="godataset",
    short_names=["gds"],
    spec=GoDatasetSpec,
    status=GoDatasetStatus,
    description="GoDataset extracts instruction/output pairs (doc comment -> function) from Go "
    "repositories with go/ast and writes train/eval JSONL to the store.",
    printer_columns=[
        PrinterColumn(name="Phase", type="string", json_path=".status.phase"),
        PrinterColumn(name="Pairs", type="integer", json_path=".status.result.pairsKept"),
        PrinterColumn(name="Files", type="integer", json_path=".status.result.filesParsed"),
        PrinterColumn(name="Parse-Errors", type="integer", json_path=".status.result.parseErrors", priority=1),
        PrinterColumn(name="Message", type="string", json_path=".status.message", priority=1),
        PrinterColumn(name="Age", type="date", json_path=".metadata.creationTimestamp"),
    ],
)
