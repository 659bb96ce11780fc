/*
 * base/param.h -- the CPCL_* environment parameters: one table (so cpcl_info can list them
 * all), each value read once and cached, as NCCL's param.h.
 */
#ifndef CPCL_BASE_PARAM_H_
#define CPCL_BASE_PARAM_H_

#include <stdint.h>

typedef enum {
  CPCL_PARAM_DEBUG = 0,
  CPCL_PARAM_DEBUG_SUBSYS,
  CPCL_PARAM_DEBUG_FILE,
  CPCL_PARAM_ALGO,
  CPCL_PARAM_TRANSPORT,
  CPCL_PARAM_TIMEOUT_MS,
  CPCL_PARAM_MLA_SM90,
  CPCL_PARAM_GQA_SM90,
  CPCL_PARAM_GQA_SM90_FUSED,
  CPCL_PARAM_MLA_SM90_TOPK,
  CPCL_PARAM_PREFILL_ALGO,
  CPCL_PARAM_NUM
} cpclParamId_t;

/* The value as a string (the environment's when set, else the default); never NULL. */
const char* cpclParamString(cpclParamId_t id);
/* The value as an integer; a malformed value is reported once at WARN and the default used. */
int64_t cpclParamInt(cpclParamId_t id);
/* Whether the environment sets the parameter (the value is not the default). */
int cpclParamIsSet(cpclParamId_t id);
/* Parses a whole decimal integer; 0 on success, -1 if s is not one. */
int cpclParseInt64(const char* s, int64_t* out);
/* Forget cached values so the next read sees the environment again (tests only). */
void cpclParamReset(void);

#define CPCL_DEFAULT_TIMEOUT_MS 60000

#endif /* CPCL_BASE_PARAM_H_ */
