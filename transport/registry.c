/* registry.c -- the list of transports, compiled in or not. */
#include <string.h>

#include "comm.h"
#include "core.h"
#include "transport.h"

cpclResult_t cpclTransportUnsupported() {
  return CPCL_ERR(NULL, cpclUnsupported, "this transport does not support the operation");
}

const cpclTransportEntry_t cpclTransports[] = {
    {"self", &cpclTransportSelf},
#ifdef CPCL_HAVE_UCX
    {"ucx", &cpclTransportUcx},
#else
    {"ucx", NULL},
#endif
#ifdef CPCL_HAVE_NCCL
    {"nccl", &cpclTransportNccl},
#else
    {"nccl", NULL},
#endif
#ifdef CPCL_HAVE_CUDA
    {"ipc", &cpclTransportIpc},
#else
    {"ipc", NULL},
#endif
};
const int cpclNumTransports = sizeof(cpclTransports) / sizeof(cpclTransports[0]);

const cpclTransportEntry_t* cpclTransportFind(const char* name) {
  for (int i = 0; i < cpclNumTransports; i++)
    if (strcmp(cpclTransports[i].name, name) == 0) return &cpclTransports[i];
  return NULL;
}

CPCL_API cpclResult_t cpclGetTransportInfo(int index, const char** name, int* compiledIn, int* usable) {
  if (index < 0 || index >= cpclNumTransports)
    return CPCL_ERR(NULL, cpclInvalidArgument, "index %d is not a transport (0..%d)", index, cpclNumTransports - 1);
  const cpclTransportEntry_t* e = &cpclTransports[index];
  if (name) *name = e->name;
  if (compiledIn) *compiledIn = e->ops != NULL;
  if (usable) *usable = e->ops != NULL && e->ops->usable();
  return cpclSuccess;
}
