#!/usr/bin/env bash
# scripts/test-all.sh: THE test command (README "Run every test"; CI runs it through .ci/run).
#
# 1. installs what the tests need when it is missing (SIPp = Debian sip-tester, tshark, ffmpeg,
#    curl, openssl, python3, baresip + baresip-ffmpeg, freediameterd + freediameter-extensions
#    for the Diameter relay interop test; PostgreSQL through
#    as-server/tests/pg-setup.sh);
# 2. cargo fmt --check; cargo clippy -D warnings; cargo doc -D warnings; cargo build --release;
# 3. cargo test --workspace (unit, integration, RFC 4475 vectors, fuzz-corpus replay, ffmpeg
#    mid-GOP decode, SQLite and PostgreSQL store), in the debug profile: on 2 cores it is the
#    faster whole (measured: compiling the test binaries in release, thin LTO each, took ~7 min
#    against ~25 s in debug plus the debug dependencies once; the tests run in ~25 s either way);
#    then `cargo check` of the cargo-fuzz crates (as-server, p2psip-overlay, media-relay) on stable;
# 4. the SIPp scenarios' self-test against SIPp stand-ins (sipp-scenarios/standin/selftest.sh);
# 5. every SIPp scenario against the booted testbed (sipp-scenarios/run.sh);
# 6. a real phone, headless baresip, watches a channel on the booted testbed and hangs up
#    (sipp-scenarios/interop/baresip.sh);
# 7. a captured testbed run decoded by tshark with no expert error or malformed frame
#    (scripts/pcap-check.sh).
# Prints one line per step and a final "N passed, N failed"; exits non-zero when a step failed.
# With CI set (any value), a missing tool is a failure, never a skip.
#
# Environment: CI; CI_ARTIFACTS (default ci-artifacts/): step logs, SIPp traces, the pcap,
#              baresip's run (interop/: its log, config, pcap and the AS log).
#              TEST_ALL_PROFILE (debug | release, default debug): the profile of `cargo test`.
#              TEST_ALL_ONLY="step step": run only these steps (names as printed), for debugging.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
export CI_ARTIFACTS=${CI_ARTIFACTS:-$root/ci-artifacts}
steps_dir=$CI_ARTIFACTS/steps
mkdir -p "$steps_dir"
profile=${TEST_ALL_PROFILE:-debug}
profile_flag=()
[[ "$profile" == release ]] && profile_flag=(--release)

# A fresh clone in CI builds everything once: incremental caches only cost disk (GBs on the shared
# disk) and time there, and the release build's debug info is for local profiling, not for tests.
if [[ -n "${CI:-}" ]]; then
    export CARGO_INCREMENTAL=0
    export CARGO_PROFILE_RELEASE_DEBUG=0
fi

# disk_line WHERE: one line of free space (the CI machine's disk is shared; a full disk shows up as a
# linker's "Bus error", so say it plainly in the log).
disk_line() {
    local avail
    avail=$(df -Pk "$root" | awk 'NR == 2 { printf "%.1f", $4 / 1048576 }')
    local used
    used=$(du -sh "${CARGO_TARGET_DIR:-$root/target}" 2>/dev/null | cut -f1)
    log "disk: ${avail} GB free ($1); target/ ${used:-not built yet}"
}

passed=0
failed=0
skipped=0
report=()
t_start=$(date +%s)

log() { printf '[test-all] %s\n' "$*" >&2; }

# step NAME TIMEOUT_S CMD...: runs CMD with its output in $steps_dir/NAME.log.
step() {
    local name=$1 limit=$2
    shift 2
    local t0 rc=0 secs
    if [[ -n "${TEST_ALL_ONLY:-}" && " $TEST_ALL_ONLY " != *" $name "* ]]; then return 0; fi
    t0=$(date +%s)
    log "== $name: $*"
    if declare -F "$1" >/dev/null; then
        ("$@") >"$steps_dir/$name.log" 2>&1 || rc=$? # a shell function (bounded inside)
    else
        timeout --kill-after=10 "$limit" "$@" >"$steps_dir/$name.log" 2>&1 || rc=$?
    fi
    secs=$(($(date +%s) - t0))
    if [[ $rc -eq 0 ]]; then
        passed=$((passed + 1))
        report+=("$(printf 'PASS  %-22s %5ss' "$name" "$secs")")
        log "PASS $name (${secs}s)"
    else
        failed=$((failed + 1))
        [[ $rc -eq 124 ]] && log "$name timed out after ${limit}s"
        report+=("$(printf 'FAIL  %-22s %5ss  (rc %s, log %s)' "$name" "$secs" "$rc" "$steps_dir/$name.log")")
        log "FAIL $name (rc $rc, ${secs}s); last lines of $steps_dir/$name.log:"
        tail -n 80 "$steps_dir/$name.log" >&2
    fi
    return 0
}

skip() {
    local name=$1 why=$2
    if [[ -n "${CI:-}" ]]; then
        failed=$((failed + 1))
        report+=("$(printf 'FAIL  %-22s        (%s; CI does not skip)' "$name" "$why")")
        log "FAIL $name: $why (CI is set: a missing tool is a failure)"
    else
        skipped=$((skipped + 1))
        report+=("$(printf 'SKIP  %-22s        (%s)' "$name" "$why")")
        log "SKIP $name: $why"
    fi
}

