#!/usr/bin/env bash
# sipp-scenarios/interop/baresip.sh: a real SIP phone (baresip) watches `news` on the testbed.
#
# Run as `bash sipp-scenarios/interop/baresip.sh`: outside the testbed it re-runs itself through
# `sipp-scenarios/run.sh --exec` (AS booted in a private network namespace, SIP 127.0.0.1:5060).
# Inside it:
#   1. writes a headless baresip config (no audio/video device: `ausine` audio source,
#      `aubridge` audio sink, `fakevideo` video source, `vidbridge` video sink, the `avcodec`
#      H.264 codec; SIP on 127.0.0.1:5080, RTP in 10000-10099, control on ctrl_tcp 127.0.0.1:4444)
#      and an account `<sip:viewer@127.0.0.1>;regint=0`;
#   2. captures SIP and the viewer's RTP ports on lo with dumpcap;
#   3. starts baresip with `-e "/dial sip:news@127.0.0.1"`, waits for the call, watches
#      BARESIP_WATCH_S seconds (4), ends the call through ctrl_tcp (BARESIP_HANGUP: `hangup`, the
#      default, or `quit`, baresip exiting with the call up, as `-t` does), keeps capturing
#      BARESIP_LINGER_S seconds (4, well over the AS's 2 s dropped-viewer grace), then `quit`;
#   4. reads the capture with tshark and exits 0 only when the INVITE got 200 OK with H.264 in
#      packetization-mode 1 (the relay sends FU-A), the relay's RTP reached baresip's video port
#      (more than BARESIP_MIN_RTP packets, 50), baresip's BYE got 200, no 481 was sent and the
#      AS sent no BYE of its own.
# baresip's SIP trace (-s) and log, its config and the pcap are kept in
# ${SIPP_ARTIFACTS:-ci-artifacts/sipp}/baresip/. Every process started here is ended by its PID.
#
# The hang-up race this guards: baresip sends its SIP BYE and an RTCP BYE to the relay within a
# millisecond, in either order. The relay drops the viewer on the RTCP BYE at once; the AS keeps
# the session for the UE's own BYE (`dropped_viewer_grace_ms`, tu.rs `viewer_dropped`), and a
# BYE crossing one the AS sent gets 200 (tests/bye_race.rs). Part of scripts/test-all.sh.
#
# Needs: baresip (Debian `baresip-core`) with the `avcodec` module (Debian `baresip-ffmpeg`),
# tshark + dumpcap, curl, sipp (for run.sh).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
channel=${BARESIP_CHANNEL:-news}
watch_s=${BARESIP_WATCH_S:-4}
hangup=${BARESIP_HANGUP:-hangup}
linger_s=${BARESIP_LINGER_S:-4}
[[ "$hangup" == hangup || "$hangup" == quit ]] || { echo "BARESIP_HANGUP must be hangup or quit" >&2; exit 2; }
min_rtp=${BARESIP_MIN_RTP:-50}
art=${SIPP_ARTIFACTS:-$root/ci-artifacts/sipp}/baresip
modules=/usr/lib/baresip/modules

log() { printf '[baresip.sh] %s\n' "$*" >&2; }

for tool in baresip tshark dumpcap; do
    command -v "$tool" >/dev/null || { log "$tool not found (apt-get install baresip-core baresip-ffmpeg tshark)"; exit 2; }
done
for m in avcodec fakevideo vidbridge ausine aubridge g711 ctrl_tcp menu account; do
    [[ -f "$modules/$m.so" ]] || { log "baresip module $m.so missing in $modules (avcodec: apt-get install baresip-ffmpeg)"; exit 2; }
done

# Outside the testbed: boot it and come back in.
if [[ -z "${AS_PID:-}" ]]; then
    exec bash "$root/sipp-scenarios/run.sh" --exec "bash '$here/baresip.sh'"
fi

