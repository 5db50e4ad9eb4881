#!/usr/bin/env bash
# Builds the pinned AmdSevX64 OVMF (see build-ovmf.sh for the recipe, the cache and the environment).
#   ovmf-config/build-amdsev.sh [OUTDIR]
exec "$(dirname "$0")/build-ovmf.sh" amdsev "$@"
