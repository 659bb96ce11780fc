#!/usr/bin/env python3
"""A model of the barrier protocol of kernels/cuda/prefill_sm90_lib.cuh, run under random schedules.

Processes: the TMA lane, producer warps 9, 10 and 11 (the copy threads, 32 arrivals each), the two
consumer warpgroups (4 warps each: 4 arrivals on an empty barrier), and TMA completions, which
land at random later times. The mbarriers model phases, pending arrival counts and transaction
bytes, and try_wait.parity(P) is true while the current phase's parity differs from P (as on the
hardware, so a waiter two phases behind blocks). The named barriers (the ping-pong turns) count
threads to 256. Every arrival is tagged with its tile; a phase that completes must hold the
arrivals of exactly one tile (tile i goes to phase i / stages of stage i % stages). The stage's
K, V and positions are tracked as the tile whose data they hold (a TMA box is "being written"
from issue to completion): S, the masked softmax and P V assert that they read their own tile's,
at issue and at completion of the read. Each run also ends with every process done: no deadlock.
Tiles: a random count, some masked (first), each a block tile (TMA) or a cache tile (copied).
The persistent form (most runs): the CTA takes 1-4 items (query tiles, some without keys) in
turn; warp 8 posts each item's descriptor (sg) on workFull after workEmpty (lane 0 of the 8
consumer warps and the 3 copy warps have read the previous one), key tiles keep one index across
items (stage, parity), and each consumer warpgroup loads its Q rows of the next item after its last
S of the current one (under its last P V), where warpgroup 1 also opens the next item's turns (if it
has keys); sg and each warpgroup's Q rows are tracked like the stages, so a read of either must see
its own item's.
The grid form with the fused store (some runs): the TMA lane arrives for the copy threads on a
block's unmasked tiles (one arrival counting 96) and the copy threads skip them; their own tiles
(masked ones and the cache shard's) come first, as libBuildSegs orders them (masked: the shard's,
then the blocks'; unmasked: the shard's, then the blocks'). After their last own tile the copy
warps store rows (each a step, from a shared count of rows), claiming a new one only while the
TMA lane (whose count of issued tiles it posts, and which the consumers never pass) has more tiles
to issue than about half a row's steps; a row claimed once both consumer warpgroups are done
fails the run (the CTA, and its SM, would wait for it). The persistent form with the store (some
runs): the same per item (the copy threads' tiles a prefix of each item; rows after the item's own
tiles and its workEmpty arrival, while the lane has that many tiles of the item left). The copy
threads' parity waits stay exact across items although they skip an earlier item's plain tiles:
warp 8 posts an item only after its lane has issued every tile of the one before.
Run: python3 tools/kernel_bench/prefill_sm90_sync_model.py [runs [mutation]]
(mutations: early-next, the next item's Q before the last S; no-workEmpty-wait: sg rewritten
while read; turn-twice: warpgroup 1 opens an item's turns at its start as well as in next();
store-cache-anywhere: the fused store with cache tiles anywhere, so the copy threads' tiles are no
prefix; store-no-margin: rows claimed whatever the TMA lane's count. With a mutation the exit status is 0 when some schedule fails, as it must.)
"""
import random
import sys


class Mbar:
    def __init__(self, name, count):
        self.name, self.count, self.phase = name, count, 0
        self.pending, self.tx, self.tags = count, 0, []

    def _complete(self):
        if self.pending == 0 and self.tx == 0:
            tiles = set(self.tags)
            assert len(tiles) == 1, (self.name, self.phase, self.tags)
            self.phase += 1
            self.pending, self.tags = self.count, []
            return tiles.pop()
        return None

    def arrive(self, tag, n=1, tx=0):
        self.tx += tx
        self.pending -= n
        assert self.pending >= 0, (self.name, "too many arrivals", tag)
        self.tags += [tag] * n
        return self._complete()

    def complete_tx(self, tag, tx):
        self.tx -= tx
        self.tags.append(tag)
        return self._complete()

    def done(self, parity):
        return (self.phase & 1) != parity


class Named:
    def __init__(self):
        self.count = 0
        self.gen = 0


