#!/bin/sh
# Brings up a single-machine Slurm (one controller + one node, this host) for tests/slurm_test.ts.
#   sh tests/setup-slurm.sh        install if needed, configure, start munged/slurmctld/slurmd, wait for the node
#   sh tests/setup-slurm.sh stop   stop the daemons this script started
# Idempotent; needs root (or sudo for apt); no systemd. Debian's slurm-wlm reads /etc/slurm/slurm.conf;
# this script writes that file only when it is absent or carries the marker line below. State lives in
# /var/lib/obd-slurm, logs and pid files in /tmp/obd-slurm. Accounting: there is no slurmdbd, so
# `sacct` is refused ("accounting storage is disabled"); jobcomp/filetxt keeps a record of finished
# jobs, but `sacct --completion` over it cannot tell array tasks apart (Slurm 22.05), so
# grid/slurm.ts reads states from the controller, which keeps finished jobs MinJobAge=3600 s.
# Any failure prints one line starting with "setup-slurm: cannot start Slurm:" and exits non-zero.
set -u

MARKER="# written by obd tests/setup-slurm.sh"
CONF=/etc/slurm/slurm.conf
STATE=/var/lib/obd-slurm
LOGS=/tmp/obd-slurm
PACKAGES="slurm-wlm munge"

die() {
  echo "setup-slurm: cannot start Slurm: $*" >&2
  exit 1
}
say() { echo "setup-slurm: $*"; }

if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null ||
    die "run as root or with password-less sudo (daemons and /etc/slurm need it)"
  exec sudo -n sh "$0" "$@"
fi

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1" 2>/dev/null)" 2>/dev/null; }

stop_pidfile() { # $1 pid file, $2 name
  if pid_alive "$1"; then
    pid=$(cat "$1")
    kill "$pid" 2>/dev/null
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
    say "stopped $2 ($pid)"
  fi
  rm -f "$1"
}

stop_slurm() {
  stop_pidfile "$LOGS/slurmd.pid" slurmd
  stop_pidfile "$LOGS/slurmctld.pid" slurmctld
}

stop_all() {
  stop_slurm
  if [ -f "$LOGS/munged.started" ]; then
    stop_pidfile /run/munge/munged.pid munged
    rm -f "$LOGS/munged.started"
  fi
}

if [ "${1:-}" = stop ]; then
  stop_all
  exit 0
fi

# 1. packages
PATH="$PATH:/usr/sbin:/sbin"
missing=0
for tool in munged munge unmunge mungekey slurmctld slurmd sbatch sinfo scontrol squeue; do
  command -v "$tool" >/dev/null 2>&1 || missing=1
done
if [ $missing -eq 1 ]; then
  command -v apt-get >/dev/null 2>&1 || die "slurm-wlm/munge are missing and there is no apt-get; install Slurm and munge"
  say "installing Debian packages: $PACKAGES"
  mkdir -p "$LOGS" || die "cannot create $LOGS"
  apt_opts="-o DPkg::Lock::Timeout=600 -qq"
  apt-get $apt_opts update >"$LOGS/apt.log" 2>&1 ||
    die "apt-get update failed (see $LOGS/apt.log)"
  DEBIAN_FRONTEND=noninteractive apt-get $apt_opts install -y --no-install-recommends $PACKAGES \
    >>"$LOGS/apt.log" 2>&1 || die "apt-get install $PACKAGES failed (see $LOGS/apt.log)"
  command -v slurmctld >/dev/null 2>&1 || die "slurmctld still missing after apt-get install $PACKAGES"
fi
mkdir -p "$LOGS" "$STATE/ctld" "$STATE/d" /etc/slurm || die "cannot create $LOGS or $STATE"

# 2. munge
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null ||
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null || die "cannot create /etc/munge/munge.key"
  say "created /etc/munge/munge.key"
fi
chown munge:munge /etc/munge/munge.key 2>/dev/null
chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  runuser -u munge -- munged --force >"$LOGS/munged.out" 2>&1 ||
    die "munged did not start: $(tail -n 1 "$LOGS/munged.out")"
  : >"$LOGS/munged.started"
  i=0
  until munge -n 2>/dev/null | unmunge >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -gt 50 ] && die "munged runs but 'munge -n | unmunge' fails (see /var/log/munge/munged.log)"
    sleep 0.2
  done
  say "munged started"
fi

# 3. slurm.conf (NodeName line from what slurmd detects, so RealMemory/CPUs are never over-stated)
node=$(hostname -s)
detected=$(slurmd -C 2>/dev/null | grep '^NodeName=')
if [ -z "$detected" ]; then
  mem=$(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo)
  detected="NodeName=$node CPUs=$(nproc) RealMemory=$mem"
fi
nodeline="$(echo "$detected" | sed "s/^NodeName=[^ ]*/NodeName=$node/") NodeAddr=127.0.0.1 State=UNKNOWN"
new="$LOGS/slurm.conf.new"
cat >"$new" <<EOF
$MARKER; edit that script, not this file
ClusterName=obd
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/jobcomp.txt
MinJobAge=3600
MaxArraySize=10001
ReturnToService=2
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$LOGS/slurmctld.pid
SlurmdPidFile=$LOGS/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
$nodeline
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
if [ -f "$CONF" ] && ! head -n 1 "$CONF" | grep -qF "$MARKER"; then
  # Someone else's Slurm: use it as it is, only check that it answers.
  rm -f "$new"
  say "$CONF was not written by this script; using it unchanged"
  sinfo -h >/dev/null 2>&1 || die "the existing $CONF does not give a responsive controller (sinfo fails)"
  exit 0
fi
if [ -f "$CONF" ] && cmp -s "$new" "$CONF"; then
  rm -f "$new"
else
  [ -f "$CONF" ] && stop_slurm # the configuration changed: restart with the new one
  mv "$new" "$CONF" || die "cannot write $CONF"
  say "wrote $CONF ($nodeline)"
fi

# 4. daemons (each start begins a fresh log, so errors quoted below are this start's)
last_error() { grep -i 'error\|fatal' "$LOGS/$1.log" 2>/dev/null | tail -n 1; }
for daemon in slurmctld slurmd; do
  if ! pid_alive "$LOGS/$daemon.pid"; then
    [ -f "$LOGS/$daemon.log" ] && mv "$LOGS/$daemon.log" "$LOGS/$daemon.log.old"
    "$daemon" >>"$LOGS/$daemon.out" 2>&1 || die "$daemon exited: $(last_error "$daemon") (log: $LOGS/$daemon.log)"
  fi
done

# 5. wait (at most 40 s) for the node to take jobs
deadline=$(($(date +%s) + 40))
i=0
while :; do
  i=$((i + 1))
  for daemon in slurmctld slurmd; do
    if [ $i -gt 4 ] && ! pid_alive "$LOGS/$daemon.pid"; then
      die "$daemon is not running: $(last_error "$daemon") (log: $LOGS/$daemon.log)"
    fi
  done
  state=$(sinfo -h -n "$node" -o %T 2>/dev/null | head -n 1)
  case "$state" in
  idle | mixed | allocated | completing) break ;;
  down* | drain*) scontrol update NodeName="$node" State=RESUME >/dev/null 2>&1 ;;
  esac
  if [ "$(date +%s)" -gt "$deadline" ]; then
    die "node $node is '${state:-unknown}' after 40 s; slurmctld: $(last_error slurmctld); slurmd: $(last_error slurmd) (logs in $LOGS)"
  fi
  sleep 0.5
done
say "Slurm is up: node $node $state (config $CONF, logs $LOGS)"
