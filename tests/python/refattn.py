"""fp64 attention on the whole, unsharded sequence, and the helpers the Python tests share:
synthetic KV shards laid out by DESIGN.md §2 independently of cpcl, dtype conversions, and a
tiny lock-step test runner for mpirun."""

import math
import sys
import traceback

import numpy as np

LOG2E = 1.4426950408889634


def owner(p, W, I):
    return (p // I) % W


def local_index(p, W, I):
    return (p // (W * I)) * I + p % I


def local_len(L, W, r, I):
    return (L // (W * I)) * I + min(max(L % (W * I) - r * I, 0), I)


def to_bf16_bits(x):
    """fp32 -> bfloat16 bit patterns (uint16), round to nearest even."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return r


def from_bf16_bits(b):
    return (b.astype(np.uint32) << 16).view(np.float32)


def cast(x, dtype):
    """(array in dtype for cpcl, the same values in fp64 for the reference)."""
    if dtype == "float32":
        a = x.astype(np.float32)
        return a, a.astype(np.float64)
    if dtype == "float16":
        a = x.astype(np.float16)
        return a, a.astype(np.float64)
    if dtype == "bfloat16":
        a = to_bf16_bits(x)
        return a, from_bf16_bits(a).astype(np.float64)
    if dtype == "ml_bfloat16":
        import ml_dtypes
        a = x.astype(np.float32).astype(ml_dtypes.bfloat16)
        return a, a.astype(np.float64)
    raise ValueError(dtype)


def to_f64(a, dtype):
    if dtype == "bfloat16":
        return from_bf16_bits(a).astype(np.float64)
    return a.astype(np.float64)


def build_shard(W, I, rank, page, K, V, page_lens, fill_lens, dims, fill_nan=True, shuffle_seed=1234):
    """Rank `rank`'s paged K/V caches (V None for MLA) and block table, laid out by DESIGN.md §2
    independently of cpcl: pages for page_lens[s] tokens per sequence, in a shuffled order,
    holding the owned tokens of positions < fill_lens[s]; unused slots NaN (or 0)."""
    Hkv, Dqk, Dvo = dims
    S = len(page_lens)
    lens = [local_len(L, W, rank, I) for L in page_lens]
    pps = max([1] + [-(-n // page) for n in lens])
    num_pages = S * pps + 2
    rng = np.random.default_rng(shuffle_seed + rank)
    bt = rng.permutation(num_pages)[:S * pps].astype(np.int32).reshape(S, pps)
    kdt = K[0].dtype if S else np.float32
    nan = {np.dtype(np.uint16): 0x7FC0}.get(np.dtype(kdt), np.nan)
    kc = np.full((num_pages, page, Hkv, Dqk), nan if fill_nan else 0, dtype=kdt)
    vc = None if V[0] is None else np.full((num_pages, page, Hkv, Dvo), nan if fill_nan else 0, dtype=kdt)
    for s, L in enumerate(fill_lens):
        for p in range(L):
            if owner(p, W, I) != rank:
                continue
            li = local_index(p, W, I)
            pg, sl = bt[s, li // page], li % page
            kc[pg, sl] = K[s][p]
            if vc is not None:
                vc[pg, sl] = V[s][p]
    return kc, vc, bt


class Case:
    """One batch: S sequences of lengths seq_lens, rows[s] query rows each, heads and dims, on a
    group of W = pcp x dcp ranks with interleave I. Global data is drawn from `seed`, so every
    rank builds the same; each rank then lays out its own shard."""

    def __init__(self, W, dcp, I, seq_lens, rows, H, Hkv, Dqk, Dvo, page, dtype, seed, latent=False,
                 base2=False):
        self.W, self.dcp, self.I = W, dcp, I
        self.seq_lens, self.rows = list(seq_lens), list(rows)
        self.H, self.Hkv, self.Dqk, self.Dvo, self.page = H, Hkv, Dqk, Dvo, page
        self.dtype, self.latent, self.base2 = dtype, latent, base2
        self.scale = 1.0 / math.sqrt(Dqk)
        rng = np.random.default_rng(seed)
        S = len(seq_lens)
        self.T = sum(rows)
        self.query_start = np.concatenate([[0], np.cumsum(rows)]).astype(np.int32)
        self.K, self.V, self.Kf, self.Vf = [], [], [], []
        for L in seq_lens:
            k, kf = cast(rng.standard_normal((L, Hkv, Dqk)), dtype)
            self.K.append(k)
            self.Kf.append(kf)
            if latent:
                self.V.append(None)
                self.Vf.append(kf[:, :, :Dvo])
            else:
                v, vf = cast(rng.standard_normal((L, Hkv, Dvo)), dtype)
                self.V.append(v)
                self.Vf.append(vf)
        self.Q, self.Qf = cast(rng.standard_normal((self.T, dcp * H, Dqk)), dtype)
        self.S = S

    def positions(self):
        """(sequence, global position) of every query row."""
        out = []
        for s in range(self.S):
            n = self.rows[s]
            for j in range(n):
                out.append((s, self.seq_lens[s] - n + j))
        return out

    def q_of(self, rank):
        d = rank % self.dcp
        return np.ascontiguousarray(self.Q[:, d * self.H:(d + 1) * self.H])

    def shard(self, rank, fill_nan=True, shuffle_seed=1234):
        """This rank's paged caches and block table (pages shuffled; unused slots NaN)."""
        return build_shard(self.W, self.I, rank, self.page, self.K, self.V, self.seq_lens, self.seq_lens,
                           (self.Hkv, self.Dqk, self.Dvo), fill_nan, shuffle_seed)

    def reference(self, only_rank=None, topk_indices=None):
        """fp64 (out [T, dcp*H, Dvo], lse [T, dcp*H]) over all keys <= each row's position, or only
        the keys `only_rank` owns (its partial state). lse in the plan's base. With topk_indices
        [T, K] (sparse attention, DESIGN.md §4.3): only the listed positions in 0 .. the row's
        own, each entry as listed (a duplicate counts twice)."""
        G = self.dcp * self.H // self.Hkv
        out = np.zeros((self.T, self.dcp * self.H, self.Dvo))
        lse = np.full((self.T, self.dcp * self.H), -np.inf)
        for t, (s, p) in enumerate(self.positions()):
            keys = np.arange(p + 1)
            if topk_indices is not None:
                keys = np.array([int(x) for x in topk_indices[t] if 0 <= x <= p], dtype=np.int64)
            if only_rank is not None:
                keys = keys[[owner(int(x), self.W, self.I) == only_rank for x in keys]]
            if len(keys) == 0:
                continue
            for g in range(self.dcp * self.H):
                kv = g // G
                sc = self.Kf[s][keys, kv] @ self.Qf[t, g] * self.scale
                m = sc.max()
                w = np.exp(sc - m)
                out[t, g] = w @ self.Vf[s][keys, kv] / w.sum()
                lse[t, g] = m + math.log(w.sum())
        if self.base2:
            lse = lse * LOG2E
        return out, lse

    def heads_of(self, arr, rank):
        d = rank % self.dcp
        return arr[:, d * self.H:(d + 1) * self.H]


def tol(dtype):
    return {"float32": 2e-5, "float16": 3e-3, "bfloat16": 2.5e-2, "ml_bfloat16": 2.5e-2}[dtype]


def assert_close(got, want, atol, what):
    got = np.asarray(got, dtype=np.float64)
    both_inf = np.isneginf(got) & np.isneginf(want)
    with np.errstate(invalid="ignore"):
        err = np.where(both_inf, 0.0, np.abs(got - want))
    if not np.all(np.isfinite(err)) or err.max(initial=0.0) > atol:
        bad = np.argwhere(~(err <= atol))[:3]
        raise AssertionError(f"{what}: max error {np.nanmax(np.where(np.isfinite(err), err, np.inf))} > {atol}; "
                             f"first bad {[(tuple(i), float(got[tuple(i)]), float(want[tuple(i)])) for i in bad]}")


class Skip(Exception):
    """Raised by a test that cannot run here (said so, and counted as skipped)."""


class PrefillCase:
    """A prefill batch (DESIGN.md §4.2): sequence s has context_lens[s] cached tokens (sharded
    over all W ranks) and new_lens[s] new ones, split over the PCP axis head-tail. Every rank
    builds the same global data from `seed`."""

    def __init__(self, W, dcp, I, context_lens, new_lens, H, Hkv, Dqk, Dvo, page, dtype, seed, latent=False):
        self.W, self.dcp, self.P, self.I = W, dcp, W // dcp, I
        self.ctx, self.new = list(context_lens), list(new_lens)
        self.H, self.Hkv, self.Dqk, self.Dvo, self.page, self.dtype, self.latent = H, Hkv, Dqk, Dvo, page, dtype, latent
        self.scale = 1.0 / math.sqrt(Dqk)
        rng = np.random.default_rng(seed)
        self.S = len(context_lens)
        self.K, self.Kf, self.V, self.Vf, self.Q, self.Qf = [], [], [], [], [], []
        for c, n in zip(context_lens, new_lens):
            k, kf = cast(rng.standard_normal((c + n, Hkv, Dqk)), dtype)
            self.K.append(k)
            self.Kf.append(kf)
            if latent:
                self.V.append(None)
                self.Vf.append(kf[:, :, :Dvo])
            else:
                v, vf = cast(rng.standard_normal((c + n, Hkv, Dvo)), dtype)
                self.V.append(v)
                self.Vf.append(vf)
            q, qf = cast(rng.standard_normal((n, dcp * H, Dqk)), dtype)
            self.Q.append(q)
            self.Qf.append(qf)

    def chunks(self, n, pcp_rank):
        c = -(-n // (2 * self.P))
        out = []
        for i in (pcp_rank, 2 * self.P - 1 - pcp_rank):
            a, b = min(i * c, n), min((i + 1) * c, n)
            out.append((a, b - a))
        return out

    def rows_of(self, rank):
        """[(s, index within the new tokens)] of this rank's rows, and query_start."""
        rows, qs = [], [0]
        for s in range(self.S):
            for a, n in self.chunks(self.new[s], rank // self.dcp):
                rows += [(s, a + j) for j in range(n)]
            qs.append(len(rows))
        return rows, np.array(qs, np.int32)

    def inputs(self, rank):
        rows, qs = self.rows_of(rank)
        d = rank % self.dcp
        pick = lambda arrs, off: np.stack([arrs[s][off(s) + i] for s, i in rows]) if rows else None  # noqa: E731
        q = pick(self.Q, lambda s: 0)
        q = q[:, d * self.H:(d + 1) * self.H] if rows else np.zeros((0, self.H, self.Dqk), self.Q[0].dtype)
        kn = pick(self.K, lambda s: self.ctx[s]) if rows else np.zeros((0, self.Hkv, self.Dqk), self.K[0].dtype)
        vn = None if self.latent else (pick(self.V, lambda s: self.ctx[s]) if rows else
                                       np.zeros((0, self.Hkv, self.Dvo), self.K[0].dtype))
        return np.ascontiguousarray(q), np.ascontiguousarray(kn), (None if vn is None else np.ascontiguousarray(vn)), qs

    def cache(self, rank, with_new, fill_nan=False):
        """This rank's paged cache with the context only, or (with_new) the whole sequences."""
        lens = [c + n for c, n in zip(self.ctx, self.new)]
        return build_shard(self.W, self.I, rank, self.page, self.K, self.V, lens, lens if with_new else self.ctx,
                           (self.Hkv, self.Dqk, self.Dvo), fill_nan)

    def reference(self, rank):
        rows, _ = self.rows_of(rank)
        d = rank % self.dcp
        G = self.dcp * self.H // self.Hkv
        out = np.zeros((len(rows), self.H, self.Dvo))
        lse = np.zeros((len(rows), self.H))
        for t, (s, i) in enumerate(rows):
            p = self.ctx[s] + i
            for h in range(self.H):
                g = d * self.H + h
                sc = self.Kf[s][:p + 1, g // G] @ self.Qf[s][i, g] * self.scale
                m = sc.max()
                w = np.exp(sc - m)
                out[t, h] = w @ self.Vf[s][:p + 1, g // G] / w.sum()
                lse[t, h] = m + math.log(w.sum())
        return out, lse


class Runner:
    """Runs test functions in the same order on every rank; a failure on any rank fails the test
    everywhere. Rank 0 prints one line per test and 'N passed, N failed'."""

    def __init__(self, allgather, rank, size):
        """allgather(obj) -> list of every rank's obj (mpi4py's comm.allgather, or
        torch.distributed.all_gather_object wrapped)."""
        self.allgather, self.rank, self.size = allgather, rank, size
        self.tests = []

    def test(self, fn):
        self.tests.append(fn)
        return fn

    def run(self, only=None):
        passed = failed = skipped = 0
        for fn in self.tests:
            if only and fn.__name__ not in only:
                continue
            err = None
            try:
                fn()
            except Skip as e:
                err = f"SKIP {e}"
            except Exception:
                err = traceback.format_exc()
            errs = self.allgather(err)
            if all(e and e.startswith("SKIP ") for e in errs):
                skipped += 1
                if self.rank == 0:
                    print(f"skip {fn.__name__}: {errs[0][5:]}", flush=True)
            elif any(errs):
                failed += 1
                if self.rank == 0:
                    print(f"FAIL {fn.__name__} (W={self.size})", flush=True)
                    for r, e in enumerate(errs):
                        if e:
                            print(f"  rank {r}:\n{e}", flush=True)
            else:
                passed += 1
                if self.rank == 0:
                    print(f"ok   {fn.__name__}", flush=True)
        if self.rank == 0:
            print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""), flush=True)
        return 1 if failed else 0


def main_exit(code):
    sys.stdout.flush()
    sys.exit(code)
