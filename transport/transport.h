/*
 * transport.h -- the one interface through which cpcl moves bytes.
 *
 * A transport is a table of functions (UCX's uct_iface_ops pattern) with a capability mask that
 * says which groups of slots it implements (UCX's cap.flags); every slot it leaves out points at
 * the typed cpclTransportUnsupported* function of that slot, never NULL, and callers test the
 * capability, never the pointer. src/ orchestrates over this table only; a new transport is a
 * new folder with one table, listed in transport/registry.c.
 *
 * Layering: a transport sees no communicator. It is opened with cpclTransportInitArgs_t (what it
 * needs to know about the group, plain values) and reports failures through base/ (the
 * thread's last error and the args' error sink). Nothing under transport/ includes a header of
 * src/ outside src/base/.
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

#include "base/error.h"
#include "cpcl.h"
#include "peer_sync.h"

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

/* What a transport is opened with: plain values, copied or used only during init unless said
 * otherwise. */
typedef struct {
  int rank, nranks;
  cpclMemType_t memType;
  int timeoutMs;            /* longest wait on a peer: device-side waits and the control plane */
  const uint8_t* peerLocal; /* [nranks] 1 when rank p runs on this host (p != rank) */
  const cpclOob_t* oob;     /* the caller's all-gather; ipc keeps a copy as its control plane */
  void* adopt;              /* a handle to adopt instead of creating one (nccl: the engine's
                               ncclComm_t, cpclCommInitNccl), or NULL */
  cpclErrorSink_t* errors;  /* where failures are recorded besides the thread's last error
                               (the communicator's record; lives as long as the transport) */
} cpclTransportInitArgs_t;

/* Capabilities: groups of slots, each wired all together or not at all (tests/unit/test_transport.c
 * holds every compiled-in table to that). */
enum {
  CPCL_TP_CAP_HOST_P2P = 1u << 0,    /* isend, irecv, progress, test, cancel: tagged host messages */
  CPCL_TP_CAP_CTRL = 1u << 1,        /* ctrlAllgather: a control plane besides the data plane */
  CPCL_TP_CAP_STREAM_XCHG = 1u << 2, /* alltoallv, waitFrom: stream-ordered exchange */
  CPCL_TP_CAP_PEER_MAP = 1u << 3,    /* regMem, deregMem, peerPtr, peerSync: peer-mapped buffers */
  CPCL_TP_CAP_STREAM_P2P = 1u << 4,  /* sendrecv: one peer pair, stream-ordered (a ring step) */
};

typedef struct cpclTransportOps {
  const char* name;
  unsigned memTypes; /* bit (1 << cpclMemType_t) for each memory type it moves */
  unsigned caps;     /* CPCL_TP_CAP_* */

  /* Whether it can be opened on this machine now (libraries and devices present). */
  int (*usable)(void);
  /* Collective over the group: open endpoints to every rank. */
  cpclResult_t (*init)(const cpclTransportInitArgs_t* args, void** ctx);
  cpclResult_t (*fini)(void* ctx);

  /* CPCL_TP_CAP_HOST_P2P. Post a tagged send/receive of `bytes` bytes to/from `peer` (peer !=
   * own rank). */
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

  /* CPCL_TP_CAP_PEER_MAP. Register a local buffer collectively, then get the address at which
   * this process sees peer `peer`'s copy of it; peerSync gives the flags through which kernels
   * synchronise (peer_sync.h). */
  cpclResult_t (*regMem)(void* ctx, void* buf, size_t bytes, void** handle);
  cpclResult_t (*deregMem)(void* ctx, void* handle);
  cpclResult_t (*peerPtr)(void* ctx, void* handle, int peer, void** ptr);
  cpclResult_t (*peerSync)(void* ctx, cpclPeerSync_t* sync);

  /* CPCL_TP_CAP_CTRL (device transports). A blocking all-gather of host bytes (plan agreement,
   * registration), bounded by the timeout. */
  cpclResult_t (*ctrlAllgather)(void* ctx, const void* send, void* recv, size_t bytes);

  /* CPCL_TP_CAP_STREAM_XCHG. Stream-ordered, capturable in a CUDA graph. */
  cpclResult_t (*alltoallv)(void* ctx, const cpclXfer_t* x);
  /* After alltoallv with postOnly: the kernels after this point on stream see peer's block. */
  cpclResult_t (*waitFrom)(void* ctx, int peer, int* errorFlag, cpclStream_t stream);

  /* CPCL_TP_CAP_STREAM_P2P. One step of a ring: send sendBytes of sendbuf to sendPeer and
   * receive recvBytes from recvPeer into recvbuf, stream-ordered (either size may be 0; a peer
   * is never this rank). Kernels after it on stream see the received bytes. One-sided
   * transports (ipc) store into sendPeer's copy of recvbuf (the receiver receives at the same
   * place of a buffer registered on every rank) and count one exchange per call on every rank;
   * a device wait that times out lands in errorFlag (the plan's kernel error record; may be NULL). */
  cpclResult_t (*sendrecv)(void* ctx, int sendPeer, const void* sendbuf, size_t sendBytes, int recvPeer, void* recvbuf,
                           size_t recvBytes, int* errorFlag, cpclStream_t stream);
} cpclTransportOps_t;

