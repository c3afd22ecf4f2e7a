#!/usr/bin/env bash
# scripts/bench-relay.sh: relay fan-out with real UDP sockets on loopback (1 -> N viewers).
#
# Builds the `fanout_load` example of media-relay in release mode and runs it: the relay runs
# in-process on its own thread (its CPU = that thread's utime + stime from /proc), a sender
# thread feeds one channel with 1212-byte H.264 RTP packets at a rate ladder, N UDP sinks on
# 127.0.1.x count what arrives (sender and sinks are not counted). Per N the ladder stops at
# the first saturated step (any loss, relay CPU >= 95 %, or the sender below 95 % of target).
# Progress lines while it runs; a table on stdout; JSON in $out/relay-fanout.json.
#
# Environment: VIEWERS ("1,10,100"), RATES (input pps ladder, default 1000 .. 100000, see --help),
#              STEP_S (3), EXTRA_ARGS (more flags, see --help), CI_ARTIFACTS (ci-artifacts).
# With CRITERION=1 it also runs the criterion core bench (no sockets) afterwards.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${CI_ARTIFACTS:-$root/ci-artifacts}/bench
mkdir -p "$out"
out=$(cd "$out" && pwd)

log() { printf '[bench-relay] %s\n' "$*" >&2; }

cd "$root"
log "cargo build --release -p media-relay --example fanout_load"
cargo build --release -q -p media-relay --example fanout_load
log "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
# shellcheck disable=SC2086 # EXTRA_ARGS is a list of flags
"$root/target/release/examples/fanout_load" \
    --viewers "${VIEWERS:-1,10,100}" \
    --rates "${RATES:-1000,2000,3000,5000,7000,10000,15000,20000,30000,50000,75000,100000}" \
    --duration "${STEP_S:-3}" \
    --out "$out/relay-fanout.json" ${EXTRA_ARGS:-} | tee "$out/relay-fanout.txt"
log "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

if [[ "${CRITERION:-0}" == 1 ]]; then
    log "cargo bench -p media-relay --bench fanout -- --warm-up-time 1 --measurement-time 3"
    cargo bench -q -p media-relay --bench fanout -- --warm-up-time 1 --measurement-time 3 \
        | tee "$out/relay-fanout-criterion.txt"
fi
