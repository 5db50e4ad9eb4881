#!/usr/bin/env bash
# Builds one OVMF platform (RELEASE) from Debian trixie's edk2 source package, pinned and checked by SHA-256,
# and checks the result against the hash pinned for it. The recipe is the one in shared/reference/ovmf.md; see
# ovmf-config/README.md for what the firmwares are and why they are pinned.
#
#   ovmf-config/build-ovmf.sh amdsev   [OUTDIR]   # AmdSevX64;  default OUTDIR <repo>/target/ovmf/AmdSev
#   ovmf-config/build-ovmf.sh inteltdx [OUTDIR]   # IntelTdxX64 (TDVF "config B"); default <repo>/target/ovmf/IntelTdx
#   (build-amdsev.sh and build-inteltdx.sh call this)
#
# Prints the path of OUTDIR/OVMF.fd as its last stdout line (progress goes to stderr). If OUTDIR/OVMF.fd
# already has the pinned SHA-256 nothing is built (a cache: CI builds it once per run, 5-8 min on 2 cores).
# Needs: Debian 12 (bookworm), root (or the build packages installed), deb.debian.org reachable.
# Environment: OVMF_WORK (scratch dir, default OUTDIR/work: the source tarballs are kept in OVMF_WORK/src so a
# rebuild does not download them again, and the build logs), OVMF_KEEP_WORK=1 (keep the unpacked tree).
#
# The tree is always unpacked and built at one fixed path, /var/tmp/ckms-edk2 (one build at a time, locked): GenFw
# --zero blanks the PE debug-directory entry of every module but keeps its size, which is that of the absolute
# .dll path, so the path's length changes the firmware bytes (found here: two directories, two hashes).
set -euo pipefail

EDK2_VER=2025.02-8+deb13u1
ORIG_TAR=edk2_2025.02.orig.tar.xz
ORIG_SHA=b63b6053d6d89c74d9291f9e96fde1584be99e6fb9c169ba9511505129d6b049
DEB_TAR=edk2_${EDK2_VER}.debian.tar.xz
DEB_SHA=e2a7f6fc58640818416a028d6d5e9dfc255697a7cdc60c14566c236df6bd9b08

TREE_ROOT=/var/tmp/ckms-edk2
TREE=$TREE_ROOT/edk2-2025.02

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
case "${1:-}" in
  amdsev)   NAME=amdsev;   PLATFORM=AmdSev;   DSC=OvmfPkg/AmdSev/AmdSevX64.dsc; DEFINES=() ;;
  # IntelTdx: the DSC's only build-time switch that removes work without touching what a TD needs (TdxDxe,
  # TdTcg2Dxe + CCEL, QemuKernelLoaderFsDxe's measured direct boot) is BUILD_SHELL: the UEFI shell and its command
  # libraries are ~20% of the modules. The DSC has no NETWORK_*/TPM/SMM defines (none of those stacks is in it),
  # SECURE_BOOT_ENABLE and the SCSI drivers are already FALSE. See ovmf-config/README.md.
  inteltdx) NAME=inteltdx; PLATFORM=IntelTdx; DSC=OvmfPkg/IntelTdx/IntelTdxX64.dsc; DEFINES=(-D BUILD_SHELL=FALSE) ;;
  *) echo "usage: $0 amdsev|inteltdx [OUTDIR]" >&2; exit 2 ;;
esac
PINNED_SHA=$(awk 'NR==1 {print $1}' "$here/$NAME-ovmf.sha256")
OUT=${2:-$repo/target/ovmf/$PLATFORM}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
FD=$OUT/OVMF.fd

log() { printf 'build-%s: %s\n' "$NAME" "$*" >&2; }
die() { log "error: $*"; exit 1; }
sha_of() { sha256sum "$1" | awk '{print $1}'; }

if [ -f "$FD" ] && [ "$(sha_of "$FD")" = "$PINNED_SHA" ]; then
  log "cached: $FD (sha256 $PINNED_SHA)"
  echo "$FD"
  exit 0
fi

started=$(date +%s)
W=${OVMF_WORK:-$OUT/work}
mkdir -p "$W/src" "$W/apt/lists/partial" "$W/apt/cache/archives/partial"
W=$(cd "$W" && pwd)

# Build tools (versions the pinned hash was obtained with: see ovmf-config/README.md).
need=()
command -v gcc >/dev/null && command -v make >/dev/null || need+=(build-essential)
command -v nasm >/dev/null || need+=(nasm)
command -v iasl >/dev/null || need+=(acpica-tools)
[ -f /usr/include/uuid/uuid.h ] || need+=(uuid-dev)
[ -x /usr/bin/python3 ] || need+=(python3)
command -v patch >/dev/null || need+=(patch)
command -v xz >/dev/null || need+=(xz-utils)
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" ca-certificates >/dev/null
fi

