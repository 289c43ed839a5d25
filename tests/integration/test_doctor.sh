# `dltrain doctor`: under mpirun -np 2 it reports MPI, the world, every
# rank's host and device, the library versions, HDF5 thread safety and the
# allreduce bandwidth, and exits 0; started as singletons that the
# environment says should be 4 ranks, it names the mis-launch and exits 1.
. tests/integration/lib.sh
$MPIRUN -np 2 "$BIN/dltrain" doctor --mib 1 >"$TMP/doc.out" 2>&1 || { cat "$TMP/doc.out"; fail "doctor on 2 ranks"; }
for want in "^MPI: .*Open MPI" "^world: *2 ranks on 1 node, 2 ranks per node" "^rank 0: host .*device cpu" \
            "^rank 1: host .*local rank 1" "^NCCL: " "^cuDNN: " "^cuBLAS: " "^HDF5: .*thread-safe" \
            "busbw" "^doctor: no problems found"; do
    grep -q -- "$want" "$TMP/doc.out" || { cat "$TMP/doc.out"; fail "doctor: no '$want'"; }
done
echo "ok  doctor on 2 ranks: MPI, world, ranks, libraries, HDF5, bandwidth"

rc=0
OMPI_COMM_WORLD_SIZE=4 "$BIN/dltrain" doctor --mib 1 >"$TMP/bad.out" 2>&1 || rc=$?
[ "$rc" -eq 1 ] || { cat "$TMP/bad.out"; fail "doctor on a mis-launch exited $rc, want 1"; }
grep -q "^problem: started as 4 singletons" "$TMP/bad.out" || { cat "$TMP/bad.out"; fail "doctor: mis-launch not named"; }
echo "ok  doctor names a singleton mis-launch and exits 1"

# A peer that hangs, dies or fails during doctor: every other rank ends
# within --timeout (2 s) plus the grace period, with one line naming the
# rank, exit non-zero, and no process left. DLTRAIN_FAULT's steps are
# doctor's checkpoints (launcher/fault.h): 1 = before the bandwidth test.
doctor_fault() { # doctor_fault NAME FAULT PATTERN
    t0=$(date +%s)
    rc=0
    DLTRAIN_FAULT="$2" timeout 60 $MPIRUN -np 2 "$BIN/dltrain" doctor --mib 1 --timeout 2 >"$TMP/$1.out" 2>&1 ||
        rc=$?
    took=$(($(date +%s) - t0))
    [ "$rc" -ne 0 ] || { cat "$TMP/$1.out"; fail "doctor, $1: exited 0"; }
    [ "$rc" -ne 124 ] || { cat "$TMP/$1.out"; fail "doctor, $1: hung (killed by timeout 60)"; }
    [ "$took" -le 20 ] || { cat "$TMP/$1.out"; fail "doctor, $1: took $took s"; }
    grep -q -- "$3" "$TMP/$1.out" || { cat "$TMP/$1.out"; fail "doctor, $1: no '$3' in the output"; }
    sleep 0.3
    if pgrep -f "dltrain doctor --mib 1 --timeout 2" >/dev/null; then
        pgrep -af "dltrain doctor --mib 1 --timeout 2" >&2
        fail "doctor, $1: processes left behind"
    fi
    echo "ok  doctor with rank 1 $1: ended in $took s (exit $rc), rank 1 named"
}
doctor_fault hang "rank:1,step:1,hang" "^dltrain doctor: error: rank 0: timeout: .*no word from rank 1 (dead or hung)"
doctor_fault hang-first "rank:1,step:0,hang" "^dltrain doctor: error: rank 0: timeout: .*phase doctor: world.*no word from rank 1"
doctor_fault error "rank:1,step:2,error" "^dltrain doctor: error: rank 0: rank 1 failed .*injected fault"
doctor_fault kill "rank:1,step:1,kill" "rank 1"
