/* abi.c -- the layout of the public structs as this library was compiled, for bindings that
 * mirror them in another language (python/cpcl checks its ctypes copies against it at import
 * instead of trusting that two compilers agree on padding and field order). */
#include <stddef.h>
#include <string.h>

#include "core.h"

typedef struct {
  const char* structName;
  const char* fieldName; /* NULL: the struct itself */
  size_t offset, size;
} layoutEntry_t;

#define STRUCT(S) \
  { #S, NULL, 0, sizeof(S) }
#define FIELD(S, M) \
  { #S, #M, offsetof(S, M), sizeof(((S*)0)->M) }

/* Fields in declaration order, each struct's entry first. A field added to a struct in cpcl.h
 * must be added here, or bindings that check the whole list will refuse this library. */
static const layoutEntry_t layouts[] = {
    STRUCT(cpclOob_t),
    FIELD(cpclOob_t, allgather),
    FIELD(cpclOob_t, ctx),
    FIELD(cpclOob_t, rank),
    FIELD(cpclOob_t, nranks),
    STRUCT(cpclConfig_t),
    FIELD(cpclConfig_t, size),
    FIELD(cpclConfig_t, dcpSize),
    FIELD(cpclConfig_t, kvInterleave),
    FIELD(cpclConfig_t, memType),
    FIELD(cpclConfig_t, transport),
    FIELD(cpclConfig_t, timeoutMs),
    STRUCT(cpclAttnDesc_t),
    FIELD(cpclAttnDesc_t, size),
    FIELD(cpclAttnDesc_t, numQoHeads),
    FIELD(cpclAttnDesc_t, numKvHeads),
    FIELD(cpclAttnDesc_t, headDimQk),
    FIELD(cpclAttnDesc_t, headDimVo),
    FIELD(cpclAttnDesc_t, pageSize),
    FIELD(cpclAttnDesc_t, smScale),
    FIELD(cpclAttnDesc_t, qType),
    FIELD(cpclAttnDesc_t, kvType),
    FIELD(cpclAttnDesc_t, latentKv),
    FIELD(cpclAttnDesc_t, lseBase2),
    FIELD(cpclAttnDesc_t, algo),
    FIELD(cpclAttnDesc_t, topk),
    FIELD(cpclAttnDesc_t, prefillAlgo),
    STRUCT(cpclBatch_t),
    FIELD(cpclBatch_t, size),
    FIELD(cpclBatch_t, numSeqs),
    FIELD(cpclBatch_t, numTokens),
    FIELD(cpclBatch_t, queryStart),
    FIELD(cpclBatch_t, seqLens),
    FIELD(cpclBatch_t, blockTable),
    FIELD(cpclBatch_t, maxPagesPerSeq),
    FIELD(cpclBatch_t, topkIndices),
#ifdef CPCL_PREFILL_BATCH_INITIALIZER /* DESIGN.md §4.2, once cpcl.h has it */
    STRUCT(cpclPrefillBatch_t),
    FIELD(cpclPrefillBatch_t, size),
    FIELD(cpclPrefillBatch_t, numSeqs),
    FIELD(cpclPrefillBatch_t, numTokens),
    FIELD(cpclPrefillBatch_t, queryStart),
    FIELD(cpclPrefillBatch_t, contextLens),
    FIELD(cpclPrefillBatch_t, newLens),
    FIELD(cpclPrefillBatch_t, blockTable),
    FIELD(cpclPrefillBatch_t, maxPagesPerSeq),
#endif
};

/* The entry of struct structName and its number of fields, or NULL (message set) when unknown. */
static const layoutEntry_t* findStruct(const char* structName, const char* fn, int* count) {
  if (structName == NULL) {
    CPCL_ERR(NULL, cpclInvalidArgument, "%s: structName is NULL", fn);
    return NULL;
  }
  const int n = (int)(sizeof(layouts) / sizeof(layouts[0]));
  for (int i = 0; i < n; i++) {
    if (layouts[i].fieldName == NULL && strcmp(layouts[i].structName, structName) == 0) {
      *count = 0;
      while (i + 1 + *count < n && layouts[i + 1 + *count].fieldName != NULL) (*count)++;
      return &layouts[i];
    }
  }
  CPCL_ERR(NULL, cpclInvalidArgument, "%s: structName is \"%s\", not a struct of cpcl.h with a layout", fn, structName);
  return NULL;
}

CPCL_API cpclResult_t cpclGetStructLayout(const char* structName, size_t* size, int* numFields) {
  int count;
  const layoutEntry_t* e = findStruct(structName, "cpclGetStructLayout", &count);
  if (e == NULL) return cpclInvalidArgument;
  if (size) *size = e->size;
  if (numFields) *numFields = count;
  return cpclSuccess;
}

CPCL_API cpclResult_t cpclGetStructField(const char* structName, int index, const char** fieldName, size_t* offset,
                                         size_t* size) {
  int count;
  const layoutEntry_t* e = findStruct(structName, "cpclGetStructField", &count);
  if (e == NULL) return cpclInvalidArgument;
  if (index < 0 || index >= count)
    return CPCL_ERR(NULL, cpclInvalidArgument, "cpclGetStructField: index is %d: %s has fields 0..%d", index,
                    structName, count - 1);
  e += 1 + index;
  if (fieldName) *fieldName = e->fieldName;
  if (offset) *offset = e->offset;
  if (size) *size = e->size;
  return cpclSuccess;
}
