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
