#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, over the loopback address only, for trying
# `bench launch --slurm` and for the SLURM tests (tests/slurm_local.py drives this script).
#
#   scripts/slurm-local.sh start  [DIR]   munged + slurmctld + slurmd, waits for the node to be idle
#   scripts/slurm-local.sh status [DIR]   sinfo of that cluster (exit 1 if it is not up)
#   scripts/slurm-local.sh stop   [DIR]   stops the daemons this script started there
#   then:  export SLURM_CONF=DIR/slurm.conf; srun -N1 -n2 hostname; sbatch ...
#
# DIR (default /tmp/bench-slurm) holds everything: munge key and socket, slurm.conf, state,
# logs, pid files. Nothing in /etc is touched and nothing listens on another address than
# 127.0.0.1, so a machine's real SLURM or munge (if any) is left alone; ports are picked free.
#
# Exit status: 0 done; 3 this machine cannot run it (not root, packages missing), with the
# reason on stderr (the tests skip with it); 1 it should have worked and did not (logs shown).
#
# Why each setting (slurm-wlm 22.05 as Debian ships it):
#   SlurmUser=root, SlurmdUser=root  the daemons run as the invoking root, no slurm account needed
#   ProctrackType=proctrack/linuxproc, TaskPlugin=task/none  no cgroup mounts (containers lack them)
#   SelectType=select/cons_tres      CPUs are scheduled as consumable: two 1-CPU tasks fit one node
#   NodeName=<hostname> NodeAddr=127.0.0.1  slurmd finds its node by its hostname; all traffic on loopback
#   the node's CPUs/cores/memory     what `slurmd -C` measures, so slurmd never drains the node
#   MpiDefault=none                  srun --mpi=pmix|pmi2 picks a plugin per job
set -uo pipefail

cmd=${1:-}
DIR=${2:-${BENCH_SLURM_DIR:-/tmp/bench-slurm}}
CONF="$DIR/slurm.conf"
WAIT_S=${BENCH_SLURM_WAIT_S:-60}

say() { echo "slurm-local: $*" >&2; }
cannot() { say "$*"; exit 3; }

need_programs() {
    [ "$(id -u)" = 0 ] || cannot "needs root (slurmd runs jobs as any user and munged needs its own account); this is uid $(id -u)"
    local missing=()
    for p in munged mungekey slurmctld slurmd srun sbatch sinfo scontrol; do
        command -v "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    [ ${#missing[@]} = 0 ] || cannot "missing ${missing[*]}: apt-get install slurm-wlm munge (Debian/Ubuntu)"
    id munge >/dev/null 2>&1 || cannot "no 'munge' user (the munge package creates it): apt-get install munge"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null \
        || echo $((20000 + RANDOM % 20000))
}

show_logs() {
    for f in "$DIR"/munge/munged.log "$DIR"/slurmctld.log "$DIR"/slurmd.log; do
        [ -f "$f" ] && { say "--- last lines of $f"; tail -n 15 "$f" >&2; }
    done
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

write_conf() {
    local host node ctld_port d_port
    host=$(hostname -s)
    # "NodeName=vm CPUs=2 Boards=1 ... RealMemory=24105": this machine as slurmd measures it
    node=$(slurmd -C 2>/dev/null | head -n 1)
    case "$node" in NodeName=*) ;; *) say "slurmd -C printed nothing usable: '$node'"; exit 1 ;; esac
    node=${node#NodeName=* }
    ctld_port=$(free_port)
    d_port=$(free_port)
    [ "$d_port" = "$ctld_port" ] && d_port=$((ctld_port + 1))
    cat >"$CONF" <<EOF
# written by scripts/slurm-local.sh: a one-node cluster on the loopback address
ClusterName=benchlocal
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=60
NodeName=$host NodeAddr=127.0.0.1 $node State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
    mkdir -p "$DIR/munge"
    chown munge:munge "$DIR/munge"
    chmod 0755 "$DIR/munge"  # clients need to reach the socket; the key itself is 0600
    [ -f "$DIR/munge/munge.key" ] || runuser -u munge -- mungekey -c -k "$DIR/munge/munge.key" || {
        say "mungekey -c failed"; exit 1; }
    # munged refuses a socket directory writable by others: DIR itself is 0755 root-owned.
    runuser -u munge -- munged --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
        --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" --seed-file="$DIR/munge/munge.seed" || {
        show_logs; say "munged did not start"; exit 1; }
}

wait_idle() {
    local deadline=$((SECONDS + WAIT_S)) state=""
    while [ $SECONDS -lt $deadline ]; do
        state=$(SLURM_CONF="$CONF" sinfo -h -N -o '%T' 2>/dev/null | head -n 1)
        case "$state" in
            idle) return 0 ;;
            drain*|down*|fail*) break ;;
        esac
        sleep 0.5
    done
    show_logs
    say "the node did not become idle within ${WAIT_S}s (state '${state:-none}'; reason: $(SLURM_CONF="$CONF" sinfo -h -N -o '%E' 2>/dev/null))"
    return 1
}

do_stop() {
    local f pid
    for f in "$DIR/slurmd.pid" "$DIR/slurmctld.pid" "$DIR/munge/munged.pid"; do
        pid_alive "$f" || continue
        pid=$(cat "$f")
        kill "$pid" 2>/dev/null
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
        rm -f "$f"
    done
    return 0
}

case "$cmd" in
    start)
        need_programs
        if pid_alive "$DIR/slurmctld.pid"; then
            say "already running in $DIR (scripts/slurm-local.sh stop $DIR first)"
            exit 1
        fi
        mkdir -p "$DIR/state" "$DIR/spool"
        chmod 0755 "$DIR"
        write_conf
        start_munge
        SLURM_CONF="$CONF" slurmctld -f "$CONF" || { show_logs; do_stop; say "slurmctld did not start"; exit 1; }
        SLURM_CONF="$CONF" slurmd -f "$CONF" || { show_logs; do_stop; say "slurmd did not start"; exit 1; }
        wait_idle || { do_stop; exit 1; }
        echo "SLURM_CONF=$CONF"
        ;;
    status)
        [ -f "$CONF" ] && pid_alive "$DIR/slurmctld.pid" || { say "not running in $DIR"; exit 1; }
        SLURM_CONF="$CONF" sinfo -N
        ;;
    stop)
        do_stop
        ;;
    *)
        echo "usage: $0 start|status|stop [DIR]" >&2
        exit 2
        ;;
esac
