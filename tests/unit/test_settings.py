"""golora.settings: every GOLORA_* variable the operator reads is declared there, typed, and
listed in docs/install.md with the same default."""

from __future__ import annotations

import re
from pathlib import Path

import golora
from golora import settings

REPO = Path(__file__).resolve().parents[2]
OPERATOR = REPO / "operator" / "golora"


def test_every_variable_the_operator_reads_is_a_setting():
    declared = {env for env, _, _ in settings.variables()}
    # Worker protocol variables (the operator sets them on Jobs) and the stand-ins' own are not settings.
    not_settings = {"GOLORA_CONFIG", "GOLORA_TERMINATION_LOG", "GOLORA_POD_IP"}  # set on worker pods
    read = set()
    for path in OPERATOR.rglob("*.py"):
        if path.name == "settings.py":
            continue
        read |= set(re.findall(r"GOLORA_[A-Z_]+", path.read_text())) - not_settings
    assert read <= declared, sorted(read - declared)
    assert len(declared) >= 13


def test_docs_table_follows_the_settings():
    table = (REPO / "docs" / "install.md").read_text()
    for env, default, doc in settings.variables():
        shown = f"{default:g}" if isinstance(default, float) else str(default).replace(golora.__version__, "<version>")
        row = f"| `{env}` | {f'`{shown}`' if shown else ''} | {doc} |"
        assert row in table, row


def test_values_are_typed_and_unset_or_empty_means_the_default(monkeypatch):
    monkeypatch.setenv("GOLORA_WORKERS", "3")
    monkeypatch.setenv("GOLORA_BACKOFF", "")
    monkeypatch.setenv("GOLORA_METRICS_PORT", "not-a-port")
    monkeypatch.delenv("GOLORA_SERVING_RECHECK_SECONDS", raising=False)
    now = settings.current()
    assert (now.workers, now.backoff, now.metrics_port, now.serving_recheck_seconds) == (3, 10.0, 0, 30.0)
