/* base/debug.c -- logging by level and subsystem (CPCL_DEBUG, CPCL_DEBUG_SUBSYS, CPCL_DEBUG_FILE). */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/debug.h"
#include "base/param.h"

static pthread_once_t logOnce = PTHREAD_ONCE_INIT;
static cpclLogLevel_t logLevel = CPCL_LOG_NONE;
static unsigned logMask = (unsigned)CPCL_ALL;
static FILE* logFile;
static char hostName[64];

static const struct {
  const char* name;
  unsigned mask;
} subsysNames[] = {{"INIT", CPCL_INIT},   {"COMM", CPCL_COMM}, {"NET", CPCL_NET},          {"PLAN", CPCL_PLAN},
                   {"SCHED", CPCL_SCHED}, {"TOPO", CPCL_TOPO}, {"ALL", (unsigned)CPCL_ALL}};

/* "INIT,NET" enables those; "^NET" enables all but those (NCCL_DEBUG_SUBSYS syntax). */
static unsigned parseSubsys(const char* s) {
  int invert = s[0] == '^';
  unsigned mask = 0;
  char buf[256];
  snprintf(buf, sizeof(buf), "%s", s + invert);
  char* save = NULL;
  for (char* tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    for (size_t i = 0; i < sizeof(subsysNames) / sizeof(subsysNames[0]); i++)
      if (strcasecmp(tok, subsysNames[i].name) == 0) mask |= subsysNames[i].mask;
  }
  return invert ? ~mask : mask;
}

static void logInit(void) {
  const char* level = cpclParamString(CPCL_PARAM_DEBUG);
  if (strcasecmp(level, "WARN") == 0)
    logLevel = CPCL_LOG_WARN;
  else if (strcasecmp(level, "INFO") == 0)
    logLevel = CPCL_LOG_INFO;
  else if (strcasecmp(level, "TRACE") == 0)
    logLevel = CPCL_LOG_TRACE;
  else
    logLevel = CPCL_LOG_NONE;
  logMask = parseSubsys(cpclParamString(CPCL_PARAM_DEBUG_SUBSYS));
  logFile = stderr;
  const char* path = cpclParamString(CPCL_PARAM_DEBUG_FILE);
  if (path[0]) {
    char name[512];
    /* %h and %p expand to host and pid, as in NCCL_DEBUG_FILE */
    size_t o = 0;
    for (const char* p = path; *p && o + 32 < sizeof(name); p++) {
      if (p[0] == '%' && p[1] == 'p')
        o += snprintf(name + o, sizeof(name) - o, "%d", (int)getpid()), p++;
      else if (p[0] == '%' && p[1] == 'h') {
        char h[64];
        gethostname(h, sizeof(h));
        h[63] = 0;
        o += snprintf(name + o, sizeof(name) - o, "%s", h), p++;
      } else
        name[o++] = *p;
    }
    name[o] = 0;
    FILE* f = fopen(name, "w");
    if (f) logFile = f;
  }
  gethostname(hostName, sizeof(hostName));
  hostName[sizeof(hostName) - 1] = 0;
  char* dot = strchr(hostName, '.');
  if (dot) *dot = 0;
}

int cpclLogEnabled(cpclLogLevel_t level, unsigned subsys) {
  pthread_once(&logOnce, logInit);
  return level <= logLevel && (subsys & logMask);
}

void cpclLog(cpclLogLevel_t level, unsigned subsys, const char* file, int line, const char* fmt, ...) {
  if (!cpclLogEnabled(level, subsys)) return;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  const char* lvl = level == CPCL_LOG_WARN ? "WARN" : level == CPCL_LOG_INFO ? "INFO" : "TRACE";
  const char* base = strrchr(file, '/');
  if (level == CPCL_LOG_TRACE)
    fprintf(logFile, "%s:%d:%ld CPCL %s %s:%d %s\n", hostName, (int)getpid(), (long)syscall(SYS_gettid), lvl,
            base ? base + 1 : file, line, msg);
  else
    fprintf(logFile, "%s:%d:%ld CPCL %s %s\n", hostName, (int)getpid(), (long)syscall(SYS_gettid), lvl, msg);
  fflush(logFile);
}
