/* comm_nccl.c -- cpclCommInitNccl: a communicator over an engine's NCCL communicator. Built when
 * NCCL is found; the nccl transport itself comes with the GPU-schedules work, so until then this
 * validates its arguments and says plainly that the transport is not there yet. */
#include "core.h"
#include "cpcl_nccl.h"

CPCL_API cpclResult_t cpclCommInitNccl(cpclComm_t* comm, ncclComm_t nccl, const cpclConfig_t* config) {
  if (comm == NULL) return CPCL_ERR(NULL, cpclInvalidArgument, "comm is NULL");
  if (nccl == NULL) return CPCL_ERR(NULL, cpclInvalidArgument, "nccl is NULL");
  if (config && config->size != sizeof(cpclConfig_t))
    return CPCL_ERR(NULL, cpclInvalidArgument, "config->size is %zu, expected %zu: use CPCL_CONFIG_INITIALIZER",
                    config->size, sizeof(cpclConfig_t));
  return CPCL_ERR(NULL, cpclUnsupported,
                  "cpclCommInitNccl: this build has no nccl transport yet (it comes with the GPU schedules); "
                  "use cpclCommInitOob with transport \"self\" for one GPU rank");
}
