/*
 * rank_limit.h -- the most ranks an attention plan supports: the partials one merge combines,
 * the peers one exchange kernel serves, the flag slots of the peer-sync block. The one limit of
 * the library, for kernels/ and src/ alike (plain C, no other include).
 */
#ifndef CPCL_RANK_LIMIT_H_
#define CPCL_RANK_LIMIT_H_

#define CPCL_MAX_RANKS 64
/* the kernels' name for it: one partial per rank */
#define CPCL_MAX_PARTS CPCL_MAX_RANKS

#endif /* CPCL_RANK_LIMIT_H_ */