mkdir -p "$art"
art=$(cd "$art" && pwd)
rm -f "$art"/*
work=$(mktemp -d /tmp/baresip-interop.XXXXXX)
bs_pid=""
cap_pid=""

cleanup() {
    local rc=$?
    for pid in "$bs_pid" "$cap_pid"; do
        [[ -n "$pid" ]] || continue
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    cp -f "$work"/config "$work"/accounts "$work"/baresip.log "$work"/capture.pcap "$art"/ 2>/dev/null || true
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 1. baresip's configuration: headless, loopback only.
cat >"$work/config" <<EOF
poll_method		epoll
sip_listen		127.0.0.1:5080
net_interface		127.0.0.1
call_local_timeout	20
call_max_calls		1
audio_player		aubridge,null
audio_source		ausine,440
audio_alert		aubridge,null
video_source		fakevideo,nil
video_display		vidbridge,null
video_size		352x288
video_bitrate		500000
video_fps		25.00
rtp_ports		10000-10099
rtcp_mux		no
jitter_buffer_delay	5-10
rtp_stats		yes
module_path		$modules
module			g711.so
module			ausine.so
module			aubridge.so
module			avcodec.so
module			fakevideo.so
module			vidbridge.so
module_tmp		account.so
module_app		menu.so
module_app		ctrl_tcp.so
ctrl_tcp_listen		127.0.0.1:4444
avcodec_h264dec		h264
EOF
echo '<sip:viewer@127.0.0.1>;regint=0' >"$work/accounts"

# --- 2. Capture SIP and the viewer's RTP/RTCP ports.
dumpcap -q -i lo -f "udp port 5060 or udp portrange 10000-10099" -w "$work/capture.pcap" \
    >"$work/dumpcap.log" 2>&1 &
cap_pid=$!
for _ in $(seq 1 50); do
    grep -q "Capturing on" "$work/dumpcap.log" 2>/dev/null && break
    [[ -s "$work/capture.pcap" ]] && break
    sleep 0.1
done
sleep 0.3

# --- 3. The call.
# ctrl_tcp: a netstring of {"command": ..., "params": ..., "token": ...}.
ctrl() {
    local msg="{\"command\":\"$1\",\"params\":\"${2:-}\",\"token\":\"t$RANDOM\"}"
    exec 3<>/dev/tcp/127.0.0.1/4444 || return 1
    printf '%d:%s,' "${#msg}" "$msg" >&3
    timeout 2 head -c 4096 <&3 >>"$work/ctrl.log" 2>/dev/null || true
    exec 3>&- 3<&-
}

log "baresip dials sip:$channel@127.0.0.1 (offers H.264 video), watches ${watch_s}s, hangs up"
(cd "$work" && exec baresip -4 -f "$work" -s -e "/dial sip:$channel@127.0.0.1" </dev/null) \
    >"$work/baresip.log" 2>&1 &
bs_pid=$!

established=""
for _ in $(seq 1 100); do # 10 s at most
    if grep -q "Call established" "$work/baresip.log"; then established=1; break; fi
    if grep -qE "Call with .* terminated|call: .*failed|SIP/2.0 [3-6][0-9][0-9] " "$work/baresip.log"; then break; fi
    kill -0 "$bs_pid" 2>/dev/null || break
    sleep 0.1
done
if [[ -n "$established" ]]; then
    sleep "$watch_s"
    ctrl "$hangup" || log "ctrl_tcp $hangup failed"
    for _ in $(seq 1 50); do # the BYE's answer: 5 s at most
        grep -q "CSeq: [0-9]* BYE" "$work/baresip.log" &&
            awk '/^SIP\/2.0 /{s=1} s&&/CSeq: [0-9]+ BYE/{f=1} /^$/{s=0} END{exit !f}' "$work/baresip.log" && break
        kill -0 "$bs_pid" 2>/dev/null || break
        sleep 0.1
    done
    # Long enough for a BYE the AS would send after its dropped-viewer grace to be captured.
    sleep "$linger_s"
else
    log "no established call within 10 s"
fi
ctrl quit 2>/dev/null || true
for _ in $(seq 1 50); do kill -0 "$bs_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$bs_pid" 2>/dev/null; then kill -TERM "$bs_pid" 2>/dev/null || true; fi
wait "$bs_pid" 2>/dev/null || true
bs_pid=""
sleep 0.3
kill -TERM "$cap_pid" 2>/dev/null || true
wait "$cap_pid" 2>/dev/null || true
cap_pid=""

# --- 4. What the wire says.
pcap=$work/capture.pcap
sip_fields() {
    tshark -r "$pcap" -Y "$1" -T fields -E separator=' ' "${@:2}" 2>/dev/null || true
}
# The INVITE's final answer and the BYE's answer (the AS's side, port 5060 -> baresip).
invite_codes=$(sip_fields 'sip.Status-Code >= 200 && sip.CSeq.method == "INVITE" && udp.srcport == 5060' -e sip.Status-Code | tr '\n' ' ')
bye_codes=$(sip_fields 'sip.Status-Code && sip.CSeq.method == "BYE" && udp.srcport == 5060' -e sip.Status-Code | tr '\n' ' ')
bye_sent=$(sip_fields 'sip.Method == "BYE" && udp.dstport == 5060' -e udp.srcport -e udp.dstport | head -n 1)
as_bye=$(sip_fields 'sip.Method == "BYE" && udp.srcport == 5060' -e sip.Call-ID | head -n 1)
n481=$(sip_fields 'sip.Status-Code == 481' -e sip.CSeq | tr '\n' ' ')
# baresip's video port: the m=video line of its INVITE's offer.
video_port=$(sip_fields 'sip.Method == "INVITE" && udp.dstport == 5060' -e sdp.media | tr ',' '\n' |
    awk '$1 == "video" { print $2; exit }')
answer_video=$(sip_fields 'sip.Status-Code == 200 && sip.CSeq.method == "INVITE"' -e sdp.media -e sdp.media_attr | head -n 1)
rtp_count=0
rtp_from=""
if [[ -n "$video_port" ]]; then
    rtp_count=$(tshark -r "$pcap" -d "udp.port==$video_port,rtp" \
        -Y "rtp && udp.dstport == $video_port" -T fields -e udp.srcport 2>/dev/null | wc -l)
    rtp_from=$(tshark -r "$pcap" -d "udp.port==$video_port,rtp" \
        -Y "rtp && udp.dstport == $video_port" -T fields -e ip.src -e udp.srcport -e rtp.p_type 2>/dev/null |
        sort | uniq -c | awk '{ printf "%s:%s (PT %s) x%s; ", $2, $3, $4, $1 }')
fi
rtcp_to_as=$(tshark -r "$pcap" -Y "udp.dstport == 19001" 2>/dev/null | wc -l)
bs_rx=$(awk '/^packets:/ { print $3 }' "$work/baresip.log" | head -n 1)
bs_res=$(grep -o 'receiving with resolution [0-9]* x [0-9]*' "$work/baresip.log" | head -n 1 || true)
bs_dec=$(grep -o 'Set video decoder: .*' "$work/baresip.log" | head -n 1 || true)

echo
echo "baresip interop (sip:$channel@127.0.0.1):"
printf '  INVITE final answer(s): %s\n' "${invite_codes:-none}"
printf '  answer SDP (media, attrs): %s\n' "${answer_video:-none}"
printf '  baresip video port: %s; %s; %s\n' "${video_port:-?}" "${bs_dec:-no decoder set}" "${bs_res:-no picture size reported}"
printf '  RTP packets to baresip (pcap): %s from %s\n' "$rtp_count" "${rtp_from:-nobody}"
printf '  RTP packets received (baresip rtp_stats): %s\n' "${bs_rx:-?}"
printf '  packets from baresip to the RTCP port 19001: %s\n' "$rtcp_to_as"
printf '  BYE sent (src dst port): %s; answer(s): %s\n' "${bye_sent:-none}" "${bye_codes:-none}"
printf '  BYE sent by the AS: %s; 481 answers: %s\n' "${as_bye:-none}" "${n481:-none}"
echo "  (baresip log, config and pcap in $art)"

ok=1
[[ " $invite_codes " == *" 200 "* ]] || { log "FAIL: the INVITE did not get 200 OK (got: ${invite_codes:-nothing})"; ok=""; }
[[ "$rtp_count" -gt "$min_rtp" ]] || { log "FAIL: $rtp_count RTP packets reached baresip (need > $min_rtp)"; ok=""; }
[[ -n "$bye_sent" ]] || { log "FAIL: baresip sent no BYE"; ok=""; }
[[ " $bye_codes " == *" 200 "* ]] || { log "FAIL: the BYE did not get 200 OK (got: ${bye_codes:-nothing})"; ok=""; }
[[ -z "$as_bye" ]] || { log "FAIL: the AS sent its own BYE (the UE's BYE should have ended the call)"; ok=""; }
[[ -z "${n481// /}" ]] || { log "FAIL: 481 answer(s) in the capture (CSeq: $n481)"; ok=""; }
[[ "$answer_video" == *"packetization-mode=1"* ]] || { log "FAIL: the answer's H.264 is not packetization-mode=1"; ok=""; }
[[ -n "$ok" ]] || { log "the AS log lands in $(dirname "$art")/as-server.log"; exit 1; }
log "PASS: 200 OK, $rtp_count RTP packets to baresip, BYE 200 OK"
