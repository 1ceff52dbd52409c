#!/usr/bin/env bash
# A one-node SLURM cluster on localhost, for testing the workflow's SLURM profile.
#
#   tests/slurm/local_cluster.sh start    # start munged, slurmctld, slurmd; wait until the node is idle
#   tests/slurm/local_cluster.sh env      # print the variables a client needs (SLURM_CONF)
#   tests/slurm/local_cluster.sh status   # show the node (exit 1 when the cluster is not running)
#   tests/slurm/local_cluster.sh stop     # stop the daemons this script started, by PID
#
# Needs root and the Debian packages slurmctld slurmd slurm-client munge (Slurm 22.05). The cluster's
# state, logs and PID files live in $MUSCULO_SLURM_DIR (default /tmp/musculo-slurm). Its slurm.conf is
# written to /etc/slurm/slurm.conf, the path every SLURM command reads by default: the executor
# plugin's job step drops SLURM_CONF before it calls srun inside a job. A slurm.conf this script did
# not write is never replaced. `start` is idempotent: a running cluster is reused.
#
# Settings that matter for snakemake-executor-plugin-slurm (see workflow/profiles/slurm/):
#   - no accounting database: the profile queries job status with squeue, which sees a finished job
#     for MinJobAge seconds; the plugin uses squeue only if MinJobAge >= 3 x its
#     init-seconds-before-status-checks, so MinJobAge is 600 here;
#   - EnforcePartLimits=ALL: sbatch rejects a job larger than the node instead of leaving it pending.
set -euo pipefail

DIR="${MUSCULO_SLURM_DIR:-/tmp/musculo-slurm}"
CTLD_PORT="${MUSCULO_SLURM_CTLD_PORT:-6817}"
SLURMD_PORT="${MUSCULO_SLURM_SLURMD_PORT:-6818}"
WAIT_S="${MUSCULO_SLURM_WAIT_S:-60}"
CONF="${MUSCULO_SLURM_CONF:-/etc/slurm/slurm.conf}"
MARK="# Written by tests/slurm/local_cluster.sh"
export SLURM_CONF="$CONF"

die() { echo "local_cluster.sh: $*" >&2; exit 1; }

# PID from a file, if that process is alive.
alive() { local f="$1"; [[ -s "$f" ]] && kill -0 "$(cat "$f")" 2>/dev/null; }

node_state() { sinfo -h -n localhost -o '%T' 2>/dev/null | head -n1; }

check_tools() {
  local missing=()
  for tool in munged slurmctld slurmd sbatch squeue sinfo scontrol; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  ((${#missing[@]} == 0)) || die "missing ${missing[*]}: install them with" \
    "'apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge' (as root)"
  [[ $(id -u) == 0 ]] || die "run as root: slurmd starts jobs as the submitting user"
}

write_conf() {
  # The node's hardware line as slurmd reports it, under the name localhost.
  local hw
  hw="$(slurmd -C | head -n1 | sed -e 's/^NodeName=[^ ]*//')"
  [[ "$hw" == *CPUs=* && "$hw" == *RealMemory=* ]] || die "'slurmd -C' gave no hardware line: $hw"
  if [[ -e "$CONF" ]] && ! head -n1 "$CONF" | grep -qF "$MARK"; then
    die "$CONF exists and was not written by this script; a machine with its own SLURM needs no test cluster"
  fi
  mkdir -p "$DIR/ctld" "$DIR/d" "$(dirname "$CONF")"
  cat > "$CONF.tmp" <<EOF
$MARK: a one-node test cluster on localhost.
ClusterName=musculo-local
SlurmctldHost=localhost
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/d
SlurmctldPidFile=$DIR/slurmctld.daemon.pid
SlurmdPidFile=$DIR/slurmd.daemon.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
MinJobAge=600
EnforcePartLimits=ALL
NodeName=localhost NodeAddr=127.0.0.1 $hw State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$CONF.tmp" "$CONF"
}

start_munged() {
  # Reuse a munged that answers (ours or the system's); otherwise start one and remember its PID.
  if munge -n </dev/null >/dev/null 2>&1; then return; fi
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  if id munge >/dev/null 2>&1; then
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    setsid setpriv --reuid=munge --regid=munge --init-groups munged -F >"$DIR/munged.out" 2>&1 < /dev/null &
  else
    setsid munged -F --force >"$DIR/munged.out" 2>&1 < /dev/null &
  fi
  echo $! > "$DIR/munged.pid"
  for _ in $(seq 50); do
    munge -n </dev/null >/dev/null 2>&1 && return
    sleep 0.1
  done
  die "munged did not answer; see $DIR/munged.out"
}

wait_idle() {
  local state=""
  for _ in $(seq $((WAIT_S * 5))); do
    state="$(node_state)"
    [[ "$state" == idle || "$state" == mixed || "$state" == allocated ]] && return
    sleep 0.2
  done
  die "node localhost not idle after ${WAIT_S}s (state '${state:-no answer}'); see $DIR/slurmctld.log, $DIR/slurmd.log"
}

start() {
  check_tools
  mkdir -p "$DIR"
  if alive "$DIR/slurmctld.pid" && alive "$DIR/slurmd.pid"; then
    wait_idle
    echo "local SLURM already running (SLURM_CONF=$CONF)"
    return
  fi
  stop >/dev/null
  rm -rf "$DIR/ctld" "$DIR/d"
  write_conf
  start_munged
  setsid slurmctld -D -i -f "$CONF" >"$DIR/slurmctld.out" 2>&1 < /dev/null &
  echo $! > "$DIR/slurmctld.pid"
  setsid slurmd -D -N localhost -f "$CONF" >"$DIR/slurmd.out" 2>&1 < /dev/null &
  echo $! > "$DIR/slurmd.pid"
  wait_idle
  echo "local SLURM running (SLURM_CONF=$CONF)"
}

stop() {
  local f pid
  # Cancel what still runs on this test cluster, so that no job step outlives its slurmd.
  if alive "$DIR/slurmctld.pid"; then
    squeue -h -o %i 2>/dev/null | xargs -r scancel 2>/dev/null || true
    for _ in $(seq 50); do [[ -z "$(squeue -h -o %i 2>/dev/null)" ]] && break; sleep 0.2; done
  fi
  for f in slurmd slurmctld munged; do
    if alive "$DIR/$f.pid"; then
      pid="$(cat "$DIR/$f.pid")"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$DIR/$f.pid"
  done
  echo "local SLURM stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  status)
    alive "$DIR/slurmctld.pid" && alive "$DIR/slurmd.pid" || die "not running"
    sinfo -N -l ;;
  *) die "usage: $0 start|stop|status|env" ;;
esac
