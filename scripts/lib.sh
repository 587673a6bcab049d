# shellcheck shell=bash
# Helpers shared by scripts/run, scripts/bench, scripts/test and scripts/demo-data: sourced, never run.
#
# ensure_postgres and ensure_nats find (or install and start) the infrastructure Tally needs,
# fast and without side effects when it already runs, and never wait without a bound. The service
# helpers at the end build, start and stop Tally's own services, for scripts/run and scripts/bench.
set -euo pipefail

TALLY_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Everything a run leaves behind (logs, pid files, the NATS store, dev tokens) lives here; it is gitignored.
TALLY_STATE_DIR="${TALLY_STATE_DIR:-$TALLY_ROOT/.tally}"

# Where a local Postgres or NATS is looked for, and started when missing.
TALLY_PG_HOST="${TALLY_PG_HOST:-127.0.0.1}"
TALLY_PG_PORT="${TALLY_PG_PORT:-5432}"
# The role created when the current user cannot log in over TCP; it matches docker-compose.yml.
TALLY_PG_ROLE=tally
TALLY_PG_PASSWORD=tally

# mimalloc 3, the services' allocator, keeps freed memory resident for a second before it gives it back
# (purge_delay, 1,000 ms). After a burst of requests (10,000 spends in flight on one wallet) that left
# command-service's peak resident for a second more: 140-154 MB at the bench's hot wallet, 112-133 MB
# purging at once, with no CPU cost measured under load. The Dockerfile sets the same.
export MIMALLOC_PURGE_DELAY="${MIMALLOC_PURGE_DELAY:-0}"
# mimalloc also asks the kernel for transparent huge pages (allow_thp): each purged stretch it reuses then
# faults in a whole 2 MiB page, zeroed (perf: clear_page_erms under do_huge_pmd_anonymous_page, ~6% of
# command-service's CPU at half load), and a huge page stays resident while any byte of it is used. Without
# them, side by side in quick bench runs: command-service 99-101 MB instead of 119-132 MB at the hot wallet,
# the projector 15 MB instead of 30-36 MB, query-service 13 MB instead of 22 MB; throughput the same.
export MIMALLOC_ALLOW_THP="${MIMALLOC_ALLOW_THP:-0}"

# Bounds on every wait, in seconds.
PG_START_TIMEOUT_S="${PG_START_TIMEOUT_S:-60}"
NATS_START_TIMEOUT_S="${NATS_START_TIMEOUT_S:-20}"
# apt can be slow on a cold cache, but never this slow unless something is wrong.
APT_TIMEOUT_S="${APT_TIMEOUT_S:-900}"
# How long each service gets to answer /health/ready, and to exit after SIGTERM.
READY_TIMEOUT_S="${READY_TIMEOUT_S:-90}"
STOP_TIMEOUT_S="${STOP_TIMEOUT_S:-15}"

# ---- Output ------------------------------------------------------------------------------------

if [[ -t 2 && -z "${NO_COLOR:-}" ]]; then
    _bold=$'\e[1m' _red=$'\e[31m' _yellow=$'\e[33m' _reset=$'\e[0m'
else
    _bold='' _red='' _yellow='' _reset=''
fi

info() { printf '%s==>%s %s\n' "$_bold" "$_reset" "$*" >&2; }
warn() { printf '%swarning:%s %s\n' "$_yellow" "$_reset" "$*" >&2; }
die() {
    printf '%serror:%s %s\n' "$_red" "$_reset" "$*" >&2
    exit 1
}

# ---- Small tools -------------------------------------------------------------------------------

