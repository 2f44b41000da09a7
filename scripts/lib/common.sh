# shellcheck shell=bash
# Shared helpers for scripts/local-slurm and scripts/local-sshd.
#
# Sourced, never executed. Every function logs to stderr so that stdout stays
# clean for the `env` subcommands (their output is meant for `eval`).

HPCAI_USER="${HPCAI_USER:-hpcai}"

log() { printf '[%s %s] %s\n' "${HPCAI_LOG_TAG:-local}" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

require_root() {
  [[ $(id -u) -eq 0 ]] || die "run as root (this script starts system daemons and creates users)"
}

# apt_ensure PKG...: install the packages that are not installed yet; runs
# `apt-get update` only when something is missing.
apt_ensure() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  log "installing missing packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  # --no-install-recommends keeps the install small; policy-rc.d stops the
  # packages' own services from starting (we run the daemons ourselves).
  local policy=/usr/sbin/policy-rc.d created_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; created_policy=1
  fi
  # dpkg's unpacking chatter goes to a log; its end is shown if the install fails.
  local aptlog
  aptlog=$(mktemp /tmp/hpcai-apt.XXXXXX.log)
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$aptlog" 2>&1 || {
    ((created_policy)) && rm -f "$policy"; tail_logs "$aptlog"; die "apt-get install ${missing[*]} failed (log: $aptlog)"; }
  ((created_policy)) && rm -f "$policy"
  rm -f "$aptlog"
  log "installed ${missing[*]}"
  return 0
}

# ensure_hpcai_user: the ordinary user that submits jobs and logs in over ssh.
# The password field is set to '*' (no password, but not "locked"), so sshd
# with UsePAM=no accepts key logins.
ensure_hpcai_user() {
  if ! id "$HPCAI_USER" >/dev/null 2>&1; then
    log "creating user $HPCAI_USER (home /home/$HPCAI_USER)"
    useradd --create-home --shell /bin/bash "$HPCAI_USER"
  fi
  local home
  home=$(getent passwd "$HPCAI_USER" | cut -d: -f6)
  if [[ ! -d $home ]]; then
    mkdir -p "$home"; chown "$HPCAI_USER:" "$home"; chmod 755 "$home"
  fi
  if [[ $(getent shadow "$HPCAI_USER" | cut -d: -f2) == '!'* ]]; then
    usermod -p '*' "$HPCAI_USER"
  fi
}

# ensure_system_user NAME: an unprivileged system account with no login.
ensure_system_user() {
  id "$1" >/dev/null 2>&1 && return 0
  log "creating system user $1"
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$1"
}

# pid_alive PIDFILE [NAME]: true when the pid file names a live process whose
# command name starts with NAME (guards against a recycled pid after reboot) and that is not a
# zombie.
pid_alive() {
  local f=$1 name=${2:-} pid comm
  [[ -s $f ]] || return 1
  pid=$(tr -dc '0-9' <"$f")
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
  # A zombie (killed, not yet reaped by init) has stopped.
  [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] || return 1
  if [[ -n $name ]]; then
    comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
    [[ $comm == "${name:0:15}"* ]] || return 1
  fi
  return 0
}

# stop_pidfile PIDFILE NAME [TIMEOUT]: SIGTERM the process, wait, then SIGKILL.
stop_pidfile() {
  local f=$1 name=$2 timeout=${3:-20} pid i
  if ! pid_alive "$f" "$name"; then rm -f "$f"; return 0; fi
  pid=$(tr -dc '0-9' <"$f")
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < timeout * 10; i++)); do
    # Gone, or a zombie waiting for init to reap it: either way it has stopped.
    if ! kill -0 "$pid" 2>/dev/null || [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]]; then
      rm -f "$f"; return 0
    fi
    sleep 0.1
  done
  log "$name did not stop in ${timeout}s, sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$f"
}

# wait_for DESCRIPTION TIMEOUT CMD...: poll CMD every 0.5 s until it succeeds.
wait_for() {
  local what=$1 timeout=$2 i; shift 2
  for ((i = 0; i < timeout * 2; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  log "timed out after ${timeout}s waiting for: $what"
  return 1
}

# wait_for_daemon DESCRIPTION TIMEOUT PIDFILE NAME LOG CMD...: like wait_for, but gives up at
# once, with the daemon's log, when the daemon has died (its pid file names no live NAME). A
# daemon that forks writes its pid file a moment after starting: allow 5 s for it to appear.
wait_for_daemon() {
  local what=$1 timeout=$2 pidf=$3 name=$4 logf=$5 i; shift 5
  for ((i = 0; i < timeout * 2; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    if ! pid_alive "$pidf" "$name" && { [[ -e $pidf ]] || ((i >= 10)); }; then
      tail_logs "$logf"
      die "$name died while starting (waited $((i / 2)) s for: $what); its log is above: $logf"
    fi
    sleep 0.5
  done
  log "timed out after ${timeout}s waiting for: $what"
  tail_logs "$logf"
  return 1
}

# tail_logs FILE...: print the last lines of each log to stderr (start failures).
tail_logs() {
  local f
  for f in "$@"; do
    [[ -f $f ]] || continue
    printf -- '----- last lines of %s -----\n' "$f" >&2
    tail -n 30 "$f" >&2
  done
}

# airflow_conn_json ...: print one Airflow JSON connection; args are key=value
# pairs for top-level fields, plus extra=<json>. Values are JSON-escaped here.
json_str() {
  local s=$1
  s=${s//\\/\\\\}; s=${s//\"/\\\"}; s=${s//$'\n'/\\n}; s=${s//$'\t'/\\t}
  printf '"%s"' "$s"
}

# shell_quote VALUE: single-quote a value for an `export` line.
shell_quote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

# The Slurm series scripts/local-slurm runs (HPCAI_SLURM_VERSION): 22.05 is Debian 12's
# packages; newer series are built from Debian's source archive by scripts/build-slurm.
HPCAI_SLURM_VERSION="${HPCAI_SLURM_VERSION:-22.05}"

# slurm_prefix SERIES: the newest finished build of SERIES in the cache (empty when none).
slurm_prefix() {
  local marker
  marker=$(ls -d "${HPCAI_SLURM_CACHE:-/var/cache/hpcai-slurm}/$1".*/.hpcai-built 2>/dev/null | sort -V | tail -n1)
  [[ -z $marker ]] || dirname "$marker"
}
