/* libFuzzer target: the validation of configs, attention descriptors and batches (host memory),
 * fed arbitrary bytes. Beyond "no crash, no sanitizer report", it checks the guarantees the
 * rest of the library relies on whenever a check passes: a config that resolves has a dcpSize
 * dividing the ranks, a descriptor that passes obeys the GQA/MLA rules, a batch that passes has
 * monotone rows, enough keys for its rows and local lengths within its block-table rows. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "kv_layout.h"
#include "op.h"
#include "plan.h"

typedef struct {
  const uint8_t* d;
  size_t n, i;
} reader_t;

static uint32_t rd(reader_t* r, int bytes) {
  uint32_t v = 0;
  for (int k = 0; k < bytes; k++) v = (v << 8) | (r->i < r->n ? r->d[r->i++] : 0);
  return v;
}

#define REQUIRE(cond)              \
  do {                             \
    if (!(cond)) __builtin_trap(); \
  } while (0)

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  reader_t r = {data, size, 0};
  char msg[512];
  const int nranks = 1 + (int)(rd(&r, 1) % 8), rank = (int)(rd(&r, 1) % (uint32_t)nranks);
  static const char* const tps[] = {NULL, "ucx", "self", "nccl", "ipc", "", "bogus"};
  cpclConfig_t cfg = CPCL_CONFIG_INITIALIZER;
  if (rd(&r, 1) & 1) cfg.size = rd(&r, 2);
  cfg.dcpSize = (int8_t)rd(&r, 1);
  cfg.kvInterleave = (int16_t)rd(&r, 2);
  cfg.memType = (cpclMemType_t)((int)(rd(&r, 1) % 4) - 1);
  cfg.transport = tps[rd(&r, 1) % 7];
  cfg.timeoutMs = (int32_t)rd(&r, 4);
  cpclResolvedConfig_t rc;
  if (cpclConfigResolve(&cfg, nranks, &rc, msg, sizeof(msg)) != cpclSuccess) {
    REQUIRE(msg[0] != 0); /* every refusal says why */
    return 0;
  }
  REQUIRE(rc.dcpSize >= 1 && nranks % rc.dcpSize == 0 && rc.interleave >= 1 && rc.timeoutMs > 0);

  struct cpclComm c;
  memset(&c, 0, sizeof(c));
  c.rank = rank;
  c.nranks = nranks;
  c.dcpSize = rc.dcpSize;
  c.dcpRank = rank % rc.dcpSize;
  c.pcpSize = nranks / rc.dcpSize;
  c.pcpRank = rank / rc.dcpSize;
  c.interleave = rc.interleave;
  c.memType = cpclMemHost;

  cpclAttnDesc_t d = CPCL_ATTN_DESC_INITIALIZER;
  if (rd(&r, 1) & 1) d.size = rd(&r, 2);
  d.numQoHeads = (int16_t)rd(&r, 2);
  d.numKvHeads = (int16_t)rd(&r, 2);
  d.headDimQk = (int16_t)rd(&r, 2);
  d.headDimVo = (int16_t)rd(&r, 2);
  d.pageSize = (int16_t)rd(&r, 2);
  uint32_t bits = rd(&r, 4);
  memcpy(&d.smScale, &bits, 4);
  d.qType = (cpclDataType_t)((int)(rd(&r, 1) % 5) - 1);
  d.kvType = (cpclDataType_t)((int)(rd(&r, 1) % 5) - 1);
  d.latentKv = (int)(rd(&r, 1) % 3) - 0;
  d.lseBase2 = (int)(rd(&r, 1) % 3) - 0;
  static const char* const prefill[4] = {NULL, "allgather", "ring", "zigzag"};
  d.topk = rd(&r, 1) % 4 ? 0 : (int8_t)rd(&r, 1);
  d.prefillAlgo = prefill[rd(&r, 1) % 4];
  const int maxTokens = (int16_t)rd(&r, 2);
  if (cpclAttnDescCheck(&c, &d, maxTokens, msg, sizeof(msg)) != cpclSuccess) {
    REQUIRE(msg[0] != 0);
    return 0;
  }
  REQUIRE(d.numQoHeads >= 1 && d.numKvHeads >= 1 && d.pageSize % c.interleave == 0 && isfinite(d.smScale));
  REQUIRE(d.headDimQk % 8 == 0 && d.headDimVo % 8 == 0 && maxTokens >= 1);
  REQUIRE(d.topk == 0 && (d.prefillAlgo == NULL || d.prefillAlgo[0] != 'z'));
  if (d.latentKv)
    REQUIRE(d.numKvHeads == 1 && d.headDimVo <= d.headDimQk);
  else
    REQUIRE((c.dcpSize * d.numQoHeads) % d.numKvHeads == 0);

  struct cpclAttnPlan pl;
  memset(&pl, 0, sizeof(pl));
  pl.comm = &c;
  pl.desc = d;
  pl.maxTokens = maxTokens;
  cpclBatch_t b = CPCL_BATCH_INITIALIZER;
  if (rd(&r, 1) % 16 == 0) b.size = rd(&r, 2);
  b.numSeqs = (int)(rd(&r, 1) % 18) - 1;
  b.numTokens = (int16_t)rd(&r, 2);
  b.maxPagesPerSeq = (int16_t)rd(&r, 2);
  const int withRows = rd(&r, 1) & 1, n = b.numSeqs > 0 ? b.numSeqs : 0;
  const int pages = rd(&r, 1) & 1 ? CPCL_PAGES_STORE : CPCL_PAGES_READ;
  int32_t* qs = malloc(sizeof(int32_t) * (size_t)(n + 1));
  int32_t* lens = malloc(sizeof(int32_t) * (size_t)(n + 1));
  /* the block table: [n][maxPagesPerSeq] ids, a few of them negative where the input says */
  const size_t mp = b.maxPagesPerSeq > 0 ? (size_t)b.maxPagesPerSeq : 1;
  int32_t* table = malloc(sizeof(int32_t) * mp * (size_t)(n > 0 ? n : 1));
  for (size_t i = 0; i < mp * (size_t)(n > 0 ? n : 1); i++) table[i] = (int32_t)i;
  for (int k = (int)(rd(&r, 1) % 4); k > 0; k--) table[rd(&r, 4) % (mp * (size_t)(n > 0 ? n : 1))] = (int8_t)rd(&r, 1);
  for (int i = 0; i <= n; i++) qs[i] = rd(&r, 1) % 16 ? (int16_t)rd(&r, 2) : (int32_t)rd(&r, 4);
  for (int i = 0; i < n; i++) lens[i] = rd(&r, 1) % 8 ? (int32_t)rd(&r, 4) : (int32_t)(rd(&r, 1) % 3);
  b.queryStart = withRows ? qs : NULL;
  b.seqLens = rd(&r, 1) % 8 ? lens : NULL;
  b.blockTable = rd(&r, 1) % 8 ? table : NULL;
  static const int32_t topk[1] = {0};
  if (rd(&r, 1) % 16 == 0) b.topkIndices = topk;
  if (cpclBatchCheck(&pl, &b, maxTokens, pages, "fuzz") == cpclSuccess) {
    REQUIRE(b.size == sizeof(cpclBatch_t) && b.topkIndices == NULL);
    REQUIRE(b.numTokens >= 0 && b.numTokens <= maxTokens && b.numSeqs >= 0);
    if (!withRows) REQUIRE(b.numTokens == b.numSeqs);
    if (b.numSeqs == 0) REQUIRE(b.numTokens == 0);
    if (b.numSeqs > 0) {
      REQUIRE(b.seqLens && b.blockTable && b.maxPagesPerSeq >= 1);
      if (withRows) REQUIRE(qs[0] == 0 && qs[n] == b.numTokens);
      for (int s = 0; s < n; s++) {
        const int64_t rows = withRows ? (int64_t)qs[s + 1] - qs[s] : 1;
        REQUIRE(rows >= 0 && rows <= b.numTokens && (lens[s] == 0 || lens[s] >= rows));
        if (lens[s] == 0) continue; /* padding */
        const int64_t local = cpclKvLocalLenOf(lens[s], c.nranks, c.rank, c.interleave);
        REQUIRE(local <= (int64_t)b.maxPagesPerSeq * d.pageSize);
        if (pages == CPCL_PAGES_READ) /* every page attention reads has an id >= 0 */
          for (int64_t i = 0; i * d.pageSize < local; i++) REQUIRE(table[(size_t)s * mp + (size_t)i] >= 0);
      }
    }
  } else {
    REQUIRE(c.lastError[0] != 0);
  }
  free(table);
  free(qs);
  free(lens);
  return 0;
}
