"""Reads the Hopper prefill body's diagnostic timeline (a build with -DCPCL_PF90_TRACE, run with
CPCL_PREFILL_SM90_TRACE=FILE; prefill_sm90_lib.cuh, PF90_MARK) and prints where an item's cycles
go: per CTA and item, the SM clock at each mark of each warpgroup (0/1: Q landed, 2/3: the first
S done, 4/5: the last P V issued, 6/7: next() back, 16/17: the last P V done, 8/9: O and lse
stored), of warp 8 (10: the item posted, 11: its last K/V issued, 15: its key tiles; 18, in branch
pclaim only: the next item claimed) and of copy warp 9 (12: the item
taken, 13: its tiles done, 14: its store rows done). Medians over the items of every CTA, in
cycles, for items binned by their key tiles; a CTA's last item has no next one and is left out.
Run: python3 prefill_trace.py FILE [ctas]"""
import statistics, struct, sys

ITEMS, MARKS = 128, 20
path = sys.argv[1]
raw = open(path, "rb").read()
n = len(raw) // 4
v = struct.unpack("<%dI" % n, raw)
ctas = min(int(sys.argv[2]) if len(sys.argv) > 2 else 132, n // (ITEMS * MARKS))


def d(a, b):  # b - a in cycles, the 32-bit clock wrapping
    return (b - a) & 0xFFFFFFFF


rows = []
for c in range(ctas):
    base = c * ITEMS * MARKS
    items = []
    for k in range(ITEMS):
        m = v[base + k * MARKS: base + (k + 1) * MARKS]
        if m[0] == 0 and m[10] == 0:
            break
        items.append(m)
    for k in range(len(items) - 1):
        m, nx = items[k], items[k + 1]
        if nx[0] == 0 or nx[1] == 0:
            continue
        r = {"tiles": m[15]}
        for w in (0, 1):
            r["period%d" % w] = d(m[0 + w], nx[0 + w])
            r["firstS%d" % w] = d(m[0 + w], m[2 + w])  # Q landed -> S(0) done (K wait, turn, GEMM)
            r["body%d" % w] = d(m[2 + w], m[4 + w])  # S(0) done -> last P V issued
            r["next%d" % w] = d(m[4 + w], m[6 + w])  # next(): barrier, workFull wait, Q issue
            r["pvw%d" % w] = d(m[6 + w], m[16 + w])  # the last P V's wait
            r["store%d" % w] = d(m[16 + w], m[8 + w])  # O and lse stored
            r["qwait%d" % w] = d(m[8 + w], nx[0 + w])  # the next item's Q landed
        lead = d(nx[10], m[4])  # > 0: item k+1 posted before WG0 issued its last P V of item k
        r["post_lead"] = lead - (1 << 32) if lead >= (1 << 31) else lead
        if m[18]:  # a build that claims the next item during this one's K/V (branch pclaim)
            r["claim"] = d(m[10], m[18])  # the next item claimed
            r["tma_span"] = d(m[18], m[11])
        else:
            r["claim"] = 0
            r["tma_span"] = d(m[10], m[11])  # the item posted -> its last K/V issued
        r["copy_tiles"] = d(m[12], m[13])
        r["copy_store"] = d(m[13], m[14])
        r["copy_late"] = d(m[0], m[12]) if d(m[0], m[12]) < (1 << 31) else -d(m[12], m[0])
        # a mark a role did not reach (0) makes a difference near 2^32: drop the pair
        if any(abs(r[k]) > (1 << 30) for k in r if k != "tiles") or not 0 < r["tiles"] < 100000:
            continue
        rows.append(r)
if not rows:
    raise SystemExit("no items traced")
keys = [k for k in rows[0] if k != "tiles"]
bins = [(1, 4), (5, 8), (9, 16), (17, 24), (25, 32), (33, 64), (65, 1 << 20)]
print("%-10s %6s " % ("tiles", "items") + " ".join("%10s" % k for k in keys))
for lo, hi in [(0, 1 << 20)] + bins:
    sel = [r for r in rows if lo <= r["tiles"] <= hi]
    if not sel:
        continue
    print("%-10s %6d " % ("all" if hi == 1 << 20 and lo == 0 else "%d-%d" % (lo, hi), len(sel)) +
          " ".join("%10.0f" % statistics.median(r[k] for r in sel) for k in keys))
tiles = sum(r["tiles"] for r in rows)
cyc = sum(r["period0"] for r in rows)
print("items %d, key tiles %d, cycles a key tile (WG0 periods / tiles) %.0f" % (len(rows), tiles, cyc / tiles))
