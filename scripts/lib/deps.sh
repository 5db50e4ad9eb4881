# Shared by scripts/test and scripts/quickstart: install what the project needs on Debian.
# shellcheck shell=bash

_need_pkgs() {
  local missing=()
  for spec in "$@"; do
    local cmd=${spec%%:*} pkg=${spec#*:}
    command -v "$cmd" >/dev/null 2>&1 || [ -e "$cmd" ] || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

ensure_test_deps() {
  _need_pkgs redis-server:redis-server redis-cli:redis-tools \
             qemu-system-x86_64:qemu-system-x86 /usr/share/ovmf/OVMF.fd:ovmf \
             objcopy:binutils openssl:openssl curl:curl \
             pkg-config:pkg-config /usr/include/openssl/ssl.h:libssl-dev  # libssl-dev: tests/cosmian-client
}
