#!/usr/bin/env bash
# `make images`: build golora's three images with the tags manifests/install and the
# operator's worker-image settings use (golora/{operator,extractor,trainer}:<version>).
#
#   - docker when its daemon answers; otherwise podman, installed with apt when missing (root);
#     with neither possible it says why and exits 0 (the image tests then skip with that reason).
#   - podman: base images that cannot be pulled are bootstrapped from the machine's Debian
#     mirror (debootstrap, cached under $GOLORA_CACHE/images) as stand-ins tagged with the
#     upstream names the Dockerfiles use, so the Dockerfiles stay what a user builds with Docker.
#   - the trainer's CUDA base and PyTorch index are build args (GOLORA_CUDA_IMAGE,
#     GOLORA_TORCH_INDEX); with podman here: a CPU Debian stand-in and the default pip index.
#
#   GOLORA_IMAGES="operator extractor trainer"   which images to build
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO="$PWD"
# shellcheck source=env.sh
source hack/images/env.sh

VERSION="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' operator/golora/__init__.py)"
IMAGES="${GOLORA_IMAGES:-operator extractor trainer}"
MINBASE=localhost/golora-standin/debian-minbase:bookworm
CPU_BASE=localhost/golora-standin/cpu-runtime:bookworm

if [[ "${GOLORA_IMAGE_ENGINE:-}" != docker ]] && ! { command -v docker >/dev/null && timeout 10 docker info >/dev/null 2>&1; }; then
  if ! images_install_podman; then
    images_log "SKIPPED: $NO_ENGINE_REASON"
    exit 0
  fi
fi
images_detect_engine || { images_log "SKIPPED: $NO_ENGINE_REASON"; exit 0; }

BUILD=("$ENGINE" build)
[[ "$ENGINE" == podman ]] && BUILD+=(--pull=never --network host --layers)

image_id() { "$ENGINE" image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }

have_image() {
  if [[ "$ENGINE" == podman ]]; then podman image exists "$1"; else docker image inspect "$1" >/dev/null 2>&1; fi
}

# ---- stand-in bases (podman without a registry) ------------------------------------------

debian_mirror() {
  local uri
  uri="$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -1)"
  [[ -n "$uri" ]] || uri="$(awk '$1 == "deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)"
  echo "${GOLORA_DEBIAN_MIRROR:-$uri}"
}

# Debian bookworm minbase, with the machine's CA bundle (TLS to the package indexes goes
# through the same trust as the host's pip) and a pip.conf that uses it.
ensure_minbase() {
  have_image "$MINBASE" && return 0
  local tarball="$IMAGES_CACHE/bases/bookworm-minbase.tar" mirror
  if [[ ! -s "$tarball" ]]; then
    mirror="$(debian_mirror)"
    [[ -n "$mirror" ]] || { images_log "no Debian mirror configured for apt (set GOLORA_DEBIAN_MIRROR)"; exit 1; }
    local rootfs="$IMAGES_CACHE/bases/rootfs.tmp"
    rm -rf "$rootfs" && mkdir -p "$rootfs"
    images_log "debootstrap --variant=minbase bookworm from $mirror"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$IMAGES_CACHE/bases/debootstrap.log" 2>&1 \
      || { tail -20 "$IMAGES_CACHE/bases/debootstrap.log" >&2; exit 1; }
    local bundle="${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}"
    mkdir -p "$rootfs/etc/ssl/certs" "$rootfs/usr/local/share/ca-certificates"
    [[ -f "$bundle" ]] && cp "$bundle" "$rootfs/etc/ssl/certs/ca-certificates.crt"
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/" 2>/dev/null || true
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$rootfs/etc/pip.conf"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*
    tar -C "$rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$rootfs"
  fi
  podman import -q "$tarball" "$MINBASE" >/dev/null
}

# The FROM images of a Dockerfile, with ARG defaults and overrides substituted.
from_images() {
  local file="$1"; shift
  python3 - "$file" "$@" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, re.M))
