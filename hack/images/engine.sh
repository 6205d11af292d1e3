#!/usr/bin/env bash
# The engine `make images` builds with, with the same settings (podman: hack/images/env.sh):
#   hack/images/engine.sh run --rm golora/extractor:0.1.0 --help
#   hack/images/engine.sh --which      # prints docker|podman, or exits 3 saying why there is none
set -euo pipefail
# shellcheck source=env.sh
source "$(dirname "$0")/env.sh"
if ! images_detect_engine; then
  echo "$NO_ENGINE_REASON" >&2
  exit 3
fi
if [[ "${1:-}" == --which ]]; then
  echo "$ENGINE"
  exit 0
fi
exec "$ENGINE" "$@"
