/* base/param.c -- the CPCL_* environment parameters: one table (so cpcl_info can list them all),
 * each value read once and cached. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/checks.h"
#include "base/param.h"

typedef struct {
  const char* name;
  const char* defaultValue;
  const char* help;
  int isInt;
} cpclParamDef_t;

static const cpclParamDef_t paramDefs[CPCL_PARAM_NUM] = {
    [CPCL_PARAM_DEBUG] = {"CPCL_DEBUG", "", "log level: WARN, INFO or TRACE (empty: silent)", 0},
    [CPCL_PARAM_DEBUG_SUBSYS] = {"CPCL_DEBUG_SUBSYS", "ALL",
                                 "subsystems to log: INIT,COMM,NET,PLAN,SCHED,TOPO or ALL; ^X for all but X", 0},
    [CPCL_PARAM_DEBUG_FILE] = {"CPCL_DEBUG_FILE", "", "log to this file (%h host, %p pid) instead of stderr", 0},
    [CPCL_PARAM_ALGO] = {"CPCL_ALGO", "", "force a schedule: agrs, a2a, pipelined or fused (empty: automatic)", 0},
    [CPCL_PARAM_TRANSPORT] = {"CPCL_TRANSPORT", "", "transport when the config names none: ucx, nccl, ipc, self", 0},
    [CPCL_PARAM_TIMEOUT_MS] = {"CPCL_TIMEOUT_MS", "60000", "longest wait on a peer (ms) when the config sets 0", 1},
    [CPCL_PARAM_MLA_SM90] = {"CPCL_MLA_SM90", "1",
                             "1: bf16 MLA decode (576/512) on compute capability 9.0 GPUs runs the Hopper tensor-core "
                             "body (plans created after it is read); 0: the CUDA-core body",
                             1},
    [CPCL_PARAM_GQA_SM90] = {"CPCL_GQA_SM90", "1",
                             "1: bf16/fp16 GQA decode (D 64/128) on compute capability 9.0 GPUs runs the Hopper "
                             "body (plans created after it is read); 0: the tensor-core body",
                             1},
    [CPCL_PARAM_GQA_SM90_FUSED] =
        {"CPCL_GQA_SM90_FUSED", "1",
         "1: the fused schedule runs that Hopper GQA body inside its kernel; 0: the "
         "tensor-core body there, and the automatic schedule is a2a where the Hopper body runs",
         1},
    [CPCL_PARAM_MLA_SM90_TOPK] =
        {"CPCL_MLA_SM90_TOPK", "2",
         "sparse plans on the Hopper MLA body (gathers 17, 18, 20; not the fused schedule) filter their top-k "
         "lists inside the attention, with no filter kernel: 1 always, 2 where the plan's CTAs fit one wave of "
         "the SMs, 0 never (plans created after it is read)",
         1},
    [CPCL_PARAM_PREFILL_ALGO] = {"CPCL_PREFILL_ALGO", "",
                                 "force the prefill schedule: allgather or ring (empty: automatic)", 0},
};

static pthread_mutex_t paramLock = PTHREAD_MUTEX_INITIALIZER;
static int paramLoaded[CPCL_PARAM_NUM];
static int paramSet[CPCL_PARAM_NUM]; /* the environment gave a value that is used */
static char paramValue[CPCL_PARAM_NUM][256];
static int64_t paramInt[CPCL_PARAM_NUM];

int cpclParseInt64(const char* s, int64_t* out) {
  if (s == NULL || *s == 0) return -1;
  char* end = NULL;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno != 0 || end == s) return -1;
  while (*end == ' ' || *end == '\t' || *end == '\n') end++;
  if (*end != 0) return -1;
  *out = (int64_t)v;
  return 0;
}

static void paramLoad(cpclParamId_t id) {
  const cpclParamDef_t* d = &paramDefs[id];
  const char* env = getenv(d->name);
  snprintf(paramValue[id], sizeof(paramValue[id]), "%s", env ? env : d->defaultValue);
  paramSet[id] = env != NULL;
  if (d->isInt) {
    int64_t v = 0;
    if (cpclParseInt64(paramValue[id], &v) != 0 || v < 0) {
      /* not cpclLog: logging reads parameters itself */
      fprintf(stderr, "CPCL WARN %s=\"%s\" is not a non-negative integer; using the default %s\n", d->name,
              paramValue[id], d->defaultValue);
      snprintf(paramValue[id], sizeof(paramValue[id]), "%s", d->defaultValue);
      cpclParseInt64(d->defaultValue, &v);
      paramSet[id] = 0;
    }
    paramInt[id] = v;
  }
  paramLoaded[id] = 1;
}

const char* cpclParamString(cpclParamId_t id) {
  pthread_mutex_lock(&paramLock);
  if (!paramLoaded[id]) paramLoad(id);
  pthread_mutex_unlock(&paramLock);
  return paramValue[id];
}

int64_t cpclParamInt(cpclParamId_t id) {
  pthread_mutex_lock(&paramLock);
  if (!paramLoaded[id]) paramLoad(id);
  int64_t v = paramInt[id];
  pthread_mutex_unlock(&paramLock);
  return v;
}

int cpclParamIsSet(cpclParamId_t id) {
  pthread_mutex_lock(&paramLock);
  if (!paramLoaded[id]) paramLoad(id);
  int set = paramSet[id];
  pthread_mutex_unlock(&paramLock);
  return set;
}

void cpclParamReset(void) {
  pthread_mutex_lock(&paramLock);
  memset(paramLoaded, 0, sizeof(paramLoaded));
  pthread_mutex_unlock(&paramLock);
}

CPCL_API cpclResult_t cpclGetParamInfo(int index, const char** name, const char** value, const char** defaultValue,
                                       const char** help) {
  if (index < 0 || index >= CPCL_PARAM_NUM)
    return CPCL_SINK_ERR(NULL, cpclInvalidArgument, "index %d is not a parameter (0..%d)", index, CPCL_PARAM_NUM - 1);
  if (name) *name = paramDefs[index].name;
  if (value) *value = cpclParamString((cpclParamId_t)index);
  if (defaultValue) *defaultValue = paramDefs[index].defaultValue;
  if (help) *help = paramDefs[index].help;
  return cpclSuccess;
}
