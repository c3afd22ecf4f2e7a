#!/usr/bin/env bash
# sipp-scenarios/run.sh [SCENARIO.xml[@tcp] ...]
# sipp-scenarios/run.sh --exec CMD     (boot the testbed, run `bash -c CMD` with AS_PID set, stop)
#
# Boots the standalone testbed on loopback (the AS with the standalone config, a SQLite file in a
# temporary directory, the in-process relay with its test-pattern channel `news`), runs SIPp
# scenarios against it and exits non-zero if any scenario fails. With no arguments it runs every
# `sipp-scenarios/*.xml` (over UDP) plus join.xml over TCP and an OPTIONS over TLS.
# `X.xml@tcp` runs X over TCP. `options.xml@tls` is not SIPp (this SIPp build has no TLS): an
# OPTIONS sent through `openssl s_client` to port 5061 must get a 200.
#
# Each scenario runs as
#   sipp 127.0.0.1:5060 -sf X.xml -s news -m CALLS -r RATE -d HOLD_MS -timeout 30s
#        -timeout_error -trace_err -nostdin ...
# (`[service]` in a scenario is the channel id; scenarios that declare the global `zap_to` get
# `-set zap_to sport`; a scenario may add SIPp flags in a comment line `run.sh-args: ...`.)
# The second test-pattern channel `sport` is created through the HTTP API when the config has
# none.
#
# Runs inside a private network namespace when it can (`unshare -n`, so nothing else on the
# machine sees or disturbs ports 5060/8080), else on the plain loopback.
#
# Environment:
#   SIPP_CALLS (10)          calls per scenario (-m)          SIPP_RATE (10)   calls/s (-r)
#   SIPP_HOLD_MS (1000)      how long a viewer watches (-d)   SIPP_CHANNEL (news)
#   SIPP_ZAP_TO (sport)      channel zapped to                SIPP_EXTRA_ARGS  more SIPp flags
#   SIPP_ARTIFACTS (ci-artifacts/sipp)  logs, SIPp error traces, the AS log
#   AS_BIN                   AS binary to use (default: cargo build --release -p as-server)
#   AS_CONFIG_FILE           config (default: as-server/examples/standalone.toml)
#   SIPP_NETNS (auto)        auto | no: run in a private network namespace when possible
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

calls=${SIPP_CALLS:-10}
rate=${SIPP_RATE:-10}
hold_ms=${SIPP_HOLD_MS:-1000}
channel=${SIPP_CHANNEL:-news}
zap_to=${SIPP_ZAP_TO:-sport}
artifacts=${SIPP_ARTIFACTS:-$root/ci-artifacts/sipp}
config=${AS_CONFIG_FILE:-$root/as-server/examples/standalone.toml}
sip_port=5060
http=127.0.0.1:8080

log() { printf '[run.sh] %s\n' "$*" >&2; }

# --- 1. Build (outside the namespace: cargo may need the network), then enter the namespace.
if [[ -z "${SIPP_RUN_INNER:-}" ]]; then
    command -v sipp >/dev/null || { log "sipp not found (apt-get install sip-tester)"; exit 2; }
    command -v curl >/dev/null || { log "curl not found"; exit 2; }
    command -v openssl >/dev/null || { log "openssl not found"; exit 2; }
    if [[ -z "${AS_BIN:-}" ]]; then
        log "cargo build --release -p as-server"
        (cd "$root" && cargo build --release -q -p as-server)
        export AS_BIN=${CARGO_TARGET_DIR:-$root/target}/release/as-server
    fi
    [[ -x "$AS_BIN" ]] || { log "no AS binary at $AS_BIN"; exit 2; }
    export SIPP_RUN_INNER=1
    if [[ "${SIPP_NETNS:-auto}" != no ]] && unshare -n true 2>/dev/null; then
        log "running in a private network namespace (unshare -n)"
        exec unshare -n bash -c 'ip link set lo up && exec bash "$0" "$@"' "${BASH_SOURCE[0]}" "$@"
    fi
    log "running on the host loopback (no private network namespace)"
fi

# --- 2. Scenarios to run.
scenarios=()
exec_cmd=""
if [[ "${1:-}" == --exec ]]; then
    exec_cmd=${2:?--exec needs a command}
