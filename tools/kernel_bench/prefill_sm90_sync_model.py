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
Run: python3 tools/kernel_bench/prefill_sm90_sync_model.py [runs]
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


def run(seed):
    R = random.Random(seed)
    S = R.choice([2, 3])
    n = R.randint(0, 9)
    nMask = R.randint(0, n)
    cache = [R.random() < 0.4 for _ in range(n)]
    KB, VB = 100, 100
    fullK = [Mbar("fullK%d" % i, 1 + 96) for i in range(S)]
    fullV = [Mbar("fullV%d" % i, 1 + 96) for i in range(S)]
    emptyK = [Mbar("emptyK%d" % i, 8) for i in range(S)]
    emptyV = [Mbar("emptyV%d" % i, 8) for i in range(S)]
    turn = [Named(), Named()]
    tma = []  # in-flight copies: (bar, tile, bytes, slot, stage)
    data = {"K": [None] * S, "V": [None] * S, "P": [None] * S}  # the tile each stage holds

    def read(kind, st, i):
        assert data[kind][st] == i, (seed, kind, st, "holds", data[kind][st], "read by tile", i)
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

    def tma_lane():
        for i in range(n):
            st = i % S
            if i >= S:
                yield from wait(emptyK[st], par(i))
            if not cache[i]:
                fullK[st].arrive(i, 1, KB)
                data["K"][st] = "writing"
                tma.append((fullK[st], i, KB, "K", st))
            else:
                fullK[st].arrive(i)
            if i >= S:
                yield from wait(emptyV[st], par(i))
            if not cache[i]:
                fullV[st].arrive(i, 1, VB)
                data["V"][st] = "writing"
                tma.append((fullV[st], i, VB, "V", st))
            else:
                fullV[st].arrive(i)
            yield

    def copy_warp():
        for i in range(n):
            st = i % S
            if i >= S:
                yield from wait(fullK[st], par(i))
                if cache[i]:
                    yield from wait(emptyK[st], par(i))
            if cache[i]:
                data["K"][st] = "writing"
                yield  # the copy
                data["K"][st] = i
            fullK[st].arrive(i, 32)
            if i >= S:
                yield from wait(fullV[st], par(i))
                if cache[i] or i < nMask:
                    yield from wait(emptyV[st], par(i))
            if cache[i] or i < nMask:
                if cache[i]:
                    data["V"][st] = "writing"
                if i < nMask:
                    data["P"][st] = "writing"
                yield  # the copy, the positions
                if cache[i]:
                    data["V"][st] = i
                if i < nMask:
                    data["P"][st] = i
            fullV[st].arrive(i, 32)

    def consumer(w):
        def pass_turn(i):
            if w == 0 or i + 1 < n:
                bar_arrive(turn[1 - w])

        def step(i, masked):
            st = i % S
            yield from bar_sync(turn[w])
            yield from wait(fullK[st], parity(i))
            read("K", st, i)
            pass_turn(i)
            yield  # S in flight
            read("K", st, i)
            emptyK[st].arrive(i, 4)
            if masked:
                yield from wait(fullV[st], parity(i))
                read("P", st, i)
                yield  # softmax
                read("P", st, i)
            yield from wait(fullV[st], parity(i))
            read("V", st, i)
            yield  # P V
            read("V", st, i)
            emptyV[st].arrive(i, 4)

        if n == 0:
            return
        if w == 1:
            bar_arrive(turn[0])
        i0 = 0
        while i0 + 1 < nMask:  # the masked tiles but the last: steps
            yield from step(i0, True)
            i0 += 1
        if i0 < n:  # the overlapped loop from tile i0 (the last masked one, if any)
            st = i0 % S
            yield from bar_sync(turn[w])
            yield from wait(fullK[st], parity(i0))
            read("K", st, i0)
            pass_turn(i0)
            yield
            read("K", st, i0)
            emptyK[st].arrive(i0, 4)
            if i0 < nMask:
                yield from wait(fullV[st], parity(i0))
                read("P", st, i0)
                yield  # softmax
                read("P", st, i0)
            for i in range(i0 + 1, n):
                st, sp = i % S, (i - 1) % S
                yield from bar_sync(turn[w])
                yield from wait(fullK[st], parity(i))
                yield from wait(fullV[sp], parity(i - 1))
                read("K", st, i)
                read("V", sp, i - 1)
                pass_turn(i)
                yield
                read("K", st, i)
                read("V", sp, i - 1)
                emptyK[st].arrive(i, 4)
                yield  # the softmax of tile i under the P V of tile i - 1
                read("V", sp, i - 1)
                emptyV[sp].arrive(i - 1, 4)
            sl = (n - 1) % S
            yield from wait(fullV[sl], parity(n - 1))
            read("V", sl, n - 1)
            yield
            read("V", sl, n - 1)
            emptyV[sl].arrive(n - 1, 4)

    procs = [tma_lane(), copy_warp(), copy_warp(), copy_warp(), consumer(0), consumer(1)]
    live = list(range(len(procs)))
    steps = 0
    while live or tma:
        steps += 1
        assert steps < 200000, (seed, "no progress: deadlock", n, nMask, cache, S)
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
    for t in turn:
        assert t.count == 0, (seed, "a named barrier left with arrivals")
    return n


if __name__ == "__main__":
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    tiles = sum(run(i) for i in range(runs))
    print("prefill_sm90_lib barrier model: %d random schedules, %d tiles: no deadlock, phases clean: ok" % (runs, tiles))
