/* An engine's first contact: only <cpcl.h> (and MPI for the bootstrap), linked through
 * pkg-config against the installed library; creates a communicator and prints its axes, checks
 * that the installed headers' version (cpcl_version.h) is the library's, and runs one empty
 * step through a plan with the versioned structs' initializers. */
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
  int version = 0;
  cpclGetVersion(&version);
  if (version != CPCL_VERSION_CODE) {
    fprintf(stderr, "the library is version %d, its headers %d (%s)\n", version, CPCL_VERSION_CODE,
            CPCL_VERSION_STRING);
    MPI_Abort(world, 1);
  }
  cpclAttnDesc_t desc = CPCL_ATTN_DESC_INITIALIZER;
  desc.numQoHeads = 8;
  desc.numKvHeads = 1;
  desc.smScale = 0.08838835f;
  cpclAttnPlan_t plan;
  cpclBatch_t batch = CPCL_BATCH_INITIALIZER; /* zero sequences, zero rows: a valid, empty step */
  res = cpclAttnPlanCreate(&plan, comm, &desc, 4);
  if (res == cpclSuccess) res = cpclAttnDecode(plan, &batch, NULL, NULL, NULL, NULL, NULL, NULL);
  if (res != cpclSuccess) {
    fprintf(stderr, "empty step: %s: %s\n", cpclGetErrorString(res), cpclGetLastError(comm));
    MPI_Abort(world, 1);
  }
  cpclAttnPlanDestroy(plan);
  printf("hello from cpcl %s rank %d of %d (dcp %d)\n", CPCL_VERSION_STRING, rank, size, dcp);
  cpclCommDestroy(comm);
  MPI_Finalize();
  return 0;
}
