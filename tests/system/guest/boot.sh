#!/bin/bash
# Runs inside the VM, once per boot, started by strata-system-test.service (baked into the
# image by tests/system/harness/image.py) from the work disk mounted at /mnt/work.
#
#   boot 1: install the project's wheel and units, run the scenarios of boot 1
#   boot N: run the scenarios marked boot(N) (after the reboot a scenario asked for)
#
# Everything it learns goes to /mnt/work/results/bootN/ (read back by the host with debugfs);
# /mnt/work/state/next says what the host should do when QEMU exits: "reboot" (boot again,
# same disks) or "poweroff" (done). A missing or stale "next" means the guest died.
set -u
W=/mnt/work
VENV=/usr/lib/strata-venv
# shellcheck source=/dev/null
. "$W/config.env"          # PYTEST_ARGS (an array), MAX_BOOTS

mkdir -p "$W/state" "$W/results"
boot=$(( $(cat "$W/state/boots" 2>/dev/null || echo 0) + 1 ))
echo "$boot" > "$W/state/boots"
echo crashed > "$W/state/next"   # overwritten below when the runner gets to the end
R=$W/results/boot$boot
mkdir -p "$R"
read -r up _ < /proc/uptime
echo "$up" > "$R/uptime-at-runner"
say() { echo "strata-vm[boot $boot]: $*"; }
say "runner started ${up}s after the kernel"
sync

# Tests run on a settled system; a boot that never settles is reported, not waited for.
state=$(timeout 300 systemctl is-system-running --wait 2>&1)
echo "$state" > "$R/system-state"
say "system state: $state"
systemd-analyze > "$R/systemd-analyze" 2>&1
say "$(head -n1 "$R/systemd-analyze")"
systemctl --failed --no-legend --plain > "$R/failed-units" 2>&1

if [ "$boot" = 1 ]; then
  t0=$(date +%s%N)
  if ! "$VENV/bin/pip" install -q --no-index --no-deps --disable-pip-version-check \
       "$W"/wheel/*.whl > "$R/pip.log" 2>&1; then
    say "installing the wheel failed:"; cat "$R/pip.log"
  fi
  t1=$(date +%s%N)
  echo $(( (t1 - t0) / 1000000 )) > "$R/pip-ms"
  say "wheel installed in $(( (t1 - t0) / 1000000 )) ms: $(ls "$W"/wheel)"
fi

cd "$W/project" || exit 1
say "pytest: boot $boot"
STRATA_SYSTEM_TESTS=1 STRATA_SYSTEM_BOOT=$boot STRATA_SYSTEM_STATE=$W/state \
  STRATA_SYSTEM_RESULTS=$R PYTHONUNBUFFERED=1 \
  "$VENV/bin/python" -m pytest tests/system -p no:cacheprovider -v -rA \
    --junitxml="$R/junit.xml" "${PYTEST_ARGS[@]}" 2>&1 | tee "$R/pytest.log"
rc=${PIPESTATUS[0]}
echo "$rc" > "$R/pytest-exit"
say "pytest exit status $rc"

journalctl -b --no-pager -o short-monotonic > "$R/journal.txt" 2>&1
journalctl -b --no-pager -o short-monotonic -p warning > "$R/journal-warnings.txt" 2>&1

if [ -e "$W/state/reboot-requested" ] && [ "$boot" -lt "${MAX_BOOTS:-2}" ]; then
  mv "$W/state/reboot-requested" "$R/reboot-requested"
  echo reboot > "$W/state/next"
  say "rebooting (requested by $(cat "$R/reboot-requested"))"
  sync
  systemctl --no-block reboot || reboot -f
else
  echo poweroff > "$W/state/next"
  say "powering off"
  sync
  systemctl --no-block poweroff || poweroff -f
fi
