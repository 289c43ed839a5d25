#!/bin/sh
# Several "hosts" on one machine, for multi-node tests of Open MPI jobs.
#
#   scripts/netns-hosts.sh start DIR N   create N hosts; prints lines to eval:
#                                        NETNS_HOSTS="h1 h2 ..." (names)
#                                        NETNS_NET=10.X.Y.0/24   (their subnet)
#                                        NETNS_AGENT=DIR/agent   (rsh agent)
#                                        NETNS_HOSTFILE=DIR/hostfile (2 slots each)
#   scripts/netns-hosts.sh stop DIR      remove all of it again (idempotent)
#   scripts/netns-hosts.sh exec HOST CMD...
#                                        run CMD (a shell command line, like
#                                        ssh's) on HOST; DIR/agent calls this
#
# A host is a network namespace of the same name with one end of a veth
# pair, whose other end is enslaved to a bridge in the root namespace; the
# bridge holds .1 of a private /24, host i holds .(i+1). Commands on a host
# also get their own UTS namespace whose hostname is the host's name: Open
# MPI names nodes, and its session directories (/tmp/ompi.HOST.UID), by
# gethostname(), so without it every "host" would be the same node to MPI.
# mpirun, in the root namespace, starts its daemons (orted) through
# `--mca plm_rsh_agent DIR/agent`, as it would through ssh, and the agent
# gives them a clean environment (PATH and HOME only), as ssh would: what a
# rank needs from mpirun's environment must come through Open MPI (OMPI_*
# variables and MCA parameters do; others need `mpirun -x NAME`). The names
# need not resolve (no /etc/hosts edits): the agent maps a name to its
# namespace, and Open MPI's daemons and ranks connect by address.
#
# Names and the subnet are claimed per run (see the bridge below), so two
# test runs at once never share or remove each other's hosts; DIR/state records what start
# created, so stop removes exactly that, also after a failed start. Needs root
# (CAP_NET_ADMIN, CAP_SYS_ADMIN) and iproute2, util-linux (unshare) and
# hostname; exits 3 with the reason when the namespaces cannot be made.
set -eu

cmd=${1:-}
ME=$(readlink -f "$0")

if [ "$cmd" = exec ]; then
    [ $# -ge 3 ] || { echo "usage: $0 exec HOST CMD..." >&2; exit 2; }
    host=$2
    shift 2
    # $* joined by spaces and run by a shell, as ssh does with its arguments
    exec ip netns exec "$host" unshare --uts sh -c 'hostname "$0" && exec sh -c "$1"' "$host" "$*"
fi

DIR=${2:-}
[ -n "$cmd" ] && [ -n "$DIR" ] || { echo "usage: $0 start DIR N | stop DIR | exec HOST CMD..." >&2; exit 2; }

# kill_host NS: KILL every process in namespace NS (mpirun's daemons and
# ranks that outlived their job), then wait until they are gone
kill_host() {
    pids=$(ip netns pids "$1" 2>/dev/null || true)
    [ -n "$pids" ] || return 0
    kill -9 $pids 2>/dev/null || true
    i=0
    while [ -n "$(ip netns pids "$1" 2>/dev/null || true)" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
}

if [ "$cmd" = stop ]; then
    [ -f "$DIR/state" ] || exit 0
    # state lines: "ns NAME", "link NAME"
    while read -r kind name; do
        case $kind in
        ns) kill_host "$name"; ip netns del "$name" 2>/dev/null || true ;;
        link) ip link del "$name" 2>/dev/null || true ;;
        esac
    done <"$DIR/state"
    rm -f "$DIR/state"
    exit 0
fi
[ "$cmd" = start ] || { echo "usage: $0 start DIR N | stop DIR | exec HOST CMD..." >&2; exit 2; }
N=${3:-2}

need() { echo "netns-hosts: $*" >&2; exit 3; }
[ "$(id -u)" -eq 0 ] || need "needs root (CAP_NET_ADMIN to create network namespaces)"
for b in ip unshare hostname; do
    command -v $b >/dev/null 2>&1 || need "$b missing (install iproute2, util-linux, hostname)"
done

mkdir -p "$DIR"
[ ! -s "$DIR/state" ] || { echo "netns-hosts: $DIR holds running hosts: stop them first" >&2; exit 1; }
: >"$DIR/state"
# The bridge's name claims a tag (from our PID, which a later run may get
# again while our hosts still exist): the first one whose bridge we could
# create is ours, and so are the names derived from it.
tag=$$
while ! ip link add "dltbr$tag" type bridge 2>"$DIR/err"; do
    grep -q "File exists" "$DIR/err" || need "cannot create a bridge: $(cat "$DIR/err")"
    tag=$((tag + 1))
done
br="dltbr$tag"
# stop removes whatever got created if any step below fails
echo "link $br" >>"$DIR/state"
# the first free 10.A.B.0/24 from one derived from the tag (a subnet in use
# here would route our traffic, or theirs, the wrong way)
k=$tag
while :; do
    net="10.$((200 + k % 50)).$((k / 50 % 250 + 1))"
    ip -4 -o addr | grep -q " inet $net\." || ip -4 route | grep -q "^$net\." || break
    k=$((k + 1))
done
ip addr add "$net.1/24" dev "$br"
ip link set "$br" up

hosts=""
: >"$DIR/hostfile"
i=1
while [ $i -le "$N" ]; do
    h="dlt${tag}h$i"
    ip netns add "$h" 2>"$DIR/err" || need "cannot create a network namespace: $(cat "$DIR/err")"
    echo "ns $h" >>"$DIR/state"
    ip netns exec "$h" unshare --uts true 2>"$DIR/err" || need "cannot create a UTS namespace: $(cat "$DIR/err")"
    ip link add "${h}v" type veth peer name "${h}p" 2>"$DIR/err" || need "cannot create a veth pair: $(cat "$DIR/err")"
    echo "link ${h}v" >>"$DIR/state"
    ip link set "${h}v" master "$br" up
    ip link set "${h}p" netns "$h"
    ip -n "$h" link set lo up
    ip -n "$h" addr add "$net.$((i + 1))/24" dev "${h}p"
    ip -n "$h" link set "${h}p" up
    echo "$h slots=2" >>"$DIR/hostfile"
    hosts="$hosts $h"
    i=$((i + 1))
done
rm -f "$DIR/err"

cat >"$DIR/agent" <<EOF
#!/bin/sh
# rsh agent for mpirun: HOST CMD... runs CMD on the namespace host HOST
exec env -i PATH="$PATH" HOME="${HOME:-/root}" sh "$ME" exec "\$@"
EOF
chmod +x "$DIR/agent"

echo "NETNS_HOSTS=\"${hosts# }\""
echo "NETNS_NET=$net.0/24"
echo "NETNS_AGENT=$DIR/agent"
echo "NETNS_HOSTFILE=$DIR/hostfile"
