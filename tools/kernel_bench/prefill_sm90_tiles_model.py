#!/usr/bin/env python3
"""A model of the key enumeration of kernels/cuda/prefill_sm90_lib.cuh, checked on random batches.

The functions mirror libTileOf, libFirstAfter (the contiguous shortcut and the 32-way warp search),
libBuildSegs and libTile line by line. For every query tile of every batch it checks:
  - every row sees each key of its sequence at or before its position exactly once, and no other;
  - an unmasked tile holds only its own keys, each at or before the tile's first row;
  - TMA is never asked for a row at or past the segment's end (rows below 0 are zero-filled).
Batches: 1-4 sequences, 1-4 PCP blocks of head-tail chunks (cpclPcpChunks), the query block
among the keys or not (rows without keys), contexts shifting the positions.
Run: python3 tools/kernel_bench/prefill_sm90_tiles_model.py [batches]
"""
import random
import sys

BN = BM = 128


def first_after(pos, lo, hi, p0, p1, q):
    if hi <= lo:
        return lo
    if p1 - p0 == hi - 1 - lo:
        n = q - p0 + 1
        return lo + (0 if n < 0 else (hi - lo if n > hi - lo else n))
    if p1 <= q:
        return hi
    if p0 > q:
        return lo
    while hi - lo > 32:
        step = (hi - lo + 31) >> 5
        idx = [lo + (l + 1) * step - 1 for l in range(32)]
        past = [i >= hi or pos[i] > q for i in idx]
        if not any(past):
            return hi
        f = past.index(True)
        hi = min(hi, lo + (f + 1) * step - 1)
        lo += f * step
    past = [lo + l >= hi or pos[lo + l] > q for l in range(32)]
    return lo + past.index(True) if any(past) else hi


def build_segs(blocks, s, qmin, qmax):
    segs, masked, unmasked = [], 0, 0
    for b, (rs, pos) in enumerate(blocks):
        k0, k1 = rs[s], max(rs[s], rs[s + 1])
        if k0 < 0 or k1 == k0:
            continue
        p0, p1 = pos[k0], pos[k1 - 1]
        e = first_after(pos, k0, k1, p0, p1, qmax)
        if e == k0:
            continue
        contig = p1 - p0 == k1 - 1 - k0
        u = first_after(pos, k0, e, p0, p0 + (e - 1 - k0) if contig else pos[e - 1], qmin)
        nT, nU = (e - k0 + BN - 1) // BN, (u - k0) // BN
        segs.append(dict(m0=masked, u0=unmasked, blk=b, key0=k0, keyEnd=e, nT=nT, nU=nU))
        masked += nT - nU
        unmasked += nU
    return segs, masked, masked + unmasked


def lib_tile(segs, masked, i):
    m = i < masked
    first = "m0" if m else "u0"
    k = i if m else i - masked
    seg = 0
    while seg + 1 < len(segs) and segs[seg + 1][first] <= k:
        seg += 1
    sg = segs[seg]
    j = (sg["nT"] if m else sg["nU"]) - 1 - (k - sg[first])
    lo = sg["key0"] + j * BN
    end = min(sg["keyEnd"], lo + BN)
    start = sg["keyEnd"] - BN if lo + BN > sg["keyEnd"] else lo
    return sg["blk"], start, lo, end, m, sg["keyEnd"]


def chunks(n, P, b):
    c = (n + 2 * P - 1) // (2 * P)
    out = []
    for idx in (b, 2 * P - 1 - b):
        out += list(range(min(idx * c, n), min((idx + 1) * c, n)))
    return out


def batch(seed):
    R = random.Random(seed)
    S, P = R.randint(1, 4), R.randint(1, 4)
    qb = R.randrange(P)
    skip = P > 1 and R.random() < 0.3
    ctx = [R.choice([0, 0, 5, 130, 1000]) for _ in range(S)]
    new = [R.choice([1, 3, 70, 128, 129, 256, 400, 700, 1500]) for _ in range(S)]
    blocks = []
    for b in range(P):
        rs, pos = [0], []
        for s in range(S):
            pos += [ctx[s] + x for x in chunks(new[s], P, b)]
            rs.append(len(pos))
        blocks.append((rs, pos))
    qrs, qpos = blocks[qb]
    kv = [blk for b, blk in enumerate(blocks) if not (skip and b == qb)]
    T, rows = qrs[S], 0
    for x in range(S + T // BM + 1):
        lo, hi = 0, S - 1
        while lo < hi:
            mid = (lo + hi + 1) >> 1
            if mid + qrs[mid] // BM <= x:
                lo = mid
            else:
                hi = mid - 1
        r0, r1, j = qrs[lo], min(qrs[lo + 1], T), x - (lo + qrs[lo] // BM)
        if r0 < 0 or j < 0 or r0 + j * BM >= r1:
            continue
        s, t0 = lo, r0 + j * BM
        n = min(BM, r1 - t0)
        qmin, qmax = qpos[t0], qpos[t0 + n - 1]
        segs, masked, tiles = build_segs(kv, s, qmin, qmax)
        seen = {t: [] for t in range(t0, t0 + n)}
        for i in range(tiles):
            blk, start, klo, kend, m, segEnd = lib_tile(segs, masked, i)
            pos = kv[blk][1]
            assert start + BN <= segEnd or start < 0 and start + BN == segEnd, (seed, start, segEnd)
            for r in range(start, start + BN):
                own = klo <= r < kend
                if not m:
                    assert own and pos[r] <= qmin, (seed, "unmasked tile with a masked key")
                for t in seen:
                    if own and (not m or pos[r] <= qpos[t]):
                        seen[t].append((blk, r))
        for t, got in seen.items():
            want = [(b, r) for b, (rs, pos) in enumerate(kv) for r in range(rs[s], rs[s + 1]) if pos[r] <= qpos[t]]
            assert sorted(got) == sorted(want) and len(set(got)) == len(got), (seed, t)
            rows += 1
    return rows


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    print("prefill_sm90_lib tile model: %d batches, %d query rows checked: ok" % (n, sum(batch(i) for i in range(n))))
