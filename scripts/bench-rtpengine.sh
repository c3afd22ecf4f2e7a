#!/usr/bin/env bash
# scripts/bench-rtpengine.sh: our relay and rtpengine side by side, in one run, forwarding the
# same 1 -> N load over loopback (issue 7, "fan-out speed").
#
# Starts Debian's rtpengine (package rtpengine-daemon, installed if missing) in userspace
# forwarding only (--table=-1: no kernel module) on 127.0.0.1, with its ng control protocol on
# UDP 127.0.0.1:$NG_PORT. The `fanout_load` example of media-relay then drives the same load
# through each target: for rtpengine it sets up the 1 -> N fan-out with the ng protocol's
# publish / subscribe request / subscribe answer (one publisher, N subscribers on 127.0.1.x),
# for our relay it uses the in-process control API; the sender, the sinks and the rate ladder
# are the same code. CPU: our relay thread's utime + stime; rtpengine's whole process
# (/proc/PID/stat, all its threads). Output: output packets per CPU-second and loss per step,
# as a table on stdout and JSON in $out/rtpengine-vs-relay.json. rtpengine is killed by its
# PID at the end (also on error).
#
# Load shapes (EXTRA_ARGS, the same for every target): `--frame-packets 10` sends each frame's
# 10 packets back to back as an encoder does (default: evenly paced packets); `--sinks-gro` lets
# the sinks take a GSO run whole (UDP_GRO), which models a NIC with UDP segmentation offload:
# without it the loopback receive splits every GSO run in the relay's own system call.
# rtpengine sends no GSO, so `--sinks-gro` changes nothing for it.
#
# Environment: VIEWERS ("100,1000"), MODES ("rtpengine,sendto,sendmmsg,gso,gso@2000"),
#              OUTPUT_RATES, STEP_S (2), SINKS (poll), NG_PORT (22222), EXTRA_ARGS,
#              CI_ARTIFACTS (ci-artifacts), NO_BUILD (1: use target/release/examples/fanout_load as is).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${CI_ARTIFACTS:-$root/ci-artifacts}/bench
mkdir -p "$out"
out=$(cd "$out" && pwd)
ng_port=${NG_PORT:-22222}

log() { printf '[bench-rtpengine] %s\n' "$*" >&2; }

if ! command -v rtpengine >/dev/null 2>&1; then
    log "installing rtpengine-daemon"
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rtpengine-daemon >/dev/null
fi
# The package's service is not wanted: this script runs its own daemon.
if command -v systemctl >/dev/null 2>&1; then
    systemctl stop rtpengine-daemon >/dev/null 2>&1 || true
fi
log "$(rtpengine --version 2>&1 | head -1)"

cd "$root"
log "cargo build --release -p media-relay --example fanout_load"
if [[ "${NO_BUILD:-0}" == 1 && -x "$root/target/release/examples/fanout_load" ]]; then
    log "NO_BUILD=1: using the fanout_load binary as built"
else
    cargo build --release -q -p media-relay --example fanout_load
fi

rtpe_pid=""
cleanup() {
    if [[ -n "$rtpe_pid" ]] && kill -0 "$rtpe_pid" 2>/dev/null; then
        kill "$rtpe_pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$rtpe_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$rtpe_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT

# Userspace only (--table=-1), no config file, calls deleted at once on `delete`.
rtpengine --config-file=none --foreground --log-stderr --log-level=4 --table=-1 \
    --interface=127.0.0.1 --listen-ng="127.0.0.1:$ng_port" \
    --port-min=30000 --port-max=39999 --delete-delay=0 \
    >"$out/rtpengine.log" 2>&1 &
rtpe_pid=$!
# Wait (bounded) until the ng port answers.
for _ in $(seq 1 50); do
    if ! kill -0 "$rtpe_pid" 2>/dev/null; then
        log "rtpengine exited; its log:"
        tail -20 "$out/rtpengine.log" >&2
        exit 1
    fi
    if ss -Hlun "sport = :$ng_port" 2>/dev/null | grep -q .; then
        break
    fi
    sleep 0.1
done
log "rtpengine pid $rtpe_pid, ng 127.0.0.1:$ng_port; load average $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"

# shellcheck disable=SC2086 # EXTRA_ARGS is a list of flags
"$root/target/release/examples/fanout_load" \
    --modes "${MODES:-rtpengine,sendto,sendmmsg,gso,gso@2000}" \
    --rtpengine-ng "127.0.0.1:$ng_port" --rtpengine-pid "$rtpe_pid" \
    --viewers "${VIEWERS:-100,1000}" \
    --output-rates "${OUTPUT_RATES:-50000,100000,200000,300000,400000,600000,800000,1000000}" \
    --duration "${STEP_S:-2}" \
    --sinks "${SINKS:-poll}" \
    --out "$out/rtpengine-vs-relay.json" ${EXTRA_ARGS:-} | tee "$out/rtpengine-vs-relay.txt"
log "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
