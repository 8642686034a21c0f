#!/usr/bin/env bash
# Start a two-node SLURM cluster on this one machine (munge + slurmctld + two slurmd, no
# systemd) for the tests marked `slurm` (tests/test_slurm.py). Nodes n1 and n2 are two
# slurmd processes on 127.0.0.1 (ports 17001/17002), each offering all $(nproc) CPUs, so
# the cluster is deliberately oversubscribed (two 2-rank jobs can run at once).
# Idempotent: does nothing when both nodes are up; any other running cluster (e.g. the old
# one-node config) is stopped and replaced. Needs root and Debian's packages:
#   apt-get install -y slurm-wlm munge
# Status queries use squeue (no accounting storage here; see docs/workflow.md).
set -euo pipefail

for tool in munged slurmctld slurmd sinfo scontrol; do
  command -v "$tool" >/dev/null || { echo "start_cluster: '$tool' not found; apt-get install -y slurm-wlm munge" >&2; exit 1; }
done

nodes=(n1 n2)
ports=(17001 17002)

# both slurmd running (pid files) and both nodes registered and usable in the controller
# (sinfo lists a node once per partition; there is one)
nodes_up() {
  local out n pid
  pgrep -x slurmctld >/dev/null || return 1  # (sinfo takes ~10 s to fail without it)
  for n in "${nodes[@]}"; do
    pid=$(cat "/run/slurm/slurmd-$n.pid" 2>/dev/null) || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = slurmd ] || return 1
  done
  out=$(timeout 20 sinfo -h -N -o '%N %T' 2>/dev/null) || return 1
  for n in "${nodes[@]}"; do
    grep -qE "^${n} (idle|mixed|allocated|completing)$" <<<"$out" || return 1  # not idle* (no answer)
  done
}
if nodes_up; then echo "start_cluster: already up"; sinfo; exit 0; fi

host=$(hostname -s)
cpus=$(nproc)
mem_mb=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.4}' /proc/meminfo)  # per node

# Stop whatever SLURM daemons run (an older config, a half-started cluster), then start anew.
stop_daemons() {
  local d
  for d in slurmd slurmctld; do pkill -x "$d" 2>/dev/null || true; done
  for _ in $(seq 50); do
    pgrep -x slurmd >/dev/null || pgrep -x slurmctld >/dev/null || return 0
    sleep 0.2
  done
  for d in slurmd slurmctld; do pkill -KILL -x "$d" 2>/dev/null || true; done
  sleep 0.5
}
if pgrep -x slurmd >/dev/null || pgrep -x slurmctld >/dev/null; then
  echo "start_cluster: stopping the running SLURM daemons (not the two-node cluster)"
  stop_daemons
fi

# munge: key + daemon
[ -s /etc/munge/munge.key ] || { mkdir -p /etc/munge; dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge && chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! pgrep -u munge munged >/dev/null; then
  su -s /bin/sh munge -c '/usr/sbin/munged'
fi

mkdir -p /var/spool/slurmctld /var/log/slurm /run/slurm /etc/slurm
for n in "${nodes[@]}"; do mkdir -p "/var/spool/slurmd/$n"; done
chown slurm:slurm /var/spool/slurmctld /var/log/slurm /run/slurm
{
  cat <<CONF
ClusterName=localcluster
SlurmctldHost=${host}
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd-%n.pid
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd/%n
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd-%n.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
CONF
  for i in "${!nodes[@]}"; do
    echo "NodeName=${nodes[$i]} NodeHostname=${host} NodeAddr=127.0.0.1 Port=${ports[$i]} CPUs=${cpus} RealMemory=${mem_mb} State=UNKNOWN"
  done
  echo "PartitionName=debug Nodes=$(IFS=,; echo "${nodes[*]}") Default=YES MaxTime=INFINITE State=UP"
} > /etc/slurm/slurm.conf

slurmctld
for n in "${nodes[@]}"; do slurmd -N "$n"; done
for _ in $(seq 60); do
  if nodes_up; then
    echo "start_cluster: up (${nodes[*]} on ${host}: ${cpus} CPUs and ${mem_mb} MB each)"
    sinfo
    exit 0
  fi
  sleep 1
done
echo "start_cluster: nodes did not come up; see /var/log/slurm/slurmctld.log and slurmd-n*.log" >&2
sinfo -N -l >&2 || true
tail -n 5 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd-n*.log >&2 || true
exit 1
