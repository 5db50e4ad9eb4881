#!/usr/bin/env bash
# Builds the KMS unikernel as a UEFI PE and prints its path:
#   $CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/image/kms.efi   (default: kernel/target/...)
# Extra arguments go to cargo, e.g. --features emulated-attestation.
#
# Reproducible: the sources are copied to a fixed build path first (cargo hashes the absolute
# path of path dependencies outside the kernel workspace, such as ../netstack, into symbol
# names), paths are remapped, there is no debug info, the binary is stripped and the PE
# timestamp is 0. Two checkouts of the same commit in different directories give identical
# bytes.
set -euo pipefail
cd "$(dirname "$0")"
KERNEL_DIR="$(pwd)"
REPO_DIR="$(dirname "$KERNEL_DIR")"
TARGET_DIR="${CARGO_TARGET_DIR:-$KERNEL_DIR/target}"
BUILD_ROOT="${CKMS_KERNEL_BUILD_ROOT:-/tmp/ckms-kernel-build}"
CARGO_HOME_DIR="${CARGO_HOME:-$HOME/.cargo}"
OUT_DIR="$TARGET_DIR/x86_64-unknown-linux-gnu/image"
export SOURCE_DATE_EPOCH=0
mkdir -p "$BUILD_ROOT" "$TARGET_DIR"

# One build at a time uses the build path.
exec 9>"$BUILD_ROOT/lock"
flock 9

# Copy the repository sources (no target dirs, no .git), keeping mtimes so cargo's incremental
# checks still work.
SRC="$BUILD_ROOT/src"
rm -rf "$SRC"
mkdir -p "$SRC"
tar -C "$REPO_DIR" --exclude=./.git --exclude=target --exclude=./.tmp --exclude=./fuzz -cf - . | tar -C "$SRC" -xf -

# Remap every absolute path that could end up in the binary (panic locations).
FLAGS="['--remap-path-prefix=$SRC/kernel=/kernel','--remap-path-prefix=$SRC=/src','--remap-path-prefix=$CARGO_HOME_DIR=/cargo']"
(cd "$SRC/kernel" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --profile image --locked \
  --config "target.x86_64-unknown-linux-gnu.rustflags=$FLAGS" "$@" >&2)

ELF="$OUT_DIR/kms"
EFI="$OUT_DIR/kms.efi"

# Only R_X86_64_RELATIVE relocations may remain (rt::relocate applies nothing else), and the
# image must be fully static: no undefined symbols, no interpreter.
if readelf -rW "$ELF" | awk '/^ *[0-9a-f]+ +[0-9a-f]+ +R_X86_64_/ {print $3}' | grep -v '^R_X86_64_RELATIVE$' | grep -q .; then
  echo "build.sh: unexpected relocation types in $ELF" >&2; readelf -rW "$ELF" | grep -v RELATIVE >&2; exit 1
fi
if [ -n "$(nm -u "$ELF" 2>/dev/null)" ]; then
  echo "build.sh: undefined symbols in $ELF:" >&2; nm -u "$ELF" >&2; exit 1
fi
if readelf -lW "$ELF" | grep -q INTERP; then
  echo "build.sh: $ELF has an INTERP segment" >&2; exit 1
fi

objcopy -j .text -j .reloc -j .rodata -j .data -j .rela \
  --target efi-app-x86_64 --subsystem=10 "$ELF" "$EFI.tmp"

# PE TimeDateStamp (COFF header + 4, PE/COFF spec 3.3) must be 0; binutils honours
# SOURCE_DATE_EPOCH, this makes it independent of the binutils version.
pe=$(od -An -t u4 -j 60 -N 4 "$EFI.tmp" | tr -d ' ')
if [ "$(od -An -t x1 -j "$pe" -N 4 "$EFI.tmp" | tr -d ' ')" != "50450000" ]; then
  echo "build.sh: $EFI.tmp is not a PE image" >&2; exit 1
fi
printf '\0\0\0\0' | dd of="$EFI.tmp" bs=1 seek=$((pe + 8)) conv=notrunc status=none
mv "$EFI.tmp" "$EFI"
size=$(stat -c %s "$EFI")
if [ "$size" -gt $((4 * 1024 * 1024)) ]; then
  echo "build.sh: $EFI is $size bytes, over the 4 MiB limit" >&2; exit 1
fi
echo "$EFI"
