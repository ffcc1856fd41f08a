#!/usr/bin/env bash
# Stop the test SLURM started by start.sh (jobs first), and munge.
STATE=${SLURM_STATE:-/tmp/metaextract-slurm}
scancel --user=root 2>/dev/null || true
pkill -x slurmd 2>/dev/null || true
pkill -x slurmstepd 2>/dev/null || true
pkill -x slurmctld 2>/dev/null || true
pkill -x munged 2>/dev/null || true
sleep 1
rm -rf "$STATE"
exit 0
