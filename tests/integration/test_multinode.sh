# Multi-node under Open MPI, on one machine: two "hosts" are network
# namespaces with their own hostnames, joined by veth pairs to a bridge
# (scripts/netns-hosts.sh); mpirun starts its daemons in them through an rsh
# agent with a clean environment, as ssh would, and MPI traffic is held to the
# bridge's subnet (TCP BTL and out-of-band), so it really crosses the veths.
# With 2 hosts x 2 ranks:
# - rank 0's rank table shows both hosts, local ranks 0 and 1 on each
#   (MPI_Comm_split_type), and the final parameters equal a 1-rank run's with
#   the same global batch (relative difference <= 1e-5);
# - kill -9 of rank 3 (on the second host) ends the job non-zero within the
#   timeout, naming rank 3, with no process left on either host;
# - an error on rank 3 reaches ranks 0 and 1 on the first host: each says
#   "rank 3 failed" (dltrain's failure notices, over TCP between hosts);
# - a network partition (host 2's veth goes down): the ranks on both sides
#   time out, name the ranks on the other side and exit by themselves within
#   comm.timeout_s + grace; mpirun can only finish its abort once the link is
#   back (it waits for host 2's daemon), and then exits non-zero;
# - a firewall between the hosts (rank-to-rank traffic dropped, mpirun's own
#   still passing): MPI starts, its first collective never finishes; the
#   start-up watchdog (DLT_COMM_START_TIMEOUT) ends every rank, naming its host;
# - `dltrain doctor` across the hosts reports 2 nodes, 2 ranks per node.
# Skipped (exit 0, one SKIP line) where namespaces cannot be made (not root,
# no CAP_NET_ADMIN, no iproute2) or mpirun is not Open MPI.
. tests/integration/lib.sh
if ! mpirun --version 2>/dev/null | grep -q "Open MPI"; then
    echo "SKIP test_multinode: mpirun is not Open MPI (the rsh agent set-up is Open MPI's)"
    exit 0
