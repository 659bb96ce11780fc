/*
 * prefill.cuh -- causal prefill attention with LSE on the GPU (kernels/prefill_params.h): the
 * CUDA counterpart of kernels/host/prefill_host.c, same keys, same masking, same output contract.
 *
 * Keys of one (sequence s, query tile) form "segments": the cached shard first (local indices
 * 0 .. the last one a row of the tile can see), then each new K/V block's rows of s up to the last
 * one at or before the tile's last position (positions increase within a sequence, so both are
 * prefixes: cpclKvLocalLenOf(qmax + 1) and an upper bound on kv[b].pos). Key tiles are cut from
 * each segment's own start, and query tiles from the sequence's own first row, so a row's
 * arithmetic never depends on the other sequences of the batch (batch invariance, bit for bit).
 *
 * Two bodies:
 *  - prefillMmaKernel<T, DQK, DV>: qType == kvType in {bf16, fp16}, separate V, (DQK, DV) in
 *    {(64, 64), (128, 128), (192, 128)}, 16-byte aligned rows. FlashAttention-2 style: a CTA of
 *    8 warps takes kBQ = 128 query rows of one head (warp w rows 16 w ..), Q in registers as
 *    mma.sync.m16n8k16 A fragments, K/V tiles of kBK = 64 keys double-buffered through shared
 *    memory with cp.async (tile i + 1 lands while tile i is computed), online softmax in base 2.
 *    Fragment layouts are attn_mma.cuh's (the decode tensor-core body).
 *  - prefillGenericKernel<QT, KT>: everything else (MLA latent K/V, fp32, mixed types, other
 *    dims up to 1024): one CTA of 128 threads per (row, head), CUDA cores; correctness first.
 * Grid of the MMA body: x = numSeqs + numTokens / kBQ + 1 tile slots (sequence s owns slots
 * s + queryStart[s] / kBQ .., a strictly increasing start, found by binary search; the slots past
 * its rows exit), reversed so the long causal tiles (the last of each sequence) start first;
 * y = the heads.
 */
#ifndef CPCL_CUDA_PREFILL_CUH_
#define CPCL_CUDA_PREFILL_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "common.cuh"
#include "kv_layout.h"
#include "mma_sync.cuh"
#include "prefill_params.h"

