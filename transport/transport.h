/*
 * transport.h -- the one interface through which cpcl moves bytes.
 *
 * A transport is a table of functions (UCX's uct_iface_ops pattern): slots a transport does not
 * implement point at cpclTransportUnsupported, never NULL. src/ orchestrates over this table
 * only; a new transport is a new folder with one table, listed in transport/registry.c.
 *
 * Model. Tagged, non-blocking point-to-point messages between ranks (never to self: the layers
 * above copy locally), completed by test(); progress is driven by the caller's wait loop, so
 * every wait can be bounded and aborted. Transfers of device memory are stream-ordered (the
 * stream argument; NULL for host transports). Transports that can map peer memory (ipc, NCCL
 * windows) also register buffers and hand out peer pointers for kernels that store directly.
 */
#ifndef CPCL_TRANSPORT_H_
#define CPCL_TRANSPORT_H_

#include <stddef.h>
#include <stdint.h>

#include "cpcl.h"
#include "peer_sync.h"

struct cpclComm;

/* One stream-ordered all-to-all of device memory (device transports): rank p gets sendBytes[p]
 * bytes of sendbufs[p] into its recvbufs[me]. The own block is not moved (the caller copies it).
 * One-sided transports (ipc) store straight into the peer's buffer: remote is the address, in
 * this rank's own copy of a buffer registered on every rank (regMem), at which every peer
 * receives this rank's block (the buffers have the same layout on every rank). */
typedef struct {
  const void* const* sendbufs;
  const size_t* sendBytes;
  void* const* recvbufs;
  const size_t* recvBytes;
  void* remote;
  int postOnly;   /* send only; waitFrom() completes each receive (pipelined schedule) */
  int* errorFlag; /* the plan's kernel error record: a wait that times out lands there */
  cpclStream_t stream;
} cpclXfer_t;

/* One in-flight operation. Storage owned by the caller (preallocated in the communicator or
 * plan, so the per-step path allocates nothing); contents owned by the transport. */
typedef struct {
  void* handle; /* transport's request, NULL when complete */
  int active;   /* posted and not yet reported complete */
  int peer;
} cpclRequest_t;

/* Tag layout: [63:32] sequence number, [31:24] operation, [23:16] stage, [15:0] source rank. */
static inline uint64_t cpclMakeTag(uint32_t seq, int op, int stage, int src) {
  return ((uint64_t)seq << 32) | ((uint64_t)(op & 0xff) << 24) | ((uint64_t)(stage & 0xff) << 16) |
         (uint64_t)(src & 0xffff);
}

typedef struct cpclTransportOps {
  const char* name;
  unsigned memTypes; /* bit (1 << cpclMemType_t) for each memory type it moves */

  /* Whether it can be opened on this machine now (libraries and devices present). */
  int (*usable)(void);
  /* Collective over oob: open endpoints to every rank. comm's rank/nranks/timeout are set. */
  cpclResult_t (*init)(struct cpclComm* comm, const cpclOob_t* oob, void** ctx);
  cpclResult_t (*fini)(void* ctx);

  /* Post a tagged send/receive of `bytes` bytes to/from `peer` (peer != own rank). */
  cpclResult_t (*isend)(void* ctx, int peer, uint64_t tag, const void* buf, size_t bytes, cpclRequest_t* req,
                        cpclStream_t stream);
  cpclResult_t (*irecv)(void* ctx, int peer, uint64_t tag, void* buf, size_t bytes, cpclRequest_t* req,
                        cpclStream_t stream);
  /* Drive the transport's progress once. */
  cpclResult_t (*progress)(void* ctx);
  /* *done = 1 when req has completed (and its resources are released). A failed transfer or a
   * dead peer returns cpclRemoteError. */
  cpclResult_t (*test)(void* ctx, cpclRequest_t* req, int* done);
  /* Abandon an active request (after a timeout or an abort). */
  cpclResult_t (*cancel)(void* ctx, cpclRequest_t* req);

  /* Peer-mapped buffers (ipc, NCCL windows): register a local buffer collectively, then get the
   * address at which this process sees peer `peer`'s copy of it. */
  cpclResult_t (*regMem)(void* ctx, void* buf, size_t bytes, void** handle);
  cpclResult_t (*deregMem)(void* ctx, void* handle);
  cpclResult_t (*peerPtr)(void* ctx, void* handle, int peer, void** ptr);

  /* Device transports (memTypes without host). Control plane: a blocking all-gather of host
   * bytes (plan agreement, registration), bounded by the comm's timeout. */
  cpclResult_t (*ctrlAllgather)(void* ctx, const void* send, void* recv, size_t bytes);
  /* Data plane, stream-ordered, capturable in a CUDA graph. */
  cpclResult_t (*alltoallv)(void* ctx, const cpclXfer_t* x);
  /* After alltoallv with postOnly: the kernels after this point on stream see peer's block. */
  cpclResult_t (*waitFrom)(void* ctx, int peer, int* errorFlag, cpclStream_t stream);
  /* Peer-mapped transports: the flags through which kernels synchronise (peer_sync.h). */
  cpclResult_t (*peerSync)(void* ctx, cpclPeerSync_t* sync);
} cpclTransportOps_t;

/* The shared body of every slot a transport leaves out. */
cpclResult_t cpclTransportUnsupported();

extern const cpclTransportOps_t cpclTransportSelf;
#ifdef CPCL_HAVE_UCX
extern const cpclTransportOps_t cpclTransportUcx;
#endif
#ifdef CPCL_HAVE_CUDA
extern const cpclTransportOps_t cpclTransportIpc;
#endif
#ifdef CPCL_HAVE_NCCL
extern const cpclTransportOps_t cpclTransportNccl;
#endif

/* A transport that moves device memory only: its control plane is ctrlAllgather. */
static inline int cpclTransportIsDevice(const cpclTransportOps_t* t) { return !(t->memTypes & (1u << cpclMemHost)); }

/* Every transport cpcl knows, compiled in or not, for lookup by name and for cpcl_info. */
typedef struct {
  const char* name;
  const cpclTransportOps_t* ops; /* NULL when not compiled in */
} cpclTransportEntry_t;
extern const cpclTransportEntry_t cpclTransports[];
extern const int cpclNumTransports;

const cpclTransportEntry_t* cpclTransportFind(const char* name);

#endif /* CPCL_TRANSPORT_H_ */