fi
NS="$TMP/hosts"
MPIPID=""
# the namespaces, the bridge and every process in the hosts go on every way
# out, a signal included (under set -e: no step may fail)
cleanup() {
    # $MPIPID is timeout's PID; mpirun is its child, in timeout's process group
    if [ -n "$MPIPID" ]; then
        pkill -9 -P "$MPIPID" 2>/dev/null || true
        kill -9 "$MPIPID" 2>/dev/null || true
    fi
    sh scripts/netns-hosts.sh stop "$NS" || true
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP
rc=0
conf=$(sh scripts/netns-hosts.sh start "$NS" 2 2>"$TMP/ns.err") || rc=$?
if [ "$rc" -eq 3 ]; then
    echo "SKIP test_multinode: $(cat "$TMP/ns.err")"
    exit 0
fi
[ "$rc" -eq 0 ] || { cat "$TMP/ns.err" >&2; fail "scripts/netns-hosts.sh start"; }
eval "$conf"
H1=${NETNS_HOSTS% *}
H2=${NETNS_HOSTS#* }

# mpirun's single-machine settings from lib.sh must not reach the hosts
unset OMPI_MCA_btl OMPI_MCA_rmaps_base_oversubscribe
MPIRUN_NS="mpirun --bind-to none --hostfile $NETNS_HOSTFILE --mca plm_rsh_agent $NETNS_AGENT
    --mca pml ob1 --mca btl tcp,self --mca btl_tcp_if_include $NETNS_NET --mca oob_tcp_if_include $NETNS_NET"

# dltrain processes left in either host
left() { for h in $NETNS_HOSTS; do ip netns pids "$h"; done | xargs -r ps -o comm= -p | grep -c dltrain || true; }
# bytes host 2 has sent and received through its veth
veth_bytes() { "$PY" -c 'import sys; print(sum(int(open(f"/sys/class/net/{sys.argv[1]}/statistics/{d}_bytes").read()) for d in ("rx", "tx")))' "${H2}v"; }
secs() { "$PY" -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 1))" "$1" "$(date +%s.%N)"; }

synthetic_data "$TMP/syn" 512
cat > "$TMP/mlp.yaml" <<YAML
data:
  train: $TMP/syn/train-*.h5
  test: ""
model:
  loss: softmax_cross_entropy
  layers:
    - {type: flatten}
    - {type: dense, units: 32}
    - {type: tanh}
    - {type: dense, units: 10}
train:
  epochs: 1
  max_steps: 20
  batch_size: 24
  threads: 1
optimizer:
  type: sgd
  lr: 0.05
  momentum: 0.9
comm:
  timeout_s: 30
  bucket_mb: 0.01
log:
  every: 10
YAML

# --- 2 hosts x 2 ranks train the 1-rank parameters
"$BIN/dltrain" train "$TMP/mlp.yaml" run_dir="$TMP/ref" >"$TMP/ref.out" 2>&1 ||
    { cat "$TMP/ref.out"; fail "1-rank reference run"; }
b0=$(veth_bytes)
timeout 60 $MPIRUN_NS -np 4 "$BIN/dltrain" train "$TMP/mlp.yaml" run_dir="$TMP/np4" >"$TMP/np4.out" 2>&1 ||
    { cat "$TMP/np4.out"; fail "2 hosts x 2 ranks: training failed"; }
moved=$(($(veth_bytes) - b0))
for want in "rank 0: host $H1, local rank 0," "rank 1: host $H1, local rank 1," \
            "rank 2: host $H2, local rank 0," "rank 3: host $H2, local rank 1," "4 ranks"; do
    grep -q -- "$want" "$TMP/np4.out" || { cat "$TMP/np4.out"; fail "no '$want' in the output"; }
done
diff=$(params_match "$TMP/ref/model.h5" "$TMP/np4/model.h5") || fail "2 hosts x 2 ranks: parameters differ from 1 rank"
# every step must bring host 1's part of the gradient sum (25,450 floats, 100
# KiB) into host 2 and host 2's out: >= 4 MB in 20 steps; asks for half
[ "$moved" -gt 2000000 ] || fail "only $moved bytes crossed host 2's veth: MPI did not use the bridge"
echo "ok  2 hosts x 2 ranks: rank table shows local ranks 0,1 on $H1 and on $H2; parameters = 1 rank ($diff); $((moved / 1024)) KiB crossed the veth"

# --- kill -9 of rank 3, on the second host
t0=$(date +%s.%N)
rc=0
DLTRAIN_FAULT="rank:3,step:3,kill" timeout 60 $MPIRUN_NS -x DLTRAIN_FAULT -np 4 "$BIN/dltrain" train "$TMP/mlp.yaml" \
    run_dir="$TMP/kill" >"$TMP/kill.out" 2>&1 || rc=$?
took=$(secs "$t0")
[ "$rc" -ne 0 ] || { cat "$TMP/kill.out"; fail "kill: the job exited 0"; }
[ "$rc" -ne 124 ] || { cat "$TMP/kill.out"; fail "kill: the job hung (killed by timeout 60)"; }
"$PY" -c "import sys; sys.exit(float(sys.argv[1]) > 20)" "$took" || { cat "$TMP/kill.out"; fail "kill: took $took s"; }
grep -q "rank 3 .*on node $H2 exited on signal 9\|no word from rank 3" "$TMP/kill.out" || { cat "$TMP/kill.out"; fail "kill: rank 3 not named"; }
sleep 0.3
[ "$(left)" = 0 ] || fail "kill: dltrain processes left on the hosts"
! pgrep -f "run_dir=$TMP/kill" >/dev/null || fail "kill: processes left behind"
echo "ok  kill -9 of rank 3 on $H2: job ended (exit $rc) in $took s, rank 3 named, no process left"

# --- an error on rank 3: its notice crosses to the other host's ranks
rc=0
DLTRAIN_FAULT="rank:3,step:3,error" timeout 60 $MPIRUN_NS -x DLTRAIN_FAULT -np 4 "$BIN/dltrain" train "$TMP/mlp.yaml" \
    run_dir="$TMP/error" >"$TMP/error.out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || { cat "$TMP/error.out"; fail "error: the job exited $rc"; }
for r in 0 1 2; do
    grep -q "dltrain: error: rank $r: rank 3 failed (at its step 3" "$TMP/error.out" ||
        { cat "$TMP/error.out"; fail "error: rank $r does not name rank 3"; }
done
grep -q "no word from" "$TMP/error.out" && { cat "$TMP/error.out"; fail "error: a rank did not answer"; }
[ "$(left)" = 0 ] || fail "error: dltrain processes left on the hosts"
echo "ok  error on rank 3 ($H2): ranks 0, 1 ($H1) and 2 name it; job exited $rc"

# --- network partition: host 2 loses its link in the middle of training
rc=0
timeout 60 $MPIRUN_NS -np 4 "$BIN/dltrain" train "$TMP/mlp.yaml" run_dir="$TMP/part" train.max_steps=1000000 \
    train.epochs=100000 log.every=10 comm.timeout_s=5 >"$TMP/part.out" 2>&1 &
MPIPID=$!
i=0
until grep -q "step 10 " "$TMP/part.out" 2>/dev/null; do
    i=$((i + 1))
    [ $i -lt 450 ] && kill -0 "$MPIPID" 2>/dev/null || { cat "$TMP/part.out"; fail "partition: training did not start"; }
    sleep 0.1
done
ip link set "${H2}v" down
t0=$(date +%s.%N)
# every rank, on both sides, must end by itself: timeout 5 s + grace
i=0
while [ "$(left)" != 0 ]; do
    i=$((i + 1))
    [ $i -lt 200 ] || { cat "$TMP/part.out"; fail "partition: ranks still running $(secs "$t0") s after the link went down"; }
    sleep 0.1
done
took=$(secs "$t0")
ip link set "${H2}v" up
wait "$MPIPID" || rc=$?
MPIPID=""
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || { cat "$TMP/part.out"; fail "partition: mpirun exited $rc after the link came back"; }
grep -q "rank [01]: no word from rank 2, 3: dead or hung" "$TMP/part.out" ||
    { cat "$TMP/part.out"; fail "partition: host 1's ranks do not name ranks 2 and 3"; }
"$PY" -c "import sys; sys.exit(float(sys.argv[1]) < 5)" "$took" || fail "partition: ranks ended before the timeout ($took s)"
sleep 0.3
[ "$(left)" = 0 ] || fail "partition: dltrain processes left on the hosts"
echo "ok  partition of $H2: all 4 ranks ended by themselves in $took s naming the other side; mpirun exited $rc once the link was back"

# --- a firewall between the hosts: mpirun still reaches both (through the
# bridge's own address), but rank-to-rank traffic between them is dropped
# (bridge port isolation), so MPI_Init succeeds and the first collective can
# never finish: the start-up watchdog must end every rank
bridge link set dev "${H1}v" isolated on
bridge link set dev "${H2}v" isolated on
t0=$(date +%s.%N)
rc=0
DLT_COMM_START_TIMEOUT=3 timeout 60 $MPIRUN_NS -x DLT_COMM_START_TIMEOUT -np 4 "$BIN/dltrain" train "$TMP/mlp.yaml" \
    run_dir="$TMP/fw" >"$TMP/fw.out" 2>&1 || rc=$?
took=$(secs "$t0")
bridge link set dev "${H1}v" isolated off
bridge link set dev "${H2}v" isolated off
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || { cat "$TMP/fw.out"; fail "firewall: the job exited $rc"; }
for h in $H1 $H2; do
    grep -q "dltrain: watchdog: MPI start-up on $h (.*firewall.*) did not finish within 3 s" "$TMP/fw.out" ||
        { cat "$TMP/fw.out"; fail "firewall: no start-up watchdog message from $h"; }
done
"$PY" -c "import sys; sys.exit(float(sys.argv[1]) > 25)" "$took" || { cat "$TMP/fw.out"; fail "firewall: took $took s"; }
sleep 0.3
[ "$(left)" = 0 ] || fail "firewall: dltrain processes left on the hosts"
echo "ok  firewall between the hosts: the start-up watchdog ended every rank in $took s (exit $rc), naming the hosts"

# --- doctor across the hosts
timeout 60 $MPIRUN_NS -np 4 "$BIN/dltrain" doctor --mib 1 >"$TMP/doc.out" 2>&1 || { cat "$TMP/doc.out"; fail "doctor on 2 hosts"; }
for want in "^world: *4 ranks on 2 nodes, 2 ranks per node" "^rank 1: host $H1, local rank 1" \
            "^rank 2: host $H2, local rank 0" "busbw" "^doctor: no problems found"; do
    grep -q -- "$want" "$TMP/doc.out" || { cat "$TMP/doc.out"; fail "doctor: no '$want'"; }
done
echo "ok  doctor across 2 hosts: 4 ranks on 2 nodes, 2 ranks per node, no problems"
