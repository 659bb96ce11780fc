/* libFuzzer target: the validation of configs, attention descriptors and batches (host memory),
 * fed arbitrary bytes. Beyond "no crash, no sanitizer report", it checks the guarantees the
 * rest of the library relies on whenever a check passes: a config that resolves has a dcpSize
 * dividing the ranks, a descriptor that passes obeys the GQA/MLA rules, a batch that passes has
 * monotone rows, enough keys for its rows and local lengths within its block-table rows, and
 * ids >= 0 on exactly the pages its step walks (attention: the local prefix; a store: where the
 * rank's new tokens land). The inputs aim at the boundaries of the batch contents: row offsets
 * built monotone then broken in one place, seqLens around their row counts and around the
 * block-table capacity, extreme page ids; and the digests the step agreement compares. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "fuzz_reader.h"
#include "kv_layout.h"
#include "op.h"
#include "plan.h"

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
  REQUIRE(d.topk >= 0 && d.topk <= CPCL_MAX_TOPK && (d.prefillAlgo == NULL || d.prefillAlgo[0] != 'z'));
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
  /* The block table: [n][maxPagesPerSeq] ids, the identity with a few entries overwritten where
   * the input says, by small negative ids or the extremes. */
  const size_t mp = b.maxPagesPerSeq > 0 ? (size_t)b.maxPagesPerSeq : 1, cells = mp * (size_t)(n > 0 ? n : 1);
  int32_t* table = malloc(sizeof(int32_t) * cells);
  for (size_t i = 0; i < cells; i++) table[i] = (int32_t)i;
  static const int32_t extremes[4] = {-1, INT32_MIN, INT32_MAX, 0};
  for (int k = (int)(rd(&r, 1) % 4); k > 0; k--) {
    const uint32_t at = rd(&r, 4) % cells, how = rd(&r, 1);
    table[at] = how & 1 ? extremes[(how >> 1) % 4] : (int8_t)rd(&r, 1);
  }
  /* queryStart: mostly monotone row offsets built from row counts (so that batches get past the
   * shape checks to the contents), sometimes with one entry replaced by an extreme or raw value,
   * sometimes raw throughout (16 or 32 bits) */
  const uint32_t qsMode = rd(&r, 1) % 4;
  if (qsMode < 3) {
    int64_t acc = 0;
    qs[0] = 0;
    for (int i = 0; i < n; i++) qs[i + 1] = (int32_t)(acc += rd(&r, 1) % 5);
    if (withRows) b.numTokens = (int)acc;
    if (qsMode == 2) {
      static const int32_t bad[5] = {INT32_MAX, INT32_MIN, -1, 1, 0};
      const uint32_t how = rd(&r, 1);
      qs[rd(&r, 1) % (uint32_t)(n + 1)] = how & 1 ? bad[(how >> 1) % 5] : (int32_t)rd(&r, 4);
    }
  } else {
    for (int i = 0; i <= n; i++) qs[i] = rd(&r, 1) % 16 ? (int16_t)rd(&r, 2) : (int32_t)rd(&r, 4);
  }
  /* seqLens, per sequence: around its row count (the "fewer keys than rows" boundary), around the
   * largest length whose local shard fits its block-table row, padding (0), the extremes, small
   * lengths, or raw 32-bit values */
  const int64_t capLen = (int64_t)mp * (d.pageSize > 0 ? d.pageSize : 1) * c.nranks;
  for (int i = 0; i < n; i++) {
    const int64_t rows = withRows ? (int64_t)qs[i + 1] - qs[i] : 1;
    const uint32_t how = rd(&r, 1);
    int64_t v;
    switch (how % 8) {
      case 0:
        v = (int32_t)rd(&r, 4);
        break;
      case 1: {
        static const int32_t special[6] = {0, 1, -1, INT32_MAX, INT32_MIN, INT32_MAX - 1};
        v = special[(how >> 3) % 6];
        break;
      }
      case 2:
        v = rows - 1 + (int64_t)(rd(&r, 1) % 3);
        break;
      case 3:
        v = capLen - 2 + (int64_t)(rd(&r, 1) % (uint32_t)(4 + 2 * c.interleave));
        break;
      case 4:
        v = 0;
        break;
      default:
        v = rd(&r, 2) % 4096;
    }
    lens[i] = (int32_t)(v < INT32_MIN ? INT32_MIN : v > INT32_MAX ? INT32_MAX : v);
  }
  b.queryStart = withRows ? qs : NULL;
  b.seqLens = rd(&r, 1) % 8 ? lens : NULL;
  b.blockTable = rd(&r, 1) % 8 ? table : NULL;
  static const int32_t topk[1] = {0};
  /* the list a sparse plan needs, mostly; the wrong presence now and then (its contents are
   * never checked: any entry is legal, DESIGN.md §4.3) */
  if ((rd(&r, 1) % 16 == 0) != (pl.desc.topk > 0)) b.topkIndices = topk;
  if (cpclBatchCheck(&pl, &b, maxTokens, pages, "fuzz") == cpclSuccess) {
    REQUIRE(b.size == sizeof(cpclBatch_t));
    REQUIRE(pages == CPCL_PAGES_STORE || (b.topkIndices != NULL) == (pl.desc.topk > 0));
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
        if (pages == CPCL_PAGES_STORE) { /* every page a new token of this rank lands on, too */
          const int64_t before = cpclKvLocalLenOf(lens[s] - rows, c.nranks, c.rank, c.interleave);
          for (int64_t i = before; i < local; i++) REQUIRE(table[(size_t)s * mp + (size_t)(i / d.pageSize)] >= 0);
        }
      }
      /* the page check looks at exactly the pages the step walks: a negative id just past them
       * passes, one on the last page walked fails */
      const int s = (int)(rd(&r, 1) % (uint32_t)n);
      if (pages == CPCL_PAGES_READ && lens[s] > 0) {
        const int64_t walked =
            (cpclKvLocalLenOf(lens[s], c.nranks, c.rank, c.interleave) + d.pageSize - 1) / d.pageSize;
        int32_t* row = table + (size_t)s * mp;
        if (walked < (int64_t)mp) {
          const int32_t keep = row[walked];
          row[walked] = -1;
          REQUIRE(cpclBatchCheck(&pl, &b, maxTokens, pages, "fuzz") == cpclSuccess);
          row[walked] = keep;
        }
        if (walked > 0) {
          const int32_t keep = row[walked - 1];
          row[walked - 1] = -1;
          REQUIRE(cpclBatchCheck(&pl, &b, maxTokens, pages, "fuzz") == cpclInvalidArgument);
          row[walked - 1] = keep;
        }
      }
      /* the step agreement's digests (op.c): the same contents, the same digest; one entry
       * changed, another; a NULL queryStart digests as its explicit identity */
      cpclStep_t st;
      memset(&st, 0, sizeof(st));
      st.batch = &b;
      uint64_t dg[CPCL_STEP_DIGESTS] = {0}, again[CPCL_STEP_DIGESTS] = {0};
      cpclOpDigestRows(&pl, &st, dg);
      REQUIRE(dg[1] == cpclDigestInt32(lens, n));
      const int k = (int)(rd(&r, 1) % (uint32_t)n);
      const int32_t keep = lens[k];
      lens[k] ^= (int32_t)(1u << (rd(&r, 1) % 32));
      REQUIRE(cpclDigestInt32(lens, n) != dg[1]);
      lens[k] = keep;
      cpclOpDigestRows(&pl, &st, again);
      REQUIRE(memcmp(dg, again, sizeof(dg)) == 0);
      int32_t* identity = malloc(sizeof(int32_t) * (size_t)(n + 1));
      for (int i = 0; i <= n; i++) identity[i] = i;
      REQUIRE(cpclDigestInt32(NULL, n + 1) == cpclDigestInt32(identity, n + 1));
      free(identity);
    }
  } else {
    REQUIRE(c.lastError[0] != 0);
  }
  free(table);
  free(qs);
  free(lens);
  return 0;
}
