#!/bin/sh
# A real single-node Slurm cluster on localhost, for tests and demos.
#
#   scripts/slurm-local.sh start DIR   configure and start munged, slurmctld
#                                      and slurmd, all under DIR; prints the
#                                      line to eval:
#                                      export SLURM_CONF=DIR/slurm.conf
#   scripts/slurm-local.sh stop DIR    stop the three (by the PIDs in DIR)
#
# Needs root (the daemons run as root, SlurmUser=root) and the Debian
# packages slurm-wlm and munge (scripts/install-deps.sh). Each cluster is
# private: its own munged (own key and socket, AuthInfo=socket=...) and
# ports derived from this shell's PID, so two clusters (two test runs at
# once) never share or stop each other's daemons. CPUs= is this machine's core count. srun must always run under
# `timeout`: a step that asks for more CPUs than exist waits forever.
set -eu

cmd=${1:-}
DIR=${2:-}
[ -n "$cmd" ] && [ -n "$DIR" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }

stop_pid() { # stop_pid FILE: TERM the PID in FILE, then KILL after 3 s
    [ -s "$1" ] || return 0
    pid=$(cat "$1")
    kill "$pid" 2>/dev/null || { rm -f "$1"; return 0; }
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 30 ]; do sleep 0.1; i=$((i + 1)); done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$1"
}

if [ "$cmd" = stop ]; then
    export SLURM_CONF="$DIR/slurm.conf"
    stop_pid "$DIR/slurmd.pid"
    stop_pid "$DIR/slurmctld.pid"
    if [ -s "$DIR/munge.dir" ]; then
        MD=$(cat "$DIR/munge.dir")
        stop_pid "$MD/munged.pid"
        rm -rf "$MD" "$DIR/munge.dir"
    fi
    exit 0
fi
[ "$cmd" = start ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }

[ "$(id -u)" -eq 0 ] || { echo "slurm-local: needs root" >&2; exit 3; }
for b in /usr/sbin/munged /usr/sbin/slurmctld /usr/sbin/slurmd; do
    [ -x "$b" ] || { echo "slurm-local: $b missing (install slurm-wlm munge)" >&2; exit 3; }
done

HOST=$(hostname -s)
CPUS=$(nproc --all)
PORT=$((20000 + $$ % 20000))
mkdir -p "$DIR/spool/ctld" "$DIR/spool/d" "$DIR/log"
MD=$(mktemp -d /tmp/dlt-munge.XXXXXX)
echo "$MD" >"$DIR/munge.dir"
chmod 755 "$MD"
dd if=/dev/urandom of="$MD/munge.key" bs=1024 count=1 2>/dev/null
chown -R munge:munge "$MD"
chmod 400 "$MD/munge.key"
cat >"$DIR/slurm.conf" <<EOF
ClusterName=ci
SlurmctldHost=$HOST
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MD/socket
CredType=cred/munge
StateSaveLocation=$DIR/spool/ctld
SlurmdSpoolDir=$DIR/spool/d
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmix
MailProg=/bin/true
ReturnToService=2
KillWait=2
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$DIR/slurm.conf"

# munge: a daemon of our own, in a directory of its own (DIR may sit in a
# private temporary directory that the munge user cannot enter; munged
# wants its socket directory open to all)
runuser -u munge -- /usr/sbin/munged --socket="$MD/socket" --key-file="$MD/munge.key" \
    --pid-file="$MD/munged.pid" --log-file="$MD/munged.log" --seed-file="$MD/seed"
i=0
until munge -S "$MD/socket" -n 2>/dev/null | unmunge -S "$MD/socket" >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -lt 50 ] || { echo "slurm-local: munged does not answer" >&2; exit 1; }
    sleep 0.1
done

/usr/sbin/slurmctld -i
/usr/sbin/slurmd
i=0
until [ "$(sinfo -h -o %T 2>/dev/null | head -n 1)" = idle ]; do
    i=$((i + 1))
    if [ $i -ge 200 ]; then
        echo "slurm-local: the node did not become idle; logs in $DIR/log" >&2
        tail -n 5 "$DIR/log/"*.log >&2 || true
        exit 1
    fi
    sleep 0.1
done
echo "export SLURM_CONF=$DIR/slurm.conf"
