#!/usr/bin/env python3
"""A model of the barrier protocol of variant 16 (kernels/cuda/mla_sm90_halves.cuh), run under
random schedules, to check by execution what docs/MLA_SM90.md "Session 4" argues by reading.

Processes: warpgroup 0 and warpgroup 1, each one sequence of the kernel's steps in order. There
is one process per warpgroup because every hand-off arrival of a warpgroup comes after all of its
threads' writes. The model also runs the tensor core, which completes each warpgroup's wgmma
groups in order at random later times, and the TMA boxes, which land at random later times.

mbarriers model phases, pending arrivals and transaction bytes; try_wait.parity(P) is true while
the current phase's parity differs from P (so a waiter two phases behind blocks, as on the
hardware), and every passing wait asserts that it passed the phase it meant. A full barrier's
phase must complete with every box of its refill landed. Shared data is versioned:
- each stage tile holds a block (or is being written by TMA);
- sP0, sP1, sM, sC0 and sC1 hold the pair (and value) of their last write.
A generic read must see the version it expects. A wgmma read must see it at issue, and nothing
may write the data until the read completes. A run must end with both warpgroups done (no
deadlock).

Run: python3 tools/kernel_bench/mla_sm90_halves_model.py [runs [mutation]]
Mutations (the checks must then fail on some schedule; exit status 0 when one does):
  no-p0-wait      WG1 issues P0 V0_R without waiting for [P0]
  early-v0r       WG1 refills V0_R before waiting for P0 V0_R
  no-scale1-wait  WG0 refills V0_L and reads c1 without waiting for [scale1]
  no-p1-wait      WG0 issues P1 V1_L without waiting for [P1]
  early-v1l       WG0 refills V1_L right after issuing P1 V1_L (before its wait)
  s1-in-order     harmless: WG1's S1' over tiles 0-8 (must pass: order is speed, not safety)
"""
import random
import sys

TILES, HALF_L = 9, 4


class Fail(Exception):
    pass


def check(cond, *msg):
    if not cond:
        raise Fail(" ".join(str(m) for m in msg))


class Mbar:
    def __init__(self, name, count):
        self.name, self.count, self.phase, self.pending, self.tx = name, count, 0, count, 0
        self.on_complete = None

    def _maybe_complete(self):
        if self.pending == 0 and self.tx == 0:
            if self.on_complete:
                self.on_complete()
            self.phase += 1
            self.pending, self.on_complete = self.count, None

    def arrive(self, tx=0):
        self.pending -= 1
        self.tx += tx
        check(self.pending >= 0, self.name, "more arrivals than its count")
        self._maybe_complete()

    def complete_tx(self, tx):
        self.tx -= tx
        self._maybe_complete()

    def passed(self, n):
        """try_wait.parity(n & 1) for phase n; a passing wait must be at phase n exactly."""
        ok = (self.phase & 1) != (n & 1)
        if ok:
            check(self.phase == n + 1, self.name, "waited for phase", n, "but it is at", self.phase)
        return ok


