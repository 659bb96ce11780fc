#!/usr/bin/env bash
# The package as a user gets it: `pip install <source>` into a fresh virtual environment (C
# only: -Dcuda=disabled), then, from outside the source tree and with no CPCL_LIBRARY, the
# package must load the library pip built into it, pass its layout check, and run the two-rank
# example. Uses the build tools already installed (meson-python, meson, ninja) when there are,
# else pip's isolated build (which fetches them).
set -euo pipefail
src=$1 py=${2:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
unset CPCL_LIBRARY PYTHONPATH
"$py" -m venv --system-site-packages "$work/venv"
vpy="$work/venv/bin/python"
iso=()
if "$vpy" -c "import mesonpy" 2>/dev/null; then iso=(--no-build-isolation); fi
echo "pip install $src ${iso[*]:-} -Csetup-args=-Dcuda=disabled"
"$vpy" -m pip install -q --no-deps "${iso[@]}" "$src" -Csetup-args=-Dcuda=disabled -Cbuild-dir="$work/build" \
  >"$work/pip.log" 2>&1 || { tail -40 "$work/pip.log"; exit 1; }
cd "$work"
"$vpy" - <<PY
import cpcl, os
path = os.path.realpath(cpcl.library_path)
site = os.path.realpath(os.path.dirname(cpcl.__file__))
print("cpcl", cpcl.__version__, "loads", path, "|", cpcl.build_config())
assert path.startswith(site), f"the installed package loaded {path}, not its own library in {site}"
PY
mpirun -np 2 "$vpy" "$src/examples/decode_mpi.py"
