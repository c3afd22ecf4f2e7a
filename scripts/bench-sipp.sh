#!/usr/bin/env bash
# scripts/bench-sipp.sh: join+leave calls per second with SIPp, beside SIPp's own UAS.
#
# In one go:
#  1. baseline: SIPp's built-in uac against SIPp's built-in uas (`-sn uac` / `-sn uas`, both
#     with -buff_size 4194304: with SIPp's default buffers it collapses near 5k calls/s);
#  2. the AS: sipp-scenarios/join.xml with no hold (-d 0: INVITE, 200, ACK, BYE, 200) against
#     the standalone testbed booted by sipp-scenarios/run.sh --exec.
# Each runs at increasing rates for STEP_S seconds per rate; a rate "holds" when every call
# succeeded and the achieved rate is at least 95 % of the target. The server's CPU comes from
# /proc/PID/stat (utime + stime) before and after each step. The table goes to stdout and to
# ${CI_ARTIFACTS:-ci-artifacts}/bench/sipp.md.
#
# Environment: STEP_S (5), UAS_RATES ("2000 5000 10000 20000 30000 40000"),
#              AS_RATES ("100 200 500 1000 2000 3000 5000 8000"), AS_BIN (else cargo build).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${CI_ARTIFACTS:-$root/ci-artifacts}/bench
mkdir -p "$out"
out=$(cd "$out" && pwd)
step_s=${STEP_S:-5}
uas_rates=${UAS_RATES:-2000 5000 10000 20000 30000 40000}
as_rates=${AS_RATES:-100 200 500 1000 2000 3000 5000 8000}
buf=4194304
hz=$(getconf CLK_TCK)
load_before=$(cut -d" " -f1-3 /proc/loadavg)

log() { printf '[bench-sipp] %s\n' "$*" >&2; }

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# run_rate LABEL PID RATE SIPP-ARGS...: one step; appends a table row to $out/rows-LABEL.
run_rate() {
    local label=$1 pid=$2 rate=$3
    shift 3
    local n=$((rate * step_s)) t0 t1 c0 c1 rc=0 ok failed secs cps cpu holds
    c0=$(cpu_ticks "$pid")
    t0=$(date +%s.%N)
    sipp "$@" -r "$rate" -m "$n" -l $((rate * 4 + 100)) -buff_size "$buf" -nostdin \
        -timeout $((step_s * 4 + 30))s -timeout_error -recv_timeout 10s \
        -trace_stat -stf "$out/$label-$rate.csv" >"$out/$label-$rate.out" 2>&1 || rc=$?
    t1=$(date +%s.%N)
    c1=$(cpu_ticks "$pid")
    ok=$(awk -F'|' '/Successful call/ { gsub(/ /, "", $3); print $3 }' "$out/$label-$rate.out" | tail -n 1)
    failed=$(awk -F'|' '/Failed call/ { gsub(/ /, "", $3); print $3 }' "$out/$label-$rate.out" | tail -n 1)
    ok=${ok:-0}
    failed=${failed:-?}
    read -r secs cps cpu < <(awk -v a="$t0" -v b="$t1" -v ok="$ok" -v c="$((c1 - c0))" -v hz="$hz" \
        'BEGIN { s = b - a; printf "%.2f %.0f %.0f\n", s, ok / s, 100 * c / hz / s }')
    holds=no
    if [[ $rc -eq 0 && "$failed" == 0 && "$ok" == "$n" ]] &&
        awk -v cps="$cps" -v r="$rate" 'BEGIN { exit !(cps >= 0.95 * r) }'; then
        holds=yes
    fi
    printf '| %s | %s | %s | %s | %s | %s | %s%% | %s |\n' \
        "$label" "$rate" "$ok" "$failed" "$secs" "$cps" "$cpu" "$holds" >>"$out/rows-$label"
    log "$label rate $rate: ok $ok failed $failed in ${secs}s = $cps calls/s, server CPU $cpu% -> $holds"
    [[ $holds == yes ]]
}

header='| server | target calls/s | calls ok | failed | seconds | achieved calls/s | server CPU (1 core = 100 %) | holds |
| --- | --- | --- | --- | --- | --- | --- | --- |'

# ---- 1. SIPp uac -> SIPp uas.
if [[ -z "${SKIP_UAS:-}" ]]; then
    rm -f "$out/rows-sipp-uas"
    sipp -sn uas -i 127.0.0.1 -p 5098 -buff_size "$buf" -nostdin >"$out/uas.out" 2>&1 &
    uas_pid=$!
    trap 'kill "$uas_pid" 2>/dev/null || true' EXIT
    sleep 0.5
    for r in $uas_rates; do
        run_rate sipp-uas "$uas_pid" "$r" -sn uac 127.0.0.1:5098 -i 127.0.0.1 -p 5099 || break
    done
    kill "$uas_pid" 2>/dev/null || true
    wait "$uas_pid" 2>/dev/null || true
    trap - EXIT
fi

# ---- 2. SIPp join.xml (-d 0) -> the AS.
if [[ -z "${SKIP_AS:-}" ]]; then
    rm -f "$out/rows-as-server"
    export -f run_rate cpu_ticks log
    export out step_s buf hz as_rates root
    SIPP_ARTIFACTS="$out/testbed" bash "$root/sipp-scenarios/run.sh" --exec '
        for r in $as_rates; do
            run_rate as-server "$AS_PID" "$r" 127.0.0.1:5060 -sf "$root/sipp-scenarios/join.xml" \
                -s news -d 0 -i 127.0.0.1 -p 5071 -mp 16000 || break
        done
        exit 0' || log "the AS testbed did not run"
fi

{
    echo "SIPp $(sipp -v 2>&1 | grep -o 'v[0-9.]*[^ ]*' | head -n 1), $(nproc) cores, $(date -u +%Y-%m-%d)"
    echo "load average before: $load_before (other work on the machine competes for the 2 cores)"
    echo
    echo "$header"
    cat "$out"/rows-sipp-uas "$out"/rows-as-server 2>/dev/null || true
} | tee "$out/sipp.md"
