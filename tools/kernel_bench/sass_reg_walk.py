#!/usr/bin/env python3
"""The highest general register an sm_90 kernel's producer warps can touch after they give
registers back (setmaxnreg.dec, USETMAXREG.DEALLOC in SASS): a walk of the control flow from the
DEALLOC (branch targets, fall-through, calls; EXIT and RET end a path). With `setmaxnreg.dec N`,
any register at or above N on that path would be outside the warp's allocation.
Run: cuobjdump -sass OBJECT.o > k.sass; python3 tools/kernel_bench/sass_reg_walk.py k.sass [name-substring]
(session 5 ran it on prefill_sm90.cu.o: every grid instantiation stays within R0-R53 after 56)."""
import re
import sys

L = open(sys.argv[1]).read().split("\n")
want = sys.argv[2] if len(sys.argv) > 2 else ""
funcs = [i for i, l in enumerate(L) if "Function :" in l] + [len(L)]
ins_re = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(.*?);")
for fi in range(len(funcs) - 1):
    a, b = funcs[fi], funcs[fi + 1]
    name = L[a].split(":")[1].strip()
    if want not in name:
        continue
    ins, order = {}, []
    for i in range(a, b):
        m = ins_re.search(L[i])
        if m:
            ad = int(m.group(1), 16)
            ins[ad] = m.group(2).strip()
            order.append(ad)
    nxt = {order[k]: order[k + 1] for k in range(len(order) - 1)}
    starts = [ad for ad in order if "DEALLOC" in ins[ad]]
    if not starts:
        continue
    seen, stack, top, where = set(), [starts[0]], 0, None
    while stack:
        ad = stack.pop()
        if ad in seen or ad not in ins:
            continue
        seen.add(ad)
        t = ins[ad]
        for r in re.findall(r"\bR(\d+)\b", t):
            if int(r) > top:
                top, where = int(r), (hex(ad), t)
        pred = t.startswith("@")
        body = t.split(" ", 1)[1] if pred else t
        op = body.split()[0]
        if op.startswith(("BRA", "CALL", "BSSY", "SSY")):
            targets = re.findall(r"0x([0-9a-f]+)", body)
            if targets:
                stack.append(int(targets[-1], 16))
            if (pred or not op.startswith("BRA") or "DIV" in op) and ad in nxt:
                stack.append(nxt[ad])
            continue
        if op.startswith(("EXIT", "RET")):
            if pred and ad in nxt:
                stack.append(nxt[ad])
            continue
        if op.startswith(("BRX", "JMX")):
            print("indirect branch (not followed):", hex(ad), t)
        if ad in nxt:
            stack.append(nxt[ad])
    print("%s: %d instructions reachable after the DEALLOC, highest R%d (%s %s)" % (name, len(seen), top, *where))
