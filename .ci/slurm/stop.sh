#!/usr/bin/env bash
# Stop the private SLURM that start.sh started in DIR (its jobs first), and its munged.
DIR=$(realpath -m "${1:?usage: stop.sh DIR}")
export SLURM_CONF="$DIR/slurm.conf"
[ -f "$SLURM_CONF" ] && scancel --user="$(id -un)" 2>/dev/null || true
for pidfile in "$DIR/slurmd.pid" "$DIR/slurmctld.pid" "$DIR/munge/munged.pid"; do
  [ -s "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
done
for _ in $(seq 1 20); do
  alive=0
  for pidfile in "$DIR/slurmd.pid" "$DIR/slurmctld.pid" "$DIR/munge/munged.pid"; do
    [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && alive=1
  done
  [ $alive = 0 ] && break
  sleep 0.5
done
exit 0
