# Sourced by test_logging.sh and test_export.sh: a Python virtual environment
# with the PyPI packages that read dltrain's outputs independently of it:
# tensorboard (EventAccumulator reads the event files) and onnxruntime (runs
# the exported models). Built once, on top of Debian's python3 and its
# packages (--system-site-packages: numpy, matplotlib), into build/pyenv
# (DLT_PYENV overrides), and reused while build/ lives. A lock keeps two
# test runs from building it at once; a marker file is written last, so an
# interrupted install is redone.
DLT_PYENV=${DLT_PYENV:-$(pwd)/build/pyenv}
PYENV_PKGS="tensorboard onnxruntime"

pyenv_python() {
    if [ ! -f "$DLT_PYENV/.ok" ]; then
        mkdir -p "$(dirname "$DLT_PYENV")"
        (
            flock 9
            if [ ! -f "$DLT_PYENV/.ok" ]; then
                rm -rf "$DLT_PYENV"
                /usr/bin/python3 -m venv --system-site-packages "$DLT_PYENV" >&2 &&
                    "$DLT_PYENV/bin/pip" install -q --disable-pip-version-check $PYENV_PKGS >&2 &&
                    touch "$DLT_PYENV/.ok"
            fi
        ) 9>"$DLT_PYENV.lock"
        [ -f "$DLT_PYENV/.ok" ] || { echo "FAIL: cannot install $PYENV_PKGS from PyPI into $DLT_PYENV" >&2; exit 1; }
    fi
    echo "$DLT_PYENV/bin/python"
}
