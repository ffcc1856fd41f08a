#!/usr/bin/env bash
# A private single-node SLURM for the tests, entirely under one folder:
#   bash .ci/slurm/start.sh DIR     then   export SLURM_CONF=DIR/slurm.conf
# munged, slurmctld and slurmd (Debian's packages) run with their key, socket,
# config, state, pid and log files in DIR and on free ports, so nothing in
# /etc or /run changes and a SLURM already on the machine is left alone.
# Needs root (slurmd starts jobs). Waits until the node is idle.
set -euo pipefail
DIR=$(realpath -m "${1:?usage: start.sh DIR}")
HOST=$(hostname -s)
CPUS=$(getconf _NPROCESSORS_ONLN)  # not nproc: it honours OMP_NUM_THREADS, which Dask sets to 1
MEM=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
CTLD_PORT=$(free_port)
SLURMD_PORT=$(free_port)

for cmd in munged mungekey slurmctld slurmd sinfo; do
  command -v "$cmd" >/dev/null || { echo "start.sh: $cmd is not installed (apt-get install slurmctld slurmd slurm-client munge)" >&2; exit 3; }
done
mkdir -p "$DIR"/{state,spool,log,munge}
chmod 700 "$DIR" "$DIR/munge"
mungekey --create --keyfile="$DIR/munge/munge.key" 2>/dev/null || [ -s "$DIR/munge/munge.key" ]
chmod 400 "$DIR/munge/munge.key"
SOCKET="$DIR/munge/munge.socket"
munged --force --socket="$SOCKET" --key-file="$DIR/munge/munge.key" --pid-file="$DIR/munge/munged.pid" \
  --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed"

cat > "$DIR/slurm.conf" <<CONF
ClusterName=metaextract
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$SOCKET
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
: > "$DIR/plugstack.conf"
echo "PlugStackConfig=$DIR/plugstack.conf" >> "$DIR/slurm.conf"

export SLURM_CONF="$DIR/slurm.conf"
slurmctld -i -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 1 60); do
  if sinfo -h -o '%t' 2>/dev/null | grep -qx idle; then
    echo "SLURM ready: $(sinfo -h -o '%N %c CPUs %m MB %t'); export SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  sleep 1
done
echo "SLURM did not become idle; logs in $DIR/log" >&2
tail -20 "$DIR"/log/*.log >&2 || true
exit 1
