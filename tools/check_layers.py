#!/usr/bin/env python3
"""check_layers.py -- the include graph of cpcl obeys its layers (python3, stdlib only).

Every `#include "..."` of the tree's C/CUDA sources is resolved as the compiler would: the
including file's folder first, then the include directories the meson.build files declare
(include_directories('...'), each relative to its meson.build). System includes (<...>) and
names found nowhere in the tree (generated config.h, CUDA's headers) are not edges.

Layers (top-level folders): include/, src/base/ (the services layer), src/ (the rest),
transport/, kernels/, tools/, tests/. Rules:

  public    include/ includes only include/.
  services  src/base/ includes nothing else of src/ (nor transport/, kernels/, tools/, tests/).
  below     no header of src/ outside src/base/ is reached, directly or through other headers,
            from a file of transport/ or kernels/.
  tools     tools/ reaches only include/ and tools/ (tools/kernel_perf.c also the kernels'
            params headers, kernels/*params*.h, and what they include of those).
  cycle     no cycle between the layers (an edge A -> B: a file of A includes one of B).
  tests/ is unrestricted (but takes part in the cycle check).

Each violation prints as  file:line: includes "name" (-> resolved [via chain]): rule -- why
and the script exits 1 when there is any, 0 otherwise.

  tools/check_layers.py [ROOT]          check the tree at ROOT (default: the repository)
  tools/check_layers.py --self-test     the checker's own tests on synthetic trees
                                        (tests/layers/test_check_layers.py)
"""
import os
import re
import sys

SOURCE_EXT = (".c", ".h", ".cu", ".cuh", ".cc", ".cpp", ".hpp")
SKIP_DIRS = {"scratch", ".git", "subprojects"}
INCLUDE_RE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')
INCDIR_RE = re.compile(r"include_directories\s*\(([^)]*)\)")
QUOTED_RE = re.compile(r"'([^']*)'")

# the tools file allowed the kernels' params headers, and where those live
KERNEL_PERF = "tools/kernel_perf.c"
KERNEL_BENCH = "tools/kernel_bench/"


def layer_of(path):
    """The layer of a repository-relative path, or None (outside every layer)."""
    parts = path.split("/")
    if parts[0] == "src":
        return "src/base" if len(parts) > 2 and parts[1] == "base" else "src"
    if parts[0] in ("include", "transport", "kernels", "tools", "tests"):
        return parts[0]
    return None


def is_params_header(path):
    """A params header of the kernels: kernels/*params*.h directly in kernels/ (attn_params.h,
    params_common.h, ...), or rank_limit.h, the one rank limit the params structs are sized by."""
    parts = path.split("/")
    return (len(parts) == 2 and parts[0] == "kernels" and parts[1].endswith(".h")
            and ("params" in parts[1] or parts[1] == "rank_limit.h"))


def is_build_dir(root, rel):
    return os.path.exists(os.path.join(root, rel, "meson-private")) or os.path.exists(
        os.path.join(root, rel, "build.ninja"))


def scan(root):
    """(sources: {rel: [(line, name)]}, include dirs: [rel]) of the tree at root."""
    sources, incdirs = {}, []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith(".")
                             and not is_build_dir(root, os.path.join(rel_dir, d)))
        for f in sorted(filenames):
            rel = f"{rel_dir}/{f}" if rel_dir else f
            full = os.path.join(dirpath, f)
            if f == "meson.build":
                with open(full, encoding="utf-8", errors="replace") as fh:
                    text = fh.read()
                for m in INCDIR_RE.finditer(text):
                    for d in QUOTED_RE.findall(m.group(1)):
                        d = os.path.normpath(os.path.join(rel_dir, d)).replace(os.sep, "/")
                        d = "" if d == "." else d
                        if d not in incdirs:
                            incdirs.append(d)
            elif f.endswith(SOURCE_EXT):
                incs = []
                with open(full, encoding="utf-8", errors="replace") as fh:
                    for n, line in enumerate(fh, 1):
                        m = INCLUDE_RE.match(line)
                        if m:
                            incs.append((n, m.group(1)))
                sources[rel] = incs
    return sources, incdirs


def resolve(includer, name, sources, incdirs):
    """The file the compiler would open for #include "name" in includer, or None."""
    here = os.path.dirname(includer)
    cands = [os.path.normpath(os.path.join(here, name)).replace(os.sep, "/")]
    # the include directories, those of the includer's own layer first (the order its target
    # would most likely give them)
    own = layer_of(includer)
    ordered = [d for d in incdirs if layer_of(d + "/x") == own] + [d for d in incdirs if layer_of(d + "/x") != own]
    for d in ordered:
        cands.append(os.path.normpath(os.path.join(d, name)).replace(os.sep, "/"))
    for c in cands:
        if c in sources:
            return c
    return None


