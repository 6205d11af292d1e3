# Sourced by hack/images/*.sh: which engine builds and runs golora's images, and podman's
# settings on machines where only Debian's podman can exist (../../docs/images.md says why).
#
#   GOLORA_CACHE          cache root (default ~/.cache/golora); podman's storage lives under it
#   GOLORA_IMAGE_ENGINE   docker | podman (default: docker when its daemon answers, else podman)

CACHE="${GOLORA_CACHE:-$HOME/.cache/golora}"
IMAGES_CACHE="$CACHE/images"
PODMAN_PACKAGES="podman buildah runc fuse-overlayfs slirp4netns uidmap containernetworking-plugins
  netavark aardvark-dns conmon debootstrap"

images_log() { printf '[images] %s\n' "$*" >&2; }

# The engine: sets ENGINE (docker|podman) or returns 1 with NO_ENGINE_REASON set.
images_detect_engine() {
  ENGINE="${GOLORA_IMAGE_ENGINE:-}"
  if [[ -z "$ENGINE" ]]; then
    if command -v docker >/dev/null && timeout 10 docker info >/dev/null 2>&1; then
      ENGINE=docker
    else
      ENGINE=podman
    fi
  fi
  if [[ "$ENGINE" == podman ]]; then
    images_podman_env
    if ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null; then
      NO_ENGINE_REASON="no container engine: no docker daemon answers and podman is not installed"
      return 1
    fi
  fi
  return 0
}

# podman on these machines: runc (crun refuses hybrid cgroups), rlimits root may set, storage
# under the cache. Written once; the variables point every podman call of ours at them.
images_podman_env() {
  local dir="$IMAGES_CACHE/podman"
  export CONTAINERS_CONF="$dir/containers.conf" CONTAINERS_STORAGE_CONF="$dir/storage.conf"
  export TMPDIR="$dir/tmp"   # buildah's RUN --mount=type=cache directories live here too
  mkdir -p "$dir/storage" "$dir/tmp"
  local conf storage
  conf=$'[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n[engine]\nruntime = "runc"\n'
  storage=$'[storage]\ndriver = "overlay"\ngraphroot = "'"$dir/storage"$'"\nrunroot = "/run/golora-containers"\n'
  [[ -f "$CONTAINERS_CONF" && "$(cat "$CONTAINERS_CONF")"$'\n' == "$conf" ]] || printf '%s' "$conf" >"$CONTAINERS_CONF"
  [[ -f "$CONTAINERS_STORAGE_CONF" && "$(cat "$CONTAINERS_STORAGE_CONF")"$'\n' == "$storage" ]] \
    || printf '%s' "$storage" >"$CONTAINERS_STORAGE_CONF"
}

# Install podman and friends with apt when missing (root only). Returns 1 with a reason.
images_install_podman() {
  command -v podman >/dev/null && command -v debootstrap >/dev/null && return 0
  if [[ "$(id -u)" != 0 ]]; then
    NO_ENGINE_REASON="no container engine: no docker daemon answers, podman is not installed and installing it needs root"
    return 1
  fi
  if ! command -v apt-get >/dev/null; then
    NO_ENGINE_REASON="no container engine: no docker daemon answers, podman is not installed and there is no apt-get"
    return 1
  fi
  images_log "installing podman with apt-get"
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $PODMAN_PACKAGES >&2 \
    || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $PODMAN_PACKAGES >&2; } \
    || { NO_ENGINE_REASON="no container engine: apt-get install podman failed"; return 1; }
}
