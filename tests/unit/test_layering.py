"""The product package's layering: api → builders → handlers; the stand-ins stay outside it.

Read from the source (ast), so a stray import anywhere in the package fails here, not later in
an operator image that lacks the module.
"""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PRODUCT = REPO / "operator" / "golora"


def imports_of(path: Path) -> set[str]:
    """Absolute names a module imports (relative imports resolved against its package)."""
    package = ".".join(path.relative_to(REPO / "operator").with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # ``from .. import kube`` imports the module golora.kube: count each name as one too
            names |= {module} | {f"{module}.{a.name}" for a in node.names}
    return names


def test_relative_imports_resolve_to_the_modules_they_name():
    builders = REPO / "operator" / "golora" / "builders" / "dataset.py"
    assert {"golora.conditions", "golora.naming", "golora.api.worker"} <= imports_of(builders)


def product_modules() -> dict[str, set[str]]:
    return {str(p.relative_to(REPO)): imports_of(p) for p in PRODUCT.rglob("*.py")}


def test_the_product_package_never_imports_the_local_cluster_or_the_trainer():
    offenders = {
        where: sorted(n for n in names if n.split(".")[0] in {"golora_dev", "golora_trainer"})
        for where, names in product_modules().items()
    }
    assert {w: n for w, n in offenders.items() if n} == {}


def test_builders_and_api_do_no_io():
    io = {"kopf", "kubernetes", "golora.kube", "golora.handlers", "urllib.request", "subprocess"}
    offenders = {}
    for where, names in product_modules().items():
        if "/builders/" in where or "/api/" in where:
            bad = sorted(n for n in names if any(n == m or n.startswith(m + ".") for m in io))
            if bad:
                offenders[where] = bad
    assert offenders == {}


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "trainer_image/Dockerfile"])
def test_the_images_copy_only_the_product_package(dockerfile):
    copies = [line.split()[1] for line in (REPO / dockerfile).read_text().splitlines()
              if line.startswith("COPY ") and "--from" not in line]
    assert "operator/golora/" in copies
    assert not any(c.rstrip("/") == "operator" or "golora_dev" in c for c in copies), copies
