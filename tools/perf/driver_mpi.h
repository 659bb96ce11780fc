/* driver_mpi.h -- the perf driver's hooks for tools that run under mpirun (one process per rank):
 * rank 0 prints and writes the results file, every timed iteration starts after a barrier, and
 * a sample is the slowest rank's time. Header-only, so a tool without MPI never sees MPI. */
#ifndef CPCL_PERF_DRIVER_MPI_H_
#define CPCL_PERF_DRIVER_MPI_H_

#include <mpi.h>

#include "driver.h"

static void perfMpiBarrier(void* ctx) { MPI_Barrier(*(MPI_Comm*)ctx); }

static void perfMpiMax(double* t, int n, void* ctx) {
  MPI_Allreduce(MPI_IN_PLACE, t, n, MPI_DOUBLE, MPI_MAX, *(MPI_Comm*)ctx);
}

/* comm must outlive the run */
static inline void perfUseMpi(perf_t* p, MPI_Comm* comm) {
  int rank = 0;
  MPI_Comm_rank(*comm, &rank);
  p->root = rank == 0;
  p->barrier = perfMpiBarrier;
  p->reduceMax = perfMpiMax;
  p->ctx = comm;
}

#endif /* CPCL_PERF_DRIVER_MPI_H_ */
