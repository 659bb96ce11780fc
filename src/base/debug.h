/*
 * base/debug.h -- logging by level and subsystem (CPCL_DEBUG, CPCL_DEBUG_SUBSYS,
 * CPCL_DEBUG_FILE), as NCCL's debug.h. Part of base/, the services every layer uses: it includes
 * nothing of src/ outside base/.
 */
#ifndef CPCL_BASE_DEBUG_H_
#define CPCL_BASE_DEBUG_H_

typedef enum { CPCL_LOG_NONE = 0, CPCL_LOG_WARN = 1, CPCL_LOG_INFO = 2, CPCL_LOG_TRACE = 3 } cpclLogLevel_t;
/* INIT: communicator creation and teardown; COMM: the internal collectives and their messages;
 * NET: transports; PLAN: plan creation; SCHED: the schedules' steps; TOPO: where the ranks and
 * devices are (host locality, hwloc). */
typedef enum {
  CPCL_INIT = 1 << 0,
  CPCL_COMM = 1 << 1,
  CPCL_NET = 1 << 2,
  CPCL_PLAN = 1 << 3,
  CPCL_SCHED = 1 << 4,
  CPCL_TOPO = 1 << 5,
  CPCL_ALL = ~0
} cpclSubsys_t;

void cpclLog(cpclLogLevel_t level, unsigned subsys, const char* file, int line, const char* fmt, ...)
    __attribute__((format(printf, 5, 6)));
int cpclLogEnabled(cpclLogLevel_t level, unsigned subsys);

#define WARN(...) cpclLog(CPCL_LOG_WARN, CPCL_ALL, __FILE__, __LINE__, __VA_ARGS__)
#define INFO(sub, ...)                                                                                        \
  do {                                                                                                        \
    if (cpclLogEnabled(CPCL_LOG_INFO, (sub))) cpclLog(CPCL_LOG_INFO, (sub), __FILE__, __LINE__, __VA_ARGS__); \
  } while (0)
#define TRACE(sub, ...)                                                                                         \
  do {                                                                                                          \
    if (cpclLogEnabled(CPCL_LOG_TRACE, (sub))) cpclLog(CPCL_LOG_TRACE, (sub), __FILE__, __LINE__, __VA_ARGS__); \
  } while (0)

#endif /* CPCL_BASE_DEBUG_H_ */
