#!/bin/bash
# The main job, end to end, in a private mount namespace against a scratch root:
# build three extensions (erofs image, squashfs image, directory) and a confext, list them,
# merge, look at the merged tree, refresh atomically while a reader watches, unmerge.
# Never touches this machine's own /usr, /etc or /opt.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root (it mounts, in a private namespace)" >&2; exit 1; }
bash scripts/setup.sh
if [ -z "${STRATA_DEMO_DIR:-}" ]; then
  # The mounts live and die with the private namespace; the scratch files are removed after.
  W=$(mktemp -d /tmp/strata-demo.XXXXXX)
  rc=0; STRATA_DEMO_DIR=$W unshare -m --propagation private bash "$0" "$@" || rc=$?
  rm -rf "$W"
  exit $rc
fi

S="$PWD/.venv/bin/strata"
W=$STRATA_DEMO_DIR
R=$W/root
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

say "a scratch OS root: Debian-like os-release, a host file in /usr"
mkdir -p "$R"/{etc,usr/bin,opt,run,var/lib/extensions,run/confexts}
printf 'ID=debian\nVERSION_ID=12\n' > "$R/etc/os-release"
echo "host tool" > "$R/usr/bin/host-tool"
echo "hostname=demo" > "$R/etc/demo.conf"

say "build extensions: hello (erofs, lz4hc), tools (squashfs), devel (directory), motd (confext)"
mk() {  # name [tree-suffix]: an extension tree with its release file; prints the tree path
  local name=$1 t=$W/tree-$1${2:-}
  mkdir -p "$t/usr/lib/extension-release.d"
  echo "ID=_any" > "$t/usr/lib/extension-release.d/extension-release.$name"
  echo "$t"
}
t=$(mk hello); mkdir -p "$t/usr/bin"; printf '#!/bin/sh\necho "hello from an extension"\n' > "$t/usr/bin/hello"; chmod 755 "$t/usr/bin/hello"
mkfs.erofs -zlz4hc -T0 --all-root "$R/var/lib/extensions/hello.raw" "$t" >/dev/null
t=$(mk tools); mkdir -p "$t/opt/tools"; echo "tools v1" > "$t/opt/tools/VERSION"
mksquashfs "$t" "$R/var/lib/extensions/tools.raw" -noappend -all-root -quiet -no-progress
t=$(mk devel); mkdir -p "$t/usr/include"; echo "int devel(void);" > "$t/usr/include/devel.h"
cp -a "$t" "$R/var/lib/extensions/devel"
t=$W/tree-motd; mkdir -p "$t/etc/extension-release.d"; printf 'ID=debian\nVERSION_ID=12\n' > "$t/etc/extension-release.d/extension-release.motd"
echo "Welcome to a Strata-merged /etc" > "$t/etc/motd"; cp -a "$t" "$R/run/confexts/motd"

say "list (reads the images without mounting them)"
run "$S" sysext list --root="$R"
say "merge"
run "$S" sysext merge --root="$R"
run "$S" confext merge --root="$R"
say "the merged tree"
run ls "$R/usr/bin" "$R/opt/tools" "$R/usr/include"
run sh "$R/usr/bin/hello"
run cat "$R/etc/motd"
run "$S" sysext status --root="$R"
run "$S" confext status --root="$R" --json=pretty

say "refresh atomically while a reader watches /opt/tools/VERSION"
t=$(mk tools -v2); mkdir -p "$t/opt/tools"; echo "tools v2" > "$t/opt/tools/VERSION"
mksquashfs "$t" "$W/tools-v2.raw" -noappend -all-root -quiet -no-progress
mv "$W/tools-v2.raw" "$R/var/lib/extensions/tools.raw"
( while [ ! -e "$W/stop" ]; do cat "$R/opt/tools/VERSION" >/dev/null 2>&1 || echo miss; done ) > "$W/reader.log" &
for i in 1 2 3 4 5; do "$S" sysext refresh --root="$R" 2>/dev/null; done
touch "$W/stop"; wait
misses=$(grep -c miss "$W/reader.log" || true)
run cat "$R/opt/tools/VERSION"
echo "reader misses during 5 refreshes: $misses"

say "unmerge"
run "$S" confext unmerge --root="$R"
run "$S" sysext unmerge --root="$R"
run "$S" sysext status --root="$R"
run ls "$R/usr/bin"