have_sources() {
  [ -f "$W/src/$ORIG_TAR" ] && [ "$(sha_of "$W/src/$ORIG_TAR")" = "$ORIG_SHA" ] &&
    [ -f "$W/src/$DEB_TAR" ] && [ "$(sha_of "$W/src/$DEB_TAR")" = "$DEB_SHA" ]
}
if ! have_sources; then
  # Another platform's build beside this one (target/ovmf/*/work/src) may hold them already:
  # copied, then checked by SHA-256 like a download.
  for d in "$(dirname "$OUT")"/*/work/src; do
    [ "$d" -ef "$W/src" ] && continue
    cp "$d/$ORIG_TAR" "$d/$DEB_TAR" "$W/src/" 2>/dev/null && have_sources && log "edk2 source tarballs from $d" && break
  done
fi
if ! have_sources; then
  rm -f "$W/src/$ORIG_TAR" "$W/src/$DEB_TAR"
  log "downloading edk2 $EDK2_VER source (trixie, ~30 MB)"
  # A private apt configuration: only trixie's deb-src, nothing of the system's sources changes.
  echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
    > "$W/sources.list"
  APT=(-o Dir::Etc::SourceList="$W/sources.list" -o Dir::Etc::SourceParts=/dev/null
       -o Dir::State::Lists="$W/apt/lists" -o Dir::Cache="$W/apt/cache")
  apt-get "${APT[@]}" update -qq
  # The .dsc may 404 through some mirrors; only the two tarballs are used, and they are checked below.
  (cd "$W/src" && apt-get "${APT[@]}" source --download-only "edk2=$EDK2_VER" >/dev/null 2>&1 || true)
  have_sources || die "could not get $ORIG_TAR ($ORIG_SHA) and $DEB_TAR ($DEB_SHA) into $W/src.
  Debian keeps only the current trixie revision: if $EDK2_VER is gone, put the two tarballs there by hand."
fi

mkdir -p "$TREE_ROOT"
exec 9> "$TREE_ROOT.lock"
flock 9                                  # the fixed build path is shared: one build at a time
log "unpacking into $TREE and applying Debian's patch series"
rm -rf "$TREE"
tar -C "$TREE_ROOT" -xf "$W/src/$ORIG_TAR"
cd "$TREE"
tar -xf "$W/src/$DEB_TAR"
while read -r p; do
  case "$p" in ''|'#'*) continue ;; esac
  patch -p1 --quiet < "debian/patches/$p"
done < debian/patches/series

export PYTHON_COMMAND=/usr/bin/python3
unset WORKSPACE EDK_TOOLS_PATH CONF_PATH PACKAGES_PATH ELF_PACKAGE_METADATA
jobs=$(nproc)
log "BaseTools (log: $W/basetools.log)"
make -C BaseTools -j"$jobs" > "$W/basetools.log" 2>&1 || die "BaseTools failed; see $W/basetools.log"
set --                                  # edksetup.sh parses the caller's positional parameters
set +u                                  # edksetup.sh reads unset variables
# shellcheck disable=SC1091
. ./edksetup.sh > /dev/null
set -u
[ "$NAME" != amdsev ] || touch OvmfPkg/AmdSev/Grub/grub.efi   # empty grub: grub.sh keeps an existing, newer grub.efi
log "$DSC RELEASE ${DEFINES[*]} with $jobs jobs (log: $W/$NAME.log)"
build -a X64 -t GCC5 -b RELEASE -n "$jobs" -p "$DSC" "${DEFINES[@]}" > "$W/$NAME.log" 2>&1 ||
  die "edk2 build failed; see $W/$NAME.log"

built=Build/$PLATFORM/RELEASE_GCC5/FV/OVMF.fd
got=$(sha_of "$built")
if [ "$got" != "$PINNED_SHA" ]; then
  cp "$built" "$OUT/OVMF.fd.unpinned"
  die "built firmware has sha256 $got, pinned is $PINNED_SHA (kept as $OUT/OVMF.fd.unpinned).
  The bytes depend on gcc/binutils/nasm/iasl versions (ovmf-config/README.md); every launch digest changes with them."
fi
cp "$built" "$FD.tmp"
mv "$FD.tmp" "$FD"
cd "$OUT"
[ "${OVMF_KEEP_WORK:-0}" = 1 ] || rm -rf "$TREE" "$W/apt"
log "built $FD (sha256 $got) in $(( $(date +%s) - started )) s"
echo "$FD"
