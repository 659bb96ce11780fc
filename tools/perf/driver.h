/*
 * driver.h -- the one driver every cpcl perf tool plugs into, as nccl-tests' common.cu: flag
 * parsing, warm-up and timed iterations, the -c check's verdict, the printed table and the -J
 * results file. A tool declares its own flags and columns, sets up its buffers and hands the
 * driver a step to time; everything a reader compares between tools is done here once.
 *
 * Common flags (every tool): -w warm-up, -n iterations, -T label, -J FILE, -h; and -c 0|1 for
 * tools that check their results. Parsing is strict: an unknown flag, a missing or malformed
 * value or one out of its range is an error (usage on stderr, exit 2), never a silent default.
 *
 * Times: every timed iteration is one sample; with several ranks a sample is the slowest rank's
 * time of that iteration (the tool supplies the barrier and the max-reduction). A row reports
 * the min, median (sample n/2 of the sorted samples) and max over iterations, in microseconds.
 *   host:   barrier, CPU clock around one step.
 *   events: CUDA events around each launch on the legacy stream (kernels alone; no barrier).
 *   graph:  one eager step, one step captured in a CUDA graph, then per iteration barrier,
 *           event, graph replay, event (as engines run decode).
 *
 * The -J file holds one JSON object: {"tool", "params": every flag's final value and the
 * tool's derived parameters, "comments": the table's '#' lines, "rows": one object per row
 * with every column and "failed", "failed": how many rows failed}. A column without a value prints "-"
 * and is null in JSON.
 */
#ifndef CPCL_PERF_DRIVER_H_
#define CPCL_PERF_DRIVER_H_

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  PERF_OPT_INT,    /* int*, within [min, max] */
  PERF_OPT_BOOL,   /* int*, a flag without a value: sets 1 */
  PERF_OPT_STRING, /* const char**: any text, or one of choices when they are set */
  PERF_OPT_CHOICE, /* int*: the index of the value within choices ("bf16,fp16,fp32") */
  PERF_OPT_LIST,   /* char[PERF_LIST_MAX]: comma-separated, each item one of choices */
  PERF_OPT_CUSTOM  /* parse(arg, value) != 0 rejects; may repeat (each call sees one value) */
} perfOptKind_t;

#define PERF_LIST_MAX 128

typedef struct {
  char flag;        /* the getopt letter */
  const char* name; /* the parameter's name in the results file */
  perfOptKind_t kind;
  void* value;      /* holds the default on entry */
  const char* meta; /* the value's placeholder in the usage text */
  const char* help; /* one line; the default is appended */
  long min, max;    /* PERF_OPT_INT */
  const char* choices;
  int (*parse)(const char* arg, void* value);
  const char* (*show)(const void* value); /* PERF_OPT_CUSTOM: the value as the results file shows it */
} perfOpt_t;

typedef enum { PERF_INT, PERF_DOUBLE, PERF_STRING } perfKind_t;

typedef struct {
  const char* name; /* printed header and JSON key */
  perfKind_t kind;
  int width;     /* printed width; negative: left-aligned */
  int precision; /* PERF_DOUBLE */
} perfColumn_t;

typedef struct {
  int set; /* 0: no value ("-", null) */
  long long i;
  double d;
  const char* s;
} perfValue_t;

#define PERF_I(x) ((perfValue_t){1, (long long)(x), 0, NULL})
#define PERF_D(x) ((perfValue_t){1, 0, (double)(x), NULL})
#define PERF_S(x) ((perfValue_t){1, 0, 0, (x)})
#define PERF_NONE ((perfValue_t){0, 0, 0, NULL})

typedef struct {
  double min, median, max; /* us */
} perfStats_t;

/* One timed step. launch counts every call of this timing, warm-up included, from 0 (kernel_perf
 * rotates its KV copies by it). Returns 0 on success. */
typedef int (*perfStep_t)(void* arg, int launch);

#define PERF_MAX_OPTS 48
#define PERF_MAX_COLUMNS 24

typedef struct perf {
  /* set by the tool before perfParse */
  const char* tool;
  const char* synopsis; /* the usage text's first lines */
  const perfOpt_t* opts;
  int numOpts;
  int hasCheck;                                   /* offers -c */
  int root;                                       /* this process prints and writes the results file (rank 0) */
  void (*barrier)(void* ctx);                     /* NULL: one process */
  void (*reduceMax)(double* t, int n, void* ctx); /* element-wise max over ranks, in place */
  void* ctx;
  /* the common flags, defaults set by perfInit, may be changed before perfParse */
  int warmup, iters, check;
  const char* label;
  const char* jsonPath;
  /* the driver's own */
  perfOpt_t all[PERF_MAX_OPTS];
  int numAll, given[PERF_MAX_OPTS];
  perfColumn_t cols[PERF_MAX_COLUMNS];
  int numCols, rows, failed;
  char *params, *comments, *rowsJson; /* JSON fragments */
  size_t paramsLen, commentsLen, rowsLen;
} perf_t;

void perfInit(perf_t* p, const char* tool, const char* synopsis, const perfOpt_t* opts, int numOpts);
/* 0: run; 1: -h (usage printed on stdout, exit 0); 2: a bad argument (message and usage on
 * stderr, exit 2). Prints only on the root. */
int perfParse(perf_t* p, int argc, char** argv);
void perfUsage(const perf_t* p, void* file);
/* how many times flag appeared on the command line */
int perfGiven(const perf_t* p, char flag);
/* reports a bad combination of flags as perfParse does; returns 2 */
int perfArgError(const perf_t* p, const char* fmt, ...);

/* derived parameters for the results file (ranks, device, ...) */
void perfParamInt(perf_t* p, const char* name, long long v);
void perfParamStr(perf_t* p, const char* name, const char* v);
/* a '#' line of the table, also kept in the results file */
void perfComment(perf_t* p, const char* fmt, ...);

void perfColumns(perf_t* p, const perfColumn_t* cols, int n);
void perfPrintHeader(const perf_t* p);
/* one row: values in column order; failed = its check found a wrong result, or it could not
 * run (the tool says which in a column); any failed row makes the run exit 1 */
void perfRow(perf_t* p, const perfValue_t* values, int failed);
/* writes the results file; returns the exit status: 0, 1 if a row failed, 3 if the file could
 * not be written */
int perfFinish(perf_t* p);

int perfTimeHost(const perf_t* p, perfStep_t step, void* arg, perfStats_t* s);
/* the same over explicit counts (kernel_perf's copy ceiling) */
int perfTimeEventsN(int warmup, int iters, perfStep_t step, void* arg, perfStats_t* s);
int perfTimeEvents(const perf_t* p, perfStep_t step, void* arg, perfStats_t* s);
/* stream: a cudaStream_t */
int perfTimeGraph(const perf_t* p, void* stream, perfStep_t step, void* arg, perfStats_t* s);
/* the same with `steps` consecutive steps (launch numbers 1 .. steps) captured in one graph, so
 * a step of a few microseconds is timed without a graph launch's own cost; the stats are per
 * step (a replay's time / steps) */
int perfTimeGraphSteps(const perf_t* p, void* stream, int steps, perfStep_t step, void* arg, perfStats_t* s);

#ifdef __cplusplus
}
#endif

#endif /* CPCL_PERF_DRIVER_H_ */
