# Shared helpers for scripts/demo and scripts/test. Sourced, not run.

# Installs the system packages akvfs and its tests need, if missing.
ensure_system_packages() {
  local need=()
  command -v fusermount3 >/dev/null 2>&1 || need+=(fuse3)
  command -v curl >/dev/null 2>&1 || need+=(curl)
  command -v ip >/dev/null 2>&1 || need+=(iproute2)  # network namespaces: the IMDS tests, the SDK suite
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
  command -v openssl >/dev/null 2>&1 || need+=(openssl)
  command -v nginx >/dev/null 2>&1 || need+=(nginx-light)  # tests/certs.rs: a TLS server reading the mount
  if ((${#need[@]})); then
    echo "==> installing ${need[*]}"
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  if [ ! -e /dev/fuse ]; then
    echo "error: /dev/fuse is missing; load the fuse kernel module (modprobe fuse) or, in a container, pass --device /dev/fuse" >&2
    exit 1
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo is missing; install a Rust toolchain (https://rustup.rs) and run this again" >&2
    exit 1
  fi
}

# Starts the emulator in the background; sets EMU_PID, EMU_STATE and the
# variables of its ready line (VAULT_URL, AUTHORITY_HOST, ...).
start_emulator() {
  EMU_STATE=$(mktemp -d -t akvfs-emulator.XXXXXX)
  target/debug/akvfs-emulator --state-dir "$EMU_STATE" "$@" >"$EMU_STATE/ready" 2>"$EMU_STATE/emulator.log" &
  EMU_PID=$!
  for _ in $(seq 1 300); do
    [ -s "$EMU_STATE/ready" ] && break
    kill -0 "$EMU_PID" 2>/dev/null || { cat "$EMU_STATE/emulator.log" >&2; return 1; }
    sleep 0.1
  done
  eval "$(python3 - "$EMU_STATE/ready" <<'PY'
import json, shlex, sys
info = json.loads(open(sys.argv[1]).readline())
for k, v in info.items():
    print(f"EMU_{k.upper()}={shlex.quote(str(v))}")
PY
)"
}