# ---- 1. Tools.
need_tools() {
    local missing=()
    command -v sipp >/dev/null || missing+=(sip-tester)
    { command -v tshark >/dev/null && command -v dumpcap >/dev/null; } || missing+=(tshark)
    { command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null; } || missing+=(ffmpeg)
    command -v curl >/dev/null || missing+=(curl)
    command -v openssl >/dev/null || missing+=(openssl)
    command -v python3 >/dev/null || missing+=(python3)
    command -v unshare >/dev/null || missing+=(util-linux)
    command -v ip >/dev/null || missing+=(iproute2)
    command -v baresip >/dev/null || missing+=(baresip)
    [[ -f /usr/lib/baresip/modules/avcodec.so ]] || missing+=(baresip-ffmpeg)
    command -v freeDiameterd >/dev/null || missing+=(freediameterd)
    [[ -f /usr/lib/freeDiameter/dict_dcca_3gpp.fdx ]] || missing+=(freediameter-extensions)
    printf '%s\n' "${missing[@]}"
}

install_tools() {
    local missing
    mapfile -t missing < <(need_tools)
    [[ ${#missing[@]} -eq 0 || -z "${missing[0]}" ]] && { echo "all tools present"; return 0; }
    echo "installing: ${missing[*]}"
    local sudo=()
    [[ $(id -u) -ne 0 ]] && sudo=(sudo -n)
    export DEBIAN_FRONTEND=noninteractive
    # tshark must not ask whether non-root users may capture.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | "${sudo[@]}" debconf-set-selections
    "${sudo[@]}" apt-get update -qq || return 1
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" || return 1
    mapfile -t missing < <(need_tools)
    [[ ${#missing[@]} -eq 0 || -z "${missing[0]}" ]] || { echo "still missing: ${missing[*]}"; return 1; }
}
step tools 900 install_tools
tools_ok=1
[[ -z "$(need_tools | grep -v '^baresip')" ]] || tools_ok=""
baresip_ok=1
[[ -z "$(need_tools | grep '^baresip')" ]] || baresip_ok=""

# PostgreSQL for the store tests (its own script installs, starts and prints the URL).
if [[ -f as-server/tests/pg-setup.sh ]]; then
    pg_setup() {
        local url
        url=$(bash as-server/tests/pg-setup.sh | tail -n 1) || return 1
        [[ "$url" == TEST_POSTGRES_URL=* ]] || { echo "unexpected output: $url"; return 1; }
        echo "$url" >"$steps_dir/postgres.env"
    }
    step postgres 900 pg_setup
    if [[ -f "$steps_dir/postgres.env" ]]; then
        export "$(cat "$steps_dir/postgres.env")"
        rm -f "$steps_dir/postgres.env"
    fi
fi

# ---- 2. Static checks and the build.
disk_line "before the build"
step fmt 300 cargo fmt --all -- --check
step clippy 2400 cargo clippy --workspace --all-targets -- -D warnings
step doc 900 env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
step build 2400 cargo build --release --workspace

disk_line "after the release build"
# ---- 3. cargo test (includes the fuzz-corpus replay and the ffmpeg mid-GOP decode).
step test 2400 cargo test --workspace "${profile_flag[@]}"
# The cargo-fuzz targets compile on stable (running them needs `cargo fuzz`; see each fuzz/README.md).
fuzz_check() {
    local m
    for m in as-server/fuzz/Cargo.toml p2psip-overlay/fuzz/Cargo.toml media-relay/fuzz/Cargo.toml; do
        [[ -f $m ]] || continue
        echo "cargo check --manifest-path $m --bins"
        CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}/fuzz" cargo check --manifest-path "$m" --bins || return 1
    done
}
step fuzz-check 900 fuzz_check
disk_line "after the tests"

# ---- 4-7. SIPp, baresip and tshark against the booted testbed.
if [[ -n "$tools_ok" ]]; then
    step sipp-selftest 300 bash sipp-scenarios/standin/selftest.sh
    as_bin=${CARGO_TARGET_DIR:-$root/target}/release/as-server
    if [[ -x "$as_bin" ]]; then
        export AS_BIN=$as_bin
        step sipp-scenarios 900 env SIPP_ARTIFACTS="$CI_ARTIFACTS/sipp" bash sipp-scenarios/run.sh
        if [[ -n "$baresip_ok" ]]; then
            step interop-baresip 300 env SIPP_ARTIFACTS="$CI_ARTIFACTS/interop" bash sipp-scenarios/interop/baresip.sh
        else
            skip interop-baresip "baresip/baresip-ffmpeg missing"
        fi
        step pcap-tshark 600 bash scripts/pcap-check.sh
    else
        failed=$((failed + 3))
        report+=("FAIL  sipp-scenarios         (no target/release/as-server)")
        report+=("FAIL  interop-baresip        (no target/release/as-server)")
        report+=("FAIL  pcap-tshark            (no target/release/as-server)")
    fi
else
    skip sipp-selftest "sipp/tshark/ffmpeg missing"
    skip sipp-scenarios "sipp/tshark/ffmpeg missing"
    skip interop-baresip "sipp/tshark/ffmpeg missing"
    skip pcap-tshark "sipp/tshark/ffmpeg missing"
fi

total=$(($(date +%s) - t_start))
echo
echo "test-all summary (${total}s, artifacts in $CI_ARTIFACTS):"
printf '  %s\n' "${report[@]}"
if [[ $skipped -gt 0 ]]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[[ $failed -eq 0 ]]
