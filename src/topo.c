/* topo.c -- the machine's topology through hwloc: NUMA nodes, cores, GPUs and NICs with the CPUs
 * local to each, for cpcl_info now and rank-to-NIC/GPU affinity later. */
#include <string.h>

#include "config.h"
#include "core.h"

#ifdef CPCL_HAVE_HWLOC
#include <hwloc.h>

static const char* osdevKind(hwloc_obj_t o) {
  switch (o->attr->osdev.type) {
    case HWLOC_OBJ_OSDEV_GPU:
      return "gpu";
    case HWLOC_OBJ_OSDEV_COPROC:
      return "gpu";
    case HWLOC_OBJ_OSDEV_NETWORK:
      return "nic";
    case HWLOC_OBJ_OSDEV_OPENFABRICS:
      return "nic";
    default:
      return NULL;
  }
}

CPCL_API cpclResult_t cpclGetTopologySummary(char* buf, size_t len) {
  if (buf == NULL || len == 0) return CPCL_ERR(NULL, cpclInvalidArgument, "buf is NULL or len is 0");
  hwloc_topology_t topo;
  if (hwloc_topology_init(&topo) != 0) return CPCL_ERR(NULL, cpclSystemError, "hwloc_topology_init failed");
  hwloc_topology_set_io_types_filter(topo, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
  if (hwloc_topology_load(topo) != 0) {
    hwloc_topology_destroy(topo);
    return CPCL_ERR(NULL, cpclSystemError, "hwloc_topology_load failed");
  }
  size_t o = 0;
#define APPEND(...)                                                    \
  do {                                                                 \
    if (o < len) o += (size_t)snprintf(buf + o, len - o, __VA_ARGS__); \
  } while (0)
  int packages = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PACKAGE);
  int numas = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE);
  int cores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
  int pus = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU);
  APPEND("packages %d, NUMA nodes %d, cores %d, hardware threads %d\n", packages, numas, cores, pus);
  for (int i = 0; i < numas; i++) {
    hwloc_obj_t n = hwloc_get_obj_by_type(topo, HWLOC_OBJ_NUMANODE, i);
    char cpus[128];
    hwloc_bitmap_list_snprintf(cpus, sizeof(cpus), n->cpuset);
    APPEND("  numa %u: cpus %s, memory %llu MiB\n", n->os_index, cpus,
           (unsigned long long)(n->attr->numanode.local_memory >> 20));
  }
  int gpus = 0, nics = 0;
  for (hwloc_obj_t d = hwloc_get_next_osdev(topo, NULL); d; d = hwloc_get_next_osdev(topo, d)) {
    const char* kind = osdevKind(d);
    if (kind == NULL) continue;
    hwloc_obj_t anc = hwloc_get_non_io_ancestor_obj(topo, d);
    char cpus[128] = "?";
    if (anc && anc->cpuset) hwloc_bitmap_list_snprintf(cpus, sizeof(cpus), anc->cpuset);
    kind[0] == 'g' ? gpus++ : nics++;
    APPEND("  %s %s: local cpus %s\n", kind, d->name ? d->name : "?", cpus);
  }
  APPEND("GPUs %d, NICs %d\n", gpus, nics);
  INFO(CPCL_TOPO, "hwloc: %d packages, %d NUMA nodes, %d cores, %d GPUs, %d NICs", packages, numas, cores, gpus, nics);
#undef APPEND
  hwloc_topology_destroy(topo);
  return cpclSuccess;
}
#else
CPCL_API cpclResult_t cpclGetTopologySummary(char* buf, size_t len) {
  (void)buf;
  (void)len;
  return CPCL_ERR(NULL, cpclUnsupported, "cpcl was built without hwloc (meson option hwloc)");
}
#endif

CPCL_API const char* cpclGetBuildConfig(void) { return CPCL_BUILD_CONFIG; }
