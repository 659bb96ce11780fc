/* fuzz_reader.h -- what the fuzz targets share: the input read as big-endian fields (zeros once
 * it runs out, so every input is a whole case), and REQUIRE, a broken guarantee as a crash the
 * fuzzer reports. */
#ifndef CPCL_FUZZ_READER_H_
#define CPCL_FUZZ_READER_H_

#include <stddef.h>
#include <stdint.h>

typedef struct {
  const uint8_t* d;
  size_t n, i;
} reader_t;

static inline uint32_t rd(reader_t* r, int bytes) {
  uint32_t v = 0;
  for (int k = 0; k < bytes; k++) v = (v << 8) | (r->i < r->n ? r->d[r->i++] : 0);
  return v;
}

#define REQUIRE(cond)              \
  do {                             \
    if (!(cond)) __builtin_trap(); \
  } while (0)

#endif /* CPCL_FUZZ_READER_H_ */
