/* driver.c -- the shared perf driver (driver.h). Built into each tool; with -DPERF_CUDA it also
 * times CUDA events and graph replays. */
#include "driver.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef PERF_CUDA
#include <cuda_runtime_api.h>
#endif

/* ---- JSON fragments ---- */

static void jsonAppend(char** buf, size_t* len, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  char* grown = realloc(*buf, *len + (size_t)n + 1);
  if (!grown) return; /* the results file then lacks this piece; the table is unaffected */
  *buf = grown;
  va_start(ap, fmt);
  vsnprintf(*buf + *len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  *len += (size_t)n;
}

static void jsonString(char** buf, size_t* len, const char* s) {
  jsonAppend(buf, len, "\"");
  for (const unsigned char* c = (const unsigned char*)(s ? s : ""); *c; c++) {
    if (*c == '"' || *c == '\\')
      jsonAppend(buf, len, "\\%c", *c);
    else if (*c < 0x20)
      jsonAppend(buf, len, "\\u%04x", *c);
    else
      jsonAppend(buf, len, "%c", *c);
  }
  jsonAppend(buf, len, "\"");
}

static void jsonNumber(char** buf, size_t* len, double d) {
  if (isfinite(d))
    jsonAppend(buf, len, "%.10g", d);
  else /* JSON has no NaN or infinity */
    jsonAppend(buf, len, "null");
}

/* ---- flags ---- */

static const perfOpt_t* findOpt(const perf_t* p, char flag, int* index) {
  for (int i = 0; i < p->numAll; i++)
    if (p->all[i].flag == flag) {
      if (index) *index = i;
      return &p->all[i];
    }
  return NULL;
}

void perfInit(perf_t* p, const char* tool, const char* synopsis, const perfOpt_t* opts, int numOpts) {
  memset(p, 0, sizeof(*p));
  p->tool = tool;
  p->synopsis = synopsis;
  p->opts = opts;
  p->numOpts = numOpts;
  p->root = 1;
  p->warmup = 5;
  p->iters = 20;
  p->label = "";
}

/* the item of a comma-separated list equal to the n bytes at s, or -1 */
static int choiceIndex(const char* choices, const char* s, size_t n) {
  int i = 0;
  for (const char* c = choices; *c; i++) {
    const char* end = strchr(c, ',');
    size_t m = end ? (size_t)(end - c) : strlen(c);
    if (m == n && strncmp(c, s, n) == 0) return i;
    if (!end) break;
    c = end + 1;
  }
  return -1;
}

static void choiceName(const char* choices, int index, char* out, size_t size) {
  const char* c = choices;
  for (int i = 0; i < index && c; i++) {
    c = strchr(c, ',');
    if (c) c++;
  }
  size_t m = c ? (strchr(c, ',') ? (size_t)(strchr(c, ',') - c) : strlen(c)) : 0;
  snprintf(out, size, "%.*s", (int)m, c ? c : "");
}

static void vArgError(const perf_t* p, const char* fmt, va_list ap) {
  if (!p->root) return;
  fprintf(stderr, "%s: ", p->tool);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  perfUsage(p, stderr);
}

int perfArgError(const perf_t* p, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vArgError(p, fmt, ap);
  va_end(ap);
  return 2;
}

static int setOpt(perf_t* p, const perfOpt_t* o, const char* arg) {
  switch (o->kind) {
    case PERF_OPT_BOOL:
      *(int*)o->value = 1;
      return 0;
    case PERF_OPT_INT: {
      char* end = NULL;
      errno = 0;
      long v = strtol(arg, &end, 10);
      if (!arg[0] || *end || errno == ERANGE) return perfArgError(p, "-%c %s: not an integer", o->flag, arg);
      if (v < o->min || v > o->max)
        return perfArgError(p, "-%c %ld: out of range [%ld, %ld]", o->flag, v, o->min, o->max);
      *(int*)o->value = (int)v;
      return 0;
    }
    case PERF_OPT_STRING:
      if (o->choices && choiceIndex(o->choices, arg, strlen(arg)) < 0)
        return perfArgError(p, "-%c %s: not one of %s", o->flag, arg, o->choices);
      *(const char**)o->value = arg;
      return 0;
    case PERF_OPT_CHOICE: {
      int i = choiceIndex(o->choices, arg, strlen(arg));
      if (i < 0) return perfArgError(p, "-%c %s: not one of %s", o->flag, arg, o->choices);
      *(int*)o->value = i;
      return 0;
    }
    case PERF_OPT_LIST: {
      if (!arg[0] || strlen(arg) >= PERF_LIST_MAX) return perfArgError(p, "-%c '%s': empty or too long", o->flag, arg);
      for (const char* c = arg;;) {
        const char* end = strchr(c, ',');
        size_t n = end ? (size_t)(end - c) : strlen(c);
        if (n == 0 || (o->choices && choiceIndex(o->choices, c, n) < 0))
          return perfArgError(p, "-%c %s: '%.*s' is not one of %s", o->flag, arg, (int)n, c,
                              o->choices ? o->choices : "a non-empty name");
        if (!end) break;
        c = end + 1;
      }
      snprintf((char*)o->value, PERF_LIST_MAX, "%s", arg);
      return 0;
    }
    case PERF_OPT_CUSTOM:
      if (o->parse(arg, o->value) != 0) return perfArgError(p, "-%c %s: malformed (%s)", o->flag, arg, o->meta);
      return 0;
  }
  return 2;
}

int perfParse(perf_t* p, int argc, char** argv) {
  static int helpFlag;
  const perfOpt_t common[] = {
      {'w', "warmup", PERF_OPT_INT, &p->warmup, "N", "warm-up steps before timing", 0, 1000000, NULL, NULL, NULL},
      {'n', "iters", PERF_OPT_INT, &p->iters, "N", "timed iterations", 1, 1000000, NULL, NULL, NULL},
      {'c', "check", PERF_OPT_INT, &p->check, "0|1", "check every row's result (a failed row: exit 1)", 0, 1, NULL,
       NULL, NULL},
      {'T', "label", PERF_OPT_STRING, &p->label, "TEXT", "a label printed with the table", 0, 0, NULL, NULL, NULL},
      {'J', "json", PERF_OPT_STRING, &p->jsonPath, "FILE", "write every row as JSON to FILE", 0, 0, NULL, NULL, NULL},
      {'h', "help", PERF_OPT_BOOL, &helpFlag, NULL, "this text", 0, 0, NULL, NULL, NULL},
  };
  p->numAll = 0;
  for (int i = 0; i < p->numOpts && p->numAll < PERF_MAX_OPTS; i++) p->all[p->numAll++] = p->opts[i];
  for (size_t i = 0; i < sizeof(common) / sizeof(common[0]) && p->numAll < PERF_MAX_OPTS; i++) {
    if (common[i].flag == 'c' && !p->hasCheck) continue;
    p->all[p->numAll++] = common[i];
  }
  char optstring[2 * PERF_MAX_OPTS + 2] = ":";
  size_t k = 1;
  for (int i = 0; i < p->numAll; i++) {
    optstring[k++] = p->all[i].flag;
    if (p->all[i].kind != PERF_OPT_BOOL) optstring[k++] = ':';
  }
  optstring[k] = 0;
  opterr = 0;
  helpFlag = 0;
  int c;
  while ((c = getopt(argc, argv, optstring)) != -1) {
    if (c == '?') return perfArgError(p, "unknown flag -%c", optopt);
    if (c == ':') return perfArgError(p, "-%c needs a value", optopt);
    int index = 0;
    const perfOpt_t* o = findOpt(p, (char)c, &index);
    if (!o) return perfArgError(p, "unknown flag -%c", c);
    p->given[index]++;
    if (o->kind != PERF_OPT_CUSTOM && o->kind != PERF_OPT_BOOL && p->given[index] > 1)
      return perfArgError(p, "-%c given twice", c);
    int r = setOpt(p, o, optarg);
    if (r) return r;
  }
  if (optind < argc) return perfArgError(p, "unexpected argument '%s'", argv[optind]);
  if (helpFlag) {
    if (p->root) perfUsage(p, stdout);
    return 1;
  }
  return 0;
}

int perfGiven(const perf_t* p, char flag) {
  int index;
  return findOpt(p, flag, &index) ? p->given[index] : 0;
}

static void showValue(const perfOpt_t* o, char* out, size_t size) {
  switch (o->kind) {
    case PERF_OPT_INT:
    case PERF_OPT_BOOL:
      snprintf(out, size, "%d", *(const int*)o->value);
      break;
    case PERF_OPT_STRING:
      snprintf(out, size, "%s", *(const char**)o->value ? *(const char**)o->value : "");
      break;
    case PERF_OPT_CHOICE:
      choiceName(o->choices, *(const int*)o->value, out, size);
      break;
    case PERF_OPT_LIST:
      snprintf(out, size, "%s", (const char*)o->value);
      break;
    case PERF_OPT_CUSTOM:
      snprintf(out, size, "%s", o->show ? o->show(o->value) : "");
      break;
  }
}

void perfUsage(const perf_t* p, void* file) {
  FILE* f = file;
  fprintf(f, "usage: %s [flags]\n%s\n", p->tool, p->synopsis ? p->synopsis : "");
  for (int i = 0; i < p->numAll; i++) {
    const perfOpt_t* o = &p->all[i];
    char flag[32], def[PERF_LIST_MAX];
    snprintf(flag, sizeof(flag), "-%c %s", o->flag, o->meta ? o->meta : "");
    showValue(o, def, sizeof(def));
    fprintf(f, "  %-14s %s", flag, o->help);
    if (o->kind != PERF_OPT_INT && o->kind != PERF_OPT_CUSTOM && o->choices) fprintf(f, "; of %s", o->choices);
    if (o->kind == PERF_OPT_INT && o->max > o->min && o->max < 1000000) fprintf(f, " [%ld..%ld]", o->min, o->max);
    if (o->kind != PERF_OPT_BOOL) fprintf(f, " (%s)", def[0] ? def : "none");
    fprintf(f, "\n");
  }
}

/* ---- results ---- */

static void paramKey(perf_t* p, const char* name) {
  jsonAppend(&p->params, &p->paramsLen, "%s", p->paramsLen ? ", " : "");
  jsonString(&p->params, &p->paramsLen, name);
  jsonAppend(&p->params, &p->paramsLen, ": ");
}

void perfParamInt(perf_t* p, const char* name, long long v) {
  paramKey(p, name);
  jsonAppend(&p->params, &p->paramsLen, "%lld", v);
}

void perfParamStr(perf_t* p, const char* name, const char* v) {
  paramKey(p, name);
  jsonString(&p->params, &p->paramsLen, v);
}

void perfComment(perf_t* p, const char* fmt, ...) {
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  if (p->root) printf("# %s\n", line);
  jsonAppend(&p->comments, &p->commentsLen, "%s", p->commentsLen ? ", " : "");
  jsonString(&p->comments, &p->commentsLen, line);
}

void perfColumns(perf_t* p, const perfColumn_t* cols, int n) {
  p->numCols = n < PERF_MAX_COLUMNS ? n : PERF_MAX_COLUMNS;
  memcpy(p->cols, cols, sizeof(perfColumn_t) * (size_t)p->numCols);
}

void perfPrintHeader(const perf_t* p) {
  if (!p->root) return;
  for (int i = 0; i < p->numCols; i++) printf("%s%*s", i ? " " : "", p->cols[i].width, p->cols[i].name);
  printf("\n");
  fflush(stdout);
}

void perfRow(perf_t* p, const perfValue_t* v, int failed) {
  p->rows++;
  p->failed += failed != 0;
  if (!p->root) return;
  jsonAppend(&p->rowsJson, &p->rowsLen, "%s\n    {", p->rowsLen ? "," : "");
  for (int i = 0; i < p->numCols; i++) {
    const perfColumn_t* c = &p->cols[i];
    printf("%s", i ? " " : "");
    jsonAppend(&p->rowsJson, &p->rowsLen, "%s", i ? ", " : "");
    jsonString(&p->rowsJson, &p->rowsLen, c->name);
    jsonAppend(&p->rowsJson, &p->rowsLen, ": ");
    if (!v[i].set) {
      printf("%*s", c->width, "-");
      jsonAppend(&p->rowsJson, &p->rowsLen, "null");
    } else if (c->kind == PERF_INT) {
      printf("%*lld", c->width, v[i].i);
      jsonAppend(&p->rowsJson, &p->rowsLen, "%lld", v[i].i);
    } else if (c->kind == PERF_DOUBLE) {
      printf("%*.*f", c->width, c->precision, v[i].d);
      jsonNumber(&p->rowsJson, &p->rowsLen, v[i].d);
    } else {
      printf("%*s", c->width, v[i].s ? v[i].s : "");
      jsonString(&p->rowsJson, &p->rowsLen, v[i].s);
    }
  }
  jsonAppend(&p->rowsJson, &p->rowsLen, ", \"failed\": %s}", failed ? "true" : "false");
  printf("\n");
  fflush(stdout);
}

int perfFinish(perf_t* p) {
  int status = p->failed ? 1 : 0;
  if (p->root) {
    printf("# %d rows, %d failed (a wrong result or an error)%s\n", p->rows, p->failed,
           p->hasCheck && !p->check ? "; check off (-c 1 checks)" : "");
    fflush(stdout);
  }
  if (p->root && p->jsonPath) {
    FILE* f = fopen(p->jsonPath, "w");
    if (!f) {
      fprintf(stderr, "%s: -J %s: cannot write: %s\n", p->tool, p->jsonPath, strerror(errno));
      status = 3;
    } else {
      fprintf(f, "{\n  \"tool\": ");
      char* s = NULL;
      size_t n = 0;
      jsonString(&s, &n, p->tool);
      fprintf(f, "%s,\n  \"params\": {", s ? s : "\"\"");
      free(s);
      /* every flag's final value, then what the tool derived */
      int first = 1;
      for (int i = 0; i < p->numAll; i++) {
        const perfOpt_t* o = &p->all[i];
        if (o->flag == 'h') continue;
        char val[PERF_LIST_MAX];
        showValue(o, val, sizeof(val));
        s = NULL;
        n = 0;
        jsonString(&s, &n, o->name);
        jsonAppend(&s, &n, ": ");
        if (o->kind == PERF_OPT_INT || o->kind == PERF_OPT_BOOL)
          jsonAppend(&s, &n, "%d", *(const int*)o->value);
        else if (o->kind == PERF_OPT_STRING && !*(const char**)o->value)
          jsonAppend(&s, &n, "null");
        else
          jsonString(&s, &n, val);
        fprintf(f, "%s%s", first ? "" : ", ", s ? s : "");
        free(s);
        first = 0;
      }
      if (p->paramsLen) fprintf(f, "%s%s", first ? "" : ", ", p->params);
      fprintf(f, "},\n  \"comments\": [%s],\n  \"rows\": [%s\n  ],\n  \"failed\": %d\n}\n",
              p->comments ? p->comments : "", p->rowsJson ? p->rowsJson : "", p->failed);
      if (fclose(f) != 0) status = 3;
    }
  }
  free(p->params);
  free(p->comments);
  free(p->rowsJson);
  p->params = p->comments = p->rowsJson = NULL;
  return status;
}

/* ---- timing ---- */

static int cmpDouble(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

/* min/median/max of n samples of the slowest rank */
static void reduceStats(const perf_t* p, double* t, int n, perfStats_t* s) {
  if (p && p->reduceMax) p->reduceMax(t, n, p->ctx);
  qsort(t, (size_t)n, sizeof(double), cmpDouble);
  s->min = t[0];
  s->median = t[n / 2];
  s->max = t[n - 1];
}

static double nowUs(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec * 1e-3;
}

int perfTimeHost(const perf_t* p, perfStep_t step, void* arg, perfStats_t* s) {
  double* t = malloc(sizeof(double) * (size_t)p->iters);
  if (!t) return -1;
  int launch = 0, err = 0;
  for (int i = 0; i < p->warmup && !err; i++) err = step(arg, launch++);
  for (int i = 0; i < p->iters && !err; i++) {
    if (p->barrier) p->barrier(p->ctx);
    double t0 = nowUs();
    err = step(arg, launch++);
    t[i] = nowUs() - t0;
  }
  if (!err) reduceStats(p, t, p->iters, s);
  free(t);
  return err;
}

#ifdef PERF_CUDA
#define PERF_CU(call)                                                                       \
  do {                                                                                      \
    cudaError_t e_ = (call);                                                                \
    if (e_ != cudaSuccess) {                                                                \
      fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
      err = -1;                                                                             \
      goto done;                                                                            \
    }                                                                                       \
  } while (0)

static int timeEvents(const perf_t* p, int warmup, int iters, perfStep_t step, void* arg, perfStats_t* s) {
  int err = 0;
  cudaEvent_t e0 = NULL, e1 = NULL;
  double* t = malloc(sizeof(double) * (size_t)iters);
  if (!t) return -1;
  PERF_CU(cudaEventCreate(&e0));
  PERF_CU(cudaEventCreate(&e1));
  for (int i = 0; i < iters + warmup; i++) {
    PERF_CU(cudaEventRecord(e0, 0));
    err = step(arg, i);
    PERF_CU(cudaEventRecord(e1, 0));
    PERF_CU(cudaEventSynchronize(e1));
    if (err) goto done;
    if (i >= warmup) {
      float ms = 0;
      PERF_CU(cudaEventElapsedTime(&ms, e0, e1));
      t[i - warmup] = ms * 1e3;
    }
  }
  reduceStats(p, t, iters, s);
done:
  if (e0) cudaEventDestroy(e0);
  if (e1) cudaEventDestroy(e1);
  free(t);
  return err;
}

int perfTimeEventsN(int warmup, int iters, perfStep_t step, void* arg, perfStats_t* s) {
  return timeEvents(NULL, warmup, iters, step, arg, s);
}

int perfTimeEvents(const perf_t* p, perfStep_t step, void* arg, perfStats_t* s) {
  return timeEvents(p, p->warmup, p->iters, step, arg, s);
}

int perfTimeGraph(const perf_t* p, void* streamArg, perfStep_t step, void* arg, perfStats_t* s) {
  return perfTimeGraphSteps(p, streamArg, 1, step, arg, s);
}

int perfTimeGraphSteps(const perf_t* p, void* streamArg, int steps, perfStep_t step, void* arg, perfStats_t* s) {
  cudaStream_t stream = (cudaStream_t)streamArg;
  if (steps < 1) steps = 1;
  cudaGraph_t graph = NULL;
  cudaGraphExec_t exec = NULL;
  cudaEvent_t e0 = NULL, e1 = NULL;
  int err = 0, launch = 0;
  double* t = malloc(sizeof(double) * (size_t)p->iters);
  if (!t) return -1;
  /* an eager step first, as engines warm up, then the step captured once and replayed */
  if ((err = step(arg, launch++)) != 0) goto done;
  PERF_CU(cudaStreamSynchronize(stream));
  PERF_CU(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < steps && !err; i++) err = step(arg, launch++);
  {
    cudaError_t ce = cudaStreamEndCapture(stream, &graph);
    if (err) goto done;
    PERF_CU(ce);
  }
  PERF_CU(cudaGraphInstantiate(&exec, graph, 0));
  PERF_CU(cudaEventCreate(&e0));
  PERF_CU(cudaEventCreate(&e1));
  for (int i = 0; i < p->warmup; i++) PERF_CU(cudaGraphLaunch(exec, stream));
  PERF_CU(cudaStreamSynchronize(stream));
  for (int i = 0; i < p->iters; i++) {
    if (p->barrier) p->barrier(p->ctx);
    PERF_CU(cudaEventRecord(e0, stream));
    PERF_CU(cudaGraphLaunch(exec, stream));
    PERF_CU(cudaEventRecord(e1, stream));
    PERF_CU(cudaEventSynchronize(e1));
    float ms = 0;
    PERF_CU(cudaEventElapsedTime(&ms, e0, e1));
    t[i] = ms * 1e3 / steps;
  }
  reduceStats(p, t, p->iters, s);
done:
  if (e0) cudaEventDestroy(e0);
  if (e1) cudaEventDestroy(e1);
  if (exec) cudaGraphExecDestroy(exec);
  if (graph) cudaGraphDestroy(graph);
  free(t);
  return err;
}
#else
int perfTimeEventsN(int warmup, int iters, perfStep_t step, void* arg, perfStats_t* s) {
  fprintf(stderr, "perf driver: CUDA timing needs a build with CUDA\n");
  return -1;
}
int perfTimeEvents(const perf_t* p, perfStep_t step, void* arg, perfStats_t* s) {
  return perfTimeEventsN(0, 0, step, arg, s);
}
int perfTimeGraph(const perf_t* p, void* stream, perfStep_t step, void* arg, perfStats_t* s) {
  return perfTimeEventsN(0, 0, step, arg, s);
}
int perfTimeGraphSteps(const perf_t* p, void* stream, int steps, perfStep_t step, void* arg, perfStats_t* s) {
  return perfTimeEventsN(0, 0, step, arg, s);
}
#endif
