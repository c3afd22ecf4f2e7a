#!/usr/bin/env bash
# Self-test of the SIPp scenarios without the AS: each client scenario X.xml runs against its
# stand-in server standin/X.xml (a SIPp UAS scenario playing the AS's part of the flow).
# Usage: sipp-scenarios/standin/selftest.sh [X.xml ...]   (default: every scenario with a stand-in)
# Exits non-zero when a scenario fails. Only 127.0.0.1, bounded by SIPp's -timeout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
scen_dir=$(dirname "$here")
work=$(mktemp -d /tmp/sipp-selftest.XXXXXX)
uas_pid=""
cleanup() {
    if [[ -n "$uas_pid" ]] && kill -0 "$uas_pid" 2>/dev/null; then kill "$uas_pid" 2>/dev/null || true; fi
    [[ -n "${KEEP:-}" ]] || rm -rf "$work"
}
trap cleanup EXIT

if [[ $# -eq 0 ]]; then
    set --
    for f in "$here"/*.xml; do set -- "$@" "$(basename "$f")"; done
fi

fail=0
port=25060
for name in "$@"; do
    name=$(basename "$name")
    port=$((port + 20))
    (
        cd "$work"
        exec sipp -sf "$here/$name" -i 127.0.0.1 -p "$port" -mp $((port + 4)) -m 1 -nostdin \
            -timeout 20s -timeout_error -trace_err -error_file "$work/${name%.xml}.uas.err" \
            >"$work/${name%.xml}.uas.out" 2>&1
    ) &
    uas_pid=$!
    sleep 0.3
    if ! kill -0 "$uas_pid" 2>/dev/null; then
        printf '%-26s FAILED (stand-in did not start)\n' "$name"
        cat "$work/${name%.xml}.uas.out"
        fail=1
        continue
    fi
    setargs=()
    if grep -q '<Global variables="[^"]*zap_to' "$scen_dir/$name"; then setargs=(-set zap_to sport); fi
    rc=0
    (
        cd "$work"
        exec sipp "127.0.0.1:$port" -sf "$scen_dir/$name" -i 127.0.0.1 -p $((port + 1)) -mp $((port + 10)) \
            -s news "${setargs[@]}" -d 200 -m 1 -nostdin -timeout 20s -timeout_error \
            -trace_err -error_file "$work/${name%.xml}.uac.err" >"$work/${name%.xml}.uac.out" 2>&1
    ) || rc=$?
    if [[ $rc -ne 0 ]]; then kill "$uas_pid" 2>/dev/null || true; fi
    urc=0
    wait "$uas_pid" || urc=$?
    uas_pid=""
    if [[ $rc -eq 0 && $urc -eq 0 ]]; then
        printf '%-26s ok\n' "$name"
    else
        printf '%-26s FAILED (client rc=%s, stand-in rc=%s)\n' "$name" "$rc" "$urc"
        tail -n 5 "$work/${name%.xml}.uac.out" "$work/${name%.xml}.uas.out" || true
        cat "$work/${name%.xml}".*.err 2>/dev/null | head -n 40 || true
        fail=1
    fi
done
exit $fail
