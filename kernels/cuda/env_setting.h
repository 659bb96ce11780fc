/*
 * env_setting.h -- a library setting read from the environment once per process, unless a setter
 * stored a value first (the kernels' test and measurement knobs: CPCL_PREFILL_SM90_*,
 * CPCL_MLA_SM90_SPARSE*, CPCL_GQA_SM90_MERGE, CPCL_MLA_SM90_FUSED_MERGE). Host code only.
 */
#ifndef CPCL_CUDA_ENV_SETTING_H_
#define CPCL_CUDA_ENV_SETTING_H_

#include <stdlib.h>

#include <atomic>

namespace cpcl {

/* slot's value; -1 in the slot: not read yet, so parse (the value for the variable's text, nullptr
 * when unset) decides it now. The first reader's (or a setter's) value wins a race; parse must not
 * return -1. */
inline int settingNow(std::atomic<int>& slot, const char* name, int (*parse)(const char* e)) {
  int v = slot.load(std::memory_order_acquire);
  if (v == -1) {
    v = parse(getenv(name));
    int unread = -1;
    if (!slot.compare_exchange_strong(unread, v, std::memory_order_acq_rel)) v = unread;
  }
  return v;
}

}  // namespace cpcl

#endif /* CPCL_CUDA_ENV_SETTING_H_ */
