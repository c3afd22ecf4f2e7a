# shellcheck shell=bash
# scripts/testbed.sh: the standalone testbed boot, sourced by sipp-scenarios/run.sh and
# scripts/bench-zap.sh (not run on its own).
#
# The caller defines `log`, `$AS_BIN`, `$config` (the AS config file), `$work` (a temporary
# directory: the AS runs there, its SQLite file and as.log live there) and `$http` (the AS's
# HTTP API address); `testbed_start_as` sets `$as_pid`.

# Starts the AS (RUST_LOG defaults to $1) and waits up to 30 s for /healthz; exits the script
# with the AS log's tail when the AS dies or does not answer.
testbed_start_as() {
    local default_log=$1 ready=""
    log "starting $AS_BIN --config $config (SQLite in $work)"
    (
        cd "$work"
        export AS_DATABASE_URL="sqlite://$work/as.db?mode=rwc"
        export RUST_LOG=${RUST_LOG:-$default_log}
        exec "$AS_BIN" --config "$config"
    ) >"$work/as.log" 2>&1 &
    as_pid=$!

    for _ in $(seq 1 300); do # 30 s at most
        if ! kill -0 "$as_pid" 2>/dev/null; then
            log "the AS exited during start-up; its log:"
            tail -n 40 "$work/as.log" >&2 || true
            exit 1
        fi
        if curl -fsS --max-time 1 "http://$http/healthz" >/dev/null 2>&1; then ready=1; break; fi
        sleep 0.1
    done
    [[ -n "$ready" ]] || { log "the AS did not answer /healthz within 30 s"; tail -n 40 "$work/as.log" >&2; exit 1; }
    log "AS ready (pid $as_pid)"
}

# Stops the AS by its PID (TERM, 5 s, then KILL) if it still runs.
testbed_stop_as() {
    if [[ -n "${as_pid:-}" ]] && kill -0 "$as_pid" 2>/dev/null; then
        kill -TERM "$as_pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$as_pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$as_pid" 2>/dev/null && kill -KILL "$as_pid" 2>/dev/null || true
        wait "$as_pid" 2>/dev/null || true
    fi
}

# Creates test-pattern channel $1 through POST /api/channels unless it exists; $2 is more JSON
# members put before "test_pattern" (e.g. '"kind":"producer",'). Fails when the POST fails.
testbed_ensure_channel() {
    local ch=$1 extra=${2:-}
    if ! curl -fsS --max-time 5 "http://$http/api/channels/$ch" >/dev/null 2>&1; then
        log "creating test-pattern channel '$ch' through POST /api/channels"
        curl -fsS --max-time 5 -H 'content-type: application/json' \
            -d "{\"id\":\"$ch\",\"name\":\"$ch (test pattern)\",$extra\"test_pattern\":true}" \
            "http://$http/api/channels" >/dev/null
    fi
}