args.update(a.split("=", 1) for a in sys.argv[2:])
stages = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, re.M | re.I))
for image in re.findall(r"^FROM\s+(\S+)", text, re.M):
    image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), image)
    if image not in stages:
        print(image)
PY
}

ensure_base() {
  local image="$1" full
  case "$image" in */*) full="$image" ;; *) full="docker.io/library/$image" ;; esac
  have_image "$full" && return 0
  [[ "$ENGINE" == podman ]] || return 0   # docker pulls it
  if timeout 60 podman pull -q "$full" >/dev/null 2>&1; then return 0; fi
  ensure_minbase
  local started=$SECONDS
  case "$full" in
    docker.io/library/debian:12*|docker.io/library/debian:bookworm*|"$CPU_BASE")
      podman tag "$MINBASE" "$full" ;;
    docker.io/library/python:3.11*-bookworm)
      podman build --pull=never --network host -q --build-arg MINBASE="$MINBASE" -t "$full" \
        -f hack/images/bases/python.Containerfile hack/images/bases >/dev/null ;;
    docker.io/library/golang:*-bookworm)
      local want="${full#docker.io/library/golang:}" have goroot
      want="${want%-bookworm}"
      goroot="$(go env GOROOT)"
      have="$(go env GOVERSION)"; have="${have#go}"
      [[ "$have" == "$want" || "$have" == "$want".* ]] \
        || { images_log "$full: this machine's Go is $have, not $want (the stand-in is its toolchain)"; exit 1; }
      podman build --pull=never --network host -q --build-arg MINBASE="$MINBASE" -t "$full" \
        -f "$REPO/hack/images/bases/golang.Containerfile" "$goroot" >/dev/null ;;
    *) images_log "cannot pull $full and have no stand-in for it"; exit 1 ;;
  esac
  images_log "stand-in $full ($((SECONDS - started)) s)"
}

# ---- the three images ----------------------------------------------------------------------

TRAINER_ARGS=()
if [[ "$ENGINE" == podman || -n "${GOLORA_CUDA_IMAGE:-}" ]]; then
  TRAINER_ARGS+=(--build-arg "CUDA_IMAGE=${GOLORA_CUDA_IMAGE:-$CPU_BASE}")
fi
if [[ "$ENGINE" == podman || -n "${GOLORA_TORCH_INDEX+x}" ]]; then
  TRAINER_ARGS+=(--build-arg "TORCH_INDEX=${GOLORA_TORCH_INDEX:-}")   # empty: pip's default index
fi

build_image() {
  local name="$1" file context extra=()
  case "$name" in
    operator) file=Dockerfile; context=. ;;
    extractor) file=extractor/Dockerfile; context=extractor ;;
    trainer) file=trainer_image/Dockerfile; context=.; extra=("${TRAINER_ARGS[@]}") ;;
    *) images_log "unknown image $name"; exit 1 ;;
  esac
  local overrides=() a
  for a in "${extra[@]}"; do [[ "$a" == --build-arg ]] || overrides+=("$a"); done
  while read -r base; do ensure_base "$base"; done < <(from_images "$file" "${overrides[@]}")
  local tag="golora/$name:$VERSION" started=$SECONDS log="$IMAGES_CACHE/build-$name.log" old new
  old="$(image_id "$tag")"
  mkdir -p "$IMAGES_CACHE"
  if ! "${BUILD[@]}" "${extra[@]}" -t "$tag" -f "$file" "$context" >"$log" 2>&1; then
    tail -40 "$log" >&2
    images_log "building $tag failed (log: $log)"
    exit 1
  fi
  # The image this build replaced goes; its layers that the new one shares stay, and so do
  # the intermediate images of the build stages (the build cache: "image prune" would
  # take those too).
  new="$(image_id "$tag")"
  [[ -z "$old" || "$old" == "$new" ]] || "$ENGINE" rmi "$old" >/dev/null 2>&1 || true
  images_log "$tag built in $((SECONDS - started)) s ($(grep -c -i -E 'using cache|CACHED' "$log" || true) cached steps)"
}

mkdir -p "$IMAGES_CACHE/bases"
for name in $IMAGES; do build_image "$name"; done
