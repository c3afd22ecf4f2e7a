#!/usr/bin/env bash
# scripts/bench-relay.sh: relay fan-out with real UDP sockets on loopback (1 -> N viewers).
#
# Builds the `fanout_load` example of media-relay in release mode and runs it: the relay runs
# in-process on its own thread (its CPU = that thread's utime + stime from /proc), a sender
# thread feeds one channel with 1212-byte H.264 RTP packets at a rate ladder, N UDP sinks on
# 127.0.1.x count what arrives (sender and sinks are not counted). Each send mode gets its own
# relay: sendto (one sendmsg per datagram), sendmmsg, gso (sendmmsg + UDP GSO for runs to one
# viewer), and gso@US (GSO with a US-microsecond coalescing window for live packets). Per mode
# and N the ladder stops at the first saturated step (any loss, relay CPU >= 95 %, or the
# sender below 95 % of target). Progress lines while it runs; a table on stdout (output packets
# per relay CPU-second, relay allocations per output packet, loss); JSON in $out/relay-fanout.json.
#
# Environment: VIEWERS ("100,1000"), MODES ("sendto,sendmmsg,gso,gso@2000"),
#              OUTPUT_RATES (output pps ladder, all viewers together; the input rate is this / N),
#              STEP_S (2), SINKS (poll | epoll, see --help), EXTRA_ARGS (more flags, see --help),
#              CI_ARTIFACTS (ci-artifacts), NO_BUILD (1: use target/release/examples/fanout_load as is).
# With CRITERION=1 it also runs the criterion core bench (no sockets) afterwards.
# scripts/bench-rtpengine.sh runs the same load through rtpengine in the same run.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${CI_ARTIFACTS:-$root/ci-artifacts}/bench
mkdir -p "$out"
out=$(cd "$out" && pwd)

log() { printf '[bench-relay] %s\n' "$*" >&2; }

cd "$root"
log "cargo build --release -p media-relay --example fanout_load"
if [[ "${NO_BUILD:-0}" == 1 && -x "$root/target/release/examples/fanout_load" ]]; then
    log "NO_BUILD=1: using the fanout_load binary as built"
else
    cargo build --release -q -p media-relay --example fanout_load
fi
log "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
# shellcheck disable=SC2086 # EXTRA_ARGS is a list of flags
"$root/target/release/examples/fanout_load" \
    --viewers "${VIEWERS:-100,1000}" \
    --modes "${MODES:-sendto,sendmmsg,gso,gso@2000}" \
    --output-rates "${OUTPUT_RATES:-50000,100000,200000,300000,400000,600000,800000,1000000}" \
    --duration "${STEP_S:-2}" \
    --sinks "${SINKS:-poll}" \
    --out "$out/relay-fanout.json" ${EXTRA_ARGS:-} | tee "$out/relay-fanout.txt"
log "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

if [[ "${CRITERION:-0}" == 1 ]]; then
    log "cargo bench -p media-relay --bench fanout -- --warm-up-time 1 --measurement-time 3"
    cargo bench -q -p media-relay --bench fanout -- --warm-up-time 1 --measurement-time 3 \
        | tee "$out/relay-fanout-criterion.txt"
fi