namespace cpcl {
namespace pf {

/* kThreads: the CUDA-core and store kernels; the tensor-core body runs a warp per 16 of its kBQ
 * query rows */
constexpr int kThreads = 128, kBQ = 128, kMmaThreads = kBQ / 16 * 32, kBK = 64, kGenBK = 128;
constexpr int kMaxSegs = CPCL_PREFILL_MAX_BLOCKS + 1;
constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;

/* The key segments of one query tile (shared memory, written by thread 0). */
struct Segs {
  int n;
  int tile0[kMaxSegs + 1]; /* first tile of each segment; tile0[n] = all tiles */
  int src[kMaxSegs];       /* -1: the cache shard; else the block */
  int key0[kMaxSegs];      /* first key: local index (cache) or block row */
  int keyEnd[kMaxSegs];    /* one past the last key a row of the tile can see */
};

/* Keys visible to a position <= qmax, cut in tiles of bk. */
__device__ __forceinline__ void buildSegs(const cpclPrefillParams_t& p, int s, int qmax, int bk, Segs& sg) {
  int n = 0, tiles = 0;
  if (p.cacheLens != nullptr) {
    const int64_t local = cpclKvLocalLenOf(p.cacheLens[s], p.cpSize, p.cpRank, p.interleave);
    const int64_t seen = cpclKvLocalLenOf((int64_t)qmax + 1, p.cpSize, p.cpRank, p.interleave);
    const int64_t e = local < seen ? local : seen;
    if (e > 0) {
      sg.tile0[n] = tiles;
      sg.src[n] = -1;
      sg.key0[n] = 0;
      sg.keyEnd[n] = (int)e;
      tiles += (int)((e + bk - 1) / bk);
      n++;
    }
  }
  for (int b = 0; b < p.numKvBlocks; b++) {
    const int k0 = p.kv[b].rowStart[s], k1 = p.kv[b].rowStart[s + 1];
    const int32_t* pos = p.kv[b].pos;
    int lo = k0, hi = k1; /* first row past qmax */
    while (lo < hi) {
      const int mid = (lo + hi) >> 1;
      if (pos[mid] <= qmax)
        lo = mid + 1;
      else
        hi = mid;
    }
    if (lo > k0) {
      sg.tile0[n] = tiles;
      sg.src[n] = b;
      sg.key0[n] = k0;
      sg.keyEnd[n] = lo;
      tiles += (lo - k0 + bk - 1) / bk;
      n++;
    }
  }
  sg.tile0[n] = tiles;
  sg.n = n;
}

/* Where key `key` of segment seg is: element offsets of its K and V rows for KV head kh, its
 * position, and whether it exists (a negative page id reads nothing). */
struct KeyRef {
  const void* k;
  const void* v;
  int64_t kOff, vOff;
  int pos;
  bool valid;
};
__device__ __forceinline__ KeyRef keyAt(const cpclPrefillParams_t& p, int s, int src, int key, int kh) {
  KeyRef r;
  const int hkv = p.numKvHeads;
  if (src < 0) {
    const int page = p.blockTable[(int64_t)s * p.maxPagesPerSeq + key / p.pageSize];
    const int64_t slot = (int64_t)page * p.pageSize + key % p.pageSize;
    const int64_t WI = (int64_t)p.cpSize * p.interleave;
    r.k = p.kCache;
    r.v = p.latentKv ? p.kCache : p.vCache;
    r.kOff = (slot * hkv + kh) * p.headDimQk;
    r.vOff = p.latentKv ? r.kOff : (slot * hkv + kh) * p.headDimVo;
    r.pos = (int)((key / p.interleave) * WI + (int64_t)p.cpRank * p.interleave + key % p.interleave);
    r.valid = page >= 0;
  } else {
    r.k = p.kv[src].k;
    r.v = p.latentKv ? p.kv[src].k : p.kv[src].v;
    r.kOff = ((int64_t)key * hkv + kh) * p.headDimQk;
    r.vOff = p.latentKv ? r.kOff : ((int64_t)key * hkv + kh) * p.headDimVo;
    r.pos = p.kv[src].pos[key];
    r.valid = true;
  }
  return r;
}

__device__ __forceinline__ void storePair(void* out, int type, int64_t off, float a, float b) {
  if (type == CPCL_K_FP32) {
    float* o = static_cast<float*>(out) + off;
    o[0] = a;
    o[1] = b;
  } else if (type == CPCL_K_BF16) {
    *reinterpret_cast<__nv_bfloat162*>(static_cast<__nv_bfloat16*>(out) + off) = __floats2bfloat162_rn(a, b);
  } else {
    *reinterpret_cast<__half2*>(static_cast<__half*>(out) + off) = __floats2half2_rn(a, b);
  }
}
__device__ __forceinline__ void storeOne(void* out, int type, int64_t off, float a) {
  if (type == CPCL_K_FP32)
    static_cast<float*>(out)[off] = a;
  else if (type == CPCL_K_BF16)
    static_cast<__nv_bfloat16*>(out)[off] = __float2bfloat16_rn(a);
  else
    static_cast<__half*>(out)[off] = __float2half_rn(a);
}

__device__ __forceinline__ int64_t outOff(const cpclPrefillParams_t& p, int g, int t) {
  return (int64_t)(g / p.headsPerBlock) * p.oBlockStride + (int64_t)t * p.oTokenStride +
         (int64_t)(g % p.headsPerBlock) * p.headDimVo;
}
__device__ __forceinline__ void storeLse(const cpclPrefillParams_t& p, int g, int t, float m, float l) {
  if (p.lse == nullptr) return;
  const float lse2 = l > 0.f ? m + log2f(l) : -INFINITY;
  p.lse[(int64_t)(g / p.headsPerBlock) * p.lseBlockStride + (int64_t)t * p.lseTokenStride + g % p.headsPerBlock] =
      p.lseBase2 ? lse2 : lse2 * kLn2;
}

/* The query tile of slot x: false when the slot is past its sequence's rows. */
__device__ __forceinline__ bool tileOf(const cpclPrefillParams_t& p, int x, int* s, int* t0, int* nRows) {
  const int32_t* qs = p.queryStart;
  int lo = 0, hi = p.numSeqs - 1; /* largest s with s + qs[s] / kBQ <= x */
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (mid + qs[mid] / kBQ <= x)
      lo = mid;
    else
      hi = mid - 1;
  }
  const int r0 = qs[lo], r1 = qs[lo + 1], j = x - (lo + r0 / kBQ);
  if (j < 0 || r0 + j * kBQ >= r1) return false;
  *s = lo;
  *t0 = r0 + j * kBQ;
  *nRows = min(kBQ, r1 - *t0);
  return true;
}

/* ---------------------------------------------------------------- tensor-core body */

template <int DQK, int DV>
struct MmaCfg {
  /* rows padded by 16 bytes: ldmatrix over 8 consecutive rows is conflict-free */
  static constexpr int kKRowB = DQK * 2 + 16, kVRowB = DV * 2 + 16;
  static constexpr int kQB = kBQ * kKRowB, kKB = kBK * kKRowB, kVB = kBK * kVRowB;
  static constexpr int kStageB = kKB + kVB + kBK * 4; /* K rows | V rows | key positions */
  static constexpr size_t kSmem = (size_t)kQB + 2 * (size_t)kStageB;
};

/* K/V tile `it` of the segments into a stage; threads < kBK also write the key positions
 * (INT32_MAX for keys past the segment or behind a negative page id: never visible) and return
 * whether their key needs the mask for a row at qmin or later (the tile's first row; the others
 * are later), so a tile no thread flags is attended without the mask (the tiles left of the
 * diagonal). */
template <typename T, int DQK, int DV>
__device__ __forceinline__ bool loadKvTile(const cpclPrefillParams_t& p, const Segs& sg, int s, int kh, int it,
                                           unsigned char* st, int qmin) {
  using C = MmaCfg<DQK, DV>;
  int seg = 0;
  while (seg + 1 < sg.n && sg.tile0[seg + 1] <= it) seg++;
  const int k0 = sg.key0[seg] + (it - sg.tile0[seg]) * kBK, kEnd = sg.keyEnd[seg], src = sg.src[seg];
  /* chunk c of a K row and, where the V row has it (DV <= DQK), chunk c of its V row: one row
   * lookup for both; the segment's kind and bases are fixed for the tile */
  static_assert(DV <= DQK, "V chunks ride on the K chunks");
  constexpr int kcK = DQK / 8, kcV = DV / 8;
  const int tid = threadIdx.x;
  const int64_t kStride = (int64_t)p.numKvHeads * DQK, vStride = (int64_t)p.numKvHeads * DV;
  const T* kb = static_cast<const T*>(src < 0 ? p.kCache : p.kv[src].k) + (int64_t)kh * DQK;
  const T* vb = static_cast<const T*>(src < 0 ? p.vCache : p.kv[src].v) + (int64_t)kh * DV;
  const int32_t* bt = src < 0 ? p.blockTable + (int64_t)s * p.maxPagesPerSeq : nullptr;
  for (int i = tid; i < kBK * kcK; i += kMmaThreads) {
    const int r = i / kcK, c = i % kcK, key = k0 + r;
    bool valid = key < kEnd;
    int64_t row = key; /* block row, or the cache slot */
    if (valid && bt != nullptr) {
      const int page = bt[key / p.pageSize];
      valid = page >= 0;
      row = (int64_t)page * p.pageSize + key % p.pageSize;
    }
    const T* kp = kb + row * kStride + c * 8;
    cpAsync16Zfill(st + r * C::kKRowB + c * 16, valid ? static_cast<const void*>(kp) : p.queryStart, valid);
    if (c < kcV) {
      const T* vp = vb + row * vStride + c * 8;
      cpAsync16Zfill(st + C::kKB + r * C::kVRowB + c * 16, valid ? static_cast<const void*>(vp) : p.queryStart, valid);
    }
  }
  if (tid < kBK) {
    const int key = k0 + tid;
    int pos = INT32_MAX;
    if (key < kEnd) {
      const KeyRef kr = keyAt(p, s, src, key, kh);
      if (kr.valid) pos = kr.pos;
    }
    reinterpret_cast<int*>(st + C::kKB + C::kVB)[tid] = pos;
    return pos > qmin;
  }
  return false;
}

template <typename T, int DQK, int DV>
__global__ void __launch_bounds__(kMmaThreads) prefillMmaKernel(const __grid_constant__ cpclPrefillParams_t p) {
  using C = MmaCfg<DQK, DV>;
  constexpr int KS = DQK / 16, NT = DV / 8, NS = kBK / 8;
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ Segs sg;
  int s, t0, nRows;
  if (!tileOf(p, (int)(gridDim.x - 1 - blockIdx.x), &s, &t0, &nRows)) return;
  const int g = p.headBegin + (int)blockIdx.y, kh = g / p.groupSize;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, gr = lane >> 2, cq = (lane & 3) * 2, j8 = lane >> 3;
  const int qmax = p.queryPos[t0 + nRows - 1];
  if (tid == 0) buildSegs(p, s, qmax, kBK, sg);

  /* Q rows of the tile (rows past nRows zero) */
  unsigned char* sQ = smem;
  unsigned char* stage[2] = {smem + C::kQB, smem + C::kQB + C::kStageB};
  {
    constexpr int kc = DQK / 8;
    const T* qb = static_cast<const T*>(p.q) + (int64_t)(g / p.headsPerBlock) * p.qBlockStride +
                  (int64_t)(g % p.headsPerBlock) * DQK;
    for (int i = tid; i < kBQ * kc; i += kMmaThreads) {
      const int r = i / kc, c = i % kc;
      const bool valid = r < nRows;
      cpAsync16Zfill(sQ + r * C::kKRowB + c * 16, qb + (int64_t)(valid ? t0 + r : t0) * p.qTokenStride + c * 8, valid);
    }
  }
  int qp[2];
#pragma unroll
  for (int r = 0; r < 2; r++) {
    const int row = warp * 16 + gr + 8 * r;
    qp[r] = row < nRows ? p.queryPos[t0 + row] : INT32_MIN; /* padding rows see nothing */
  }
  __syncthreads(); /* the segments */
  const int nTiles = sg.tile0[sg.n];
  const int qmin = p.queryPos[t0];
  bool pendMask = nTiles > 0 ? loadKvTile<T, DQK, DV>(p, sg, s, kh, 0, stage[0], qmin) : false;
  asm volatile("cp.async.commit_group;\n" ::);

  uint32_t qa[KS][4];
  float o[NT][4];
#pragma unroll
  for (int n = 0; n < NT; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  const float c = p.smScale * kLog2e;

  for (int it = 0; it < nTiles; it++) {
    asm volatile("cp.async.wait_group 0;\n" ::);
    /* tile it landed; the other stage is free (tile it - 1 is done); whether any of tile it's
     * keys needs the mask */
    const bool masked = __syncthreads_or(pendMask);
    if (it == 0) {
#pragma unroll
      for (int ks = 0; ks < KS; ks++)
        ldsm4(qa[ks], sQ + (warp * 16 + (lane & 15)) * C::kKRowB + ks * 32 + (lane >> 4) * 16);
    }
    pendMask = it + 1 < nTiles ? loadKvTile<T, DQK, DV>(p, sg, s, kh, it + 1, stage[(it + 1) & 1], qmin) : false;
    asm volatile("cp.async.commit_group;\n" ::);
    const unsigned char* ks_ = stage[it & 1];
    const unsigned char* vs_ = ks_ + C::kKB;
    const int* kpos = reinterpret_cast<const int*>(ks_ + C::kKB + C::kVB);

    /* S = Q K^T, 16 rows x 64 keys per warp */
    float sc[NS][4];
#pragma unroll
    for (int n = 0; n < NS; n++) sc[n][0] = sc[n][1] = sc[n][2] = sc[n][3] = 0.f;
#pragma unroll
    for (int kb = 0; kb < NS / 2; kb++) {
      const unsigned char* kp = ks_ + (kb * 16 + (j8 >> 1) * 8 + (lane & 7)) * C::kKRowB + (j8 & 1) * 16;
#pragma unroll
      for (int k = 0; k < KS; k++) {
        uint32_t kf[4];
        ldsm4(kf, kp + k * 32);
        Mma<T>::run(sc[2 * kb], qa[k], kf);
        Mma<T>::run(sc[2 * kb + 1], qa[k], kf + 2);
      }
    }
    /* causal mask by position, online softmax of rows gr and gr + 8 */
    float mx[2] = {-INFINITY, -INFINITY};
    if (masked) {
#pragma unroll
      for (int n = 0; n < NS; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const int kp = kpos[n * 8 + cq + (e & 1)];
          sc[n][e] = kp <= qp[e >> 1] ? sc[n][e] * c : -INFINITY;
          mx[e >> 1] = fmaxf(mx[e >> 1], sc[n][e]);
        }
    } else { /* every key at or before every row of the tile */
#pragma unroll
      for (int n = 0; n < NS; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          sc[n][e] *= c;
          mx[e >> 1] = fmaxf(mx[e >> 1], sc[n][e]);
        }
    }
    softmaxRows<NS, NT, true>(sc, mx, m, l, o);
    /* O += P V, P re-packed as A fragments of 16 keys */
#pragma unroll
    for (int kb = 0; kb < NS / 2; kb++) {
      uint32_t pa[4];
      pa[0] = Mma<T>::pack(sc[2 * kb][0], sc[2 * kb][1]);
      pa[1] = Mma<T>::pack(sc[2 * kb][2], sc[2 * kb][3]);
      pa[2] = Mma<T>::pack(sc[2 * kb + 1][0], sc[2 * kb + 1][1]);
      pa[3] = Mma<T>::pack(sc[2 * kb + 1][2], sc[2 * kb + 1][3]);
      const unsigned char* vp = vs_ + (kb * 16 + (j8 & 1) * 8 + (lane & 7)) * C::kVRowB + (j8 >> 1) * 16;
#pragma unroll
      for (int nb = 0; nb < NT; nb += 2) {
        uint32_t vb[4];
        ldsm4T(vb, vp + nb * 16);
        Mma<T>::run(o[nb], pa, vb);
        Mma<T>::run(o[nb + 1], pa, vb + 2);
      }
    }
  }

  asm volatile("cp.async.wait_group 0;\n" ::); /* nothing in flight when the kernel ends (an empty last group) */

#pragma unroll
  for (int r = 0; r < 2; r++) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    const int row = warp * 16 + gr + 8 * r;
    if (row >= nRows) continue;
    const int t = t0 + row;
    const float inv = l[r] > 0.f ? 1.f / l[r] : 0.f;
    const int64_t ob = outOff(p, g, t);
#pragma unroll
    for (int n = 0; n < NT; n++) storePair(p.out, p.outType, ob + n * 8 + cq, o[n][r * 2] * inv, o[n][r * 2 + 1] * inv);
    if ((lane & 3) == 0) storeLse(p, g, t, m[r], l[r]);
  }
}

template <typename T, int DQK, int DV>
int launchMma(const cpclPrefillParams_t& p, cudaStream_t stream) {
  using C = MmaCfg<DQK, DV>;
  static bool raised = false;
  if (!raised) {
    cudaError_t e =
        cudaFuncSetAttribute(prefillMmaKernel<T, DQK, DV>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)C::kSmem);
    if (e != cudaSuccess) return (int)e;
    raised = true;
  }
  const dim3 grid((unsigned)(p.numSeqs + p.numTokens / kBQ + 1), (unsigned)p.numHeads);
  prefillMmaKernel<T, DQK, DV><<<grid, kMmaThreads, C::kSmem, stream>>>(p);
  return (int)cudaGetLastError();
}

#define CPCL_INSTANTIATE_PREFILL_MMA(T, DQK, DV) \
  template int cpcl::pf::launchMma<T, DQK, DV>(const cpclPrefillParams_t&, cudaStream_t)

}  // namespace pf
}  // namespace cpcl

#endif /* CPCL_CUDA_PREFILL_CUH_ */
