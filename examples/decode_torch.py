"""Decode context parallelism from torch: each rank one GPU, torch tensors, the step captured in
a CUDA graph and replayed with new contents.

    mpirun -np 2 python3 examples/decode_torch.py          (or: torchrun --nproc-per-node 2 ...)
    mpirun -np 2 python3 examples/decode_torch.py --cpu    (host tensors, no GPU)

The cpcl communicator is bootstrapped through torch.distributed (a gloo group); the per-step
calls are torch.ops.cpcl.* custom ops on torch's current stream. Checked against attention over
the whole sequence in fp32.
"""

import os
import sys

import torch
import torch.distributed as dist

import cpcl

rank = int(os.environ.get("RANK", os.environ.get("OMPI_COMM_WORLD_RANK", 0)))
world = int(os.environ.get("WORLD_SIZE", os.environ.get("OMPI_COMM_WORLD_SIZE", 1)))
os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
os.environ.setdefault("MASTER_PORT", "29517")
dist.init_process_group("gloo", rank=rank, world_size=world)
cuda = torch.cuda.is_available() and "--cpu" not in sys.argv
if cuda:
    torch.cuda.set_device(rank % torch.cuda.device_count())
dev = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")

H, HKV, D, PAGE = 8, 1, 128, 16  # query heads per rank (world*H gathered), KV heads, head dim, page
B, MAXLEN = 4, 4096
dt = torch.bfloat16
comm = cpcl.Comm.from_torch(None, mem="cuda" if cuda else "host")  # dcp = every rank
plan = cpcl.AttnPlan(comm, H, HKV, D, D, PAGE, D ** -0.5, dt, dt, max_tokens=B)

pages = -(-cpcl.kv_local_len(MAXLEN, world, rank, 1) // PAGE)
k_cache = torch.zeros(B * pages, PAGE, HKV, D, dtype=dt, device=dev)
v_cache = torch.zeros_like(k_cache)
block_table = torch.arange(B * pages, dtype=torch.int32, device=dev).view(B, pages)
q = torch.empty(B, H, D, dtype=dt, device=dev)
seq_lens = torch.empty(B, dtype=torch.int32, device=dev)
out = torch.empty(B, H, D, dtype=dt, device=dev)
lse = torch.empty(B, H, dtype=torch.float32, device=dev)


def new_step(seed):
    """The same global batch on every rank (seeded); each rank stores the tokens it owns and
    keeps its own query heads. Returns the full K/V and queries for the reference."""
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(1, MAXLEN + 1, (B,), generator=g)
    ks = [torch.randn(int(L), HKV, D, generator=g).to(dt) for L in lens]
    vs = [torch.randn(int(L), HKV, D, generator=g).to(dt) for L in lens]
    q_all = torch.randn(B, world * H, D, generator=g).to(dt)
    rows = torch.cat([torch.zeros(1, dtype=torch.int64), lens.cumsum(0)]).to(torch.int32)
    plan.kv_store(torch.cat(ks).to(dev), torch.cat(vs).to(dev), k_cache, v_cache, lens.to(torch.int32).to(dev),
                  block_table, query_start=rows.to(dev))
    q.copy_(q_all[:, rank * H:(rank + 1) * H])
    seq_lens.copy_(lens)
    return ks, vs, q_all


def check(ks, vs, q_all):
    err = 0.0
    for s in range(B):
        qs = q_all[s, rank * H:(rank + 1) * H].float().to(dev)                  # [H, D]
        sc = (ks[s][:, 0].float().to(dev) @ qs.T) * D ** -0.5                     # [L, H]
        ref = torch.softmax(sc, 0).T @ vs[s][:, 0].float().to(dev)              # [H, D]
        err = max(err, (out[s].float() - ref).abs().max().item(),
                  (lse[s] - torch.logsumexp(sc, 0)).abs().max().item())
    return err


data = new_step(1)
plan.decode(q, k_cache, v_cache, seq_lens, block_table, out=out, lse=lse)  # eager (and warm-up)
errs = [check(*data)]
if cuda:
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        plan.decode(q, k_cache, v_cache, seq_lens, block_table, out=out, lse=lse)
    for seed in (2, 3):
        data = new_step(seed)  # new contents in the captured buffers
        graph.replay()
        torch.cuda.synchronize()
        errs.append(check(*data))
    del graph
    torch.cuda.synchronize()
errs = torch.tensor(errs)
dist.all_reduce(errs, op=dist.ReduceOp.MAX)
if rank == 0:
    print(f"cpcl on {world} ranks, {dev.type}, bf16: max error vs fp32 per step {[round(e, 4) for e in errs.tolist()]}"
          + (" (eager, then 2 CUDA graph replays)" if cuda else ""))
    print("OK" if errs.max() < 3e-2 else "MISMATCH")
plan.destroy()
comm.destroy()
dist.destroy_process_group()
sys.exit(0 if errs.max() < 3e-2 else 1)
