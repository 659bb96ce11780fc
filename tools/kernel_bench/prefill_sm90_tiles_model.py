#!/usr/bin/env python3
"""A model of the key enumeration of kernels/cuda/prefill_sm90_lib.cuh, checked on random batches.

The functions mirror libTileOf, libFirstAfter (the contiguous shortcut and the 32-way warp search),
libBuildSegs and libTile line by line. For every query tile of every batch it checks:
  - every row sees each key of its sequence at or before its position exactly once, and no other;
  - an unmasked tile holds only its own keys, each at or before the tile's first row;
  - TMA is never asked for a row at or past the segment's end (rows below 0 are zero-filled).
Batches: 1-4 sequences, 1-4 PCP blocks of head-tail chunks (cpclPcpChunks), the query block
among the keys or not (rows without keys), contexts shifting the positions; half of them with the
cache shard (W 1-3, interleave 1 or 16, pages of 1-256 tokens, 5% of the page ids negative).
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


def local_len_of(L, W, r, I):
    WI = W * I
    q, m = (L // WI, L % WI) if L >= 0 else (-((-L) // WI), -((-L) % WI))  # C's truncating / and %
    rem = max(0, min(I, m - r * I))
    return q * I + rem


def build_segs(blocks, s, qmin, qmax, cache=None):
    segs, masked, unmasked = [], 0, 0
    if cache is not None:
        W, r, I, ps, lens, bt, maxPages = cache
        e = min(local_len_of(lens[s], W, r, I), local_len_of(qmax + 1, W, r, I), maxPages * ps)
        if e > 0:
            u = min(e, local_len_of(qmin + 1, W, r, I))
            nU = u // BN
            np_ = (nU * BN + ps - 1) // ps
            if any(bt[s][i] < 0 for i in range(np_)):
                nU = 0
            nT = (e + BN - 1) // BN
            segs.append(dict(m0=0, u0=0, blk=-1, key0=0, keyEnd=e, nT=nT, nU=nU))
            masked, unmasked = nT - nU, nU
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
    start = sg["keyEnd"] - BN if sg["blk"] >= 0 and lo + BN > sg["keyEnd"] else lo
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
    cache = None
    if R.random() < 0.5:  # the shard of rank r of W, interleave I, pages of ps, some blocked
        W, I, ps = R.choice([1, 2, 3]), R.choice([1, 16]), R.choice([1, 16, 64, 256])
        r = R.randrange(W)
        # the cache holds the context, or the new tokens too (keys past some rows: the mask)
        lens = [c + (n if R.random() < 0.5 else 0) for c, n in zip(ctx, new)]
        maxPages = max(1, max(local_len_of(c, W, r, I) for c in lens) // ps + 1)
        bt = [[(-1 if R.random() < 0.05 else R.randrange(1000)) for _ in range(maxPages)] for _ in range(S)]
        cache = (W, r, I, ps, lens, bt, maxPages)
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
        segs, masked, tiles = build_segs(kv, s, qmin, qmax, cache)
        seen = {t: [] for t in range(t0, t0 + n)}
        for i in range(tiles):
            blk, start, klo, kend, m, segEnd = lib_tile(segs, masked, i)
            if blk < 0:  # the cache: positions of local keys, blocked pages excluded
                W, rk, I, ps, lens, bt, maxPages = cache
                assert start == klo and start % BN == 0
                pos = {k: (k // I) * W * I + rk * I + k % I for k in range(start, start + BN)}
                live = lambda k: k < kend and bt[s][k // ps] >= 0
            else:
                pos = kv[blk][1]
                assert start + BN <= segEnd or start < 0 and start + BN == segEnd, (seed, start, segEnd)
                live = lambda k: klo <= k < kend
            for r in range(start, start + BN):
                own = live(r)
                if not m:
                    assert own and pos[r] <= qmin, (seed, "unmasked tile with a masked key")
                for t in seen:
                    if own and (not m or pos[r] <= qpos[t]):
                        seen[t].append((blk, r))
        for t, got in seen.items():
            want = [(b, r) for b, (rs, pos) in enumerate(kv) for r in range(rs[s], rs[s + 1]) if pos[r] <= qpos[t]]
            if cache is not None:
                W, rk, I, ps, lens, bt, maxPages = cache
                for k in range(min(local_len_of(lens[s], W, rk, I), maxPages * ps)):
                    gp = (k // I) * W * I + rk * I + k % I
                    assert gp < lens[s]
                    if gp <= qpos[t] and bt[s][k // ps] >= 0:
                        want.append((-1, k))
            assert sorted(got) == sorted(want) and len(set(got)) == len(got), (seed, t)
            rows += 1
    return rows


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    print("prefill_sm90_lib tile model: %d batches, %d query rows checked: ok" % (n, sum(batch(i) for i in range(n))))
