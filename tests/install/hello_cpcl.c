/* An engine's first contact: only <cpcl.h> (and MPI for the bootstrap), linked through
 * pkg-config against the installed library; creates a communicator and prints its axes. */
#include <cpcl.h>
#include <mpi.h>
#include <stdio.h>

static int oobAllgather(const void* s, void* r, size_t bytes, void* ctx) {
  return MPI_Allgather(s, (int)bytes, MPI_BYTE, r, (int)bytes, MPI_BYTE, *(MPI_Comm*)ctx) != MPI_SUCCESS;
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm world = MPI_COMM_WORLD;
  cpclOob_t oob = {oobAllgather, &world, 0, 0};
  MPI_Comm_rank(world, &oob.rank);
  MPI_Comm_size(world, &oob.nranks);
  cpclComm_t comm;
  cpclResult_t res = cpclCommInitOob(&comm, &oob, NULL);
  if (res != cpclSuccess) {
    fprintf(stderr, "cpclCommInitOob: %s: %s\n", cpclGetErrorString(res), cpclGetLastError(NULL));
    MPI_Abort(world, 1);
  }
  int rank, size, dcp;
  cpclCommRank(comm, &rank);
  cpclCommSize(comm, &size);
  cpclCommAxes(comm, &dcp, NULL, NULL, NULL);
  printf("hello from cpcl rank %d of %d (dcp %d)\n", rank, size, dcp);
  cpclCommDestroy(comm);
  MPI_Finalize();
  return 0;
}
