#!/bin/bash
# The system tests: Strata under a real systemd (PID 1) in a QEMU virtual machine
# (docs/testing.md). As root on Debian/Ubuntu x86-64:
#
#   bash scripts/system-test.sh                 # build or reuse the VM image, boot, run, report
#   bash scripts/system-test.sh -- -k refresh   # arguments after -- go to the guest's pytest
#   bash scripts/system-test.sh --check         # can a VM be booted here? (prints why not)
#   bash scripts/system-test.sh --build-only    # just the image
#
# Installs what it needs first (qemu-system-x86, debootstrap, e2fsprogs; the project's venv).
# The image is cached in $STRATA_VM_CACHE (default /var/cache/strata-vm), outside the checkout,
# and rebuilt only when its recipe or the project's dependencies change; each run's results,
# serial console and guest journal are kept in $STRATA_VM_CACHE/runs/<time>/ (runs/latest).
# No /dev/kvm needed: QEMU's software emulation (TCG) is used unless the CPU shows vmx/svm.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="qemu-system-x86 debootstrap e2fsprogs"
TOOLS="qemu-system-x86_64 debootstrap mkfs.ext4 debugfs"

missing_tools() {
  local t out=""
  for t in $TOOLS; do command -v "$t" >/dev/null 2>&1 || out="$out $t"; done
  echo "${out# }"
}

# Why a VM cannot be booted here (nothing printed when it can). Needs no network when the
# tools are installed; otherwise asks apt whether they can be.
why_not() {
  if [ "$(id -u)" != 0 ]; then
    echo "not root (debootstrap and the image's chroot steps need root)"; return
  fi
  if [ "$(uname -m)" != x86_64 ]; then
    echo "the host is $(uname -m); the VM image is Debian amd64 with qemu-system-x86_64"; return
  fi
  [ -n "$(missing_tools)" ] || return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing $(missing_tools) and no apt-get to install them"; return
  fi
  local cand
  cand=$(apt-cache policy qemu-system-x86 2>/dev/null | awk '/Candidate:/ {print $2}')
  if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then
    apt-get update -q >/dev/null 2>&1 || true
    cand=$(apt-cache policy qemu-system-x86 2>/dev/null | awk '/Candidate:/ {print $2}')
  fi
  if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then
    echo "qemu-system-x86 is neither installed nor installable with apt"; return
  fi
}

if [ "${1:-}" = --check ]; then
  reason=$(why_not)
  if [ -n "$reason" ]; then echo "$reason"; exit 1; fi
  echo "a VM can be booted here (qemu-system-x86_64, TCG unless the CPU has vmx/svm)"
  exit 0
fi

reason=$(why_not)
if [ -n "$reason" ]; then
  echo "system-test: cannot boot a VM here: $reason" >&2
  exit 2
fi

if [ -n "$(missing_tools)" ]; then
  echo "== apt: installing $APT_PACKAGES"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  # shellcheck disable=SC2086
  apt-get install -y -q --no-install-recommends $APT_PACKAGES >/dev/null
fi
bash scripts/setup.sh

exec .venv/bin/python -m tests.system.harness "$@"
