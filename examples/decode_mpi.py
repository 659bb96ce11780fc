"""Two-rank (or W-rank) decode context parallelism from Python, on CPU ranks.

    mpirun -np 2 python3 examples/decode_mpi.py

Every rank holds an interleaved shard of the KV cache of each sequence (DESIGN.md §2) and its
own query heads; one plan.decode gathers the queries, attends to every shard and merges the
partials, exactly. The result is checked against attention over the whole sequence.
"""

import numpy as np
from mpi4py import MPI

import cpcl

mpi = MPI.COMM_WORLD
rank, W = mpi.Get_rank(), mpi.Get_size()
H, HKV, D, PAGE, I = 4, 1, 64, 16, 2  # query heads per rank, KV heads, head dim, page size, interleave
lens = [37, 300, 5]  # sequence lengths (this step's token included)
scale = D ** -0.5

# the same global data on every rank: all W*H query heads, the whole K/V of every sequence
rng = np.random.default_rng(0)
q_all = rng.standard_normal((len(lens), W * H, D)).astype(np.float32)
kv = [(rng.standard_normal((L, HKV, D)).astype(np.float32), rng.standard_normal((L, HKV, D)).astype(np.float32))
      for L in lens]

comm = cpcl.Comm.from_mpi(mpi, kv_interleave=I)  # dcp = all ranks: each rank keeps H of the W*H heads
plan = cpcl.AttnPlan(comm, H, HKV, D, D, PAGE, scale, "float32", "float32", max_tokens=len(lens))

# this rank's shard: the tokens it owns, paged; page ids from a block table
local = [cpcl.kv_local_len(L, W, rank, I) for L in lens]
pages = max(-(-n // PAGE) for n in local)
block_table = np.arange(len(lens) * pages, dtype=np.int32).reshape(len(lens), pages)
k_cache = np.zeros((len(lens) * pages, PAGE, HKV, D), np.float32)
v_cache = np.zeros_like(k_cache)
# cpcl's own store places each token where its owner keeps it: pass every token as a row
rows = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
plan.kv_store(np.concatenate([k for k, _ in kv]), np.concatenate([v for _, v in kv]), k_cache, v_cache,
              np.array(lens, np.int32), block_table, query_start=rows)

q = np.ascontiguousarray(q_all[:, rank * H:(rank + 1) * H])
out, lse = plan.decode(q, k_cache, v_cache, np.array(lens, np.int32), block_table)

# reference: this rank's heads over the whole sequence, fp64
err = 0.0
for s, (k, v) in enumerate(kv):
    for h in range(H):
        sc = k[:, 0].astype(np.float64) @ q[s, h] * scale
        w = np.exp(sc - sc.max())
        err = max(err, np.abs(w @ v[:, 0] / w.sum() - out[s, h]).max(),
                  abs(sc.max() + np.log(w.sum()) - lse[s, h]))
errs = mpi.gather(err)
if rank == 0:
    print(f"cpcl {cpcl.library_path}: {W} ranks, {len(lens)} sequences, max error vs fp64 {max(errs):.2e}")
    print("OK" if max(errs) < 1e-4 else "MISMATCH")
plan.destroy()
comm.destroy()
raise SystemExit(0 if max(mpi.allgather(err)) < 1e-4 else 1)
