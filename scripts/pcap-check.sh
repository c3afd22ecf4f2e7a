#!/usr/bin/env bash
# scripts/pcap-check.sh: every wire format the testbed emits decodes cleanly in Wireshark.
#
# Captures the loopback while sipp-scenarios/run.sh runs join, zap and channel-list scenarios
# (the AS's SIP and SDP, the relay's RTP and RTCP to the SIPp viewer), then decodes the capture
# with tshark and fails when
#   * `tshark -z expert` reports any Error or Warning (but for Wireshark's own "Undecoded"
#     group: its H.264 dissector does not parse slice data), or any packet is marked Malformed;
#   * SIP, SDP, RTP or RTCP was not seen at all (frames counted with -Y sip / sdp / rtp / rtcp).
# The pcap, the expert report and the per-protocol counts are kept in
# ${CI_ARTIFACTS:-ci-artifacts}/pcap/.
#
# The viewer (SIPp) takes RTP on its media port MP (16000, run.sh's -mp); a small UDP sink
# listens on MP+1 for RTCP so that no ICMP port-unreachable pollutes the capture.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
art=${CI_ARTIFACTS:-$root/ci-artifacts}/pcap
media_port=16000
relay_rtp_port=19000 # the standalone config's relay output_rtp_port (RTCP: +1)

log() { printf '[pcap-check] %s\n' "$*" >&2; }

for tool in tshark dumpcap sipp curl python3; do
    command -v "$tool" >/dev/null || { log "$tool not found"; exit 2; }
done

if [[ -z "${PCAP_CHECK_INNER:-}" ]]; then
    if [[ -z "${AS_BIN:-}" ]]; then
        (cd "$root" && cargo build --release -q -p as-server)
        export AS_BIN=${CARGO_TARGET_DIR:-$root/target}/release/as-server
    fi
    export PCAP_CHECK_INNER=1
    if [[ "${SIPP_NETNS:-auto}" != no ]] && unshare -n true 2>/dev/null; then
        log "running in a private network namespace (unshare -n)"
        exec unshare -n bash -c 'ip link set lo up && exec bash "$0" "$@"' "${BASH_SOURCE[0]}" "$@"
    fi
    log "running on the host loopback"
fi

mkdir -p "$art"
art=$(cd "$art" && pwd)
pcap=$art/testbed.pcapng
rm -f "$pcap" "$art"/*.txt
cap_pid=""
sink_pid=""
cleanup() {
    [[ -n "$sink_pid" ]] && kill "$sink_pid" 2>/dev/null || true
    if [[ -n "$cap_pid" ]] && kill -0 "$cap_pid" 2>/dev/null; then
        kill -INT "$cap_pid" 2>/dev/null || true
        wait "$cap_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT

# RTCP sink on the viewer's RTCP port (SIPp binds only MP and MP+2).
python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
while True:
    s.recv(65536)
' "$((media_port + 1))" &
sink_pid=$!

# Capture SIP (5060), the viewer's media ports and the relay's output ports only: the HTTP
# readiness polls stay out, and on the host loopback (no namespace) so does other traffic.
filter="port 5060 or udp portrange $media_port-$((media_port + 3))"
filter="$filter or udp portrange $relay_rtp_port-$((relay_rtp_port + 1))"
dumpcap -q -i lo -f "$filter" -w "$pcap" 2>"$art/dumpcap.txt" &
cap_pid=$!
for _ in $(seq 1 50); do
    [[ -s "$pcap" ]] && break
    kill -0 "$cap_pid" 2>/dev/null || { log "dumpcap failed:"; cat "$art/dumpcap.txt" >&2; exit 1; }
    sleep 0.1
done
[[ -s "$pcap" ]] || { log "dumpcap did not start"; exit 1; }

# Viewers watch long enough for the relay's RTCP sender reports (hold 6 s).
rc=0
SIPP_RUN_INNER=1 SIPP_CALLS=${PCAP_CALLS:-2} SIPP_RATE=2 SIPP_HOLD_MS=${PCAP_HOLD_MS:-6000} \
    SIPP_ARTIFACTS="$art/sipp" bash "$root/sipp-scenarios/run.sh" \
    ${PCAP_SCENARIOS:-join.xml zap_reinvite.xml zap_bye_invite.xml channel_list.xml} || rc=$?
sleep 0.5
kill -INT "$cap_pid" 2>/dev/null || true
wait "$cap_pid" 2>/dev/null || true
cap_pid=""
if [[ $rc -ne 0 ]]; then
    log "the scenarios failed (run.sh rc $rc); decoding the capture anyway"
fi

decode=(-o rtp.heuristic_rtp:TRUE -o rtcp.heuristic_rtcp:TRUE
    -d "udp.port==$media_port,rtp" -d "udp.port==$((media_port + 1)),rtcp"
    -d "udp.port==$relay_rtp_port,rtp" -d "udp.port==$((relay_rtp_port + 1)),rtcp")

tshark -r "$pcap" "${decode[@]}" -q -z expert >"$art/expert.txt" 2>"$art/tshark-stderr.txt" || true
tshark -r "$pcap" "${decode[@]}" -Y '_ws.malformed || _ws.expert.severity >= error' \
    >"$art/bad-frames.txt" 2>>"$art/tshark-stderr.txt" || true

# Errors and warnings from the expert summary, except the "Undecoded" group: Wireshark's
# H.264 dissector marks every slice payload "[Not decoded yet]" (it does not parse slice data),
# which says nothing about the packets.
awk '
    /^(Errors|Warns) \(/ { sev = 1; next }
    /^(Notes|Chats|Comments) \(/ { sev = 0; next }
    sev && $1 ~ /^[0-9]+$/ && $2 != "Undecoded" { print }
' "$art/expert.txt" >"$art/expert-problems.txt"

fail=0
if [[ -s "$art/expert-problems.txt" ]]; then
    log "tshark expert reports errors or warnings (frequency, group, protocol, summary):"
    cat "$art/expert-problems.txt" >&2
    fail=1
fi
if grep -qi 'malformed' "$art/expert.txt" "$art/bad-frames.txt"; then
    log "malformed packets:"
    grep -i malformed "$art/expert.txt" "$art/bad-frames.txt" | head -n 20 >&2
    fail=1
fi
if [[ -s "$art/bad-frames.txt" ]]; then
    log "frames with errors:"
    head -n 20 "$art/bad-frames.txt" >&2
    fail=1
fi

: >"$art/counts.txt"
for proto in sip sdp rtp rtcp; do
    n=$(tshark -r "$pcap" "${decode[@]}" -Y "$proto" 2>/dev/null | wc -l)
    printf '%-5s %d frames\n' "$proto" "$n" | tee -a "$art/counts.txt"
    if [[ $n -eq 0 ]]; then
        log "no $proto frame in the capture"
        fail=1
    fi
done

[[ $rc -eq 0 ]] || fail=1
if [[ $fail -ne 0 ]]; then
    log "FAILED; capture and reports in $art"
    exit 1
fi
log "clean: no expert error/warning, no malformed frame; capture in $pcap"
