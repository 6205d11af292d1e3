#!/usr/bin/env bash
# Builds Argo CD (the multi-call binary: repo-server, application-controller) from its Go
# modules and caches it outside the repo, keyed by version, with what running it needs
# next to it: the component symlinks, the git-verify-wrapper.sh the repo-server execs,
# and the CRDs. A warm run builds nothing. Usage: build.sh [--regen] (prints the directory)
#
# --regen regenerates the wrapper module's go.mod/go.sum: the replace lines are copied from
# the release's own go.mod (never typed by hand), except its nested gitops-engine module
# (`=> ./gitops-engine`, not in the module zip; the published gitops-engine/v3 of the same
# version is used instead).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ARGOCD_VERSION=${ARGOCD_VERSION:-v3.6.1}
# v3.6 declares `go 1.27.0`; the go command fetches this toolchain itself (a few seconds).
export GOTOOLCHAIN=${ARGOCD_GOTOOLCHAIN:-go1.27.3}
CACHE_ROOT=${GOLORA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/golora}
out="$CACHE_ROOT/argocd/argocd-$ARGOCD_VERSION-$GOTOOLCHAIN"
export CGO_ENABLED=0 GOFLAGS=-mod=mod
MOD=github.com/argoproj/argo-cd/v3

regen() {
  cd "$here"
  rm -f go.mod go.sum
  go mod init golora.invalid/argocd >/dev/null 2>&1
  local upmod
  upmod=$(go mod download -json "$MOD@$ARGOCD_VERSION" | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])')
  # "old => new version" inside `replace (...)` or on a `replace` line; skips local paths.
  sed -n 's#^[[:space:]]*\(replace[[:space:]]\+\)\?\([^ /()][^ ]*\) => \([^ .][^ ]*\) \(v[^ ]*\)$#\2=\3@\4#p' "$upmod" |
    while read -r r; do go mod edit "-replace=$r"; done
  go get "$MOD@$ARGOCD_VERSION" "github.com/argoproj/argo-cd/gitops-engine/v3@$ARGOCD_VERSION"
  go mod tidy
}

if [ "${1:-}" = "--regen" ]; then
  regen
fi

if [ -x "$out/argocd" ] && [ -x "$out/git-verify-wrapper.sh" ] && [ -f "$out/crds/application-crd.yaml" ]; then
  echo "$out"; exit 0
fi
mkdir -p "$out/crds"
if [ ! -x "$out/argocd" ]; then
  start=$(date +%s)
  echo "building Argo CD $ARGOCD_VERSION from Go modules (first time only; ~8 min on 2 cores) ..." >&2
  (cd "$here" && go build -trimpath \
    -ldflags "-s -w -X $MOD/common.version=${ARGOCD_VERSION#v} -X $MOD/common.gitTag=$ARGOCD_VERSION -X $MOD/common.gitTreeState=clean" \
    -o "$out/.argocd.tmp" "$MOD/cmd") >&2
  mv "$out/.argocd.tmp" "$out/argocd"   # atomic: a half-built binary never looks cached
  echo "built argocd in $(( $(date +%s) - start )) s" >&2
fi
# The binary picks its component from the name it is run under.
for c in argocd-repo-server argocd-application-controller argocd-git-ask-pass; do
  ln -sfn argocd "$out/$c"
done
src=$(cd "$here" && go list -m -f '{{.Dir}}' "$MOD")
# v3.6 always runs the commit-signature check through this script (from PATH).
install -m 0755 "$src/hack/git-verify-wrapper.sh" "$out/git-verify-wrapper.sh"
for c in application appproject applicationset; do
  install -m 0644 "$src/manifests/crds/$c-crd.yaml" "$out/crds/$c-crd.yaml"
done
echo "$out"
