#!/usr/bin/env bash
# scripts/bench-zap.sh: zap time, re-INVITE versus BYE + INVITE, against the standalone AS.
#
# Builds the release AS and the `zap_bench` example of as-server, boots the standalone AS
# (as-server/examples/standalone.toml, its SQLite file in a temporary directory), makes sure the
# two test-pattern channels `news` and `sport` exist (`sport` is created through
# POST /api/channels when the config does not seed it), runs the client and stops the AS by
# its PID at the end (trap). Runs in a private network namespace (`unshare -n`) when it can, so
# other users of 5060/8080 on the machine neither disturb nor are disturbed.
# Progress lines while it runs; a table on stdout; JSON in $out/zap.json.
#
# Environment: ZAPS (50 per method), AS_BIN (else cargo build --release -p as-server),
#              ZAP_EXTRA_ARGS (more zap_bench flags, see --help), CI_ARTIFACTS (ci-artifacts),
#              ZAP_NETNS (auto | no).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${CI_ARTIFACTS:-$root/ci-artifacts}/bench
config=$root/as-server/examples/standalone.toml
http=127.0.0.1:8080

log() { printf '[bench-zap] %s\n' "$*" >&2; }

# --- 1. Build outside the namespace (cargo may need the network), then enter it.
if [[ -z "${ZAP_BENCH_INNER:-}" ]]; then
    command -v curl >/dev/null || { log "curl not found"; exit 2; }
    cd "$root"
    if [[ -z "${AS_BIN:-}" ]]; then
        log "cargo build --release -p as-server --bin as-server --example zap_bench"
        cargo build --release -q -p as-server --bin as-server --example zap_bench
        export AS_BIN=$root/target/release/as-server
    else
        log "cargo build --release -p as-server --example zap_bench"
        cargo build --release -q -p as-server --example zap_bench
    fi
    [[ -x "$AS_BIN" ]] || { log "no AS binary at $AS_BIN"; exit 2; }
    AS_BIN=$(realpath "$AS_BIN")
    export AS_BIN
    mkdir -p "$out"
    export ZAP_BENCH_INNER=1
    if [[ "${ZAP_NETNS:-auto}" != no ]] && unshare -n true 2>/dev/null; then
        log "running in a private network namespace (unshare -n)"
        exec unshare -n bash -c 'ip link set lo up && exec bash "$0" "$@"' "${BASH_SOURCE[0]}" "$@"
    fi
    log "running on the host loopback (no private network namespace)"
fi

out=$(cd "$out" && pwd)
work=$(mktemp -d /tmp/bench-zap.XXXXXX)
as_pid=""

# shellcheck source=scripts/testbed.sh
source "$root/scripts/testbed.sh"

cleanup() {
    local rc=$?
    testbed_stop_as
    [[ -f "$work/as.log" ]] && cp "$work/as.log" "$out/zap-as-server.log"
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 2. Boot the AS.
testbed_start_as warn

for ch in news sport; do
    testbed_ensure_channel "$ch" '"kind":"producer",'
done
# The test pattern's first key frame: give both channels a GOP (2 s) before measuring.
sleep 2.5

# --- 3. Measure.
log "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
# shellcheck disable=SC2086 # ZAP_EXTRA_ARGS is a list of flags
timeout 900 "$root/target/release/examples/zap_bench" --target 127.0.0.1:5060 \
    --channels news,sport --zaps "${ZAPS:-50}" --out "$out/zap.json" ${ZAP_EXTRA_ARGS:-} |
    tee "$out/zap.txt"
log "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