/* The slots a transport leaves out: one per slot, each returning cpclUnsupported with the
 * slot's name in the message. */
cpclResult_t cpclTransportUnsupportedIsend(void* ctx, int peer, uint64_t tag, const void* buf, size_t bytes,
                                           cpclRequest_t* req, cpclStream_t stream);
cpclResult_t cpclTransportUnsupportedIrecv(void* ctx, int peer, uint64_t tag, void* buf, size_t bytes,
                                           cpclRequest_t* req, cpclStream_t stream);
cpclResult_t cpclTransportUnsupportedProgress(void* ctx);
cpclResult_t cpclTransportUnsupportedTest(void* ctx, cpclRequest_t* req, int* done);
cpclResult_t cpclTransportUnsupportedCancel(void* ctx, cpclRequest_t* req);
cpclResult_t cpclTransportUnsupportedRegMem(void* ctx, void* buf, size_t bytes, void** handle);
cpclResult_t cpclTransportUnsupportedDeregMem(void* ctx, void* handle);
cpclResult_t cpclTransportUnsupportedPeerPtr(void* ctx, void* handle, int peer, void** ptr);
cpclResult_t cpclTransportUnsupportedPeerSync(void* ctx, cpclPeerSync_t* sync);
cpclResult_t cpclTransportUnsupportedCtrlAllgather(void* ctx, const void* send, void* recv, size_t bytes);
cpclResult_t cpclTransportUnsupportedAlltoallv(void* ctx, const cpclXfer_t* x);
cpclResult_t cpclTransportUnsupportedWaitFrom(void* ctx, int peer, int* errorFlag, cpclStream_t stream);
cpclResult_t cpclTransportUnsupportedSendrecv(void* ctx, int sendPeer, const void* sendbuf, size_t sendBytes,
                                              int recvPeer, void* recvbuf, size_t recvBytes, int* errorFlag,
                                              cpclStream_t stream);

/* Every slot of a capability group the table does not declare, filled with its stub (designated
 * initializers: list these first, then the transport's own slots). */
#define CPCL_TP_NO_HOST_P2P                                                           \
  .isend = cpclTransportUnsupportedIsend, .irecv = cpclTransportUnsupportedIrecv,     \
  .progress = cpclTransportUnsupportedProgress, .test = cpclTransportUnsupportedTest, \
  .cancel = cpclTransportUnsupportedCancel
#define CPCL_TP_NO_PEER_MAP                                                               \
  .regMem = cpclTransportUnsupportedRegMem, .deregMem = cpclTransportUnsupportedDeregMem, \
  .peerPtr = cpclTransportUnsupportedPeerPtr, .peerSync = cpclTransportUnsupportedPeerSync
#define CPCL_TP_NO_CTRL .ctrlAllgather = cpclTransportUnsupportedCtrlAllgather
#define CPCL_TP_NO_STREAM_XCHG \
  .alltoallv = cpclTransportUnsupportedAlltoallv, .waitFrom = cpclTransportUnsupportedWaitFrom
#define CPCL_TP_NO_STREAM_P2P .sendrecv = cpclTransportUnsupportedSendrecv

/* 0 when the table's caps match the slots it wires (each declared group wired whole, each
 * undeclared group left to the stubs); else -1 and msg names the first slot that disagrees. */
int cpclTransportCheckCaps(const cpclTransportOps_t* t, char* msg, size_t msgLen);

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

/* A transport that moves device memory only: its data plane is stream-ordered. */
static inline int cpclTransportIsDevice(const cpclTransportOps_t* t) { return !(t->memTypes & (1u << cpclMemHost)); }

/* Every transport cpcl knows, compiled in or not, for lookup by name and for cpcl_info. */
typedef struct {
  const char* name;
  const cpclTransportOps_t* ops; /* NULL when not compiled in */
} cpclTransportEntry_t;
extern const cpclTransportEntry_t cpclTransports[];
extern const int cpclNumTransports;

const cpclTransportEntry_t* cpclTransportFind(const char* name);

/* Generic communicator creation (src/comm.c: cpclCommInitOob) for the entry points of a
 * transport that come with a handle of their own (transport/nccl/comm_nccl.c:
 * cpclCommInitNccl): `adopt` reaches the transport's init as cpclTransportInitArgs_t.adopt. */
cpclResult_t cpclCommInitAdopt(cpclComm_t* comm, const cpclOob_t* oob, const cpclConfig_t* config, void* adopt);

#endif /* CPCL_TRANSPORT_H_ */