# port_open HOST PORT: something accepts TCP connections there (answers within 2 s).
port_open() {
    # shellcheck disable=SC2016 # $1 and $2 expand in the inner bash, which gets them as arguments.
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# wait_until SECONDS DESCRIPTION COMMAND...: run COMMAND every 0.25 s until it succeeds; fail after SECONDS.
wait_until() {
    local seconds="$1" description="$2"
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        if ((SECONDS >= deadline)); then
            warn "gave up after ${seconds}s waiting for $description"
            return 1
        fi
        sleep 0.25
    done
}

# as_root COMMAND...: run COMMAND as root (directly, or through non-interactive sudo).
as_root() {
    if ((EUID == 0)); then
        "$@"
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        die "need root to run: $* (run as root, or set up passwordless sudo)"
    fi
}

# as_postgres COMMAND...: run COMMAND as the postgres OS user, which owns a Debian cluster.
as_postgres() {
    if ((EUID == 0)); then
        (cd / && runuser -u postgres -- "$@")
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        (cd / && sudo -n -u postgres "$@")
    else
        return 1
    fi
}

_apt_updated=false
# apt_install PACKAGE...: install the Debian packages that are not installed yet.
apt_install() {
    local missing=() package
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'ok installed' || missing+=("$package")
    done
    ((${#missing[@]} > 0)) || return 0
    command -v apt-get >/dev/null || die "cannot install ${missing[*]}: this is not a Debian-like system (no apt-get)"
    info "installing ${missing[*]} (Debian packages)"
    if ! $_apt_updated; then
        as_root timeout "$APT_TIMEOUT_S" apt-get update -qq || die "apt-get update failed"
        _apt_updated=true
    fi
    as_root env DEBIAN_FRONTEND=noninteractive timeout "$APT_TIMEOUT_S" \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
        die "apt-get install ${missing[*]} failed"
}

# need_command COMMAND PACKAGE: make sure COMMAND exists, installing PACKAGE when it does not.
need_command() {
    command -v "$1" >/dev/null && return 0
    apt_install "$2"
    command -v "$1" >/dev/null || die "$1 still missing after installing $2"
}

# ---- Postgres ----------------------------------------------------------------------------------

# pg_superuser URL: the URL logs in and its role is a superuser (sqlx::test creates databases and
# keeps its bookkeeping in a schema of the database it connects to, which needs more than CREATEDB).
pg_superuser() {
    [[ "$(PGCONNECT_TIMEOUT=5 psql "$1" -X -w -Atqc 'select rolsuper from pg_roles where rolname = current_user' \
        2>/dev/null)" == t ]]
}

# pg_reachable URL: the URL logs in.
pg_reachable() {
    PGCONNECT_TIMEOUT=5 psql "$1" -X -w -Atqc 'select 1' >/dev/null 2>&1
}

# _pg_local_cluster: "VERSION NAME PORT STATUS" of the local Debian cluster to use, if any: the one
# configured for TALLY_PG_PORT, else the newest version's main, else the newest.
_pg_local_cluster() {
    command -v pg_lsclusters >/dev/null || return 0
    pg_lsclusters -h 2>/dev/null | sort -V | awk -v port="$TALLY_PG_PORT" '
        { line = $1 " " $2 " " $3 " " $4; last = line }
        $3 == port { by_port = line }
        $2 == "main" { main = line }
        END { if (by_port != "") print by_port; else if (main != "") print main; else if (last != "") print last }'
}

# _pg_start_local: install Postgres when missing, then start its cluster (Debian's pg_ctlcluster).
_pg_start_local() {
    local cluster version name port status
    cluster="$(_pg_local_cluster)"
    if [[ -z "$cluster" ]]; then
        apt_install postgresql postgresql-client
        cluster="$(_pg_local_cluster)"
        if [[ -z "$cluster" ]]; then
            # The package creates a cluster, unless a policy told it not to; create one then.
            version="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n 1)"
            [[ -n "$version" ]] || die "postgresql installed, but no server version under /usr/lib/postgresql"
            info "creating Postgres cluster $version/main"
            as_root pg_createcluster "$version" main >/dev/null
            cluster="$(_pg_local_cluster)"
        fi
    fi
    read -r version name port status <<<"$cluster"
    TALLY_PG_PORT="$port"
    if [[ "$status" != online* ]]; then
        info "starting Postgres cluster $version/$name on port $port"
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$name" start ||
            die "could not start Postgres $version/$name; see /var/log/postgresql/postgresql-$version-$name.log"
    fi
    wait_until "$PG_START_TIMEOUT_S" "Postgres on $TALLY_PG_HOST:$port" \
        pg_isready -q -h "$TALLY_PG_HOST" -p "$port" -t 2 ||
        die "Postgres $version/$name did not accept connections; see /var/log/postgresql/postgresql-$version-$name.log"
}

# _pg_create_role: create (or repair) the tally superuser role through the postgres OS user's socket.
_pg_create_role() {
    info "creating Postgres role $TALLY_PG_ROLE (login, superuser) for local development"
    as_postgres psql -X -q -p "$TALLY_PG_PORT" -v ON_ERROR_STOP=1 <<SQL >/dev/null
DO \$\$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = '$TALLY_PG_ROLE') THEN
        ALTER ROLE "$TALLY_PG_ROLE" WITH LOGIN SUPERUSER PASSWORD '$TALLY_PG_PASSWORD';
    ELSE
        CREATE ROLE "$TALLY_PG_ROLE" WITH LOGIN SUPERUSER PASSWORD '$TALLY_PG_PASSWORD';
    END IF;
END
\$\$;
SQL
}

# ensure_postgres: find a Postgres that Tally may use, starting or installing one when needed.
# Sets TALLY_ADMIN_URL (a role that may create databases, connected to a maintenance database) and
# TALLY_PG_BASE_URL (the same without a database, set only when the server is the local one found or
# started here, so that app_database_url can name another database on it).
ensure_postgres() {
    need_command psql postgresql-client
    need_command pg_isready postgresql-client

    if [[ -n "${DATABASE_URL:-}" ]]; then
        if pg_reachable "$DATABASE_URL"; then
            pg_superuser "$DATABASE_URL" ||
                warn "DATABASE_URL's role is not a superuser: #[sqlx::test] may fail to create its databases"
            TALLY_ADMIN_URL="$DATABASE_URL"
            TALLY_PG_BASE_URL=''
            export TALLY_ADMIN_URL TALLY_PG_BASE_URL
            return 0
        fi
        warn "DATABASE_URL is set but does not answer; looking for Postgres on $TALLY_PG_HOST:$TALLY_PG_PORT instead"
    fi

    if ! pg_isready -q -h "$TALLY_PG_HOST" -p "$TALLY_PG_PORT" -t 3; then
        if port_open "$TALLY_PG_HOST" "$TALLY_PG_PORT"; then
            # Either a Postgres that is starting up or something else entirely: give it a bounded while.
            wait_until "$PG_START_TIMEOUT_S" "Postgres on $TALLY_PG_HOST:$TALLY_PG_PORT" \
                pg_isready -q -h "$TALLY_PG_HOST" -p "$TALLY_PG_PORT" -t 2 ||
                die "$TALLY_PG_HOST:$TALLY_PG_PORT is taken by something that is not a ready Postgres"
        else
            _pg_start_local
        fi
    fi

    local user base
    user="$(id -un)"
    for base in "postgres://$user@$TALLY_PG_HOST:$TALLY_PG_PORT" \
        "postgres://$TALLY_PG_ROLE:$TALLY_PG_PASSWORD@$TALLY_PG_HOST:$TALLY_PG_PORT"; do
        if pg_superuser "$base/postgres"; then
            TALLY_PG_BASE_URL="$base"
            TALLY_ADMIN_URL="$base/postgres"
            export TALLY_ADMIN_URL TALLY_PG_BASE_URL
            return 0
        fi
    done

    _pg_create_role ||
        die "Postgres on $TALLY_PG_HOST:$TALLY_PG_PORT refuses $user and $TALLY_PG_ROLE, and the role could not be" \
            "created as the postgres OS user; set DATABASE_URL to a superuser's URL"
    base="postgres://$TALLY_PG_ROLE:$TALLY_PG_PASSWORD@$TALLY_PG_HOST:$TALLY_PG_PORT"
    pg_superuser "$base/postgres" ||
        die "created role $TALLY_PG_ROLE but cannot log in as it over TCP at $TALLY_PG_HOST:$TALLY_PG_PORT" \
            "(check pg_hba.conf allows password or trust logins from 127.0.0.1)"
    TALLY_PG_BASE_URL="$base"
    TALLY_ADMIN_URL="$base/postgres"
    export TALLY_ADMIN_URL TALLY_PG_BASE_URL
}

# app_database_url NAME: print the URL of database NAME on the server ensure_postgres found, creating
# the database if it is missing. With a DATABASE_URL of the caller's, that URL is used as it is.
app_database_url() {
    local name="$1"
    [[ "$name" =~ ^[a-z_][a-z0-9_]*$ ]] || die "invalid database name: $name"
    if [[ -z "${TALLY_PG_BASE_URL:-}" ]]; then
        printf '%s\n' "$TALLY_ADMIN_URL"
        return 0
    fi
    if [[ "$(psql "$TALLY_ADMIN_URL" -X -w -Atqc "select 1 from pg_database where datname = '$name'")" != 1 ]]; then
        info "creating database $name"
        # A concurrent creator may win the race; the database exists either way.
        psql "$TALLY_ADMIN_URL" -X -w -q -c "create database \"$name\"" >/dev/null 2>&1 ||
            [[ "$(psql "$TALLY_ADMIN_URL" -X -w -Atqc "select 1 from pg_database where datname = '$name'")" == 1 ]] ||
            die "could not create database $name"
    fi
    printf '%s/%s\n' "$TALLY_PG_BASE_URL" "$name"
}

# ---- NATS --------------------------------------------------------------------------------------

# _nats_info HOST PORT: the INFO line a NATS server sends first on a new connection.
_nats_info() {
    # shellcheck disable=SC2016 # as in port_open
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2" && head -n 1 <&3' _ "$1" "$2" 2>/dev/null
}

# ensure_nats: find NATS (NATS_URL, default nats://127.0.0.1:4222), starting a local one with JetStream
# when nothing answers. Exports NATS_URL.
ensure_nats() {
    NATS_URL="${NATS_URL:-nats://127.0.0.1:4222}"
    export NATS_URL
    local host port server_info
    if [[ "$NATS_URL" =~ ^(nats://)?([^:/@]+):([0-9]+)/?$ ]]; then
        host="${BASH_REMATCH[2]}" port="${BASH_REMATCH[3]}"
    else
        warn "cannot check NATS_URL=$NATS_URL (expected nats://HOST:PORT); using it as it is"
        return 0
    fi

    if ! port_open "$host" "$port"; then
        [[ "$host" == 127.0.0.1 || "$host" == localhost ]] ||
            die "NATS at $NATS_URL does not answer (only a local NATS is started by these scripts)"
        need_command nats-server nats-server
        local nats_dir="$TALLY_STATE_DIR/nats"
        mkdir -p "$nats_dir/store"
        info "starting nats-server with JetStream on 127.0.0.1:$port (store and log in ${nats_dir#"$TALLY_ROOT"/})"
        # Its own session, so that Ctrl-C on a script does not stop it: it is infrastructure, reused by the next run.
        setsid nats-server -a 127.0.0.1 -p "$port" -js -sd "$nats_dir/store" \
            -l "$nats_dir/nats-server.log" -P "$nats_dir/nats-server.pid" </dev/null >>"$nats_dir/nats-server.out" 2>&1 &
        wait_until "$NATS_START_TIMEOUT_S" "nats-server on 127.0.0.1:$port" port_open 127.0.0.1 "$port" ||
            die "nats-server did not start; see $nats_dir/nats-server.log"
    fi

    server_info="$(_nats_info "$host" "$port" || true)"
    [[ "$server_info" == INFO* ]] || die "$host:$port answers, but not as NATS"
    [[ "$server_info" == *'"jetstream":true'* ]] ||
        warn "NATS at $NATS_URL runs without JetStream (-js); notifications will not be de-duplicated"
}

# ---- Services ----------------------------------------------------------------------------------
#
# For scripts/run and scripts/bench. The script sets COMMAND_PORT, QUERY_PORT and PROJECTOR_PORT (each
# service listens on 127.0.0.1) and LOG_DIR (NAME.log for each) after sourcing this, and may change the
# settings below; build sets BIN_DIR, where start_service takes the binaries from.

# Start order: command-service applies the migrations that the other two wait for. stop_all goes backwards.
SERVICES=(command-service projector query-service)
# The pid of each service this script started.
declare -A SERVICE_PIDS=()
# Where pid files go, when the services outlive the script (a later run stops them): each start then keeps
# the previous NAME.log as NAME.log.1, and each stop is reported. Empty: the pids are only in SERVICE_PIDS,
# the services are the script's alone, and each start overwrites NAME.log.
PID_DIR=''
# VARIABLE=VALUE settings of the services' environment, beside LISTEN_ADDR.
SERVICE_ENV=()
# What start_service says of a port that is taken, after "port PORT, wanted by NAME, ".
PORT_TAKEN='is taken by another program; free it or set a different port'

# service_port NAME: the port NAME listens on.
service_port() {
    case "$1" in
        command-service) echo "$COMMAND_PORT" ;;
        query-service) echo "$QUERY_PORT" ;;
        projector) echo "$PROJECTOR_PORT" ;;
    esac
}

# process_gone PID: no process PID runs (any more).
process_gone() { ! kill -0 "$1" 2>/dev/null; }

# service_pid NAME: print the pid of NAME if a run of ours started it and it still runs. A pid file's
# command line is checked too, so that a pid reused by another program after a reboot is never signalled.
service_pid() {
    local pid
    if [[ -z "$PID_DIR" ]]; then
        pid="${SERVICE_PIDS[$1]:-}"
        [[ -n "$pid" ]] || return 1
        ! process_gone "$pid" || return 1
    else
        local pid_file="$PID_DIR/$1.pid"
        [[ -r "$pid_file" ]] || return 1
        pid="$(<"$pid_file")"
        [[ "$pid" =~ ^[0-9]+$ && -r "/proc/$pid/cmdline" ]] || return 1
        [[ "$(tr '\0' ' ' <"/proc/$pid/cmdline")" == *"$1"* ]] || return 1
    fi
    printf '%s\n' "$pid"
}

# stop_service NAME: SIGTERM, a bounded wait, then SIGKILL; only a process of ours (see service_pid).
stop_service() {
    local name="$1" pid
    if pid="$(service_pid "$name")"; then
        kill -TERM "$pid" 2>/dev/null || true
        if ! wait_until "$STOP_TIMEOUT_S" "$name (pid $pid) to exit" process_gone "$pid"; then
            warn "killing $name (pid $pid)"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        [[ -z "$PID_DIR" ]] || echo "stopped $name (pid $pid)" >&2
    fi
    [[ -z "$PID_DIR" ]] || rm -f "$PID_DIR/$name.pid"
    unset "SERVICE_PIDS[$name]"
}

# stop_all: stop every service of ours, in the reverse of the start order.
stop_all() {
    local index
    for ((index = ${#SERVICES[@]} - 1; index >= 0; index--)); do
        stop_service "${SERVICES[index]}"
    done
}

# start_service NAME ARGUMENT...: start BIN_DIR/NAME on its port in its own session (so that Ctrl-C reaches
# the script, which stops it with SIGTERM, and not the service directly), logging to LOG_DIR/NAME.log.
start_service() {
    local name="$1" port log="$LOG_DIR/$1.log"
    shift
    port="$(service_port "$name")"
    ! port_open 127.0.0.1 "$port" || die "port $port, wanted by $name, $PORT_TAKEN"
    local launch=(env LISTEN_ADDR="127.0.0.1:$port" "${SERVICE_ENV[@]}" setsid)
    if [[ -n "$PID_DIR" ]]; then
        local pid_file="$PID_DIR/$name.pid"
        [[ -f "$log" ]] && mv -f "$log" "$log.1"
        rm -f "$pid_file"
        # shellcheck disable=SC2016 # $0 and $@ expand in the inner bash: it records its pid, then becomes the service.
        "${launch[@]}" bash -c 'echo $$ >"$0"; exec "$@"' "$pid_file" "$BIN_DIR/$name" "$@" </dev/null >>"$log" 2>&1 &
        wait_until 5 "$name to start" test -s "$pid_file" || die "$name did not start; see $log"
        SERVICE_PIDS[$name]="$(<"$pid_file")"
    else
        "${launch[@]}" "$BIN_DIR/$name" "$@" </dev/null >"$log" 2>&1 &
        SERVICE_PIDS[$name]=$!
    fi
    info "started $name (pid ${SERVICE_PIDS[$name]}) on 127.0.0.1:$port, log ${log#"$TALLY_ROOT"/}"
}

# start_projector: start_service projector, in its long-running mode: its `run` subcommand (beside
# `rebuild` and `verify`) when its --help lists one.
start_projector() {
    local arguments=() help
    help="$(timeout 10 "$BIN_DIR/projector" --help 2>&1 || true)"
    if grep -qE '^[[:space:]]+run([[:space:]]|$)' <<<"$help"; then
        arguments=(run)
    fi
    start_service projector "${arguments[@]}"
}

# wait_ready NAME: wait (bounded) until NAME answers GET /health/ready with a 2xx. Returns 1 if NAME exited
# first and 2 if the time ran out, and says nothing then: the caller fails, or warns and goes on.
wait_ready() {
    local name="$1" port deadline
    port="$(service_port "$name")"
    deadline=$((SECONDS + READY_TIMEOUT_S))
    until curl -fsS -m 2 -o /dev/null "http://127.0.0.1:$port/health/ready" 2>/dev/null; do
        service_pid "$name" >/dev/null || return 1
        ((SECONDS < deadline)) || return 2
        sleep 0.25
    done
    info "$name is ready"
}

# build DESCRIPTION [PACKAGE...]: set BIN_DIR to TALLY_BIN_DIR, or to a release build (said to be of
# DESCRIPTION) of the services and PACKAGEs; fail unless each of their binaries is there.
build() {
    local description="$1" name packages=()
    shift
    if [[ -n "${TALLY_BIN_DIR:-}" ]]; then
        BIN_DIR="$TALLY_BIN_DIR"
    else
        info "building $description (cargo build --release)"
        for name in "${SERVICES[@]}" "$@"; do packages+=(-p "$name"); done
        (cd "$TALLY_ROOT" && cargo build --release "${packages[@]}") || die "cargo build failed"
        BIN_DIR="${CARGO_TARGET_DIR:-$TALLY_ROOT/target}/release"
    fi
    for name in "${SERVICES[@]}" "$@"; do
        [[ -x "$BIN_DIR/$name" ]] || die "no executable $BIN_DIR/$name"
    done
}

# new_admin_token PREFIX NAME FILE: print a fresh random token, PREFIX and 40 hex digits, after writing FILE,
# the tokens file of the services, with it as NAME of scope admin; they read only its SHA-256.
new_admin_token() {
    local token hash
    token="$1$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')"
    hash="$(printf '%s' "$token" | sha256sum | cut -d ' ' -f 1)"
    (
        umask 077
        printf '[{"name":"%s","token_sha256":"%s","scopes":["admin"]}]\n' "$2" "$hash" >"$3"
    )
    printf '%s\n' "$token"
}
