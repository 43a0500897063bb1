#!/usr/bin/env bash
# The mount(8) path of the installed package: `mount -t fuse.akvfs` and an
# fstab entry go through /sbin/mount.fuse.akvfs, which daemonizes and serves
# the emulator's vault with a managed identity (App Service-style endpoint).
#
# Runs in its own network namespace with only loopback up, so no request can
# leave the machine, whatever the credential chain would try (IMDS included).
# Needs root, the installed akvfs package and target/debug/akvfs-emulator.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ -z "${AKVFS_FSTAB_NETNS:-}" ]; then
  exec env AKVFS_FSTAB_NETNS=1 unshare --net -- bash "$0" "$@"
fi
ip link set lo up

fail() { echo "fstab: FAIL: $*" >&2; exit 1; }
step() { echo "fstab: $*"; }

[ -x /sbin/mount.fuse.akvfs ] || fail "/sbin/mount.fuse.akvfs is missing; install the akvfs package first"
[ -x target/debug/akvfs-emulator ] || fail "target/debug/akvfs-emulator is missing; cargo build -p akvfs-emulator"

source scripts/lib.sh
work=$(mktemp -d -t akvfs-fstab.XXXXXX)
mnt="$work/mnt"
mkdir -p "$mnt"

# Pids of akvfs daemons serving $mnt, found by their exact mountpoint argument.
daemons() {
  local p
  for p in /proc/[0-9]*; do
    [ -r "$p/cmdline" ] || continue
    if tr '\0' '\n' <"$p/cmdline" 2>/dev/null | grep -qxF "$mnt"; then
      [ "$(readlink "$p/exe" 2>/dev/null)" = /usr/bin/akvfs ] && echo "${p#/proc/}"
    fi
  done
  return 0
}
cleanup() {
  local pid
  if grep -qF " $mnt " /proc/self/mountinfo; then umount -l "$mnt" || true; fi
  for pid in $(daemons); do kill "$pid" 2>/dev/null || true; done
  [ -n "${EMU_PID:-}" ] && kill "$EMU_PID" 2>/dev/null || true
  rm -rf "$work" "${EMU_STATE:-/nonexistent}"
}
trap cleanup EXIT

value="fstab-$(od -An -tx8 -N8 /dev/urandom | tr -d ' ')"
printf '{"secrets":[{"name":"a","value":"%s"}]}\n' "$value" >"$work/seed.json"
start_emulator --seed "$work/seed.json"
step "emulator serving $EMU_VAULT_URL"

# Managed identity through the emulator's endpoint; nothing else in the
# environment may point anywhere.
for v in $(env | sed -n 's/^\(AZURE_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done
export IDENTITY_ENDPOINT="$EMU_IDENTITY_ENDPOINT" IDENTITY_HEADER="$EMU_IDENTITY_HEADER"
opts="ca_file=$EMU_CA_FILE,disable_challenge_resource_verification,auth=managed-identity,allow_other"

is_mounted() { awk -v d="$mnt" '$5 == d && / - fuse\.akvfs / { found = 1 } END { exit !found }' /proc/self/mountinfo; }

# Unmounts with umount(8) and waits for the daemon to notice and exit.
unmount_and_wait() {
  local pids i
  pids=$(daemons)
  [ -n "$pids" ] || fail "no akvfs process serves $mnt"
  umount "$mnt" || fail "umount $mnt failed"
  is_mounted && fail "$mnt is still mounted after umount"
  for i in $(seq 1 300); do
    [ -z "$(daemons)" ] && return 0
    sleep 0.1
  done
  fail "akvfs (pid $pids) kept running after its mount was unmounted"
}

# 1. mount -t fuse.akvfs, as an administrator would type it.
mount -t fuse.akvfs "$EMU_VAULT_URL" "$mnt" -o "$opts" || fail "mount -t fuse.akvfs failed"
is_mounted || fail "mount returned but $mnt is not a fuse.akvfs mount"
got=$(cat "$mnt/a") || fail "cannot read $mnt/a"
[ "$got" = "$value" ] || fail "read the wrong value from $mnt/a"
step "mount -t fuse.akvfs: mounted, the helper returned, the secret reads back"
unmount_and_wait
step "umount: unmounted, the daemon exited"

# 2. An /etc/fstab entry, with the generic options fstab lines carry.
printf '%s %s fuse.akvfs %s 0 0\n' "$EMU_VAULT_URL" "$mnt" \
  "$opts,file_mode=0440,dir_mode=0550,gid=0,_netdev,nofail,noauto,x-systemd.requires=network-online.target,defaults" \
  >"$work/fstab"
mount --fstab "$work/fstab" "$mnt" || fail "mount via an fstab entry failed: $(cat "$work/fstab")"
is_mounted || fail "the fstab mount is not a fuse.akvfs mount"
got=$(cat "$mnt/a") || fail "cannot read $mnt/a (fstab mount)"
[ "$got" = "$value" ] || fail "read the wrong value (fstab mount)"
mode=$(stat -c %a "$mnt/a")
[ "$mode" = 440 ] || fail "file_mode=0440 from fstab was not applied (mode $mode)"
step "fstab entry: mounted with its options, the secret reads back"
unmount_and_wait
step "umount: unmounted, the daemon exited"
echo "fstab: ok"
