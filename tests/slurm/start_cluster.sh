#!/usr/bin/env bash
# Start a one-machine SLURM cluster (munge + slurmctld + slurmd, no systemd) for the tests
# marked `slurm` (tests/test_slurm.py). Idempotent: does nothing when the node is up.
# Needs root and Debian's packages:  apt-get install -y slurm-wlm munge
# Status queries use squeue (no accounting storage here; see docs/workflow.md).
set -euo pipefail

for tool in munged slurmctld slurmd sinfo; do
  command -v "$tool" >/dev/null || { echo "start_cluster: '$tool' not found; apt-get install -y slurm-wlm munge" >&2; exit 1; }
done

node_up() { sinfo -h -N -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated|completing)'; }
if node_up; then echo "start_cluster: already up"; sinfo; exit 0; fi

host=$(hostname -s)
cpus=$(nproc)
mem_mb=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.8}' /proc/meminfo)

# munge: key + daemon
[ -s /etc/munge/munge.key ] || { mkdir -p /etc/munge; dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge && chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! pgrep -u munge munged >/dev/null; then
  su -s /bin/sh munge -c '/usr/sbin/munged' 
fi

mkdir -p /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/slurm /etc/slurm
chown slurm:slurm /var/spool/slurmctld /var/log/slurm /run/slurm
cat > /etc/slurm/slurm.conf <<CONF
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
SlurmdPidFile=/run/slurm/slurmd.pid
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
NodeName=${host} CPUs=${cpus} RealMemory=${mem_mb} State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP
CONF

pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 60); do
  if node_up; then echo "start_cluster: up (${host}, ${cpus} CPUs, ${mem_mb} MB)"; sinfo; exit 0; fi
  sleep 1
done
echo "start_cluster: node did not come up; see /var/log/slurm/slurmctld.log and slurmd.log" >&2
tail -5 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
