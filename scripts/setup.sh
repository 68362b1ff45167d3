#!/bin/bash
# Install what Strata needs on Debian 12 (as root): the image tools, then a venv in .venv with
# Strata and its test tools. Idempotent and quiet when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=
for t in mkfs.erofs mksquashfs mkfs.ext4 sfdisk setfattr unshare systemd-sysext dpkg-deb \
         rpmbuild rpm2cpio veritysetup openssl systemd-dissect; do
  command -v "$t" >/dev/null 2>&1 || need_apt=1
done
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt=1
if [ -n "$need_apt" ]; then
  echo "== apt: installing image tools and Python"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends \
    python3 python3-venv python3-pip erofs-utils squashfs-tools e2fsprogs fdisk util-linux \
    attr systemd dpkg rpm rpm2cpio cryptsetup-bin openssl systemd-container >/dev/null
fi

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import strata, pytest, hypothesis, asyncvarlink, varlink, yaml, elftools, arpy, tuf, securesystemslib, cryptography' 2>/dev/null; then
  echo "== venv: installing Strata and its test tools into .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/pip install -q -e '.[test]'
fi

# Byte-compile once: with PYTHONDONTWRITEBYTECODE set (as on some CI machines) every command
# would otherwise recompile its modules at start-up.
.venv/bin/python -m compileall -q src >/dev/null
