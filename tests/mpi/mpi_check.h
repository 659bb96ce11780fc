/* mpi_check.h -- assertions for multi-rank tests: a failure prints rank, place and cpcl's own
 * error string, then ends every rank (MPI_Abort) so mpirun reports it and nothing hangs. */
#ifndef CPCL_MPI_CHECK_H_
#define CPCL_MPI_CHECK_H_

#include <mpi.h>
#include <stdio.h>

#include "cpcl.h"

static int checkRank(void) {
  int r = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

#define EXPECT(cond)                                                                                  \
  do {                                                                                                \
    if (!(cond)) {                                                                                    \
      fprintf(stderr, "[rank %d] %s:%d: check failed: %s\n", checkRank(), __FILE__, __LINE__, #cond); \
      MPI_Abort(MPI_COMM_WORLD, 1);                                                                   \
    }                                                                                                 \
  } while (0)

#define EXPECT_RES(call, want)                                                                                      \
  do {                                                                                                              \
    cpclResult_t got_ = (call);                                                                                     \
    if (got_ != (want)) {                                                                                           \
      fprintf(stderr, "[rank %d] %s:%d: %s returned %d (%s), expected %d; last error: %s\n", checkRank(), __FILE__, \
              __LINE__, #call, (int)got_, cpclGetErrorString(got_), (int)(want), cpclGetLastError(NULL));           \
      MPI_Abort(MPI_COMM_WORLD, 1);                                                                                 \
    }                                                                                                               \
  } while (0)

#define CPCL_OK(call) EXPECT_RES(call, cpclSuccess)

#endif /* CPCL_MPI_CHECK_H_ */
