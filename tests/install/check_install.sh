#!/usr/bin/env bash
# meson install into a staging prefix, then build tests/install/hello_cpcl.c with nothing but
# <cpcl.h> and `pkg-config --cflags --libs cpcl`, and run it on 2 ranks.
set -euo pipefail
build=$1 src=$2
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
meson install -C "$build" --destdir "$stage" --no-rebuild >/dev/null
pc=$(find "$stage" -name cpcl.pc | head -n 1)
[ -n "$pc" ] || { echo "no cpcl.pc installed"; exit 1; }
prefix=$(sed -n 's/^prefix=//p' "$pc")
# the .pc names the final prefix: point it at the staging copy
sed "s|^prefix=.*|prefix=$stage$prefix|" "$pc" > "$stage/cpcl.pc"
export PKG_CONFIG_PATH="$stage"
echo "pkg-config --libs cpcl: $(pkg-config --libs cpcl)"
mpicc -std=c99 -Wall -Werror -o "$stage/hello" "$src/hello_cpcl.c" $(pkg-config --cflags --libs cpcl)
libdir=$(pkg-config --variable=libdir cpcl)
LD_LIBRARY_PATH="$libdir" mpirun -np 2 -x LD_LIBRARY_PATH "$stage/hello"
