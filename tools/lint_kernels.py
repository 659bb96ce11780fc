#!/usr/bin/env python3
"""Source patterns the CUDA toolchain we build with gets wrong, rejected before they reach a kernel.

nvcc 13.0 (V13.0.88) drops the statement that follows a discarded, braceless `if constexpr` whose
body is a loop, when it sits inside a lambda of a template:

    auto body = [&](int n) {
      for (int i = 0; i < n; i++) {
        if constexpr (!P)
          while (a[i] > 3) {
          }
        asm volatile("// gone when P is true" ::: "memory");   // <- not in the PTX
      }
    };

The persistent prefill kernels lost the copy threads' fullK wait that way (docs/PREFILL_SM90.md,
"Session 6"). With braces around the body of the `if constexpr` the statement stays. This lint
flags every braceless `if constexpr` whose body, up to its first `;` or `{`, holds a loop keyword.

Run: python3 tools/lint_kernels.py [paths...]   (default: kernels/); exit 1 on a finding.
     python3 tools/lint_kernels.py --self-test   (the lint must flag the sample above)."""
import os
import re
import sys

LOOP = re.compile(r"\b(for|while|do)\b")


def strip_comments(src):
    """comments and string literals blanked out, offsets (and so line numbers) kept"""
    out, i, n = [], 0, len(src)
    while i < n:
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", src[i:j]))
            i = j
        elif src[i] == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            out.append('"' + " " * (min(j, n) - i - 1) + ('"' if j < n else ""))
            i = j + 1
        else:
            out.append(src[i])
            i += 1
    return "".join(out)


def findings(src):
    s = strip_comments(src)
    for m in re.finditer(r"\bif\s+constexpr\s*\(", s):
        depth, i = 1, m.end()
        while i < len(s) and depth:
            depth += {"(": 1, ")": -1}.get(s[i], 0)
            i += 1
        j = i
        while j < len(s) and s[j].isspace():
            j += 1
        if j >= len(s) or s[j] == "{":
            continue
        # the body up to its first ';' or '{' outside parentheses
        depth, k = 0, j
        while k < len(s):
            c = s[k]
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
            elif depth == 0 and c in ";{":
                break
            k += 1
        if LOOP.search(s[j:k]):
            yield s.count("\n", 0, m.start()) + 1


SAMPLE = """template <bool P> __global__ void k(int* a, int w) {
  auto body = [&](int n) {
    for (int i = 0; i < n; i++) {
      if constexpr (!P)
        if (a != nullptr) /* a comment */
          while (a[i] > 3) {
          }
      if constexpr (P) a[i] = 1;
      if constexpr (!P) {
        while (a[i] > 4) {
        }
      }
      asm volatile("// kept" ::: "memory");
    }
  };
  body(w);
}
"""


def main(argv):
    if argv[1:] == ["--self-test"]:
        got = list(findings(SAMPLE))
        if got != [4]:
            print(f"lint_kernels self-test: expected a finding at line 4 only, got {got}")
            return 1
        print("lint_kernels self-test: the braceless if constexpr over a loop is flagged, the braced one is not")
        return 0
    roots = argv[1:] or ["kernels"]
    bad = 0
    files = 0
    for root in roots:
        walk = [(root, [], [os.path.basename(root)])] if os.path.isfile(root) else os.walk(root)
        for d, _, names in walk:
            for name in names:
                path = root if os.path.isfile(root) else os.path.join(d, name)
                if not path.endswith((".cu", ".cuh", ".h", ".hpp")):
                    continue
                files += 1
                for line in findings(open(path, encoding="utf-8").read()):
                    print(f"{path}:{line}: braceless `if constexpr` over a loop: put its body in braces "
                          "(nvcc 13.0 drops the statement after it; tools/lint_kernels.py)")
                    bad += 1
    print(f"lint_kernels: {files} files, {bad} finding(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