class Model:
    def __init__(self, rng, mutation):
        self.rng, self.mut = rng, mutation
        self.nb = rng.randint(1, 9)
        self.pg = rng.choice([8, 16, 32, 64, 128])
        self.last_valid = rng.randint(1, 64)
        self.slots = 1 if self.pg >= 64 else 64 // self.pg
        self.full = [[Mbar("full[%d][%d]" % (st, c), self.slots) for c in range(TILES)] for st in range(2)]
        self.hand = {h: Mbar(h, 1) for h in ("scale0", "scale1", "P0", "P1")}
        self.tile = [[None] * TILES for _ in range(2)]   # block held, or ("loading", b)
        self.readers = [[0] * TILES for _ in range(2)]   # wgmma reads in flight
        self.buf = {"sP0": None, "sP1": None, "sM": ("init",), "sC0": None, "sC1": None}
        self.buf_readers = {k: 0 for k in self.buf}
        self.groups = {0: [], 1: []}                     # pending wgmma groups, oldest first
        self.boxes = []                                  # TMA boxes in flight
        self.landed = {}                                 # (st, c) -> boxes landed of the refill

    def valid(self, b):
        return self.last_valid if b == self.nb - 1 else 64

    def np(self, b):
        return 1 if self.pg >= 64 else (self.valid(b) + self.pg - 1) // self.pg

    # ---- data ----
    def write(self, name, version):
        check(self.buf_readers[name] == 0, name, "written while a wgmma reads it")
        self.buf[name] = version

    def read(self, name, version):
        check(self.buf[name] == version, name, "read", version, "but holds", self.buf[name])

    def refill(self, st, tiles, b):
        """issueHalf: per tile, a page-slot arrival (with its box's bytes) then the box"""
        for c in tiles:
            check(self.readers[st][c] == 0, "refill of stage", st, "tile", c, "while a wgmma reads it")
            check(not isinstance(self.tile[st][c], tuple), "refill of stage", st, "tile", c, "before its last one landed")
            self.tile[st][c] = ("loading", b)
            self.landed[(st, c)] = 0
            npb = self.np(b)

            def done(st=st, c=c, b=b, npb=npb):
                check(self.landed[(st, c)] == npb, "full", st, c, "completed with", self.landed[(st, c)], "of", npb)
                self.tile[st][c] = b
            self.full[st][c].on_complete = done
            for slot in range(self.slots):
                if slot < npb:
                    self.full[st][c].arrive(tx=1)
                    self.boxes.append((st, c))
                else:
                    self.full[st][c].arrive()

    def landed_as(self, st, c, b):
        check(self.tile[st][c] == b, "stage", st, "tile", c, "holds", self.tile[st][c], "not block", b)

    def zero(self, st, tiles, b):
        for c in tiles:
            self.landed_as(st, c, b)
            check(self.readers[st][c] == 0, "zeroTail of", st, c, "while a wgmma reads it")

    # ---- wgmma ----
    def issue(self, w, tiles, bufs, open_=False):
        """a commit group reading stage tiles [(st, c, b)] and buffers [(name, version)]; an open
        group (S, tile by tile) gets more reads until it is committed"""
        g = {"tiles": [], "bufs": [], "open": open_}
        self.groups[w].append(g)
        self.add_reads(g, tiles, bufs)
        return g

    def add_reads(self, g, tiles, bufs):
        for st, c, b in tiles:
            self.landed_as(st, c, b)
            self.readers[st][c] += 1
        for name, version in bufs:
            self.read(name, version)
            self.buf_readers[name] += 1
        g["tiles"] += tiles
        g["bufs"] += bufs

    def complete_group(self, w):
        g = self.groups[w].pop(0)
        for st, c, b in g["tiles"]:
            self.landed_as(st, c, b)  # nothing overwrote it during the read
            self.readers[st][c] -= 1
        for name, version in g["bufs"]:
            self.read(name, version)
            self.buf_readers[name] -= 1

    # ---- the warpgroups (generators: yield a predicate to block on it) ----
    def wait_group(self, w, n):
        while len(self.groups[w]) > n:
            yield lambda: len(self.groups[w]) <= n

    def wait_mbar(self, bar, n):
        while not bar.passed(n):
            yield lambda: bar.passed(n)

    def s_tiles(self, w, st, b, order):
        """S of block b over the tiles in order: each waited for on its own barrier and read from
        then on (its wgmmas are issued), one commit group at the end"""
        g = self.issue(w, [], [], open_=True)
        for c in order:
            yield from self.wait_mbar(self.full[st][c], b >> 1)
            self.add_reads(g, [(st, c, b)], [])
        g["open"] = False

    def wg0(self):
        nb = self.nb
        if nb > 0:
            self.refill(0, range(HALF_L), 0)
        if nb > 1:
            self.refill(1, range(HALF_L), 1)
        yield from self.barrier_all(0)
        if nb > 0:
            yield from self.s_tiles(0, 0, 0, range(TILES))
            yield from self.wait_group(0, 0)
        for j in range((nb + 1) // 2):
            has1, has2, has3 = 2 * j + 1 < nb, 2 * j + 2 < nb, 2 * j + 3 < nb
            b0, b1 = 2 * j, 2 * j + 1
            self.read("sM", ("init",) if j == 0 else ("m1", j - 1))
            self.write("sM", ("m0", j))
            self.write("sC0", j)
            self.hand["scale0"].arrive()
            yield
            if not has1 and self.valid(b0) < 64:
                self.zero(0, range(HALF_L), b0)
            self.issue(0, [(0, c, b0) for c in range(HALF_L)], [])  # P0 V0_L, P from registers
            yield from self.wait_group(0, 0)
            if self.mut != "no-scale1-wait":
                yield from self.wait_mbar(self.hand["scale1"], j)
            if has2:
                self.refill(0, range(HALF_L), b0 + 2)
            self.read("sC1", j)
            self.write("sP0", j)
            self.hand["P0"].arrive()
            yield
            if has1:
                if self.mut != "no-p1-wait":
                    yield from self.wait_mbar(self.hand["P1"], j)
                for c in range(HALF_L):
                    yield from self.wait_mbar(self.full[1][c], j)
                if not has2 and self.valid(b1) < 64:
                    self.zero(1, range(HALF_L), b1)
                self.issue(0, [(1, c, b1) for c in range(HALF_L)], [("sP1", j)])  # P1 V1_L
                if self.mut == "early-v1l" and has3:
                    self.refill(1, range(HALF_L), b1 + 2)
            if has2:
                yield from self.s_tiles(0, 0, b0 + 2, range(HALF_L))
            if has1:
                yield from self.wait_group(0, 1 if has2 else 0)
                if has3 and self.mut != "early-v1l":
                    self.refill(1, range(HALF_L), b1 + 2)
            if has2:
                yield from self.s_tiles(0, 0, b0 + 2, range(HALF_L, TILES))
                yield from self.wait_group(0, 0)
        yield from self.barrier_all(1)
        last = (nb + 1) // 2 - 1
        self.read("sM", ("init",) if nb == 0 else ("m1", last) if nb % 2 == 0 else ("m0", last))

    def wg1(self):
        nb = self.nb
        if nb > 0:
            self.refill(0, range(HALF_L, TILES), 0)
        if nb > 1:
            self.refill(1, range(HALF_L, TILES), 1)
        yield from self.barrier_all(0)
        order1 = list(range(TILES)) if self.mut == "s1-in-order" else list(range(HALF_L, TILES)) + list(range(HALF_L))
        if nb > 1:
            yield from self.s_tiles(1, 1, 1, order1)
            yield from self.wait_group(1, 0)
        for j in range((nb + 1) // 2):
            has1, has2, has3 = 2 * j + 1 < nb, 2 * j + 2 < nb, 2 * j + 3 < nb
            b0, b1 = 2 * j, 2 * j + 1
            yield from self.wait_mbar(self.hand["scale0"], j)
            self.read("sC0", j)
            self.read("sM", ("m0", j))
            if has1:
                self.write("sM", ("m1", j))
            self.write("sC1", j)
            self.hand["scale1"].arrive()
            yield
            if has1:
                self.write("sP1", j)
                if not has2 and self.valid(b1) < 64:
                    self.zero(1, range(HALF_L, HALF_L + 4), b1)
                self.issue(1, [(1, c, b1) for c in range(HALF_L, HALF_L + 4)], [])  # P1 V1_R
            if self.mut != "no-p0-wait":
                yield from self.wait_mbar(self.hand["P0"], j)
            for c in range(HALF_L, HALF_L + 4):
                yield from self.wait_mbar(self.full[0][c], j)
            if not has1 and self.valid(b0) < 64:
                self.zero(0, range(HALF_L, HALF_L + 4), b0)
            if self.mut == "early-v0r" and has2:
                self.refill(0, range(HALF_L, TILES), b0 + 2)
            self.issue(1, [(0, c, b0) for c in range(HALF_L, HALF_L + 4)], [("sP0", j)])  # P0 V0_R
            if has1:
                self.hand["P1"].arrive()
                yield
                yield from self.wait_group(1, 1)
                if has3:
                    self.refill(1, range(HALF_L, TILES), b1 + 2)
            yield from self.wait_group(1, 0)
            if has2 and self.mut != "early-v0r":
                self.refill(0, range(HALF_L, TILES), b0 + 2)
            if has3:
                yield from self.s_tiles(1, 1, b1 + 2, order1)
                yield from self.wait_group(1, 0)
        yield from self.barrier_all(1)

    def barrier_all(self, k):
        """bar.sync 1, 256 (the Q / q8 barriers at the start, the sums at the end)"""
        self.arrived[k] += 1
        while self.arrived[k] < 2:
            yield lambda: self.arrived[k] >= 2

    def run(self):
        self.arrived = [0, 0]
        procs = {0: self.wg0(), 1: self.wg1()}
        blocked = {0: None, 1: None}
        done = set()
        for _ in range(200000):
            choices = [w for w in procs if w not in done and (blocked[w] is None or blocked[w]())]
            choices += ["tc%d" % w for w in (0, 1) if self.groups[w] and not self.groups[w][0]["open"]]
            choices += ["tma"] if self.boxes else []
            if not choices:
                break
            c = self.rng.choice(choices)
            if c == "tma":
                st, t = self.boxes.pop(self.rng.randrange(len(self.boxes)))
                self.landed[(st, t)] += 1
                self.full[st][t].complete_tx(1)
            elif isinstance(c, str):
                self.complete_group(int(c[2]))
            else:
                try:
                    blocked[c] = next(procs[c])
                except StopIteration:
                    done.add(c)
        check(done == {0, 1}, "deadlock: done", sorted(done), "nb", self.nb)
        check(not self.boxes and not self.groups[0] and not self.groups[1], "work left at the end")


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    mutation = sys.argv[2] if len(sys.argv) > 2 else None
    failures = 0
    for r in range(runs):
        m = Model(random.Random(r), mutation)
        try:
            m.run()
        except Fail as e:
            failures += 1
            if failures <= 3:
                print("run %d (blocks %d, page %d, last %d): %s" % (r, m.nb, m.pg, m.last_valid, e))
    print("%d runs, %d failed%s" % (runs, failures, " (mutation %s)" % mutation if mutation else ""))
    if mutation and mutation != "s1-in-order":
        return 0 if failures else 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
