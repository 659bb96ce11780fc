/* mpi_oob.h -- the out-of-band bootstrap for programs that already run under MPI: cpcl's OOB
 * all-gather over MPI_Allgather. Header-only; used by the tools and the mpi tests. */
#ifndef CPCL_MPI_OOB_H_
#define CPCL_MPI_OOB_H_

#include <mpi.h>

#include "cpcl.h"

static int cpclMpiAllgather(const void* sendbuf, void* recvbuf, size_t bytes, void* ctx) {
  MPI_Comm comm = *(MPI_Comm*)ctx;
  return MPI_Allgather(sendbuf, (int)bytes, MPI_BYTE, recvbuf, (int)bytes, MPI_BYTE, comm) == MPI_SUCCESS ? 0 : 1;
}

/* Fills oob for the MPI communicator *mpiComm (which must outlive cpclCommInitOob). */
static inline void cpclMpiOob(cpclOob_t* oob, MPI_Comm* mpiComm) {
  int rank, size;
  MPI_Comm_rank(*mpiComm, &rank);
  MPI_Comm_size(*mpiComm, &size);
  oob->allgather = cpclMpiAllgather;
  oob->ctx = mpiComm;
  oob->rank = rank;
  oob->nranks = size;
}

#endif /* CPCL_MPI_OOB_H_ */
