#!/bin/sh
# Installs every Debian package that the build, the demo and the tests need.
# Idempotent: packages already present are skipped by apt, and apt-get update
# runs only when something is missing.
set -eu

PKGS="build-essential pkg-config make
libopenmpi-dev openmpi-bin
libhdf5-dev hdf5-tools
check
libopenblas-dev
libyaml-dev
libpng-dev
dataset-fashion-mnist wordnet-base
python3 python3-torch python3-h5py python3-numpy
slurm-wlm munge
protobuf-c-compiler libprotobuf-c-dev libonnx-dev
python3-matplotlib python3-venv python3-pip python3-yaml
procps
iproute2 util-linux hostname"

missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done

if [ -z "$missing" ]; then
    echo "install-deps: all packages present"
    exit 0
fi

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "install-deps: installing$missing"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