elif [[ $# -eq 0 ]]; then
    for f in "$here"/*.xml; do scenarios+=("$(basename "$f")"); done
    scenarios+=("join.xml@tcp" "options.xml@tls")
else
    for a in "$@"; do scenarios+=("$a"); done
fi

mkdir -p "$artifacts"
artifacts=$(cd "$artifacts" && pwd)
work=$(mktemp -d /tmp/sipp-run.XXXXXX)
as_pid=""
sipp_pid=""

# shellcheck source=scripts/testbed.sh
source "$root/scripts/testbed.sh"

cleanup() {
    local rc=$?
    if [[ -n "$sipp_pid" ]] && kill -0 "$sipp_pid" 2>/dev/null; then kill "$sipp_pid" 2>/dev/null || true; fi
    testbed_stop_as
    [[ -f "$work/as.log" ]] && cp "$work/as.log" "$artifacts/as-server.log"
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 3. Boot the AS: its SQLite file lives in the temporary directory.
testbed_start_as info

# The zap target: seed it as a test-pattern channel when the config does not.
testbed_ensure_channel "$zap_to" || log "could not create '$zap_to' (zap scenarios will fail)"

if [[ -n "$exec_cmd" ]]; then
    log "running: $exec_cmd"
    rc=0
    AS_PID=$as_pid bash -c "$exec_cmd" || rc=$?
    exit "$rc"
fi

# --- 4. Run the scenarios one after the other.
summary="$work/summary.txt"
printf '%-28s %9s %7s %4s %7s\n' scenario "calls ok" failed rc seconds >"$summary"
failures=0
local_port=5070
media_port=16000
for spec in "${scenarios[@]}"; do
    name=${spec%@*}
    transport=u1
    label=${name%.xml}
    if [[ "$spec" == *@tcp ]]; then transport=t1; label="$label@tcp"; fi
    file=$here/$(basename "$name")
    if [[ "$spec" == options.xml@tls ]]; then
        label=options@tls
        start=$(date +%s.%N)
        # stdin stays open 1 s after the request so that the answer arrives before EOF.
        tls_reply=$( (printf '%s\r\n' "OPTIONS sip:127.0.0.1:5061;transport=tls SIP/2.0" \
            "Via: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bK-tls-probe-$$" \
            "From: <sip:ping@127.0.0.1>;tag=tls$$" "To: <sip:127.0.0.1:5061>" \
            "Call-ID: tls-probe-$$@127.0.0.1" "CSeq: 1 OPTIONS" "Max-Forwards: 70" \
            "Content-Length: 0" ""
            sleep 1) |
            timeout 10 openssl s_client -connect 127.0.0.1:5061 -quiet -no_ign_eof 2>/dev/null |
            head -n 1 | tr -d '\r') || true
        echo "$tls_reply" >"$artifacts/$label.out"
        secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
        if [[ "$tls_reply" == "SIP/2.0 200 "* ]]; then
            printf '%-28s %9s %7s %4s %7s\n' "$label" 1 0 0 "$secs" >>"$summary"
        else
            printf '%-28s %9s %7s %4s %7s\n' "$label" 0 1 1 "$secs" >>"$summary"
            log "$label FAILED: the TLS OPTIONS got '${tls_reply:-nothing}'"
            failures=$((failures + 1))
        fi
        continue
    fi
    if [[ ! -f "$file" ]]; then
        printf '%-28s %9s %7s %4s %7s\n' "$label" - - missing - >>"$summary"
        failures=$((failures + 1))
        continue
    fi
    args=(127.0.0.1:$sip_port -sf "$file" -s "$channel" -t "$transport"
        -i 127.0.0.1 -p "$local_port" -mp "$media_port"
        -m "$calls" -r "$rate" -l "$((calls * 2))" -d "$hold_ms"
        -timeout 60s -timeout_error -recv_timeout 10s -max_recv_loops 1000 -buff_size 1048576
        -nostdin -trace_err -error_file "$artifacts/$label.errors.log"
        -trace_stat -stf "$artifacts/$label.stat.csv")
    if grep -q '<Global variables="[^"]*zap_to' "$file"; then args+=(-set zap_to "$zap_to"); fi
    # Extra flags a scenario asks for: a line "run.sh-args: ..." in an XML comment.
    extra=$(sed -n 's/^.*run\.sh-args: *//p' "$file" | head -n 1)
    # shellcheck disable=SC2206
    [[ -n "$extra" ]] && args+=($extra)
    # shellcheck disable=SC2206
    [[ -n "${SIPP_EXTRA_ARGS:-}" ]] && args+=($SIPP_EXTRA_ARGS)
    rm -f "$artifacts/$label.errors.log"
    start=$(date +%s.%N)
    rc=0
    (cd "$work" && exec sipp "${args[@]}") >"$artifacts/$label.out" 2>&1 &
    sipp_pid=$!
    wait "$sipp_pid" || rc=$?
    sipp_pid=""
    secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
    ok=$(awk -F'|' '/Successful call/ { gsub(/ /, "", $3); print $3 }' "$artifacts/$label.out" | tail -n 1)
    failed=$(awk -F'|' '/Failed call/ { gsub(/ /, "", $3); print $3 }' "$artifacts/$label.out" | tail -n 1)
    ok=${ok:--}
    failed=${failed:--}
    printf '%-28s %9s %7s %4s %7s\n' "$label" "$ok" "$failed" "$rc" "$secs" >>"$summary"
    if [[ $rc -ne 0 || "$ok" != "$calls" || "$failed" != 0 ]]; then
        failures=$((failures + 1))
        log "$label FAILED (rc $rc); SIPp output and errors:"
        grep -v '^ *$' "$artifacts/$label.out" | tail -n 15 >&2 || true
        [[ -f "$artifacts/$label.errors.log" ]] && head -n 40 "$artifacts/$label.errors.log" >&2
    fi
    if ! kill -0 "$as_pid" 2>/dev/null; then
        log "the AS died during $label; its log:"
        tail -n 40 "$work/as.log" >&2 || true
        failures=$((failures + 1))
        break
    fi
done


cp "$summary" "$artifacts/summary.txt"
echo
cat "$summary"
echo
if [[ $failures -ne 0 ]]; then
    log "$failures scenario(s) failed; logs in $artifacts"
    exit 1
fi
log "all ${#scenarios[@]} scenario(s) passed"