def check(root):
    """The violations of the tree at root: a list of (file, line, name, resolved, chain, rule, why)."""
    sources, incdirs = scan(root)
    edges = {}  # file -> [(line, name, target)]
    for f, incs in sources.items():
        edges[f] = [(n, name, resolve(f, name, sources, incdirs)) for n, name in incs]
        edges[f] = [e for e in edges[f] if e[2] is not None]

    def reached(start, bad):
        """Per include line of start, the nearest file it reaches (breadth first) for which
        bad(file, chain) holds: [(line, name, target, chain from the included file to target)].
        A chain whose first hop stays in start's layer is left to that hop's own report, so a
        planted include is reported where it is written, not in every file above it."""
        out = []
        for n, name, first in edges.get(start, []):
            seen, queue = {start}, [(first, [first])]
            while queue:
                t, chain = queue.pop(0)
                if t in seen:
                    continue
                seen.add(t)
                if bad(t, chain):
                    if len(chain) == 1 or layer_of(first) != layer_of(start):
                        out.append((n, name, t, chain))
                    break
                queue.extend((t2, chain + [t2]) for _, _, t2 in edges.get(t, []) if t2 not in seen)
        return out

    out = []
    for f in sorted(sources):
        lf = layer_of(f)
        if lf is None:
            continue
        if lf == "include":
            for n, name, t in edges[f]:
                if layer_of(t) != "include":
                    out.append((f, n, name, t, [], "public", "include/ includes only include/"))
        if lf == "src/base":
            for n, name, t in edges[f]:
                if layer_of(t) not in ("src/base", "include"):
                    out.append((f, n, name, t, [], "services", "src/base/ includes nothing else of src/ "
                                "(nor transport/, kernels/, tools/, tests/)"))
        if lf in ("transport", "kernels"):
            for n, name, t, chain in reached(f, lambda t, chain: layer_of(t) == "src"):
                out.append((f, n, name, t, chain[:-1], "below", f"{lf}/ reaches no header of src/ outside src/base/"))
        if lf == "tools":

            def tools_bad(t, chain, f=f):
                if layer_of(t) in ("include", "tools"):
                    return False
                # the standalone kernel benches (own nvcc line, no library) test kernels/ directly
                if f.startswith(KERNEL_BENCH) and layer_of(t) == "kernels":
                    return False
                # kernel_perf: the params headers, and what they include in turn
                return not (f == KERNEL_PERF and all(is_params_header(c) or layer_of(c) in ("include", "tools")
                                                     for c in chain))

            for n, name, t, chain in reached(f, tools_bad):
                out.append((f, n, name, t, chain[:-1], "tools",
                            "tools/ include only include/ (kernel_perf.c also kernels/*params*.h, tools/kernel_bench/ kernels/)"))
    # cycles between layers: strongly connected components of the layer graph
    lgraph, example = {}, {}
    for f in sorted(edges):
        for n, name, t in edges[f]:
            a, b = layer_of(f), layer_of(t)
            if a and b and a != b:
                lgraph.setdefault(a, set()).add(b)
                example.setdefault((a, b), (f, n, name, t))
    for comp in sccs(lgraph):
        if len(comp) < 2:
            continue
        names = " <-> ".join(sorted(comp))
        for (a, b), (f, n, name, t) in sorted(example.items()):
            if a in comp and b in comp:
                out.append((f, n, name, t, [], "cycle", f"a cycle between {names} (this is one edge {a} -> {b})"))
    return out


def sccs(graph):
    """Tarjan's strongly connected components of {node: set(successors)}."""
    index, low, on, stack, result, counter = {}, {}, set(), [], [], [0]
    nodes = sorted(set(graph) | {b for s in graph.values() for b in s})

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            result.append(comp)

    for v in nodes:
        if v not in index:
            visit(v)
    return result


def report(violations, file=None):
    file = file or sys.stdout
    for f, n, name, t, chain, rule, why in violations:
        via = f" via {' -> '.join(chain)}" if chain else ""
        print(f'{f}:{n}: includes "{name}" (-> {t}{via}): {rule} -- {why}', file=file)


def main(argv):
    if len(argv) > 1 and argv[1] == "--self-test":
        import unittest
        here = os.path.dirname(os.path.abspath(__file__))
        suite = unittest.defaultTestLoader.discover(os.path.join(here, "..", "tests", "layers"),
                                                    pattern="test_*.py")
        return 0 if unittest.TextTestRunner(verbosity=1).run(suite).wasSuccessful() else 1
    if len(argv) > 2 or (len(argv) == 2 and argv[1].startswith("-")):
        print("usage: check_layers.py [ROOT] | --self-test", file=sys.stderr)
        return 2
    root = argv[1] if len(argv) == 2 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    violations = check(root)
    report(violations)
    sources, _ = scan(root)
    print(f"check_layers: {len(sources)} sources, {len(violations)} violation(s)")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