def run(seed, mutate=None):
    R = random.Random(seed)
    S = R.choice([2, 3])
    # the persistent form: a CTA takes several items (query tiles) in turn, the stage index and
    # parities running on across them; the grid form: one item, its descriptor and Q in place
    # before the roles start
    persistent = R.random() < 0.6
    store = R.random() < 0.5 or mutate in ("store-cache-anywhere", "store-no-margin")
    items = []
    for _ in range(R.randint(1, 4) if persistent else 1):
        n = R.randint(0, 9)
        nMask = R.randint(0, n)
        if store and mutate != "store-cache-anywhere":  # the kernel's order: the shard's tiles first
            cm, cu = R.randint(0, nMask), R.randint(0, n - nMask)
            cache = [i < cm or nMask <= i < nMask + cu for i in range(n)]
        else:
            cache = [R.random() < 0.4 for _ in range(n)]
        items.append((n, nMask, cache))
    rows = [R.randint(0, 40)]  # the fused store's rows left to claim
    issued = [0]  # the TMA lane's count of issued tiles (with the store)
    consumers_done = [0]
    bases = [sum(it[0] for it in items[:k]) for k in range(len(items))]
    KB, VB = 100, 100
    fullK = [Mbar("fullK%d" % i, 1 + 96) for i in range(S)]
    fullV = [Mbar("fullV%d" % i, 1 + 96) for i in range(S)]
    emptyK = [Mbar("emptyK%d" % i, 8) for i in range(S)]
    emptyV = [Mbar("emptyV%d" % i, 8) for i in range(S)]
    workFull = Mbar("workFull", 1)
    # counted in warps here; the kernel counts threads (emptyV 256, workEmpty 256 + 96), each
    # thread arriving after its own reads, so racecheck can follow the hand-off
    workEmpty = Mbar("workEmpty", 8 + 3)  # each consumer warp and copy warp
    turn = [Named(), Named()]
    tma = []  # in-flight copies: (bar, tile, bytes, slot, stage)
    data = {"K": [None] * S, "V": [None] * S, "P": [None] * S}  # the tile each stage holds
    # sg: the item whose descriptor (segments) it holds; Q[w]: the item of warpgroup w's Q rows
    st8 = {"sg": 0 if not persistent else None, "Q": [0, 0] if not persistent else [None, None]}

    def read(kind, st, i):
        assert data[kind][st] == i, (seed, kind, st, "holds", data[kind][st], "read by tile", i)

    def read_sg(k):
        assert st8["sg"] == k, (seed, "sg holds", st8["sg"], "read for item", k)

    def read_q(w, k):
        assert st8["Q"][w] == k, (seed, "Q of warpgroup", w, "holds", st8["Q"][w], "read for item", k)
    par = lambda i: ((i // S) - 1) & 1
    parity = lambda i: (i // S) & 1

    def wait(bar, p):
        while not bar.done(p):
            yield

    def bar_sync(b, threads=128):
        g = b.gen
        b.count += threads
        if b.count == 256:
            b.count, b.gen = 0, b.gen + 1
            return
        while b.gen == g:
            yield

    def bar_arrive(b, threads=128):
        b.count += threads
        if b.count == 256:
            b.count, b.gen = 0, b.gen + 1

    def tma_lane():  # warp 8: the descriptors (persistent form) and the TMA lane
        for k, (n, nMask, cache) in enumerate(items):
            if persistent:
                if k > 0 and mutate != "no-workEmpty-wait":
                    yield from wait(workEmpty, (k - 1) & 1)
                st8["sg"] = "writing"
                yield  # the tile search and the segments
                st8["sg"] = k
                workFull.arrive(k)
            for i in range(n):
                gi = bases[k] + i
                st = gi % S
                read_sg(k)
                if gi >= S:
                    yield from wait(emptyK[st], par(gi))
                plain = store and not cache[i] and i >= items[k][1]  # the TMA lane arrives for the copy threads
                if not cache[i]:
                    fullK[st].arrive(gi, 1, KB)
                    data["K"][st] = "writing"
                    tma.append((fullK[st], gi, KB, "K", st))
                    if plain:
                        fullK[st].arrive(gi, 96)
                else:
                    fullK[st].arrive(gi)
                if gi >= S:
                    yield from wait(emptyV[st], par(gi))
                if not cache[i]:
                    fullV[st].arrive(gi, 1, VB)
                    data["V"][st] = "writing"
                    tma.append((fullV[st], gi, VB, "V", st))
                    if plain:
                        fullV[st].arrive(gi, 96)
                else:
                    fullV[st].arrive(gi)
                if store:
                    issued[0] = gi + 1
                yield
        if persistent:  # no more work
            if mutate != "no-workEmpty-wait":
                yield from wait(workEmpty, (len(items) - 1) & 1)
            st8["sg"] = "done"
            workFull.arrive("done")

    def copy_warp():
        for k, (n, nMask, cache) in enumerate(items):
            if persistent:
                yield from wait(workFull, k & 1)
            for i in range(n):
                gi = bases[k] + i
                st = gi % S
                read_sg(k)
                if store and not cache[i] and i >= nMask:
                    continue  # the TMA lane's
                if gi >= S:
                    yield from wait(fullK[st], par(gi))
                    if cache[i]:
                        yield from wait(emptyK[st], par(gi))
                read_sg(k)
                if cache[i]:
                    data["K"][st] = "writing"
                    yield  # the copy
                    data["K"][st] = gi
                fullK[st].arrive(gi, 32)
                if gi >= S:
                    yield from wait(fullV[st], par(gi))
                    if cache[i] or i < nMask:
                        yield from wait(emptyV[st], par(gi))
                read_sg(k)
                if cache[i] or i < nMask:
                    if cache[i]:
                        data["V"][st] = "writing"
                    if i < nMask:
                        data["P"][st] = "writing"
                    yield  # the copy, the positions
                    if cache[i]:
                        data["V"][st] = gi
                    if i < nMask:
                        data["P"][st] = gi
                fullV[st].arrive(gi, 32)
            if persistent:
                workEmpty.arrive(k, 1)
            if store:  # rows while the TMA lane has tiles left to issue (the consumers never pass it)
                held, steps = 0, R.randint(1, 10)  # steps a row
                margin = (steps + 1) // 2 + 1 if mutate != "store-no-margin" else -(1 << 30)
                while True:
                    if held == 0:
                        if bases[k] + n - issued[0] < margin or rows[0] == 0:  # this item's end
                            break
                        assert consumers_done[0] < 2, (seed, "a row claimed after the consumers finished")
                        rows[0] -= 1
                        held = steps
                    held -= 1
                    yield  # a store step
        if persistent:
            yield from wait(workFull, len(items) & 1)
            read_sg("done")

    def consumer(w):
        def pass_turn(i, n):
            if w == 0 or i + 1 < n:
                bar_arrive(turn[1 - w])

        def next_item(k):  # the next descriptor, and this warpgroup's Q rows of it
            if not persistent:
                return
            yield from wait(workFull, (k + 1) & 1)
            nk = k + 1 if k + 1 < len(items) else "done"
            read_sg(nk)
            workEmpty.arrive(nk, 4)
            if w == 1 and nk != "done" and items[nk][0] > 0:
                bar_arrive(turn[0])  # the next item's opening turn, under this item's last P V
            if nk != "done":
                st8["Q"][w] = "writing"

        if persistent:
            yield from wait(workFull, 0)
            read_sg(0)
            workEmpty.arrive(0, 4)
            st8["Q"][w] = "writing"
        for k, (n, nMask, cache) in enumerate(items):
            b = bases[k]
            yield  # cp.async.wait_group 0 and the warpgroup's barrier: Q landed
            if persistent:
                st8["Q"][w] = k

            def step(i, masked):
                gi = b + i
                st = gi % S
                yield from bar_sync(turn[w])
                yield from wait(fullK[st], parity(gi))
                read("K", st, gi)
                read_q(w, k)
                pass_turn(i, n)
                yield  # S in flight
                read("K", st, gi)
                read_q(w, k)
                emptyK[st].arrive(gi, 4)
                if masked:
                    yield from wait(fullV[st], parity(gi))
                    read("P", st, gi)
                    yield  # softmax
                    read("P", st, gi)
                yield from wait(fullV[st], parity(gi))
                read("V", st, gi)
                yield  # P V
                read("V", st, gi)
                emptyV[st].arrive(gi, 4)

            if n == 0:
                yield from next_item(k)
                continue
            if w == 1 and (k == 0 or not persistent):
                bar_arrive(turn[0])
            if mutate == "turn-twice" and w == 1 and k > 0:
                bar_arrive(turn[0])
            i0 = 0
            while i0 + 1 < nMask:  # the masked tiles but the last: steps
                yield from step(i0, True)
                i0 += 1
            # the overlapped loop from tile i0 (the last masked one, if any)
            gi = b + i0
            st = gi % S
            yield from bar_sync(turn[w])
            yield from wait(fullK[st], parity(gi))
            read("K", st, gi)
            read_q(w, k)
            pass_turn(i0, n)
            yield
            read("K", st, gi)
            read_q(w, k)
            emptyK[st].arrive(gi, 4)
            if i0 < nMask:
                yield from wait(fullV[st], parity(gi))
                read("P", st, gi)
                yield  # softmax
                read("P", st, gi)
            for i in range(i0 + 1, n):
                if mutate == "early-next" and i == n - 1:
                    yield from next_item(k)
                gi = b + i
                st, sp = gi % S, (gi - 1) % S
                yield from bar_sync(turn[w])
                yield from wait(fullK[st], parity(gi))
                yield from wait(fullV[sp], parity(gi - 1))
                read("K", st, gi)
                read("V", sp, gi - 1)
                read_q(w, k)
                pass_turn(i, n)
                yield
                read("K", st, gi)
                read("V", sp, gi - 1)
                read_q(w, k)
                emptyK[st].arrive(gi, 4)
                yield  # the softmax of tile i under the P V of tile i - 1
                read("V", sp, gi - 1)
                emptyV[sp].arrive(gi - 1, 4)
            gl = b + n - 1
            sl = gl % S
            yield from wait(fullV[sl], parity(gl))
            read("V", sl, gl)
            if not (mutate == "early-next" and n - i0 > 1):
                yield from next_item(k)  # under the last P V
            yield
            read("V", sl, gl)
            emptyV[sl].arrive(gl, 4)
            yield  # the epilogue: O and the lse from registers
        consumers_done[0] += 1

    procs = [tma_lane(), copy_warp(), copy_warp(), copy_warp(), consumer(0), consumer(1)]
    live = list(range(len(procs)))
    steps = 0
    while live or tma:
        steps += 1
        assert steps < 200000, (seed, "no progress: deadlock", items, S)
        if tma and R.random() < 0.3:
            bar, tile, b, kind, st = tma.pop(R.randrange(len(tma)))
            data[kind][st] = tile
            bar.complete_tx(tile, b)
            continue
        if not live:
            continue
        k = R.choice(live)
        try:
            next(procs[k])
        except StopIteration:
            live.remove(k)
    for b in fullK + fullV + emptyK + emptyV:
        assert b.pending == b.count and b.tx == 0, (seed, b.name, "phase left open")
    if persistent:  # every descriptor but the last ("done") read by all 11 warps
        assert workFull.pending == workFull.count and workEmpty.pending == 3, (seed, "work phases")
    for t in turn:
        assert t.count == 0, (seed, "a named barrier left with arrivals")
    return sum(it[0] for it in items), len(items) if persistent else 0


if __name__ == "__main__":
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    if len(sys.argv) > 2:  # a mutation: some schedule must fail
        failed = 0
        for i in range(runs):
            try:
                run(i, sys.argv[2])
            except AssertionError:
                failed += 1
        print("mutation %s: %d of %d schedules fail" % (sys.argv[2], failed, runs))
        sys.exit(0 if failed else 1)
    res = [run(i) for i in range(runs)]
    tiles, items = sum(r[0] for r in res), sum(r[1] for r in res)
    print("prefill_sm90_lib barrier model: %d random schedules, %d tiles (%d items of the persistent form): "
          "no deadlock, phases clean, every read sees its own tile, descriptor and Q: ok" % (runs, tiles, items))
