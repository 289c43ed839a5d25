# Shared set-up for the integration tests (sourced). BIN: the binaries; NP: ranks.
set -eu
BIN=${BIN:-$(pwd)/bin}
NP=${NP:-2}
PY=${PY:-/usr/bin/python3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
TMP=$(mktemp -d /tmp/dlt-it.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
MPIRUN="mpirun --bind-to none"

fail() { echo "FAIL: $*" >&2; exit 1; }

# Real Fashion-MNIST, prepared once into data/fashion-mnist.
fashion_data() {
    [ -f data/fashion-mnist/train-00000.h5 ] || "$BIN/dlprep" fashion-mnist data/fashion-mnist >/dev/null
}

# A small synthetic image set: synthetic_data DIR N [C,H,W]
synthetic_data() {
    "$BIN/dlprep" synthetic "$1" --n "$2" --shape "${3:-1,28,28}" --classes 10 --seed 7 >/dev/null
}

# json_get FILE KEY: a field of a one-object JSON file
json_get() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
