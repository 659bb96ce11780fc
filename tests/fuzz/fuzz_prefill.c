/* libFuzzer target: the validation of prefill batches (cpclAttnPrefill's check, host memory) fed
 * arbitrary bytes. Beyond "no crash, no sanitizer report" it checks what the schedules rely on
 * whenever the check passes: every PCP rank's rows fit the plan (so the layout of the step's
 * blocks, run here right after, stays inside its arrays), this rank's rows and offsets are its
 * head-tail chunks, positions fit 31 bits and increase within a sequence, and every page the
 * step reads or writes has an id >= 0. Lengths are drawn around the boundaries: 0, 1, 2*pcp and
 * its neighbours, the block-table capacity, the 31-bit limit, raw values. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "fuzz_reader.h"
#include "kv_layout.h"
#include "op.h"
#include "plan.h"
#include "prefill_layout.h"
#include "sched/prefill.h"

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  reader_t r = {data, size, 0};
  struct cpclComm c;
  memset(&c, 0, sizeof(c));
  c.nranks = 1 + (int)(rd(&r, 1) % 8);
  c.rank = (int)(rd(&r, 1) % (uint32_t)c.nranks);
  do c.dcpSize = 1 + (int)(rd(&r, 1) % (uint32_t)c.nranks);
  while (c.nranks % c.dcpSize); /* terminates: 1 divides */
  c.dcpRank = c.rank % c.dcpSize, c.pcpSize = c.nranks / c.dcpSize, c.pcpRank = c.rank / c.dcpSize;
  c.interleave = 1 + (int)(rd(&r, 1) % 17);
  c.memType = cpclMemHost;
  struct cpclAttnPlan pl;
  memset(&pl, 0, sizeof(pl));
  pl.comm = &c;
  pl.desc = (cpclAttnDesc_t)CPCL_ATTN_DESC_INITIALIZER;
  pl.desc.pageSize = c.interleave * (1 + (int)(rd(&r, 1) % 4));
  pl.desc.latentKv = rd(&r, 1) & 1;
  pl.maxTokens = 1 + (int)(rd(&r, 2) % 512);
  pl.W = c.nranks, pl.D = c.dcpSize, pl.P = c.pcpSize;
  const int P = pl.P, ps = pl.desc.pageSize;

  cpclPrefillBatch_t b = CPCL_PREFILL_BATCH_INITIALIZER;
  if (rd(&r, 1) % 16 == 0) b.size = rd(&r, 2);
  b.numSeqs = (int)(rd(&r, 1) % 20) - 1;
  const int n = b.numSeqs > 0 ? b.numSeqs : 0;
  b.maxPagesPerSeq = (int)(rd(&r, 1) % 40) - 1;
  int32_t *ctx = malloc(sizeof(int32_t) * (n + 1)), *nw = malloc(sizeof(int32_t) * (n + 1));
  int32_t* qs = malloc(sizeof(int32_t) * (n + 1));
  const size_t mp = b.maxPagesPerSeq > 0 ? (size_t)b.maxPagesPerSeq : 1, cells = mp * (size_t)(n ? n : 1);
  int32_t* table = malloc(sizeof(int32_t) * cells);
  for (size_t i = 0; i < cells; i++) table[i] = (int32_t)i;
  for (int k = (int)(rd(&r, 1) % 4); k > 0; k--) table[rd(&r, 4) % cells] = (int8_t)rd(&r, 1);
  for (int s = 0; s < n; s++) {
    const uint32_t how = rd(&r, 1);
    static const int32_t special[6] = {0, 1, -1, INT32_MAX, INT32_MIN, INT32_MAX - 1};
    switch (how % 6) {
      case 0:
        nw[s] = (int32_t)rd(&r, 4);
        break;
      case 1:
        nw[s] = special[(how >> 3) % 6];
        break;
      case 2:
        nw[s] = 2 * P - 1 + (int32_t)(rd(&r, 1) % 3);
        break;
      default:
        nw[s] = (int32_t)(rd(&r, 2) % 300);
    }
    const uint32_t hc = rd(&r, 1);
    ctx[s] = hc % 5 == 0 ? (int32_t)rd(&r, 4) : hc % 5 == 1 ? special[(hc >> 3) % 6] : (int32_t)(rd(&r, 2) % 200);
  }
  /* this rank's offsets: mostly its true chunks (so batches reach the page checks), sometimes
   * one entry off */
  qs[0] = 0;
  int64_t acc = 0;
  for (int s = 0; s < n; s++) {
    int64_t st[2], ln[2];
    acc += nw[s] >= 0 ? cpclPcpChunksOf(nw[s], P, c.pcpRank, st, ln) : 0;
    qs[s + 1] = (int32_t)(acc > INT32_MAX ? INT32_MAX : acc);
  }
  b.numTokens = (int)qs[n];
  if (rd(&r, 1) % 8 == 0) { /* in 64 bits: the harness itself must not overflow */
    const uint32_t at = rd(&r, 1) % (uint32_t)(n + 1);
    const int64_t v = (int64_t)qs[at] + (int8_t)rd(&r, 1);
    qs[at] = (int32_t)(v > INT32_MAX ? INT32_MAX : v < INT32_MIN ? INT32_MIN : v);
  }
  if (rd(&r, 1) % 8 == 0) {
    const int64_t v = (int64_t)b.numTokens + (int8_t)rd(&r, 1);
    b.numTokens = (int)(v > INT32_MAX ? INT32_MAX : v < INT32_MIN ? INT32_MIN : v);
  }
  b.queryStart = rd(&r, 1) % 16 ? qs : NULL;
  b.contextLens = rd(&r, 1) % 16 ? ctx : NULL;
  b.newLens = rd(&r, 1) % 16 ? nw : NULL;
  b.blockTable = rd(&r, 1) % 16 ? table : NULL;
  static const char dummy[16];
  cpclStep_t st;
  memset(&st, 0, sizeof(st));
  st.prefill = &b;
  st.q = st.kNew = st.vNew = st.kCache = st.vCache = st.out = (void*)dummy;
  if (cpclOpPrefill.check(&pl, &st) == cpclSuccess) {
    REQUIRE(b.size == sizeof(b) && b.numSeqs >= 0 && b.numSeqs <= pl.maxTokens);
    REQUIRE(b.numTokens >= 0 && b.numTokens <= pl.maxTokens && b.queryStart && b.queryStart[0] == 0);
    int64_t rows[CPCL_MAX_PARTS] = {0};
    for (int s = 0; s < n; s++) {
      REQUIRE(ctx[s] >= 0 && nw[s] >= 0 && (int64_t)ctx[s] + nw[s] <= INT32_MAX);
      int64_t s0[2], l0[2];
      for (int q = 0; q < P; q++) rows[q] += cpclPcpChunksOf(nw[s], P, q, s0, l0);
      REQUIRE(qs[s + 1] - qs[s] == cpclPcpChunksOf(nw[s], P, c.pcpRank, s0, l0));
      if (nw[s] == 0) continue;
      const int64_t local = cpclKvLocalLenOf((int64_t)ctx[s] + nw[s], c.nranks, c.rank, c.interleave);
      REQUIRE(local <= (int64_t)b.maxPagesPerSeq * ps);
      for (int64_t i = 0; i * ps < local; i++) REQUIRE(table[(size_t)s * mp + (size_t)i] >= 0);
    }
    REQUIRE(rows[c.pcpRank] == b.numTokens);
    for (int q = 0; q < P; q++) REQUIRE(rows[q] <= pl.maxTokens);
    /* the schedules' layout of every block, in arrays of exactly the plan's sizes */
    pl.pfRowStart = malloc(sizeof(int32_t) * (size_t)P * (pl.maxTokens + 1));
    pl.pfPos = malloc(sizeof(int32_t) * (size_t)P * pl.maxTokens);
    cpclPrefillLayout(&pl, &b);
    for (int q = 0; q < P; q++) {
      REQUIRE(pl.pfRows[q] == rows[q]);
      const int32_t* rs = cpclPrefillRowStart(&pl, q);
      const int32_t* pos = cpclPrefillPos(&pl, q);
      for (int s = 0; s < n; s++)
        for (int t = rs[s]; t + 1 < rs[s + 1]; t++) REQUIRE(pos[t] < pos[t + 1] && pos[t] >= ctx[s]);
    }
    REQUIRE(memcmp(cpclPrefillRowStart(&pl, c.pcpRank), qs, sizeof(int32_t) * (n + 1)) == 0);
    free(pl.pfRowStart), free(pl.pfPos);
  } else {
    REQUIRE(c.lastError[0] != 0);
  }
  free(ctx), free(nw), free(qs), free(table);
  return 0;
}
