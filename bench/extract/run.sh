#!/bin/sh
# Runs the extraction benchmark: golora-extract against the naive baseline.
# Usage: bench/extract/run.sh [-runs N] [-trees stdlib,kubernetes,etcd]
set -e
cd "$(dirname "$0")"
exec go run . "$@"
