#!/usr/bin/env bash
# Builds the real control plane (etcd, kube-apiserver, kube-scheduler,
# kube-controller-manager, kubectl) from Go modules and caches the binaries outside
# the repo, keyed by version, so a warm run builds nothing; a cache missing one
# binary builds only that one. Usage: build.sh [--regen]   (prints the binary directory)
#
# --regen regenerates the wrapper modules' go.mod/go.sum from the pinned
# release's own go.mod (the staging `replace` lines are never typed by hand).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
K8S_VERSION=${K8S_VERSION:-v1.36.3}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
STAGING_VERSION="v0.${K8S_VERSION#v1.}"
MINOR=$(echo "$K8S_VERSION" | cut -d. -f2)
GO_VERSION=$(go env GOVERSION)
CACHE_ROOT=${GOLORA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/golora}
out="$CACHE_ROOT/controlplane/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-$GO_VERSION"
export CGO_ENABLED=0 GOFLAGS=-mod=mod

regen_kube() {
  cd "$here/kube"
  rm -f go.mod go.sum
  go mod init golora.invalid/controlplane/kube >/dev/null 2>&1
  local kkmod
  kkmod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])')
  for m in $(sed -n 's#^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/.*#\1#p' "$kkmod"); do
    go mod edit "-replace=$m=$m@$STAGING_VERSION"
  done
  # GODEBUG defaults come from the main module: keep the release's own.
  grep -E '^godebug ' "$kkmod" | while read -r _ kv; do go mod edit "-godebug=$kv"; done || true
  go get "k8s.io/kubernetes@$K8S_VERSION"
  go mod tidy
}

regen_etcd() {
  cd "$here/etcd"
  rm -f go.mod go.sum
  go mod init golora.invalid/controlplane/etcd >/dev/null 2>&1
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  go mod tidy
}

if [ "${1:-}" = "--regen" ]; then
  regen_kube; regen_etcd
fi

KUBE_BINARIES="kube-apiserver kube-scheduler kube-controller-manager kubectl"
missing=""
[ -x "$out/etcd" ] || missing="etcd"
for b in $KUBE_BINARIES; do [ -x "$out/$b" ] || missing="$missing $b"; done
if [ -z "$missing" ]; then
  echo "$out"; exit 0
fi
ver_flags="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$MINOR \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION \
 -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$MINOR \
 -X k8s.io/client-go/pkg/version.gitTreeState=clean"
mkdir -p "$out"
for b in $missing; do
  start=$(date +%s)
  echo "building $b $( [ "$b" = etcd ] && echo "$ETCD_VERSION" || echo "$K8S_VERSION") from Go modules (first time only; minutes on 2 cores) ..." >&2
  if [ "$b" = etcd ]; then
    (cd "$here/etcd" && go build -trimpath -ldflags "-s -w" -o "$out/.$b.tmp" go.etcd.io/etcd/server/v3) >&2
  else
    (cd "$here/kube" && go build -trimpath -ldflags "-s -w $ver_flags" -o "$out/.$b.tmp" "k8s.io/kubernetes/cmd/$b") >&2
  fi
  mv "$out/.$b.tmp" "$out/$b"   # atomic: a half-built binary never looks cached
  echo "built $b in $(( $(date +%s) - start )) s" >&2
done
echo "$out"
