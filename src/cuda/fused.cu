/*
 * fused.cu - dfm_fused_moe as ONE persistent kernel per call (issue 5):
 * dispatch (route, per-token quantize, send, counts first), the expert GEMMs
 * (GEMM1 + dequant + SwiGLU, per-expert requantization, GEMM2 writing bf16
 * into the home ranks' combine slots) and the combine reduction, with no
 * grid-wide barrier: every dependency is a flag or a counter in memory.
 *
 * The default since the thirty-first session (fused.cuh); DFM_CUDA_FUSED=0 at
 * context creation selects the 5-launch pipeline instead. Version 1 passed the whole GPU test
 * suite on 1-4 H100s but fell behind the pipeline as T grew; version 2 spreads
 * the per-expert requantization over the CTAs waiting for it (passes the
 * suite on 1-4 H100s and H200s; dsv3-e32 T=128 1538 -> 831 us, T=1024 13989
 * -> 3221 us). DFM_CUDA_FUSED_TRACE=1 stamps where each CTA's time goes
 * (scripts/fused_trace.sh; findings in docs/PERF_NOTES.md).
 *
 * Reuses the swap-AB wgmma consumer (wg_consume: QGMMA/IGMMA/HGMMA + both
 * epilogues), the tensor-map helpers and the A-box decomposition
 * (wg_pack_boxes) of gemm_wgmma.cuh, the routing/quantize/send steps of
 * dispatch_steps.cuh and the requantization row of device_common.cuh
 * (dfm_requant_row_by, here over the CTA) and the combine reduction
 * (dfm_combine_reduce, combine.cu's: bit-identical results are the point).
 *
 * Left out: per-token combine counts (one flag per rank once all of its GEMM2
 * work is done), A-operand quantize-on-load for GEMM2 (a requant step per
 * expert, shared by the CTAs with GEMM2 items of it), per-source gating of a
 * token pass (an item waits for every source that sent rows to its expert).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch_steps.cuh"
#include "fused.cuh"
#include "gemm_wgmma.cuh"

static_assert(DFM_QUANT_FP8 == DFM_QUANT_FP8_ID && DFM_QUANT_INT8 == DFM_QUANT_INT8_ID &&
                  DFM_QUANT_BF16 == DFM_QUANT_BF16_ID,
              "gemm_wgmma.cuh mode ids");

/* warps 0-7: two consumer warpgroups; warps 8-11: the producer warpgroup
 * (warp 8 issues the TMA copies, 9-11 only take part in the dispatch and
 * combine phases). A full third warpgroup, unlike the GEMM kernel's single
 * producer warp, lets the GEMM phase move registers with setmaxnreg: every
 * warpgroup enters with FUSED_REGS (the launch bound's 65536 / 384, rounded
 * down to 8), the producer's gives FUSED_REGS - FUSED_REGS_PRODUCER back and
 * the consumers' take FUSED_REGS_CONSUMER, so the f16 GEMM1 keeps its
 * lookahead and GEMM2 stages its stores (wg_consume) without spills. */
#define FUSED_THREADS 384
#define FUSED_CONSUMERS 256
#define FUSED_REGS 168
#ifndef FUSED_REGS_PRODUCER
#define FUSED_REGS_PRODUCER 64 /* 56 spilled with the dynamic item schedule's state */
#endif
#ifndef FUSED_REGS_CONSUMER
#define FUSED_REGS_CONSUMER 216
#endif
static_assert(2 * FUSED_REGS_CONSUMER + FUSED_REGS_PRODUCER <= 3 * FUSED_REGS,
              "setmaxnreg: the warpgroups' registers must fit what the launch gives");
/* Tag of the "counts are in" value of a dispatch flag: seq | TAG, then seq
 * once the payload is in too (a waiter for the counts accepts both). */
#define FUSED_COUNTS_TAG (1ull << 63)
/* The count words a fused call writes to its peers: (tag << 16) | count, the
 * tag of call seq never 0 (a pipeline call's plain count never passes for
 * one) and unlike the tag of the call before on the same half (seq - 2). A
 * reader polls its words until each carries the call's tag: no flag and no
 * system-scope fence after the stores (the counts flag's release waited for
 * the NVLink stores: ~2 us before the first items). Counts are <= 1024. */
static __host__ __device__ __forceinline__ int fused_counts_tag(unsigned long long seq) {
    return (int)((0x4000u | ((unsigned int)seq & 0x3fffu)) << 16);
}
/* Weight stages of the current GEMM1 item prefetched into L2 (beyond the
 * shared-memory ring) while its token rows have not arrived. 0: off. The
 * environment variable DFM_CUDA_FUSED_L2_PF (0..64, read at context creation)
 * overrides it, for measurements. */
#ifndef FUSED_L2_PF_STAGES
#define FUSED_L2_PF_STAGES 0 /* 8, 16, 32 measured 1-5% slower (docs/PERF_NOTES.md) */
#endif
/* Weight stages of a CTA's first GEMM1 item prefetched into L2 right after
 * the route, before the counts are known (the CTAs then send for ~10 us at
 * T >= 32, and HBM would idle): the item is guessed as if every local
 * expert had one pass of rows (blockIdx.x = g * n_tiles1 + tile), which holds
 * when the call's expected rows per expert, R * T * K / E, are in
 * [2, PW / 2]; elsewhere nothing is prefetched. 0: off. The environment
 * variable DFM_CUDA_FUSED_SPEC_PF (0..64, read at context creation)
 * overrides it. Measured (twentieth session, call 3, 4 x H100, three rounds):
 * 8 against 0, qwen3-235b T = 128 328.5 -> 323.9 us, dsv3-e32 T = 32 183.0 ->
 * 182.1, the other rows within the noise; 16 costs 3-5 us at T = 32 (the
 * prefetches slow the sends). Issued after the sends (FUSED_SPEC_PF_LATE),
 * 12 / 16 / 24 still cost 1-3 / 3-6 / 8-11 us at T = 32 (twenty-fourth
 * session, call 2). */
#ifndef FUSED_SPEC_PF_STAGES
#define FUSED_SPEC_PF_STAGES 8
#endif
/* 1: those prefetches issued after the CTA's send units instead of right
 * after the route, so that they do not queue ahead of the units' token-row
 * loads in HBM (twenty-third session's probes: a cold row load 2-4 us).
 * Call 6 (4 x H100, three rounds, means, 0 -> 1): qwen3-30b-bf16 T = 1 / 32 /
 * 128 59.6 / 134.2 / 175.5 -> 59.7 / 133.3 / 173.9 us, dsv3-e32 130.7 /
 * 179.2 / 304.0 -> 130.3 / 178.5 / 304.9, qwen3-235b 82.5 / 241.9 / 318.2 ->
 * 82.4 / 242.0 / 316.1. */
#ifndef FUSED_SPEC_PF_LATE
#define FUSED_SPEC_PF_LATE 1
#endif
/* Where the call is too sparse for that guess (R * T * K < 2E: decode at
 * T ~ 1), the CTAs prefetch instead, after their send units, the first n
 * weight stages of GEMM1 tiles of the local experts that this rank's own
 * tokens chose (known from the route, before any count arrives): CTA b takes
 * tile b % n_tiles1 of the (b / n_tiles1)-th such expert, so every tile of
 * those experts is warmed once, in the ~3-4 us of the head in which HBM
 * otherwise idles (the rank's own part of the route; the peers' tokens are
 * known only from their counts). 0: off. The environment variable
 * DFM_CUDA_FUSED_OWN_PF (0..64, read at context creation) overrides it.
 * Measured (twenty-sixth session, call 2, 4 x H100, three rounds, medians of
 * the rounds, 0 -> 8 -> 16 -> 32 stages, T = 1): dsv3-e32 127.2 -> 125.7 ->
 * 125.8 -> 127.6 us, dsv3-e32-int8 140.6 -> 139.6 -> 140.0 -> 148.0,
 * qwen3-235b 78.1 -> 78.1 -> 77.9 -> 81.2, qwen3-30b-bf16 57.1 -> 56.6 ->
 * 55.9 -> 55.3; T = 32 (not sparse: off) unchanged. */
#ifndef FUSED_OWN_PF_STAGES
#define FUSED_OWN_PF_STAGES 16
#endif
/* Whether the CTA that completes an expert's GEMM1 items requantizes the
 * expert's rows right away (claims shared with the CTAs that reach its GEMM2
 * items) instead of leaving it all to them: 0 never, 1 when the expert has at
 * most FUSED_EAGER_ROWS rows (decode at T ~ 1: 3 us less per call), 2 always.
 * Measured (docs/PERF_NOTES.md, seventh session): 2, and 1 extended to every
 * CTA without a GEMM1 item left, cost 12-22 us at T = 32. 3 (the default):
 * as 1, and also while at least a grid's worth of GEMM1 items is unclaimed
 * (the dynamic schedule absorbs this CTA's delay): qwen3-235b T = 32 / 128
 * 269 / 360 -> 260 / 344 us, dsv3-e32 unchanged (fifteenth session, call 1).
 * INT8 calls take FUSED_EAGER_RQ_INT8 (0) instead: against 3, dsv3-e32-int8
 * T = 32 187.0 -> 176.3 us, T = 1 139.4 -> 140.8, T = 128 the same
 * (thirty-second session, call 5, 4 x H100, three rounds; call 4: T = 1024
 * 1437.8 -> 1395.5). Why is not known: 1 (3 without the unclaimed-items
 * clause) read 185.4 at T = 32, and 0 differs from 1 only for experts of at
 * most FUSED_EAGER_ROWS rows (docs/PERF_NOTES.md, thirty-second session).
 * DFM_CUDA_FUSED_EAGER_RQ=0|1|2|3 overrides both. */
#ifndef FUSED_EAGER_RQ
#define FUSED_EAGER_RQ 3
#endif
#ifndef FUSED_EAGER_RQ_INT8
#define FUSED_EAGER_RQ_INT8 0
#endif
/* The CTA's three producer-group warps 9-11, idle once the GEMM phase
 * starts, take over the count of some of the CTA's GEMM1 items (rq_warps):
 * the consumers post the item in a shared-memory queue of FUSED_RQQ slots and
 * arrive on its slot's mbarrier (which releases their act stores) and go on
 * to their next item at once; the warps count it on g1_done, raise g1_ready
 * when it completes its expert, and requantize a completed expert of at most
 * FUSED_RQW_ROWS rows themselves (at qwen3-235b T = 1 the consumers'
 * requantization of one row took ~10 us under the weight stream while the
 * CTA's next GEMM1 item waited: per-item trace, twenty-seventh session; at
 * qwen3-235b T = 32, 7.7 % of the warps' stall samples were 255 consumer
 * threads waiting while thread 0's acquire-release count returned: ncu,
 * twenty-eighth). 0: none, the consumers count every item. 4: the items of
 * experts of at most FUSED_RQW_ROWS rows (against 0: qwen3-235b T = 1 78.9 ->
 * 76.8 us, dsv3-e32-int8 140.0 -> 138.6, twenty-ninth session). 3 (the
 * default): also those of experts of more than FUSED_EAGER_ROWS rows
 * (FUSED_RQW_MANY), whose requantization is then left to the CTAs with their
 * GEMM2 items, never eager (thirtieth session, calls 2 and 3, 4 x H100,
 * against 4: qwen3-235b T = 128 -5.0 / -5.6 us, dsv3-e32 T = 32 -1.0 / -1.1,
 * T = 1 the same). The 3..16-row experts stay the consumers': 96 threads
 * requantizing them row by row lost 37-45 us at qwen3-235b T = 32 (8 rows an
 * expert; twenty-eighth to thirtieth sessions, modes 1 and 2 then, removed).
 * With 3 and 4 the warps leave at once when no expert of the call is theirs.
 * DFM_CUDA_FUSED_RQ_WARPS=0|3|4 overrides it (1 and 2 read as 0). */
#ifndef FUSED_RQ_WARPS
#define FUSED_RQ_WARPS 3
#endif
#define FUSED_RQQ 16
#ifndef FUSED_RQW_ROWS
#define FUSED_RQW_ROWS 2 /* rq_warps 3 and 4: experts of at most this many rows requantized by warps 9-11 */
#endif
/* rq_warps 3: the > FUSED_EAGER_ROWS hand-off for FP8 and BF16 only; INT8
 * keeps 4's (thirtieth session, calls 2 and 3: 3 against 4 at dsv3-e32-int8
 * T = 32 +1.6 / +3.1 us, where FP8 dsv3-e32 gained 1.0 / 1.1) */
#ifndef FUSED_RQW_MANY_INT8
#define FUSED_RQW_MANY_INT8 0
#endif
#define FUSED_RQW_MANY(q) (FUSED_RQW_MANY_INT8 || (q) != DFM_QUANT_INT8)
/* rq_warps 3's hand-off is for experts of more than this many rows (at least
 * FUSED_EAGER_ROWS). Thirty-second session, call 4 (4 x H100, two rounds), 3
 * against 4 (no such hand-off): dsv3-e256 T = 128 (~16 rows an expert) 1103.5
 * against 1082.1 us, qwen3-235b T = 128 (~32) 311.7 against 319.4, dsv3-e32
 * T = 1024 (~1024) 1747.5 against 1795.7. 24 keeps both (thirty-third
 * session, call 2, 4 x H100, three rounds rotated, against 16): dsv3-e256
 * T = 128 1099.4 -> 1081.4, qwen3-235b T = 128 312.4 -> 313.2, dsv3-e32
 * T = 1024 1745.8 -> 1742.9, every other row within +-1.6; 32 lost 3.8 at
 * qwen3-235b T = 128. A compile-time value: a run-time knob put the FP8
 * version 5 kernel's wgmma under register pressure (C7511). */
#ifndef FUSED_RQW_MANY_ROWS
#define FUSED_RQW_MANY_ROWS 24
#endif
#define FUSED_RQW_THREADS 96 /* warps 9-11 */
#define FUSED_BAR_RQW 6      /* their named barrier */
/* Experts past its own that a CTA waiting at a GEMM2 gate helps requantize
 * (fused_help_requant). Fifteenth session, call 2 (4 x H200), against 0:
 * dsv3-e32 T = 32 / 128 182 / 322 -> 176 / 308 us, qwen3-235b T = 128
 * 322 -> 318; 2, 4 and 8 gain less. DFM_CUDA_FUSED_RQ_AHEAD overrides it. */
#ifndef FUSED_RQ_AHEAD
#define FUSED_RQ_AHEAD 1
#endif
/* One expert more ahead before a GEMM2 item of an expert of at least this
 * many rows (a bit an expert, set once a call, a thread an expert). Thirty-fourth session, call 4
 * (4 x H200, with FUSED_QOK), RQ_AHEAD 2 for every expert against 1: dsv3-e32
 * T = 512 / 1024 -8 / -14 us, dsv3-e32-int8 -18 / -18, but T = 128 +2.3. From 960 rows only
 * (thirty-fifth session, call 1, 4 x H200, five rounds): T = 1024 1618.8 -> 1609.3 us, INT8
 * 1273.9 -> 1255.9; T = 768, T <= 128 and qwen3-235b within +-0.9. */
#ifndef FUSED_RQ_AHEAD_ROWS
#define FUSED_RQ_AHEAD_ROWS 960
#endif
/* Items (GEMM1 then GEMM2) handed to CTAs: 1 = each CTA's first is
 * blockIdx.x, every later one the next unclaimed u (an atomicAdd on
 * fused_state_t.item_next of the call's half): a CTA that streams slower
 * takes fewer; 0 = the static schedule u = blockIdx.x + k * gridDim.x.
 * DFM_CUDA_FUSED_DYNAMIC=0|1 overrides it. */
#ifndef FUSED_DYNAMIC
#define FUSED_DYNAMIC 1
#endif
#define FUSED_ITEMQ 32 /* s_items slots: > items the producer can be ahead (<= WG_MAX_STAGES) */
static_assert(FUSED_ITEMQ > WG_MAX_STAGES + 1, "the producer is at most WG_MAX_STAGES stages (items) ahead");
#define FUSED_BAR_DONE 2 /* named barrier of the 256 consumer threads (wg_consume uses 1, 3, 4, 5) */

/* Device counters of the kernel, one set per context (fused_create). The
 * CTA whose increment completes a counter resets it (nobody else touches it
 * again in that call; the next call is a later kernel), so no reset pass. */
typedef struct {
    unsigned int g2_arrived; /* CTAs done with all their GEMM2 items */
    unsigned int pad;
    unsigned int item_next[2]; /* per buffer half: items u >= gridDim.x handed out (dynamic schedule;
                                * the CTA completing g2_arrived resets its half) */
    /* then: g1_done [G] u32 (GEMM1 items of local expert g completed),
     * q_ready [G] u64 (= seq once expert g's act_q/act_s are written) */
} fused_state_t;

typedef struct {
    CUtensorMap w1, w2;              /* W boxes 128 x 128 bytes */
    CUtensorMap a1[WG_A_MAPS];       /* recv_rows, both halves: 1 << i-row boxes (uses 8..128) */
    CUtensorMap a2[WG_A_MAPS];       /* act_q */
} fused_maps_t;

typedef struct {
    fused_state_t *fs;
    unsigned int *g1_done;
    unsigned long long *q_ready;
    /* per local expert g, all u64: g1_ready[g] = seq once every GEMM1 item of
     * g is done; rq_claim[g], rq_done[g] = (seq << 32) | row chunks claimed /
     * rows requantized in call seq (a stale seq reads as 0: never reset) */
    unsigned long long *g1_ready, *rq_claim, *rq_done;
    /* version 5's GEMM1 (fused_kernel<FP8, true>): w_ready[g] = seq once
     * expert g's token rows are widened into world.tok16; w_claim, w_done as
     * rq_claim, rq_done for the widening */
    unsigned long long *w_ready, *w_claim, *w_done;
    int parts; /* dispatch work units per token */
    int l2_pf; /* FUSED_L2_PF_STAGES or DFM_CUDA_FUSED_L2_PF */
    int spec_pf; /* FUSED_SPEC_PF_STAGES or DFM_CUDA_FUSED_SPEC_PF */
    int eager_rq; /* FUSED_EAGER_RQ(_INT8) or DFM_CUDA_FUSED_EAGER_RQ: 0, 1, 2, 3 */
    int rq_ahead; /* FUSED_RQ_AHEAD or DFM_CUDA_FUSED_RQ_AHEAD */
    int dynamic;  /* FUSED_DYNAMIC or DFM_CUDA_FUSED_DYNAMIC */
    int send_skip0;  /* FUSED_SEND_SKIP0 or DFM_CUDA_FUSED_SEND_SKIP0 */
    int arrive_work; /* FUSED_ARRIVE_WORK or DFM_CUDA_FUSED_ARRIVE_WORK */
    int g2_scatter; /* FUSED_G2_SCATTER or DFM_CUDA_FUSED_G2_SCATTER: 0, 1, 2 (see there) */
    int reduce_warm; /* FUSED_REDUCE_WARM or DFM_CUDA_FUSED_REDUCE_WARM: 0, 1, 2 (see there) */
    int ll;          /* FUSED_COMBINE_LL or DFM_CUDA_FUSED_COMBINE_LL: tagged combine rows (see there) */
    int w_evict_first; /* W loads with the L2 evict_first policy (dfm_cuda_w_evict_first) */
    /* NULL, or [grid][FUSED_TRACE_STRIDE] %globaltimer stamps of the last call
     * (DFM_CUDA_FUSED_TRACE=1; read by dfm_cuda_fused_trace) */
    unsigned long long *trace;
    int own_pf; /* FUSED_OWN_PF_STAGES or DFM_CUDA_FUSED_OWN_PF (last: the fields above keep their offsets) */
    int rq_warps; /* FUSED_RQ_WARPS or DFM_CUDA_FUSED_RQ_WARPS */
} fused_args_t;

/* Trace points, one stamp per CTA each (written by thread 0, a consumer):
 * entry, own sends done, every rank's counts in, first GEMM1 gate open,
 * last GEMM1 item done, first GEMM2 item's rows requantized and gate open,
 * every GEMM2 item done, every rank's combine flag in, own reduction done,
 * the route's end (laid out after the others). Points 3-6 stay 0 in a CTA
 * without items of that GEMM. Then, not stamps: ns before the gates of
 * GEMM1 items (but the first) and of GEMM2 items opened, and the CTA's
 * items of each GEMM. */
enum { FT_START, FT_SENT, FT_COUNTS, FT_G1_OPEN, FT_G1_DONE, FT_G2_OPEN, FT_G2_DONE, FT_COMBINE_IN, FT_END,
       FT_ROUTED, FT_WAIT1, FT_WAIT2, FT_ITEMS1, FT_ITEMS2, FUSED_TRACE_N };
static_assert(FT_WAIT1 == DFM_CUDA_TRACE_STAMPS && FUSED_TRACE_N == DFM_CUDA_TRACE_POINTS,
              "cuda_internal.h's trace layout");
#define FUSED_TRACE_STRIDE DFM_CUDA_TRACE_STRIDE /* a CTA's words: the points, then its items */
#define FUSED_STAMP(fa, i) \
    do { \
        if ((fa).trace) (fa).trace[(size_t)blockIdx.x * FUSED_TRACE_STRIDE + (i)] = dfm_globaltimer(); \
    } while (0)

/* Experts of at most this many rows are requantized at once, and alone, by
 * the CTA that completes their GEMM1 items (FUSED_EAGER_RQ 1: decode at T ~ 1).
 * Nineteenth session, 4 x H100, against 8: qwen3-30b-bf16 T = 32 145.6 ->
 * 143.6 us, the rest within the noise; 4 loses 5-6 us there. */
#ifndef FUSED_EAGER_ROWS
#define FUSED_EAGER_ROWS 16
#endif
/* Requantization claims: a row takes the CTA's 256 consumer threads, one
 * memory round trip, so an expert's rows spread over as many waiting CTAs as
 * there are: the CTAs before a GEMM2 item claim 1 row at a time (more past
 * FUSED_RQ_CLAIMS rows: rows / FUSED_RQ_CLAIMS, at most 16); the CTA that
 * completes an expert's GEMM1 and starts at once (FUSED_EAGER_RQ) claims
 * FUSED_RQ_EAGER_CLAIM rows at a time (alone at first: fewer claims). Until
 * the fourteenth session a warp took a row (8 rows a claim, 2 float4 a lane
 * in flight: 16 dependent round trips a row of 2048, ~15 us between GEMM1's
 * end and GEMM2's first gate at dsv3-e32 T = 32). */
#ifndef FUSED_RQ_CLAIMS
#define FUSED_RQ_CLAIMS 64
#endif
#ifndef FUSED_RQ_EAGER_CLAIM
#define FUSED_RQ_EAGER_CLAIM 4
#endif
/* INT8 experts of at least FUSED_RQ_WARP_ROWS rows, FP8 and BF16 ones of at
 * least FUSED_RQ_WARP_ROWS_FP, are requantized a row a warp instead
 * (dfm_requant_row, FUSED_RQ_WARP_V4 / _V4_FP float4 a lane: the CTA's 8
 * warps take 8 rows at once, no barrier a row), claiming FUSED_RQ_WARP_CLAIM
 * rows at a time. At dsv3-e32-int8 T = 1024 (~1024 rows an expert, 4 x H200,
 * thirty-third session, call 6's per-item trace) each CTA's GEMM2 items wait
 * ~2 us at their gates but ~44 us once every ~6 items: where the CTAs reach
 * the next pair of experts (FUSED_RQ_AHEAD 1) and requantize their rows, 16
 * round trips and 32 barriers a claim. Thirty-third session, call 7 (4 x H200,
 * three rounds rotated, against none): T = 1024 1339.1 -> 1292.1 us, T = 256
 * 417.5 -> 417.1, T = 1 / 32 / 128 115.4 / 164.9 / 247.3 -> 115.2 / 165.1 /
 * 248.4; with 256, T = 256 lost 10 us. FP8 and BF16 have fewer registers to
 * spare: 4 float4 a lane spilled there, 2 did not but put version 5's wgmma
 * short of registers (C7511) beside FUSED_QOK; 1 does neither. Thirty-fourth
 * session (4 x H200, three rounds rotated): from 512 rows with 2 float4 a lane
 * dsv3-e32 T = 1024 1663.5 -> 1614.1 us but T = 512 947.1 -> 956.4 (call 1);
 * from 768 rows with 1, with FUSED_QOK, against neither (call 2): T = 512 /
 * 768 / 1024 942.2 / 1254.7 / 1654.6 -> 933.3 / 1241.1 / 1603.6. */
#ifndef FUSED_RQ_WARP_ROWS
#define FUSED_RQ_WARP_ROWS 512
#endif
#ifndef FUSED_RQ_WARP_ROWS_FP
#define FUSED_RQ_WARP_ROWS_FP 768
#endif
#ifndef FUSED_RQ_WARP_CLAIM
#define FUSED_RQ_WARP_CLAIM 16
#endif
#ifndef FUSED_RQ_WARP_V4_FP
#define FUSED_RQ_WARP_V4_FP 1 /* FP8 and BF16 (0: the CTA's rows, as below FUSED_RQ_WARP_ROWS_FP) */
#endif
/* GEMM2 items skip the requantization help and the gate for an expert whose
 * gate the CTA has passed before (s_qok): at dsv3-e32-int8 T = 1024 the
 * other GEMM2 items waited ~2 us each there (thirty-third session, call 6).
 * Thirty-fourth session, call 2 (4 x H200, three rounds rotated): dsv3-e32-int8
 * T = 512 / 768 / 1024 755.5 / 991.5 / 1289.7 -> 748.1 / 978.2 / 1266.9 us,
 * dsv3-e32 942.2 / 1254.7 / 1654.6 -> 934.4 / 1240.7 / 1630.9, T <= 256
 * within +-1.6. */
#ifndef FUSED_QOK
#define FUSED_QOK 1
#endif
#ifndef FUSED_RQ_WARP_V4
#define FUSED_RQ_WARP_V4 4 /* float4 a lane in flight: 8 spilled in the INT8 kernels (the consumers' registers) */
#endif
/* float4 loads per thread in flight in the requantization of a row
 * (dfm_requant_row_by over the 256 consumer threads): 2 = 2048 values a
 * round trip. */
#ifndef FUSED_RQ_V4
#define FUSED_RQ_V4 2
#endif
/* Background requantization (fused_bg_requant): warps 9-11, idle during the
 * GEMMs, requantize the rows of the experts of at least FUSED_BG_ROWS(q) rows
 * as soon as each expert's GEMM1 is done, expert after expert, a row a warp,
 * FUSED_BG_RQ_CLAIM rows a claim from the counters that fused_help_requant
 * claims from. At T = 1024 the GEMM2 items waited ~44 us at every other
 * expert for these rows (thirty-third session, per-item trace). Such experts'
 * GEMM1 counts stay the consumers' (fused_rqw_takes), so the warps start
 * right after the dispatch. 0 rows: never. Not in the LLK kernels (kbg in
 * fused_kernel). Thirty-fifth session (4 x H200, three rounds rotated):
 * - INT8 from 256 rows (call 3): dsv3-e32-int8 T = 256 / 512 / 768 / 1024
 *   418.5 / 750.3 / 982.4 / 1249.4 -> 392.8 / 650.3 / 860.7 / 1153.6 us, but
 *   T = 128 +2.1 (call 5: +1.7); from 128 rows T = 128 lost 27;
 * - FP8 from 256 rows (call 3) lost 15 at T = 256; from 384 rows (call 4)
 *   T = 512 / 768 / 1024 934.4 / 1242.1 / 1598.2 -> 854.0 / 1142.8 / 1512.0;
 * - in the LLK kernels too, qwen3-235b T = 1 (an LLK row, no expert of 384
 *   rows) read +5.1 out of line (call 3), +2.8 inlined (call 4); without
 *   them (call 5) 68.5 -> 68.1, dsv3-e32 T = 512 / 1024 940.3 / 1598.6 ->
 *   859.4 / 1502.1, INT8 751.3 / 1250.2 -> 652.2 / 1155.6. */
#ifndef FUSED_BG_RQ_ROWS
#define FUSED_BG_RQ_ROWS 256 /* INT8 */
#endif
#ifndef FUSED_BG_RQ_ROWS_FP
#define FUSED_BG_RQ_ROWS_FP 384 /* FP8 and BF16 */
#endif
/* the modes that do it, a bit 1 << dfm_quant_t each (FP8 1, INT8 2, BF16 4) */
#ifndef FUSED_BG_RQ_MODES
#define FUSED_BG_RQ_MODES 7
#endif
#define FUSED_BG_ROWS(q) ((q) == DFM_QUANT_INT8 ? FUSED_BG_RQ_ROWS : FUSED_BG_RQ_ROWS_FP)
#define FUSED_BG_ON(q) (FUSED_BG_ROWS(q) > 0 && ((FUSED_BG_RQ_MODES >> (int)(q)) & 1))
#ifndef FUSED_BG_RQ_CLAIM
#define FUSED_BG_RQ_CLAIM 4
#endif
/* float4 a lane in flight (the producer group has FUSED_REGS_PRODUCER
 * registers; more spilled: INT8 at 4, FP8 and BF16 at 2). Until the thirty-sixth
 * session INT8 called it out of line (inlined it spilled 4-12 bytes); since
 * fused_warp_rows it is inlined without spills, and the call's presence had
 * cost INT8 T = 128 +1.7 us (2 x H200, -G: T = 128 / 256 / 1024 218.8 / 363.4
 * / 1072.7 -> 217.2 / 360.4 / 1066.1 inlined). */
#ifndef FUSED_BG_RQ_V4
#define FUSED_BG_RQ_V4 2
#endif
#ifndef FUSED_BG_RQ_V4_FP
#define FUSED_BG_RQ_V4_FP 1
#endif

/* The dispatch phase. SEND_SKIP0: CTA 0, which first writes the counts to
 * every rank and raises their flags, takes the last send unit of the grid
 * instead of the first (at T = 1 its send ended last, ~13.6 us against
 * ~9-12 for the other CTAs with units, sixteenth session). ARRIVE_WORK: only
 * the CTAs with send units arrive on st->send_done (the last raises the
 * payload flags), not every CTA: at T = 1 14 of 132 have units, and the
 * others' arrivals (one atomic each on one word) cost ~3 us a CTA. */
#ifndef FUSED_SEND_SKIP0
#define FUSED_SEND_SKIP0 1
#endif
#ifndef FUSED_ARRIVE_WORK
#define FUSED_ARRIVE_WORK 1
#endif

/* GEMM2's item order. 0: expert by expert. 1: item v of the order is item
 * v * s mod total2 (s >= total2 / G, coprime with total2), so consecutive
 * items go round the experts: the waits for the experts whose GEMM1 ends
 * last, and their requantizations, spread over the whole GEMM2 phase
 * instead of gathering at its end. 2 (the default): 1 where there are at
 * least FUSED_G2_SCATTER_G local experts with FUSED_G2_SCATTER_ROWS rows
 * each on average, else 0. Sixteenth session, 4 x H100, 1 against 0:
 * qwen3-235b (G = 32) T = 1 / 32 / 128 -4 / -2 / -11 us, qwen3-30b-bf16
 * (G = 32) +1 / -2 / -10, dsv3-e256 (G = 64) +4 / +7 / -14, dsv3-e32 (G = 8)
 * +3 / +5 / +12 (its experts' GEMM1 ends within a few us of each other).
 * Twentieth session (call 7, 4 x H100, two rounds, 0 against 2 with 8 rows):
 * qwen3-235b T = 32 256.6 -> 246.3 us, T = 128 324.4 -> 331.0, so the rows
 * threshold went 8 -> 16 (T = 32 at G = 32 has 8 rows an expert: expert by
 * expert; T = 128 still round the experts).
 * DFM_CUDA_FUSED_G2_SCATTER=0|1|2 overrides it. */
#ifndef FUSED_G2_SCATTER
#define FUSED_G2_SCATTER 2
#endif
#ifndef FUSED_G2_SCATTER_G
#define FUSED_G2_SCATTER_G 16
#endif
#ifndef FUSED_G2_SCATTER_ROWS
#define FUSED_G2_SCATTER_ROWS 16
#endif

/* The combine reduction's units (fused_reduce): 0: CTA b takes units
 * b * 256 + thread, b + grid .. (as combine.cu); 1: the CTAs take them in
 * the order they arrive after GEMM2; 2: as 1, and the CTAs with units run
 * their first unit once without storing while they wait for the combine
 * flags (not the CTA that raises the flags: nothing to wait for).
 * Twenty-first session (call 1, 4 x H100, three rounds, 0 -> 2): dsv3-e32
 * T = 1 / 32 / 128 134.1 / 182.2 / 314.2 -> 133.1 / 181.5 / 312.9 us,
 * qwen3-235b 85.4 / 245.7 / 322.9 -> 85.3 / 245.1 / 321.5; 1 alone: no
 * change. The longest reduction (T = 1) stays ~3.5 us: not the code's or the
 * ids' first fetch. */
#ifndef FUSED_REDUCE_WARM
#define FUSED_REDUCE_WARM 2
#endif

/* 1: where every rank's T is at most the layout's ll_tokens (ML, dfm_common.h),
 * GEMM2's results go to the home ranks as tagged words, (fused_ll_tag(seq) << 32) | a bf16
 * pair, in combine_ll, and the home rank's reduction waits for the words
 * themselves (fused_reduce_ll): no CTA fences its GEMM2 stores at system
 * scope, no last CTA raises combine flags and nobody waits for them (the
 * chain from the last GEMM2 item to the reduction: the last CTA's fence, its
 * count, its flags' release and their hop). The cost: twice the bytes of the
 * results (a word of 4 bytes' data is 8). A rank whose T is at most ML runs
 * the kernel that can send them (fused_kernel's LLK; the others are the
 * kernels without, instruction for instruction but the count words' mask)
 * and says so in its count words (FUSED_COUNTS_LL): the call is tagged when
 * every source said so, the same choice on every rank. The
 * environment variable DFM_CUDA_FUSED_COMBINE_LL (0, 1; read at context
 * creation) overrides it. Measured (twenty-fifth session, 4 x H100, three
 * rounds): every T = 1 row 2.3-4.4 us faster (dsv3-e32 130.5 -> 126.7 us,
 * qwen3-235b 82.5 -> 79.1), qwen3-30b-bf16 T = 32 134.4 -> 130.9 and
 * qwen3-235b T = 32 242.4 -> 240.7; where the results are larger than ML's
 * cap allows (dsv3-e32 T = 32, 1.8M values a rank) tagged words cost 6.7 us,
 * and 120 us at dsv3-e32-int8 T = 128. */
#ifndef FUSED_COMBINE_LL
#define FUSED_COMBINE_LL 1
#endif
/* Bit of a count word: the source runs the tagged-combine kernel (its T is
 * at most ML and its context has it on); counts are <= 1024, the tag is
 * above bit 15. */
#define FUSED_COUNTS_LL 0x8000u
/* The tag of call seq's tagged combine words: its low 31 bits with the top bit
 * set, so never 0 (a word never written since the region was cleared cannot
 * pass for one) and unlike the tags of the calls before on the same half. */
static __device__ __forceinline__ unsigned int fused_ll_tag(unsigned long long seq) {
    return (unsigned int)seq | 0x80000000u;
}

/* GEMM2's destination of row (g, src, j): the home rank's combine slot of
 * its (token, slot), from recv_meta (clamped as gemm.cu's combine_out_t);
 * <true>: the tagged-combine kernels' (FUSED_COMBINE_LL), either format. */
template <bool LLC> struct fused_out_t {
    const dfm_cuda_world_t *w;
    __device__ uint16_t *row(int g, int src, int j, long long phys, int half) const {
        const char *local = w->peer[w->rank];
        const int meta = *(const int32_t *)(local + dfm_off_recv_meta(&w->L, half, (size_t)phys));
        int t = meta / w->max_topk, k = meta % w->max_topk;
        t = t < 0 ? 0 : (t >= w->num_max ? w->num_max - 1 : t);
        k = k < 0 ? 0 : k;
        return (uint16_t *)(w->peer[src] + dfm_off_combine_row(&w->L, half, t, k));
    }
};
template <> struct fused_out_t<true> {
    static constexpr bool kLL = true; /* tagged rows where the call allows (is_ll) */
    const dfm_cuda_world_t *w;
    int is_ll;         /* this call's results go as tagged words (combine_ll) */
    unsigned int tagv; /* their tag: fused_ll_tag of the call's seq */
    /* channel ch0 of the row: a bf16 in combine_rows, or a u64 word in combine_ll */
    __device__ uintptr_t ptr_at(int g, int src, int j, long long phys, int half, int ch0) const {
        const char *local = w->peer[w->rank];
        const int meta = *(const int32_t *)(local + dfm_off_recv_meta(&w->L, half, (size_t)phys));
        int t = meta / w->max_topk, k = meta % w->max_topk;
        k = k < 0 ? 0 : k;
        if (is_ll) {
            t = t < 0 ? 0 : (t >= w->L.ll_tokens ? w->L.ll_tokens - 1 : t);
            return (uintptr_t)(w->peer[src] + dfm_off_combine_ll(&w->L, half, t, k)) + (size_t)ch0 * 4;
        }
        t = t < 0 ? 0 : (t >= w->num_max ? w->num_max - 1 : t);
        return (uintptr_t)(w->peer[src] + dfm_off_combine_row(&w->L, half, t, k)) + (size_t)ch0 * 2;
    }
    __device__ bool ll() const { return is_ll != 0; }
    __device__ unsigned int tag() const { return tagv; }
};

/* ---- small device helpers ---------------------------------------------------- */

/* The per-expert readiness words (g1_ready, q_ready, w_ready) are written and
 * read by this GPU's CTAs only: FUSED_LOCAL_GPU 1 gives them GPU-scope
 * release / acquire, 0 system scope (as the peers' flags; before the
 * eighteenth session). */
#ifndef FUSED_LOCAL_GPU
#define FUSED_LOCAL_GPU 1
#endif
template <bool GPU> static __device__ __forceinline__ unsigned long long fused_flag_ld(const void *p) {
    return GPU ? dfm_ld_acquire_gpu(p) : dfm_ld_acquire_sys(p);
}
template <bool GPU> static __device__ __forceinline__ void fused_flag_st(void *p, unsigned long long v) {
    if (GPU) dfm_st_release_gpu(p, v);
    else dfm_st_release_sys(p, v);
}

/* Spin until (flag & mask) == want (acquire, system scope; GPU scope for a
 * flag of this GPU's own, fused_flag_ld), bounded by the world's timeout like
 * dfm_wait_flag. Returns 1 when it arrived. SLEEP_NS > 0: that long a nap
 * between polls (a waiter off the critical path, fused_bg_requant). */
template <bool GPU = false, int SLEEP_NS = 0>
static __device__ int fused_wait(const dfm_cuda_world_t *w, const void *flag, unsigned long long want,
                                 unsigned long long mask, int src, int what, unsigned long long seq) {
    if ((fused_flag_ld<GPU>(flag) & mask) == want) return 1;
    if (dfm_ld_volatile_u32(&w->st->failed)) return 0;
    const unsigned long long t0 = dfm_globaltimer();
    for (unsigned int spin = 1;; spin++) {
        if (SLEEP_NS > 0) __nanosleep(SLEEP_NS);
        if ((fused_flag_ld<GPU>(flag) & mask) == want) return 1;
        if ((spin & 63u) == 0) {
            if (dfm_ld_volatile_u32(&w->st->failed)) return 0;
            if (dfm_globaltimer() - t0 > w->timeout_ns) {
                dfm_record_timeout(w, src, what, seq);
                return 0;
            }
        }
    }
}

/* The count word *p once it carries tag (fused_counts_tag), bounded as
 * fused_wait (after a timeout: whatever it holds, the host reports). */
static __device__ unsigned int fused_wait_tagged(const dfm_cuda_world_t *w, const unsigned int *p, unsigned int tag,
                                                 int src, unsigned long long seq) {
    unsigned int v = dfm_ld_volatile_u32(p);
    if ((v & 0xffff0000u) == tag) return v;
    const unsigned long long t0 = dfm_globaltimer();
    for (unsigned int spin = 1;; spin++) {
        v = dfm_ld_volatile_u32(p);
        if ((v & 0xffff0000u) == tag) return v;
        if ((spin & 63u) == 0) {
            if (dfm_ld_volatile_u32(&w->st->failed)) return v;
            if (dfm_globaltimer() - t0 > w->timeout_ns) {
                dfm_record_timeout(w, src, DFM_CUDA_WAIT_DISPATCH, seq);
                return v;
            }
        }
    }
}

/* Generic-proxy writes (peers' stores, requant) -> this thread's later TMA reads. */
static __device__ __forceinline__ void fused_fence_proxy_global(void) {
    asm volatile("fence.proxy.async.global;" ::: "memory");
}

/* Gate of an item: GEMM1 of expert g needs the payload flag (== seq) of every
 * source that sent rows to g; GEMM2 of g needs q_ready[g] == seq. blocking:
 * spin (bounded); else one look. Returns 1 when open (also after a timeout:
 * results are then undefined, the host reports the error, nothing hangs). */
static __device__ int fused_gate(const dfm_cuda_world_t *w, const fused_args_t *fa, const int *s_cnt,
                                 int phase, int g, int half, unsigned long long seq, int blocking,
                                 bool tok16 = false) {
    if (phase == 2 || tok16) { /* tok16: GEMM1 reads the widened rows, w_ready[g] */
        const void *f = phase == 2 ? fa->q_ready + g : fa->w_ready + g;
        if (!blocking) return fused_flag_ld<FUSED_LOCAL_GPU>(f) == seq;
        fused_wait<FUSED_LOCAL_GPU>(w, f, seq, ~0ull, w->rank, DFM_CUDA_WAIT_DISPATCH, seq);
        return 1;
    }
    const char *local = w->peer[w->rank];
    const int R = w->num_ranks;
    for (int src = 0; src < R; src++) {
        if (s_cnt[g * R + src] == 0) continue;
        const void *f = local + dfm_off_dispatch_flag(&w->L, half, src);
        if (!blocking) {
            if (dfm_ld_acquire_sys(f) != seq) return 0;
        } else {
            fused_wait(w, f, seq, ~0ull, src, DFM_CUDA_WAIT_DISPATCH, seq);
        }
    }
    return 1;
}

/* ---- requantization (dfm_requant_row of device_common.cuh) -------------------- */

/* (seq << 32) | count words: count in call seq (0 when the word is older). */
static __device__ __forceinline__ unsigned int fused_count_of(unsigned long long v, unsigned long long tag) {
    return (v & 0xffffffff00000000ull) == tag ? (unsigned int)v : 0u;
}

/* Add k to the count of call seq; returns the count before. The first
 * adder of a call finds the word with an older call's tag and installs
 * (tag | k) with a compare-and-swap; every later add is one atomicAdd, so
 * n CTAs adding at once cost one round trip each (a CAS loop pays one retry
 * a competitor: ~15 us of dsv3-e32's layer at T = 32). The count stays
 * far below 2^32 (chunks + grid a call). */
static __device__ unsigned int fused_tagged_add(unsigned long long *p, unsigned long long seq, unsigned int k) {
    const unsigned long long tag = seq << 32;
    unsigned long long cur = *(volatile unsigned long long *)p;
    while ((cur & 0xffffffff00000000ull) != tag) {
        const unsigned long long prev = atomicCAS(p, cur, tag | k);
        if (prev == cur) return 0u;
        cur = prev;
    }
    return (unsigned int)atomicAdd(p, (unsigned long long)k);
}

/* Claim the next k of n rows of call seq: the first one, or -1 when all are
 * claimed (a look first: once all are claimed, no atomic). Claimers may
 * take different k. */
static __device__ int fused_claim(unsigned long long *p, unsigned long long seq, int n, int k) {
    if ((int)fused_count_of(*(volatile unsigned long long *)p, seq << 32) >= n) return -1;
    const unsigned int c = fused_tagged_add(p, seq, (unsigned int)k);
    return (int)c < n ? (int)c : -1;
}

/* Add k to the count of call seq; returns the new count. */
static __device__ int fused_count_add(unsigned long long *p, unsigned long long seq, int k) {
    return (int)(fused_tagged_add(p, seq, (unsigned int)k) + (unsigned int)k);
}

/* The smallest s >= n / G (at least 1) with gcd(s, n) = 1: v -> v * s mod n
 * is then a permutation of 0 .. n - 1 (GEMM2's item order, g2_scatter). */
static __device__ int fused_coprime_stride(int n, int G) {
    if (n <= 1) return 1;
    for (int s = max(1, (n + G - 1) / G);; s++) {
        int a = s, b = n;
        while (b) {
            const int t = a % b;
            a = b;
            b = t;
        }
        if (a == 1) return s;
    }
}

static __device__ __forceinline__ int fused_g2_order(int v, int s2, int total2) {
    return s2 == 1 ? v : (int)((long long)v * s2 % total2);
}

/* Token rows of local expert g, over every source. */
static __device__ __forceinline__ int fused_rows_of(const int *s_cnt, int R, int g) {
    int rows = 0;
    for (int src = 0; src < R; src++) rows += s_cnt[g * R + src];
    return rows;
}

/*
 * The claim loop of the CTAs that help with an expert's rows before running
 * one of its items (the requantization before GEMM2, version 5's widening
 * before GEMM1), run by the 256 consumer threads: if go() (thread 0: the
 * work is not done, *ready_flag != seq, and its inputs are in: it may wait
 * for them), they claim `k` rows at a time (flat over sources; others may
 * claim other amounts) from *claim until none is left, a row row(src, j, f)
 * (f: its index over the expert) by one warp or, with CTA_ROWS, by all 256
 * threads one row after the other; whoever completes the last row raises
 * *ready_flag = seq. Every claimed row is a running CTA's, so the flag always
 * rises. What the rows write is read by TMA (proxy fence). Thread 0 counts
 * the rows done while thread 32 claims the next ones (two round trips at
 * once).
 */
template <bool CTA_ROWS, class GO, class ROW>
static __device__ __forceinline__ void fused_help_rows(const dfm_cuda_world_t *w, const int *s_cnt, int g, int k,
                                                       unsigned long long seq, unsigned long long *ready_flag,
                                                       unsigned long long *claim, unsigned long long *done,
                                                       int *s_claim, GO go, ROW row) {
    const int R = w->num_ranks, tid = threadIdx.x, warp = tid >> 5;
    const int rows = fused_rows_of(s_cnt, R, g);
    if (tid == 0) *s_claim = go() ? fused_claim(claim, seq, rows, k) : -1;
    wg_bar_sync(FUSED_BAR_DONE, FUSED_CONSUMERS);
    for (;;) {
        const int lo = *s_claim;
        wg_bar_sync(FUSED_BAR_DONE, FUSED_CONSUMERS); /* read before thread 32 rewrites it */
        if (lo < 0) return;
        const int hi = min(rows, lo + k);
        for (int f = CTA_ROWS ? lo : lo + warp; f < hi; f += CTA_ROWS ? 1 : FUSED_CONSUMERS / 32) {
            int src = 0, j = f;
            while (j >= s_cnt[g * R + src]) j -= s_cnt[g * R + src++];
            row(src, j, f);
        }
        fused_fence_proxy_global(); /* for the TMA reads of what the rows wrote */
        __threadfence();
        wg_bar_sync(FUSED_BAR_DONE, FUSED_CONSUMERS);
        if (tid == 0 && fused_count_add(done, seq, hi - lo) == rows) {
            __threadfence();
            fused_flag_st<FUSED_LOCAL_GPU>(ready_flag, seq);
        }
        if (tid == 32) *s_claim = fused_claim(claim, seq, rows, k);
        wg_bar_sync(FUSED_BAR_DONE, FUSED_CONSUMERS);
    }
}

/*
 * Before a GEMM2 item of expert g: help requantize g's rows (act -> act_q,
 * act_s) unless q_ready[g] is up, once every GEMM1 item of g is done
 * (g1_ready). An expert of <= FUSED_EAGER_ROWS rows (with eager_rq) is the
 * CTA's alone that completed its GEMM1: the others skip it and wait at the
 * gate. Otherwise every CTA with a GEMM2 item of g helps, so the work is spread
 * over the CTAs that would otherwise wait for it (version 1 gave all of g's
 * rows to the one CTA that finished g's last GEMM1 item: its time grew with T
 * and held every GEMM2 item of g). Then, while g's gate is still closed
 * (other CTAs finishing its last rows), the CTA helps the next `ahead`
 * experts whose GEMM1 is done (looks only, no waits): the items claimed next
 * are theirs. A row takes the 256 consumer threads; its amax meets in s_red
 * (8 floats a row, two rows' sets alternating, so one barrier a row
 * separates a set's writes from the reads of two rows before).
 */
static __device__ void fused_help_requant(const dfm_cuda_world_t *w, const fused_args_t *fa, const int *s_cnt,
                                          int g, dfm_quant_t q, unsigned long long seq, int *s_claim, float *s_red,
                                          bool eager = false, int big = 0) {
    const int ct = threadIdx.x;
    const int last = min(w->num_local_experts - 1, g + (eager ? 0 : fa->rq_ahead + (fa->rq_ahead && big)));
    for (int ge = g; ge <= last; ge++) {
        const int rows = fused_rows_of(s_cnt, w->num_ranks, ge);
        auto row = [&](int src, int j, int f) {
            float *red = s_red + (f & 1) * (FUSED_CONSUMERS / 32);
            dfm_requant_row_by<FUSED_RQ_V4, FUSED_CONSUMERS>(w, dfm_recv_row(&w->L, ge, src, j), q, ct, [&](float m) {
                m = dfm_warp_max(m);
                if ((ct & 31) == 0) red[ct >> 5] = m;
                wg_bar_sync(FUSED_BAR_DONE, FUSED_CONSUMERS);
#pragma unroll
                for (int x = 0; x < FUSED_CONSUMERS / 32; x++) m = fmaxf(m, red[x]);
                return m;
            });
        };
        if (fa->eager_rq != 0 && rows <= FUSED_EAGER_ROWS) {
            /* a few rows: the CTA that completed ge's GEMM1 (eager, it always
             * is for these) does them all, without claims or counts (each a
             * round trip to L2 behind the weight stream); the others only
             * wait at the gate */
            if (!eager) continue;
            for (int f = 0, src = 0, j = 0; f < rows; f++, j++) {
                while (j >= s_cnt[ge * w->num_ranks + src]) j -= s_cnt[ge * w->num_ranks + src++];
                row(src, j, f);
            }
            fused_fence_proxy_global(); /* for the TMA reads of what the rows wrote */
            /* as dfm_cta_arrive: the barrier orders every consumer's stores
             * before thread 0's release (cumulative), no per-thread fence */
            wg_bar_sync(FUSED_BAR_DONE, FUSED_CONSUMERS);
            if (ct == 0) fused_flag_st<FUSED_LOCAL_GPU>(fa->q_ready + ge, seq);
            continue;
        }
        auto go = [&]() -> int {
            if (ge == g) {
                if (fused_flag_ld<FUSED_LOCAL_GPU>(fa->q_ready + g) == seq) return 0;
                fused_wait<FUSED_LOCAL_GPU>(w, fa->g1_ready + g, seq, ~0ull, w->rank, DFM_CUDA_WAIT_DISPATCH, seq);
                return 1;
            }
            return fused_flag_ld<FUSED_LOCAL_GPU>(fa->q_ready + g) != seq &&
                   fused_flag_ld<FUSED_LOCAL_GPU>(fa->q_ready + ge) != seq &&
                   fused_flag_ld<FUSED_LOCAL_GPU>(fa->g1_ready + ge) == seq;
        };
        if (!eager && (q == DFM_QUANT_INT8 ? rows >= FUSED_RQ_WARP_ROWS
                                           : FUSED_RQ_WARP_V4_FP && rows >= FUSED_RQ_WARP_ROWS_FP)) { /* a row a warp */
            fused_help_rows<false>(w, s_cnt, ge, FUSED_RQ_WARP_CLAIM, seq, fa->q_ready + ge, fa->rq_claim + ge,
                                   fa->rq_done + ge, s_claim, go, [&](int src, int j, int) {
                                       const size_t r = dfm_recv_row(&w->L, ge, src, j);
                                       if (q == DFM_QUANT_INT8)
                                           dfm_requant_row<FUSED_RQ_WARP_V4>(w, r, q);
                                       else /* V4_FP 0 never gets here; the template still needs >= 1 */
                                           dfm_requant_row<(FUSED_RQ_WARP_V4_FP > 0 ? FUSED_RQ_WARP_V4_FP : 1)>(w, r, q);
                                   });
            continue;
        }
        const int k = eager ? FUSED_RQ_EAGER_CLAIM : min(16, max(1, rows / FUSED_RQ_CLAIMS));
        fused_help_rows<true>(w, s_cnt, ge, k, seq, fa->q_ready + ge, fa->rq_claim + ge, fa->rq_done + ge, s_claim, go,
                              row);
    }
}

/*
 * One warp's share of expert g's rows (fused_bg_requant, fused_bg_widen) from
 * the claim lo that lane 0 made (every lane holds it; -1: nothing): rows lo ..
 * lo + K - 1 (flat over sources) by row(src, j), then the count on *done, the
 * *ready flag by whoever completes the last row, and the next claim, as
 * fused_help_rows does over the consumers.
 */
template <int K, class ROW>
static __device__ __forceinline__ void fused_warp_rows(const int *s_cnt, int R, int g, int rows, int lo,
                                                       unsigned long long seq, unsigned long long *ready,
                                                       unsigned long long *claim, unsigned long long *done, ROW row) {
    const int lane = threadIdx.x & 31;
    while (lo >= 0) {
        const int hi = min(rows, lo + K);
        int src = 0, j = lo;
        for (int f = lo; f < hi; f++, j++) {
            while (j >= s_cnt[g * R + src]) j -= s_cnt[g * R + src++];
            row(src, j);
        }
        fused_fence_proxy_global(); /* for the TMA reads of what the rows wrote */
        __threadfence();
        __syncwarp();
        if (lane == 0) {
            if (fused_count_add(done, seq, hi - lo) == rows) {
                __threadfence();
                fused_flag_st<FUSED_LOCAL_GPU>(ready, seq);
            }
            lo = fused_claim(claim, seq, rows, K);
        }
        lo = __shfl_sync(0xffffffffu, lo, 0);
    }
}

/*
 * Warps 9-11 once fused_rq_warps returns (FUSED_BG_RQ_ROWS): each warp on its
 * own, for every expert of at least FUSED_BG_ROWS(q) rows in order, waits
 * (bounded, napping) for its GEMM1 to be done, then claims
 * FUSED_BG_RQ_CLAIM rows at a time and requantizes them a row at a time, as
 * fused_help_rows does for the consumers: the same claim and done counters,
 * and whoever completes the last row raises q_ready. The acquire of g1_ready
 * by lane 0 and __syncwarp order every CTA's act stores of g before the
 * warp's loads. Returns after a failure or timeout (st->failed) at once.
 */
template <int V4>
static __device__ __forceinline__ void fused_bg_requant(const dfm_cuda_world_t *w, const fused_args_t *fa,
                                                        const int *s_cnt, dfm_quant_t q, unsigned long long seq) {
    const int lane = threadIdx.x & 31, R = w->num_ranks;
    for (int g = 0; g < w->num_local_experts; g++) {
        const int rows = fused_rows_of(s_cnt, R, g);
        if (rows < FUSED_BG_ROWS(q)) continue;
        int lo = -1;
        if (lane == 0 && fused_flag_ld<FUSED_LOCAL_GPU>(fa->q_ready + g) != seq) {
            if (!fused_wait<FUSED_LOCAL_GPU, 500>(w, fa->g1_ready + g, seq, ~0ull, w->rank, DFM_CUDA_WAIT_DISPATCH,
                                                  seq))
                lo = -2;
            else
                lo = fused_claim(fa->rq_claim + g, seq, rows, FUSED_BG_RQ_CLAIM);
        }
        lo = __shfl_sync(0xffffffffu, lo, 0);
        if (lo == -2) return;
        fused_warp_rows<FUSED_BG_RQ_CLAIM>(s_cnt, R, g, rows, lo, seq, fa->q_ready + g, fa->rq_claim + g,
                                           fa->rq_done + g, [&](int src, int j) {
                                               dfm_requant_row<V4>(w, dfm_recv_row(&w->L, g, src, j), q);
                                           });
    }
}

/* Named barrier id over n threads that also says whether any thread's p != 0. */
static __device__ __forceinline__ int fused_bar_or(int id, int n, int p) {
    int r;
    asm volatile("{\n\t.reg .pred pi, po;\n\tsetp.ne.s32 pi, %1, 0;\n\t"
                 "bar.red.or.pred po, %2, %3, pi;\n\tselp.s32 %0, 1, 0, po;\n\t}"
                 : "=r"(r)
                 : "r"(p), "r"(id), "r"(n)
                 : "memory");
    return r;
}

/* The GEMM1 item queue of a CTA (FUSED_RQ_WARPS): the consumers' thread 0
 * posts the expert g of its GEMM1 item in q[n % FUSED_RQQ], then n + 1 in
 * *posted, and every consumer thread arrives on the slot's mbarrier; warps
 * 9-11 take them in order and say how many they finished in *done; *end = 1
 * once the consumers have no item left (nothing is posted after it). */
typedef struct {
    int q[FUSED_RQQ];
    int posted, done, end;
    int act[2]; /* item n's expert completed and to be requantized here (n & 1) */
} fused_rqq_t;

/* Whether the GEMM1 items of an expert of `rows` (> 0) rows go to warps 9-11
 * (rq_warps 3 or 4, FUSED_RQ_WARPS): those of at most FUSED_RQW_ROWS rows,
 * and with 3 (FP8 and BF16) those of more than FUSED_RQW_MANY_ROWS. */
template <bool BG>
static __device__ __forceinline__ bool fused_rqw_takes(int rq_warps, dfm_quant_t q, int rows) {
    return rq_warps && (rows <= FUSED_RQW_ROWS || (rq_warps == 3 && FUSED_RQW_MANY(q) && rows > FUSED_RQW_MANY_ROWS &&
                                                   !(BG && rows >= FUSED_BG_ROWS(q))));
}
/* fused_bg_requant waits for g1_ready, which an expert of <= FUSED_EAGER_ROWS rows may never raise */
static_assert((FUSED_BG_RQ_ROWS == 0 || FUSED_BG_RQ_ROWS > FUSED_EAGER_ROWS) &&
                  (FUSED_BG_RQ_ROWS_FP == 0 || FUSED_BG_RQ_ROWS_FP > FUSED_EAGER_ROWS),
              "background requantization above FUSED_EAGER_ROWS");
/* such an expert is never its completer's to requantize (fused_count_g1) */
static_assert(FUSED_RQW_MANY_ROWS >= FUSED_EAGER_ROWS, "rq_warps 3's hand-off is for experts of > FUSED_EAGER_ROWS rows");

/* Counts one GEMM1 item of expert g (acquire-release, GPU scope: after the
 * barrier or mbarrier that ordered the item's act stores before it). The
 * expert's last item resets the count for the next call and raises g1_ready,
 * unless the expert is its completer's to requantize (eager_rq, at most
 * FUSED_EAGER_ROWS rows: an owned expert has no helpers, nobody waits for the
 * flag). Returns whether the item was the expert's last. */
static __device__ __forceinline__ bool fused_count_g1(const fused_args_t *fa, const int *s_pre1, int g, int rows,
                                                      unsigned long long seq) {
    const unsigned int items = (unsigned int)(s_pre1[g + 1] - s_pre1[g]);
    if (dfm_atom_add_acq_rel_gpu(&fa->g1_done[g], 1u) != items - 1) return false;
    fa->g1_done[g] = 0; /* every item of g is counted: reset for the next call */
    if (fa->eager_rq == 0 || rows > FUSED_EAGER_ROWS) fused_flag_st<FUSED_LOCAL_GPU>(fa->g1_ready + g, seq);
    return true;
}

/*
 * Warps 9-11 (FUSED_RQ_WARPS 3 or 4): count each posted GEMM1 item, and when
 * that completes a few-row expert requantize its rows, a row over the 96
 * threads (amax in red, two rows' sets alternating as fused_help_requant's),
 * then raise its q_ready. The count (acquire-release, GPU scope, after the
 * slot's mbarrier) orders every CTA's act stores of g before these loads
 * (and this CTA holds no stale copy of them: act rows are only stored on
 * this SM meanwhile). Polls shared memory with a short sleep.
 */
template <bool BG>
static __device__ __forceinline__ void fused_rq_warps(const dfm_cuda_world_t *w, const fused_args_t *fa,
                                                   const int *s_cnt, const int *s_pre1, dfm_quant_t q,
                                                   unsigned long long seq, fused_rqq_t *rq, float *red,
                                                   uint64_t *cbar) {
    const int t = threadIdx.x - 9 * 32, R = w->num_ranks;
    {
        /* only experts of 1..FUSED_RQW_ROWS rows (and with 3, of more than
         * FUSED_EAGER_ROWS) come here: without one in this call the warps
         * leave at once, as with rq_warps 0 (twenty-ninth session, call 2:
         * left polling the queue through a T = 128 call they cost 1.5-2.6
         * us; thirtieth, call 2: 3 left polling through qwen3-235b T = 32,
         * 8 rows an expert, +1.5 us) */
        int any = 0;
        for (int g = t; g < w->num_local_experts; g += FUSED_RQW_THREADS) {
            const int rows = fused_rows_of(s_cnt, R, g);
            any |= rows > 0 && fused_rqw_takes<BG>(fa->rq_warps, q, rows);
        }
        if (!fused_bar_or(FUSED_BAR_RQW, FUSED_RQW_THREADS, any)) return;
    }
    for (int n = 0;; n++) {
        for (;;) {
            if (*(volatile int *)&rq->posted > n) break;
            if (*(volatile int *)&rq->end) {
                __threadfence_block();
                if (*(volatile int *)&rq->posted > n) break;
                return;
            }
            __nanosleep(100);
        }
        __threadfence_block();
        const int g = *(volatile int *)&rq->q[n % FUSED_RQQ];
        const int rows = fused_rows_of(s_cnt, R, g);
        /* item n of the CTA's GEMM1 items, of expert g: its consumers' act
         * stores are released by their arrivals on the slot's mbarrier,
         * acquired here, then counted (acquire-release, GPU scope:
         * cumulative) as the consumers do */
        wg_mbar_wait(&cbar[n % FUSED_RQQ], (n / FUSED_RQQ) & 1);
        if (t == 0) /* an owned expert (eager_rq, few rows) is requantized here */
            rq->act[n & 1] = fused_count_g1(fa, s_pre1, g, rows, seq) && fa->eager_rq != 0 && rows <= FUSED_EAGER_ROWS;
        wg_bar_sync(FUSED_BAR_RQW, FUSED_RQW_THREADS);
        if (!rq->act[n & 1]) {
            if (t == 0) *(volatile int *)&rq->done = n + 1;
            continue;
        }
        for (int f = 0, src = 0, j = 0; f < rows; f++, j++) {
            while (j >= s_cnt[g * R + src]) j -= s_cnt[g * R + src++];
            float *rd = red + (f & 1) * (FUSED_RQW_THREADS / 32);
            dfm_requant_row_by<2, FUSED_RQW_THREADS>(w, dfm_recv_row(&w->L, g, src, j), q, t, [&](float m) {
                m = dfm_warp_max(m);
                if ((t & 31) == 0) rd[t >> 5] = m;
                wg_bar_sync(FUSED_BAR_RQW, FUSED_RQW_THREADS);
#pragma unroll
                for (int x = 0; x < FUSED_RQW_THREADS / 32; x++) m = fmaxf(m, rd[x]);
                return m;
            });
        }
        fused_fence_proxy_global(); /* for the TMA reads of what the rows wrote */
        wg_bar_sync(FUSED_BAR_RQW, FUSED_RQW_THREADS); /* every thread's stores before the release */
        if (t == 0) {
            fused_flag_st<FUSED_LOCAL_GPU>(fa->q_ready + g, seq);
            *(volatile int *)&rq->done = n + 1;
        }
    }
}

/* Version 5 sends a token's codes once to each rank that runs version 5 too,
 * the token's other rows there naming that row (dfm_dispatch_send's DEDUP;
 * fused_widen_row resolves them). 0: a row a (token, expert) everywhere. */
#ifndef FUSED_SEND_DEDUP
#define FUSED_SEND_DEDUP 1
#endif

/* Rows of an expert widened per claim (fused_help_widen): one per consumer warp. */
#ifndef FUSED_WD_ROWS
#define FUSED_WD_ROWS 8
#endif
/* Version 5: warps 9-11 widen the token rows of the experts of at least this
 * many rows in the background (fused_bg_widen), from the end of the dispatch,
 * as they requantize (FUSED_BG_RQ_ROWS). 0: never. They claim
 * FUSED_BG_WD_CLAIM rows at a time (1, 2 and 4 measured level), from expert
 * FUSED_BG_WD_FIRST on: the first is left to the consumers, whose first GEMM1
 * items wait for it (from expert 0, the warps took all of its rows at once and
 * the first GEMM1 gate opened ~37 us later at T = 1024; thirty-sixth session). */
#ifndef FUSED_BG_WD_ROWS
#define FUSED_BG_WD_ROWS 384
#endif
#ifndef FUSED_BG_WD_CLAIM
#define FUSED_BG_WD_CLAIM 1
#endif
#ifndef FUSED_BG_WD_FIRST
#define FUSED_BG_WD_FIRST 1
#endif

/*
 * Version 5's GEMM1, before a GEMM1 item of expert g: help widen g's FP8
 * token rows to f16 (world.tok16, the order of wg_tok16_k) unless w_ready[g]
 * is up, once the payload of every source with rows for g is in (the waits of
 * the GEMM1 gate it replaces: peers' payload flags, raised after their
 * dispatch, which waits for nothing). A warp widens a row: lane l reads bytes
 * 4 l .. 4 l + 3 of each 128-byte block of K and writes its two f16 pairs
 * where wg_tok16_o puts them.
 */
static __device__ __forceinline__ void fused_widen_row(const dfm_cuda_world_t *w, int half, size_t phys) {
    const int H = w->hidden, lane = threadIdx.x & 31;
    const int o0 = wg_tok16_o(4 * lane), o1 = wg_tok16_o(4 * lane + 2);
    char *local = w->peer[w->rank];
    size_t from = phys;
    if (FUSED_SEND_DEDUP) { /* an alias row (DFM_META_ALIAS): the codes are in the row it names
                             * (lane 0 alone: with all lanes, ptxas serializes the consumers' wgmma) */
        if (lane == 0) {
            int32_t *mp = (int32_t *)(local + dfm_off_recv_meta(&w->L, half, phys));
            const int32_t meta = *mp;
            if (meta & (int32_t)DFM_META_ALIAS) {
                const unsigned long long r = *(const unsigned long long *)(local + dfm_off_recv_rows(&w->L, half, phys));
                from = r < dfm_rows_per_half(&w->L) ? (size_t)r : phys; /* a bad index: this row's bytes */
                *mp = meta & ~(int32_t)DFM_META_ALIAS; /* for GEMM2's epilogue (fused_out_t) */
                float *sc = (float *)(local + dfm_off_recv_scale(&w->L, half, 0)); /* for GEMM1's epilogue */
                sc[phys] = sc[from];
            }
        }
        from = __shfl_sync(0xffffffffu, from, 0);
    }
    const uint32_t *in = (const uint32_t *)(local + dfm_off_recv_rows(&w->L, half, from));
    uint32_t *out = (uint32_t *)(w->tok16 + phys * H);
    for (int b = 0; b < H; b += 4 * 128) {
        uint32_t v[4];
#pragma unroll
        for (int u = 0; u < 4; u++) v[u] = b + u * 128 < H ? in[((b + u * 128) >> 2) + lane] : 0u;
#pragma unroll
        for (int u = 0; u < 4; u++) {
            if (b + u * 128 >= H) break;
            out[(b + u * 128 + o0) >> 1] = wg_e4m3x2_to_f16x2(v[u] & 0xffffu);
            out[(b + u * 128 + o1) >> 1] = wg_e4m3x2_to_f16x2(v[u] >> 16);
        }
    }
}

static __device__ void fused_help_widen(const dfm_cuda_world_t *w, const fused_args_t *fa, const int *s_cnt,
                                        int g, int half, unsigned long long seq, int *s_claim) {
    fused_help_rows<false>(
        w, s_cnt, g, FUSED_WD_ROWS, seq, fa->w_ready + g, fa->w_claim + g, fa->w_done + g, s_claim,
        [&]() -> int { /* not widened yet: wait for the payload of g's sources */
            return fused_flag_ld<FUSED_LOCAL_GPU>(fa->w_ready + g) != seq && fused_gate(w, fa, s_cnt, 1, g, half, seq, 1);
        },
        [&](int src, int j, int) { fused_widen_row(w, half, dfm_recv_row(&w->L, g, src, j)); });
}

/*
 * Version 5: warps 9-11 once fused_rq_warps returns (FUSED_BG_WD_ROWS), before
 * fused_bg_requant: each warp on its own, for every expert from
 * FUSED_BG_WD_FIRST on of at least FUSED_BG_WD_ROWS rows in order, waits
 * (bounded) for its sources' payload flags, then claims FUSED_BG_WD_CLAIM rows at a time from the counters that
 * fused_help_widen claims from and widens them a row at a time; whoever
 * completes the last row raises w_ready. Returns after a failure at once.
 */
static __device__ __forceinline__ void fused_bg_widen(const dfm_cuda_world_t *w, const fused_args_t *fa,
                                                      const int *s_cnt, int half, unsigned long long seq) {
    const int lane = threadIdx.x & 31, R = w->num_ranks;
    for (int g = FUSED_BG_WD_FIRST; g < w->num_local_experts; g++) {
        const int rows = fused_rows_of(s_cnt, R, g);
        if (rows < FUSED_BG_WD_ROWS) continue;
        int lo = -1;
        if (lane == 0 && fused_flag_ld<FUSED_LOCAL_GPU>(fa->w_ready + g) != seq) {
            fused_gate(w, fa, s_cnt, 1, g, half, seq, 1);
            lo = dfm_ld_volatile_u32(&w->st->failed) ? -2 : fused_claim(fa->w_claim + g, seq, rows, FUSED_BG_WD_CLAIM);
        }
        lo = __shfl_sync(0xffffffffu, lo, 0);
        if (lo == -2) return;
        fused_warp_rows<FUSED_BG_WD_CLAIM>(s_cnt, R, g, rows, lo, seq, fa->w_ready + g, fa->w_claim + g,
                                           fa->w_done + g, [&](int src, int j) {
                                               fused_widen_row(w, half, dfm_recv_row(&w->L, g, src, j));
                                           });
    }
}

/* FUSED_SPEC_PF_STAGES: the first n weight stages of GEMM1 rows wrow..wrow +
 * WG_BN into L2, out of line (the dispatch prologue has no register to spare). */
static __device__ __noinline__ void fused_spec_prefetch(const CUtensorMap *wmap, int wrow, int n) {
    for (int kt = 0; kt < n; kt++) wg_prefetch_l2(wmap, kt * WG_BK, wrow);
}

/* The weight prefetches after a CTA's send units, by one warp (out of line:
 * the dispatch prologue has no register to spare): where per = R * T * K
 * rows are expected to fill every expert (FUSED_SPEC_PF_STAGES' guess), lane
 * 0 takes the CTA's likely first GEMM1 item; where too sparse for that
 * (FUSED_OWN_PF_STAGES), tile b % n_t1 of the (b / n_t1)-th local expert
 * that this rank's own tokens chose (s_bits, the route's bitmap: rows
 * me * G .. me * G + G - 1), lane l its stages l, l + 32, ... nk: GEMM1's
 * stages an item. */
static __device__ __noinline__ void fused_head_prefetch(const CUtensorMap *wmap, const uint32_t *s_bits, int W, int me,
                                                        int per, const fused_args_t &fa, int PW,
                                                        const dfm_cuda_world_t &w, int nk) {
    const int lane = threadIdx.x & 31, G = w.num_local_experts, I = w.inter, E = w.num_experts;
    const int n_t1 = 2 * I / WG_BN, b = (int)blockIdx.x;
    if (fa.spec_pf && per >= 2 * E && 2 * per <= PW * E) {
        if (lane == 0 && b < G * n_t1) fused_spec_prefetch(wmap, (b / n_t1) * 2 * I + (b % n_t1) * WG_BN, min(fa.spec_pf, nk));
        return;
    }
    if (!fa.own_pf || per >= 2 * E) return;
    const int want = b / n_t1, tile = b % n_t1, n = min(fa.own_pf, nk);
    int seen = 0;
    for (int g0 = 0; g0 < G; g0 += 32) {
        const int g = g0 + lane;
        bool hit = false;
        if (g < G)
            for (int x = 0; x < W; x++) hit |= s_bits[(size_t)(me * G + g) * W + x] != 0u;
        const unsigned int m = __ballot_sync(0xffffffffu, hit);
        if (want < seen + __popc(m)) { /* the (want - seen)-th set bit of m */
            unsigned int r = m;
            for (int j = 0; j < want - seen; j++) r &= r - 1u;
            const int ge = g0 + __ffs(r) - 1;
            for (int kt = lane; kt < n; kt += 32) wg_prefetch_l2(wmap, kt * WG_BK, ge * 2 * I + tile * WG_BN);
            return;
        }
        seen += __popc(m);
    }
}

/* The combine reduction, out of line: inlined, its loads in flight change
 * the register allocation of the GEMM loops (ptxas C7511 in version 5). Its
 * arguments come as values (dfm_reduce_args, read from the kernel's
 * parameters by the caller before the combine wait). */
static __device__ __noinline__ void fused_reduce(const dfm_reduce_args_t a, long long first, long long stride) {
    dfm_combine_reduce(a, first, stride);
}

/* 16 bytes (two tagged words) at p, as the peers' NVLink stores left them. */
static __device__ __forceinline__ void fused_ld_tagged2(const char *p, unsigned long long &a, unsigned long long &b) {
    asm volatile("ld.volatile.global.v2.u64 {%0, %1}, [%2];" : "=l"(a), "=l"(b) : "l"(p) : "memory");
}

/* Slot u's 8 values at column c of tagged row (t, f) into v (the 4 words'
 * low halves, dfm_reduce_row's layout); 1 when all 4 carry tag. */
static __device__ __forceinline__ int fused_ll_row(const char *ll_rows, int kmax, int H, int t, int f, int c,
                                                   unsigned int tag, uint4 &v) {
    const char *p = ll_rows + (((size_t)t * kmax + f) * (size_t)H + (size_t)c) * 4;
    unsigned long long x0, x1, x2, x3;
    fused_ld_tagged2(p, x0, x1);
    fused_ld_tagged2(p + 16, x2, x3);
    v = make_uint4((unsigned int)x0, (unsigned int)x1, (unsigned int)x2, (unsigned int)x3);
    return (unsigned int)(x0 >> 32) == tag && (unsigned int)(x1 >> 32) == tag &&
           (unsigned int)(x2 >> 32) == tag && (unsigned int)(x3 >> 32) == tag;
}

/*
 * The combine reduction over the tagged rows (FUSED_COMBINE_LL): the units,
 * sums and order of dfm_combine_reduce (so bit-identical results), each
 * slot's row read as tagged words and read again until all carry the call's
 * tag. While a warp's rows are not in, only its lanes 0 and 31 (the ends of
 * its 256 columns) poll, ~100 ns apart, so that early CTAs do not load the
 * L2 under the GEMM2 items still running; then every lane reads again.
 * Bounded like fused_wait (the owner of the slot's expert is the peer
 * reported); on a failure it returns, leaving out unwritten.
 */
static __device__ __noinline__ void fused_reduce_ll(const dfm_reduce_args_t a, const dfm_cuda_world_t *w,
                                                    const char *ll_rows, unsigned long long seq, long long first,
                                                    long long stride) {
    constexpr int S = DFM_REDUCE_SLOTS;
    const int K = a.num_topk, H = a.hidden, E = a.num_experts, groups = H / 8, lane = threadIdx.x & 31;
    const int G = w->num_local_experts;
    const unsigned int tag = fused_ll_tag(seq);
    const long long total = (long long)a.num_tokens * groups;
    /* a warp-uniform trip count: the poll's votes need every lane */
    for (long long i0 = first - lane; i0 < total; i0 += stride) {
        const long long i = i0 + lane;
        const bool mine = i < total;
        const int t = mine ? (int)(i / groups) : 0, c = mine ? (int)(i % groups) * 8 : 0;
        const int64_t *ir = a.idx + (size_t)t * K;
        const float *wr = a.wts + (size_t)t * K;
        float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int k0 = 0; k0 < K; k0 += S) {
            int64_t e[S];
            float wk[S];
            int f[S];
            uint4 v[S];
            unsigned int need = 0; /* slots whose words are not all in */
#pragma unroll
            for (int u = 0; u < S; u++) {
                const int k = k0 + u;
                e[u] = mine && k < K ? ir[k] : -1;
                wk[u] = k < K && mine ? wr[k] : 0.0f;
            }
#pragma unroll
            for (int u = 0; u < S; u++) {
                f[u] = -1;
                if (e[u] < 0 || e[u] >= E) continue;
                int ff = k0 + u;
                if (K <= S) {
#pragma unroll
                    for (int j = u - 1; j >= 0; j--)
                        if (e[j] == e[u]) ff = j;
                } else {
                    ff = 0;
                    while (ir[ff] != e[u]) ff++;
                }
                f[u] = ff;
                if (!fused_ll_row(ll_rows, a.kmax, H, t, ff, c, tag, v[u])) need |= 1u << u;
            }
            if (__any_sync(0xffffffffu, need != 0)) {
                const unsigned long long t0 = dfm_globaltimer();
                const bool lead = lane == 0 || lane == 31;
                for (unsigned int spin = 1;; spin++) {
                    __nanosleep(100);
                    /* lanes 0 and 31 alone until their rows are in, then everyone */
                    const bool all = __all_sync(0xffffffffu, !lead || need == 0);
                    if (lead || all) {
#pragma unroll
                        for (int u = 0; u < S; u++)
                            if (((need >> u) & 1u) && fused_ll_row(ll_rows, a.kmax, H, t, f[u], c, tag, v[u]))
                                need &= ~(1u << u);
                    }
                    if (!__any_sync(0xffffffffu, need != 0)) break;
                    if ((spin & 15u) == 0) { /* the warp leaves together */
                        const bool fail = dfm_ld_volatile_u32(&w->st->failed) != 0u;
                        const bool late = dfm_globaltimer() - t0 > w->timeout_ns;
                        if (__any_sync(0xffffffffu, fail || late)) {
                            int owner = 0;
#pragma unroll
                            for (int u = S - 1; u >= 0; u--)
                                if ((need >> u) & 1u) owner = (int)(e[u] / G);
                            if (!fail && late && need) dfm_record_timeout(w, owner, DFM_CUDA_WAIT_COMBINE, seq);
                            return;
                        }
                    }
                }
            }
#pragma unroll
            for (int u = 0; u < S; u++)
                if (f[u] >= 0) dfm_reduce_add(acc, v[u], wk[u]);
        }
        if (mine) dfm_reduce_store(a, acc, t, c);
    }
}

/* ---- the producer's A boxes (the box decomposition of gemm_wgmma.cuh v3) ----- */

#ifndef FUSED_PACK
#define FUSED_PACK WG_PACK /* the packed column layout of gemm_wgmma.cuh (0: chunked) */
#endif
static_assert(DFM_MAX_RANKS <= WG_PACK_MAX_R, "packed: one A box per producer lane (wg_pack_boxes)");

/* Lane `lane`'s A box of pass `pass` of expert g (gemm_wgmma.cuh's layouts:
 * packed, wg_pack_boxes, or chunked): its first A row (hbase: the buffer
 * half), first column in the pass and map; tx_rows: the rows all boxes of
 * the pass write. Returns the boxes of the pass (lanes >= it issue nothing). */
static __device__ __forceinline__ int fused_a_box(const wg_gemm_args_t &p, int g, int pass, long long hbase,
                                                  const CUtensorMap *maps, int lane, int &arow, int &boff,
                                                  const CUtensorMap *&amap, int &tx_rows, int pw = WG_MAXCOLS) {
    int nbox = 0, bsel = 0;
    arow = 0;
    boff = 0;
    if constexpr (FUSED_PACK) {
        wg_pack_boxes(p, g, pass, hbase, lane, arow, boff, bsel, nbox, tx_rows, pw);
    } else {
        wg_chunk_boxes(p, g, pass, hbase, lane, arow, boff, bsel, nbox, tx_rows);
    }
    amap = &maps[bsel];
    return nbox;
}

/* ---- the kernel ------------------------------------------------------------------
 *
 * Reads  x [T][H] bf16, topk_idx/topk_weights [T][K] (caller); w1 [G][2I][H]
 *        and w2 [G][H][I] codes through the tensor maps, w1_scale [G][2I],
 *        w2_scale [G][H] f32; st->seq; this rank's region (half = seq & 1):
 *        dispatch_flag, recv_counts, src_info, recv_meta, recv_scale,
 *        recv_rows, combine_flag, combine_rows or combine_ll (written by peers).
 * Writes on every rank dst (LSA pointers): recv_counts[half][me][*] (each
 *          word tagged with the call, fused_counts_tag), src_info[half][me],
 *          dispatch_flag[half][me] = seq | TAG (CTA 0, right after routing:
 *          counts first), then = seq (the last CTA to
 *          finish sending: payload in); recv_rows/scale/meta of the rows this
 *          rank sends; combine_rows[half][t][k] of the rows it computes (GEMM2
 *          epilogue); combine_flag[half][me] = seq (the last CTA done with
 *          GEMM2); or, where every rank's T <= ML (FUSED_COMBINE_LL), those
 *          results as tagged words in combine_ll[half][t][k] and no flag.
 *        this rank: act [rows][I] f32 (GEMM1 epilogue), act_q/act_s (requant),
 *          st->seq/cur_seq/send_done, fused_state_t counters, q_ready[g] = seq,
 *          ep_recv_count [G*R], async->invalid_total/mismatch_total (CTA 0), out [T][H].
 * Shared: dynamic: first the routing bitmap [E][ceil(T/32)] u32, then (after
 *        a proxy fence) the wgmma ring: nst x (16 KB W + acols x 128 B A),
 *        the GEMM1 exchange (128 x acols/2 f32); static: counts [G*R] (the
 *        wgmma code's row_count), item prefixes of both GEMMs, mbarriers.
 * Roles, in order, every CTA (grid = num_sms, cooperative: all co-resident):
 *   1. dispatch, all FUSED_THREADS (384) threads: route the whole batch into the bitmap;
 *      CTA 0 publishes counts + src_info + the counts flag; work units
 *      (token, part) quantize and store to every destination (CTA 0 takes
 *      the grid's last unit, SEND_SKIP0; version 5 with FUSED_SEND_DEDUP:
 *      every CTA first waits for each rank's counts flag and sends a token's
 *      codes once to each rank whose src_info says it runs version 5 too,
 *      the token's other rows there naming that row); the CTAs with units arrive on
 *      st->send_done (ARRIVE_WORK), the last raises the payload flags; after
 *      its units, the CTA's last warp prefetches into L2 the first weight
 *      stages of its likely first GEMM1 item (spec_pf) or, at sparse calls,
 *      of a GEMM1 tile of the local experts this rank's own tokens chose
 *      (own_pf; version 5's kernel: spec_pf only, from one thread).
 *   2. wait for every rank's counts (a thread a tagged count word, kept in
 *      s_cnt; CTA 0 also the counts flags, for src_info; thread 0 sets up the
 *      ring's mbarriers and the GEMM arguments first), build the schedule:
 *      items u over [GEMM1 items | GEMM2 items], each (expert g, 128-channel
 *      tile, pass of <= 128 token rows); a CTA's first item is blockIdx.x,
 *      each later one the next unclaimed u (one atomicAdd by the producer,
 *      published to the consumers in s_items; FUSED_DYNAMIC 0: + gridDim.x).
 *   3. warp 8 (producer): per item, W stages stream into the ring at once;
 *      A stages are issued once the item's gate is open (polled every stage;
 *      waited for only when the ring holds nothing else); while a GEMM1 gate
 *      is closed the next l2_pf W stages are prefetched to L2 (default 0: off).
 *      warps 0-7 (consumers): wait for the gate, wg_consume (wgmma + the
 *      epilogues of gemm_wgmma.cuh); after a GEMM1 item count it in
 *      g1_done[g]; the CTA completing g raises g1_ready[g] = seq and (eager_rq)
 *      starts requantizing g's rows (an expert of <= FUSED_EAGER_ROWS rows:
 *      all of them, then q_ready[g] = seq); before a GEMM2 item of another
 *      g, a CTA helps (fused_help_requant: chunks claimed from rq_claim[g]);
 *      the one completing the last row sets q_ready[g] = seq.
 *   4. all: arrive on g2_arrived; the last CTA raises combine flags; wait for
 *      every rank's combine flag; reduce (thread unit (t, 8 columns), flat over
 *      the grid). Tagged (FUSED_COMBINE_LL): arrive (no fence, no flags) and
 *      reduce, each unit waiting for its rows' words.
 *
 * Why it cannot deadlock (all CTAs co-resident: cooperative launch, grid <=
 * SMs x occupancy, checked at creation; the two ranks' kernels both running):
 * the waits form a fixed order
 *   dispatch sends (no waits but, in version 5, the peers' counts flags,
 *   raised by their CTA 0 right after routing, which waits for nothing)
 *   < counts/payload flags < GEMM1 items
 *   < requant of g < GEMM2 items of g < combine flags < reduce.
 * A GEMM1 item waits only on peers' payload flags, raised after step 1, whose
 * only waits are on counts flags that nothing delays, so every GEMM1 item
 * completes. Every CTA walks its items in
 * increasing u (claims hand out u in increasing order, so every item below a
 * claimed one is already some running CTA's) and all GEMM1 items precede all
 * GEMM2 items, so no CTA waits in a GEMM2 item while owning an unfinished
 * GEMM1 item, nor while one is unowned; hence every g1_done[g]
 * completes and g1_ready[g] rises; the requantization of g waits for nothing
 * else, and every chunk of it is claimed by a running CTA (at least the one
 * whose GEMM2 item waits; a few-row expert's rows are all done by the running
 * CTA that completed its GEMM1, which waits for nothing first), so every q_ready[g] is raised, every GEMM2 item completes, every
 * CTA arrives, and the combine flags rise on every rank (tagged: every
 * GEMM2 item's words are stored, which is all a reduction unit waits for, and
 * a CTA reduces only after its producer has claimed past the last item). With
 * rq_warps a GEMM1 item's count (and a completed few-row expert's
 * requantization) is warps 9-11's: they wait only for their own CTA's
 * consumers' arrivals on the item's slot, which follow its post with no wait
 * in between, so every posted count happens; the consumers wait for a free
 * slot only while warps 9-11 are FUSED_RQQ items behind, which they work off
 * without waiting on anything else (these in-CTA waits are the only spins
 * without the timeout below: none depends on another CTA). Inside a CTA the
 * producer finishes issuing all of an item's stages (W and A) before it
 * starts the next item, and waits on a gate only when every stage it could
 * still issue belongs to the gated item, so consumers never wait on a stage
 * whose A depends on a later item. Every spin is bounded by the timeout
 * (%globaltimer), which sets the async error; a timed-out gate is treated as
 * open (undefined results, no hang). The mbarrier waits depend only on this
 * CTA's own TMA traffic.
 */
/* setmaxnreg: a warpgroup's registers per thread, all four of its warps
 * together (ptxas honours it because the launch bound fixes the count at
 * entry). dec returns registers to the CTA's pool; inc waits until the pool
 * has them. */
template <int N> static __device__ __forceinline__ void fused_setmaxnreg_dec() {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(N));
}
template <int N> static __device__ __forceinline__ void fused_setmaxnreg_inc() {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(N));
}

/* threadIdx.x read afresh: the phases after the register hand-off use
 * this instead of the dispatch phase's copy, which ptxas otherwise keeps
 * (sign-extended, 8 bytes) across the whole kernel and spills. */
static __device__ __forceinline__ int fused_tid() {
    int t;
    asm volatile("mov.u32 %0, %%tid.x;" : "=r"(t));
    return t;
}

/* TOK16: version 5's GEMM1 (FP8 on f16 tensor cores, PROMOTE 1): the CTAs
 * with GEMM1 items of an expert widen its token rows into world.tok16 once
 * (fused_help_widen), the A maps of GEMM1 are over that copy (one half, 2
 * bytes a K element), each stage's A comes as two 64-element K-halves, and
 * the consumers take it as it is (wg_consume's TOK16 path). */
template <int MODE, bool TOK16 = false, bool LLK = false>
static __global__ void __launch_bounds__(FUSED_THREADS, 1)
    fused_kernel(const __grid_constant__ fused_maps_t maps, const __grid_constant__ dfm_cuda_world_t w,
                 const __grid_constant__ dfm_cuda_op_t op, const __grid_constant__ fused_args_t fa) {
    /* background requantization (FUSED_BG_RQ_ROWS): not in the LLK kernels, which run at T <= ll_tokens
     * (<= 64: experts of <= R * T rows) and whose warps 9-11 are on the critical path at T ~ 1 */
    constexpr bool kbg = FUSED_BG_ON(MODE) && !LLK;
    extern __shared__ unsigned char smem_raw[];
    __shared__ int s_cnt[DFM_MAX_EXPERTS];
    __shared__ int s_pre1[WG_MAX_G + 1], s_pre2[WG_MAX_G + 1];
    __shared__ __align__(8) uint64_t s_full[WG_MAX_STAGES], s_empty[WG_MAX_STAGES];
    /* token columns per pass, both GEMMs (as gemm.cu's launches): 160 for
     * version 5, INT8 and BF16 (no widened-token buffer in shared memory);
     * 128 for FP8 widened in the consumers. Until the fourteenth session
     * GEMM2 took 128: an expert of 129-160 rows (dsv3-e32 at T = 128, R = 4)
     * streamed its GEMM2 weights twice. */
    constexpr int PW = FUSED_PACK && (TOK16 || MODE != DFM_QUANT_FP8) ? WG_PASS_COLS : WG_MAXCOLS;
    __shared__ wg_col_t s_tab[2 * PW]; /* wg_consume's column tables */
    __shared__ wg_gemm_args_t s_p[2];
    __shared__ float s_red[32];
    __shared__ size_t s_dst[DFM_MAX_TOPK];
    __shared__ int s_rank[DFM_MAX_TOPK];
    __shared__ int s_dropped, s_last, s_maxcols, s_fin, s_eager, s_s2, s_ticket;
    __shared__ int s_items[FUSED_ITEMQ]; /* item n of this CTA: u, or -1 after the last */
    __shared__ int s_nitems;             /* items published in s_items (the producer's lane 0) */
    __shared__ fused_rqq_t s_rqq;        /* experts handed to warps 9-11 (rq_warps) */
    __shared__ __align__(8) uint64_t s_cbar[FUSED_RQQ]; /* rq_warps: GEMM1 items' consumer arrivals */
    __shared__ float s_rqred[2 * FUSED_RQW_THREADS / 32];
    __shared__ unsigned int s_qok[WG_MAX_G / 32]; /* bit g: this CTA has seen q_ready[g] (fused_qok) */
    __shared__ unsigned int s_big[WG_MAX_G / 32]; /* bit g: g has >= FUSED_RQ_AHEAD_ROWS rows */

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int T = op.num_tokens, K = op.num_topk, E = w.num_experts;
    const int G = w.num_local_experts, R = w.num_ranks, M = w.num_max, H = w.hidden, I = w.inter;
    const int W = dfm_bitmap_words(T);
    const dfm_quant_t q = (dfm_quant_t)MODE;
    const int cb = MODE == DFM_QUANT_BF16 ? 2 : 1;
    const unsigned long long seq = *(volatile unsigned long long *)&w.st->seq + 1;
    const int half = dfm_seq_half(seq);
    char *local = w.peer[w.rank];
    uint32_t *s_bits = (uint32_t *)smem_raw; /* [E][W], phase 1 only */
    if (tid == 0 && fa.trace) {
        for (int i = FT_G1_OPEN; i <= FT_G2_OPEN; i++) fa.trace[(size_t)blockIdx.x * FUSED_TRACE_STRIDE + i] = 0;
        for (int i = 0; i < DFM_CUDA_TRACE_ITEMS; i++)
            fa.trace[(size_t)blockIdx.x * FUSED_TRACE_STRIDE + FUSED_TRACE_N + 4 * i] = 0;
        FUSED_STAMP(fa, FT_START);
    }

    /* ---- 1. dispatch ---- */
    dfm_dispatch_route<FUSED_THREADS>(op, E, W, s_bits, &s_dropped);
    if (tid == 0) FUSED_STAMP(fa, FT_ROUTED);
    if (!FUSED_SPEC_PF_LATE && fa.spec_pf && tid == FUSED_THREADS - 32) {
        const int per = R * T * K, n_t1 = 2 * I / WG_BN;
        if (per >= 2 * E && 2 * per <= PW * E && (int)blockIdx.x < G * n_t1)
            fused_spec_prefetch(&maps.w1, ((int)blockIdx.x / n_t1) * 2 * I + ((int)blockIdx.x % n_t1) * WG_BN,
                                min(fa.spec_pf, (H * cb + WG_BK - 1) / WG_BK));
    }
    if (blockIdx.x == 0) { /* counts first */
        /* (the host picks the LLK kernel where T <= ML and the context has it on) */
        for (int i = tid; i < R * G; i += FUSED_THREADS) {
            const uint32_t *b = s_bits + (size_t)i * W;
            int n = 0;
            for (int x = 0; x < W; x++) n += __popc(b[x]);
            const int dst = i / G, g = i % G;
            ((int32_t *)(w.peer[dst] + dfm_off_recv_counts(&w.L, half, w.rank)))[g] =
                n | (LLK ? (int)FUSED_COUNTS_LL : 0) | fused_counts_tag(seq);
        }
        if (tid < R) {
            int32_t *info = (int32_t *)(w.peer[tid] + dfm_off_src_info(&w.L, half, w.rank));
            info[DFM_INFO_QUANT] = op.quant;
            info[DFM_INFO_TOPK] = K;
            info[DFM_INFO_TOKENS] = T;
            info[DFM_INFO_DROPPED] = s_dropped;
            info[DFM_INFO_TOK16] = TOK16 && FUSED_SEND_DEDUP; /* peers may send us a token's codes once */
        }
        __syncthreads(); /* src_info (and the counts) before the flags (release: cumulative) */
        if (tid < R)
            dfm_st_release_sys(w.peer[tid] + dfm_off_dispatch_flag(&w.L, half, w.rank), seq | FUSED_COUNTS_TAG);
    }
    /* send units u0, u0 + grid, ..; the CTAs with units (all, without
     * arrive_work) arrive, and the last raises the payload flags; CTA 0's
     * counts flag precedes them (its own release). st is read by later
     * kernels. */
    const int u0 = fa.send_skip0 ? ((int)blockIdx.x + (int)gridDim.x - 1) % (int)gridDim.x : (int)blockIdx.x;
    const int n_send = fa.arrive_work ? max(1, min((int)gridDim.x, T * fa.parts)) : (int)gridDim.x;
    if constexpr (TOK16 && FUSED_SEND_DEDUP) {
        /* which ranks widen what they receive (version 5 too): their counts
         * flags carry src_info, raised right after their routing (no waits) */
        unsigned int dedup = 0u;
        if (warp == 0) {
            const int v5 = lane < R &&
                           fused_wait(&w, local + dfm_off_dispatch_flag(&w.L, half, lane), seq, ~FUSED_COUNTS_TAG, lane,
                                      DFM_CUDA_WAIT_DISPATCH, seq) &&
                           ((const volatile int32_t *)(local + dfm_off_src_info(&w.L, half, lane)))[DFM_INFO_TOK16];
            dedup = __ballot_sync(0xffffffffu, v5);
        }
        dfm_dispatch_send<FUSED_THREADS, MODE, true>(w, op, s_bits, W, fa.parts, half, s_red, s_dst, s_rank, u0,
                                                     dedup);
    } else {
        dfm_dispatch_send<FUSED_THREADS, MODE>(w, op, s_bits, W, fa.parts, half, s_red, s_dst, s_rank, u0);
    }
    if constexpr (TOK16) { /* version 5 runs dense calls only: no own-expert prefetch, and its
                            * kernel stays the code measured before it (SASS) */
        if (FUSED_SPEC_PF_LATE && fa.spec_pf && tid == FUSED_THREADS - 32) {
            const int per = R * T * K, n_t1 = 2 * I / WG_BN;
            if (per >= 2 * E && 2 * per <= PW * E && (int)blockIdx.x < G * n_t1)
                fused_spec_prefetch(&maps.w1, ((int)blockIdx.x / n_t1) * 2 * I + ((int)blockIdx.x % n_t1) * WG_BN,
                                    min(fa.spec_pf, (H * cb + WG_BK - 1) / WG_BK));
        }
    } else if (FUSED_SPEC_PF_LATE && warp == FUSED_THREADS / 32 - 1) {
        fused_head_prefetch(&maps.w1, s_bits, W, w.rank, R * T * K, fa, PW, w, (H * cb + WG_BK - 1) / WG_BK);
    }
    if (u0 < n_send && dfm_cta_arrive_n(&w.st->send_done, &s_last, (unsigned int)n_send)) {
        if (tid == 0) {
            w.st->seq = seq;
            w.st->cur_seq = seq;
            w.st->send_done = 0;
        }
        if (tid < R) dfm_st_release_sys(w.peer[tid] + dfm_off_dispatch_flag(&w.L, half, w.rank), seq);
    }
    if (tid == 0) FUSED_STAMP(fa, FT_SENT);

    /* ---- 2. counts of every source, the schedule ---- */
    if (tid == 0) { /* before its poll: nothing here needs the counts */
        s_pre1[0] = 0;
        s_pre2[0] = 0;
        s_nitems = 0;
        s_rqq.posted = s_rqq.done = s_rqq.end = 0;
        s_maxcols = 0;
        for (int x = 0; x < WG_MAX_G / 32; x++) s_big[x] = 0;
        for (int s = 0; s < WG_MAX_STAGES; s++) {
            wg_mbar_init(&s_full[s], 1);
            wg_mbar_init(&s_empty[s], 8);
        }
        for (int s = 0; s < FUSED_RQQ; s++) wg_mbar_init(&s_cbar[s], FUSED_CONSUMERS);
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
        for (int ph = 0; ph < 2; ph++) {
            wg_gemm_args_t *p = &s_p[ph];
            memset(p, 0, sizeof *p);
            p->G = G;
            p->R = R;
            p->M = M;
            p->inter = I;
            p->row_count = s_cnt;
            p->cur_seq = NULL;
        }
        s_p[0].n_out = 2 * I;
        s_p[0].k_bytes = H * cb;
        s_p[0].a_scale = (const float *)(local + dfm_off_recv_scale(&w.L, 0, 0));
        s_p[0].b_scale = MODE == DFM_QUANT_BF16 ? NULL : op.w1_scale;
        s_p[0].half_rows = (long long)G * R * M;
        s_p[0].act = w.act;
        s_p[1].n_out = H;
        s_p[1].k_bytes = I * cb;
        s_p[1].a_scale = w.act_s;
        s_p[1].b_scale = MODE == DFM_QUANT_BF16 ? NULL : op.w2_scale;
        s_p[1].half_rows = 0;
        s_p[1].act = NULL;
    }
    /* CTA 0 reads src_info (faults) after the barrier: the counts flags too */
    if (blockIdx.x == 0 && tid < R)
        fused_wait(&w, local + dfm_off_dispatch_flag(&w.L, half, tid), seq, ~FUSED_COUNTS_TAG, tid,
                   DFM_CUDA_WAIT_DISPATCH, seq);
    int no_ll = 0; /* LLK: a source without FUSED_COUNTS_LL */
    for (int i = tid; i < G * R; i += FUSED_THREADS) { /* a thread a count word: the polls at once */
        const int g = i / R, src = i % R;
        const unsigned int *p = (const unsigned int *)(local + dfm_off_recv_counts(&w.L, half, src)) + g;
        const unsigned int v = fused_wait_tagged(&w, p, (unsigned int)fused_counts_tag(seq), src, seq);
        const int c = min((int)(v & (FUSED_COUNTS_LL - 1u)), M);
        if (LLK) no_ll |= !(v & FUSED_COUNTS_LL);
        s_cnt[i] = c;
        if (blockIdx.x == 0 && op.ep_recv_count) op.ep_recv_count[i] = c;
    }
    /* tagged combine rows for this call: every source runs the LLK kernel
     * (the same words on every rank, so the same choice everywhere) */
    int ll = 0;
    if constexpr (LLK)
        ll = !__syncthreads_or(no_ll);
    else
        __syncthreads();
    if (tid == 0) FUSED_STAMP(fa, FT_COUNTS);
    if (blockIdx.x == 0 && tid == 0) dfm_dispatch_note_faults(w, op, half);
    const int n_tiles1 = 2 * I / WG_BN, n_tiles2 = H / WG_BN;
    {
        int my_maxcols = 0;
        for (int g = tid; g < G; g += FUSED_THREADS) {
            const int cols = wg_expert_cols<FUSED_PACK>(s_cnt, R, g);
            s_pre1[g + 1] = (cols + PW - 1) / PW * n_tiles1;
            s_pre2[g + 1] = (cols + PW - 1) / PW * n_tiles2;
            my_maxcols = max(my_maxcols, cols);
            if (cols >= FUSED_RQ_AHEAD_ROWS) atomicOr(&s_big[g >> 5], 1u << (g & 31)); /* zeroed by thread 0 above */
        }
        if (my_maxcols > 0) atomicMax(&s_maxcols, my_maxcols);
        for (int x = tid; x < (G + 31) / 32; x += FUSED_THREADS) s_qok[x] = 0;
    }
    /* The ring overwrites the bitmap through the async proxy. */
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    __syncthreads();
    if (warp < 2) { /* warp 0 scans s_pre1[1..G], warp 1 s_pre2[1..G] */
        int *pre = warp == 0 ? s_pre1 : s_pre2;
        int carry = 0;
        for (int b = 0; b < G; b += 32) {
            int v = b + lane < G ? pre[b + lane + 1] : 0;
            for (int o = 1; o < 32; o <<= 1) {
                const int x = __shfl_up_sync(0xffffffffu, v, o);
                if (lane >= o) v += x;
            }
            if (b + lane < G) pre[b + lane + 1] = v + carry;
            carry += __shfl_sync(0xffffffffu, v, 31);
        }
        if (warp == 1) { /* GEMM2's item order (FUSED_G2_SCATTER), in shared memory:
                          * the producer has no register to spare */
            int rows = 0;
            for (int x = lane; x < G * R; x += 32) rows += s_cnt[x];
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) rows += __shfl_xor_sync(0xffffffffu, rows, o);
            const bool scatter = fa.g2_scatter == 1 || (fa.g2_scatter == 2 && G >= FUSED_G2_SCATTER_G &&
                                                        rows >= FUSED_G2_SCATTER_ROWS * G);
            if (lane == 0) s_s2 = scatter ? fused_coprime_stride(carry, G) : 1;
        }
    }
    __syncthreads();
    const int total1 = s_pre1[G], total2 = s_pre2[G];
    const int nk1 = (H * cb + WG_BK - 1) / WG_BK, nk2 = (I * cb + WG_BK - 1) / WG_BK;

    unsigned char *smem = (unsigned char *)(((uintptr_t)smem_raw + 1023) & ~(uintptr_t)1023);
    wg_ring_t ring;
    const int acols = wg_pad_cols(min(PW, max(s_maxcols, 8)));
    static_assert(!TOK16 || (MODE == DFM_QUANT_FP8 && WG_FP8_PROMOTE == 1 && FUSED_PACK),
                  "version 5: FP8 GEMM1 on f16 tensor cores, packed columns");
    static_assert(!(TOK16 && LLK), "version 5 has no tagged combine (its register budget)");
    const int xbytes = 128 * (acols / 2) * 4, bhb = TOK16 ? 0 : wg_bh_bytes(MODE, WG_FP8_PROMOTE, acols);
    ring.sb = WG_W_BYTES + acols * WG_BK * (TOK16 ? 2 : 1);
    ring.nst = min(WG_MAX_STAGES, ((int)wg_dyn_smem_size() - (int)(smem - smem_raw) - xbytes - bhb) / ring.sb);
    ring.bh = bhb ? smem + ring.nst * ring.sb : nullptr;
    ring.bhs = acols * 256;
    float *xch = (float *)(smem + ring.nst * ring.sb + bhb);
    fused_out_t<LLK> out;
    out.w = &w;
    if constexpr (LLK) {
        out.is_ll = ll;
        out.tagv = fused_ll_tag(seq);
    }

    /* ---- 3. the expert GEMMs ---- */
    if (warp >= 8) {
        /* The producer warpgroup's part ends with the GEMMs: it gives its
         * registers to the consumers and leaves once warp 8 has issued every
         * stage (the combine below is the consumers' alone, on named
         * barriers), so nothing of the later phases stays live in it. */
        fused_setmaxnreg_dec<FUSED_REGS_PRODUCER>();
        if (warp > 8) {
            if (fa.rq_warps) fused_rq_warps<kbg>(&w, &fa, s_cnt, s_pre1, q, seq, &s_rqq, s_rqred, s_cbar);
            if (TOK16 && FUSED_BG_WD_ROWS > 0) fused_bg_widen(&w, &fa, s_cnt, half, seq);
            if (kbg)
                fused_bg_requant<MODE == DFM_QUANT_INT8 ? FUSED_BG_RQ_V4 : FUSED_BG_RQ_V4_FP>(&w, &fa, s_cnt, q, seq);
            return;
        }
        const int plane = fused_tid() & 31;
        const uint64_t wpol = wg_policy_evict_first();
        int it = 0, n = 0;
        for (int u = blockIdx.x;; n++) {
            /* item n of this CTA: published to the consumers (s_items, then
             * s_nitems) before any of its stages, -1 after the last */
            /* um: the item that claim u stands for (GEMM2's order, s_s2) */
            const int um = u < total1 || u >= total1 + total2 ? u : total1 + fused_g2_order(u - total1, s_s2, total2);
            if (plane == 0) {
                s_items[n % FUSED_ITEMQ] = u < total1 + total2 ? um : -1;
                __threadfence_block();
                *(volatile int *)&s_nitems = n + 1;
            }
            if (u >= total1 + total2) break;
            const int phase = um < total1 ? 1 : 2;
            const int v = phase == 1 ? um : um - total1;
            int g, tile, pass;
            wg_item(phase == 1 ? s_pre1 : s_pre2, G, phase == 1 ? n_tiles1 : n_tiles2, v, g, tile, pass);
            int arow, boff, tx_rows;
            const CUtensorMap *amap;
            const int nbox = fused_a_box(s_p[phase - 1], g, pass, phase == 1 && !TOK16 ? (long long)half * G * R * M : 0,
                                         phase == 1 ? maps.a1 : maps.a2, plane, arow, boff, amap, tx_rows,
                                         PW);
            /* version 5's GEMM1: two f16 K-halves a stage, half 1 after the
             * consumer's npad columns of half 0 */
            const bool two = TOK16 && phase == 1;
            const int npad = two ? wg_pad_cols(min(PW, wg_expert_cols<FUSED_PACK>(s_cnt, R, g) - pass * PW)) : 0;
            auto issue_a = [&](unsigned char *st, int kt, uint64_t *bar) {
                if (two) {
                    wg_tma_2d(st + WG_W_BYTES + boff * WG_BK, amap, 2 * kt * WG_BK, arow, bar);
                    wg_tma_2d(st + WG_W_BYTES + (npad + boff) * WG_BK, amap, (2 * kt + 1) * WG_BK, arow, bar);
                } else {
                    wg_tma_2d(st + WG_W_BYTES + boff * WG_BK, amap, kt * WG_BK, arow, bar);
                }
            };
            const CUtensorMap *wmap = phase == 1 ? &maps.w1 : &maps.w2;
            const int wrow = g * (phase == 1 ? 2 * I : H) + tile * WG_BN;
            const int nk = phase == 1 ? nk1 : nk2;
            const int it0 = it;
            int open = __all_sync(0xffffffffu, fused_gate(&w, &fa, s_cnt, phase, g, half, seq, 0, TOK16));
            if (!open && phase == 1 && plane == 0)
                for (int kt = ring.nst; kt < nk && kt < ring.nst + fa.l2_pf; kt++)
                    wg_prefetch_l2(wmap, kt * WG_BK, wrow);
            int pend = 0; /* first stage of the item whose A is not issued */
            for (int kt = 0; kt < nk; kt++, it++) {
                if (!open) {
                    /* the slot's previous stage is this item's (A pending):
                     * nothing else can be issued until the gate opens */
                    const int must = kt >= ring.nst;
                    open = __all_sync(0xffffffffu, fused_gate(&w, &fa, s_cnt, phase, g, half, seq, must, TOK16));
                    if (open) {
                        fused_fence_proxy_global();
                        for (int k2 = pend; k2 < kt; k2++)
                            if (plane < nbox)
                                issue_a(smem + ((it0 + k2) % ring.nst) * ring.sb, k2, &s_full[(it0 + k2) % ring.nst]);
                        pend = kt;
                    }
                } else if (kt == 0) {
                    fused_fence_proxy_global();
                }
                const int s = it % ring.nst, r = it / ring.nst;
                if (plane == 0) {
                    wg_mbar_wait(&s_empty[s], (r & 1) ^ 1);
                    wg_mbar_expect_tx(&s_full[s], WG_W_BYTES + tx_rows * WG_BK * (two ? 2 : 1));
                }
                __syncwarp();
                unsigned char *st = smem + s * ring.sb;
                if (plane == 0) {
                    if (fa.w_evict_first) wg_tma_2d_hint(st, wmap, kt * WG_BK, wrow, &s_full[s], wpol);
                    else wg_tma_2d(st, wmap, kt * WG_BK, wrow, &s_full[s]);
                }
                if (open) {
                    if (plane < nbox) issue_a(st, kt, &s_full[s]);
                    pend = kt + 1;
                }
            }
            if (!open) {
                fused_gate(&w, &fa, s_cnt, phase, g, half, seq, 1, TOK16);
                __syncwarp();
                fused_fence_proxy_global();
                for (int k2 = pend; k2 < nk; k2++)
                    if (plane < nbox) issue_a(smem + ((it0 + k2) % ring.nst) * ring.sb, k2, &s_full[(it0 + k2) % ring.nst]);
            }
            /* the next item: the next unclaimed one (dynamic), else + gridDim.x */
            int next = u + (int)gridDim.x;
            if (fa.dynamic) {
                if (plane == 0) /* one atomic, no retries: 132 producers claim at once */
                    next = (int)gridDim.x + (int)atomicAdd(&fa.fs->item_next[half], 1u);
                next = __shfl_sync(0xffffffffu, next, 0);
            }
            u = next;
        }
        return;
    }
    fused_setmaxnreg_inc<FUSED_REGS_CONSUMER>();
    const int ct = fused_tid(), clane = ct & 31; /* re-read, not kept from the dispatch phase (see fused_tid) */
    { /* consumers */
        int it = 0, first1 = 1, first2 = 1, nq = 0; /* nq: GEMM1 items posted (rq_warps) */
        unsigned long long tw1 = 0, tw2 = 0; /* trace: ns before items' gates opened */
        unsigned int tn1 = 0, tn2 = 0;       /* trace: items */
        for (int n = 0;; n++) {
            /* item n as the producer published it (it claims the next only
             * when it has issued every stage of this one) */
            if (ct == 0) {
                while (*(volatile int *)&s_nitems <= n) {
                }
                __threadfence_block();
            }
            wg_bar_sync(FUSED_BAR_DONE, FUSED_CONSUMERS);
            const int u = *(volatile int *)&s_items[n % FUSED_ITEMQ];
            if (u < 0) break;
            const int phase = u < total1 ? 1 : 2;
            const int v = phase == 1 ? u : u - total1;
            int g, tile, pass;
            wg_item(phase == 1 ? s_pre1 : s_pre2, G, phase == 1 ? n_tiles1 : n_tiles2, v, g, tile, pass);
            const unsigned long long t_in = ct == 0 && fa.trace ? dfm_globaltimer() : 0;
            /* a GEMM2 item of an expert whose gate this CTA has passed before:
             * nothing to help (fused_help_requant helps only while g's gate is
             * closed) and nothing to wait for; thread 0's acquire then and the
             * barriers since order every consumer's reads of g's rows */
#define FUSED_QOK_G (FUSED_QOK && phase == 2 && ((*(volatile unsigned int *)&s_qok[g >> 5] >> (g & 31)) & 1u))
            if (phase == 2 && !FUSED_QOK_G)
                fused_help_requant(&w, &fa, s_cnt, g, q, seq, &s_fin, s_red, false,
                                   (*(volatile unsigned int *)&s_big[g >> 5] >> (g & 31)) & 1u);
            if (TOK16 && phase == 1) fused_help_widen(&w, &fa, s_cnt, g, half, seq, &s_fin);
            if (clane == 0 && !FUSED_QOK_G) fused_gate(&w, &fa, s_cnt, phase, g, half, seq, 1, TOK16); /* orders the epilogue's reads */
#undef FUSED_QOK_G
            __syncwarp();
            if (FUSED_QOK && phase == 2 && ct == 0) s_qok[g >> 5] |= 1u << (g & 31); /* read after the next item's barrier */
            if (ct == 0 && fa.trace) {
                const unsigned long long dt = dfm_globaltimer() - t_in;
                if (!TOK16 && n < DFM_CUDA_TRACE_ITEMS) {
                    unsigned long long *rec = fa.trace + (size_t)blockIdx.x * FUSED_TRACE_STRIDE + FUSED_TRACE_N + 4 * n;
                    rec[0] = (unsigned long long)u << 12 | (unsigned long long)g;
                    rec[1] = t_in;
                    rec[2] = t_in + dt;
                }
                if (phase == 1) {
                    tw1 += first1 ? 0 : dt;
                    tn1++;
                } else {
                    tw2 += dt;
                    tn2++;
                }
            }
            if (ct == 0 && (phase == 1 ? first1 : first2)) FUSED_STAMP(fa, phase == 1 ? FT_G1_OPEN : FT_G2_OPEN);
            if (phase == 1) first1 = 0;
            else first2 = 0;
            const int cols = min(PW, wg_expert_cols<FUSED_PACK>(s_cnt, R, g) - pass * PW);
            /* wg_consume's N for `cols`: WG_BY_COLS's widths, and 160 past 128 */
#define FUSED_BY_COLS(X) \
    do { \
        if constexpr (PW > WG_MAXCOLS) { \
            if (cols > WG_MAXCOLS) X(WG_PASS_COLS); \
            else WG_BY_COLS(cols, X); \
        } else { \
            WG_BY_COLS(cols, X); \
        } \
    } while (0)
            if (phase == 1) {
#define FUSED_CONSUME(NN) \
    wg_consume<MODE, 1, NN, fused_out_t<LLK>, WG_FP8_PROMOTE, true, true, FUSED_PACK, false, PW, TOK16>(s_p[0], out, smem, ring, s_full, s_empty, xch, s_tab, it, g, tile, pass, half)
                FUSED_BY_COLS(FUSED_CONSUME);
#undef FUSED_CONSUME
                if (!TOK16 && ct == 0 && fa.trace && n < DFM_CUDA_TRACE_ITEMS)
                    fa.trace[(size_t)blockIdx.x * FUSED_TRACE_STRIDE + FUSED_TRACE_N + 4 * n + 3] = dfm_globaltimer();
                /* count the item; the CTA completing expert g says so
                 * (g1_ready) and, with eager_rq, starts requantizing g at
                 * once; the CTAs with GEMM2 items of g help (or do it all) */
                /* as dfm_cta_arrive: the barrier orders every consumer's act
                 * stores before thread 0's acquire-release count (GPU scope:
                 * the requantization reads act with generic loads) */
                if (fused_rqw_takes<kbg>(fa.rq_warps, q, fused_rows_of(s_cnt, R, g))) {
                    /* post the item to warps 9-11 (a free slot: they are
                     * done with the item FUSED_RQQ back), then every
                     * consumer thread arrives on its slot (release) and
                     * goes on to its next item */
                    const int slot = nq % FUSED_RQQ;
                    if (ct == 0) {
                        while (nq - *(volatile int *)&s_rqq.done >= FUSED_RQQ) __nanosleep(64);
                        s_rqq.q[slot] = g;
                        __threadfence_block();
                        *(volatile int *)&s_rqq.posted = nq + 1;
                        FUSED_STAMP(fa, FT_G1_DONE);
                    }
                    wg_bar_sync(FUSED_BAR_DONE, FUSED_CONSUMERS);
                    wg_mbar_arrive_at(wg_smem_u32(&s_cbar[slot]));
                    nq++;
                    continue;
                }
                wg_bar_sync(FUSED_BAR_DONE, FUSED_CONSUMERS);
                if (ct == 0) {
                    const int rows = fused_rows_of(s_cnt, R, g);
                    s_eager = 0;
                    if (fused_count_g1(&fa, s_pre1, g, rows, seq)) {
                        /* 1: only an expert of a few rows (a few us of this
                         * CTA's time; more delays its next GEMM1 item); 3:
                         * also while a grid of GEMM1 items is unclaimed */
                        const int unclaimed1 = total1 - (int)gridDim.x -
                                               (int)*(volatile unsigned int *)&fa.fs->item_next[half];
                        s_eager = fa.eager_rq == 2 || (fa.eager_rq != 0 && rows <= FUSED_EAGER_ROWS) ||
                                  (fa.eager_rq == 3 && unclaimed1 >= (int)gridDim.x);
                    }
                    FUSED_STAMP(fa, FT_G1_DONE);
                }
                wg_bar_sync(FUSED_BAR_DONE, FUSED_CONSUMERS);
                if (s_eager) fused_help_requant(&w, &fa, s_cnt, g, q, seq, &s_fin, s_red, true);
            } else {
#define FUSED_CONSUME(NN) \
    wg_consume<MODE, 2, NN, fused_out_t<LLK>, WG_FP8_PROMOTE2, true, true, FUSED_PACK, false, PW>(s_p[1], out, smem, ring, s_full, s_empty, xch, s_tab, it, g, tile, pass, half)
                FUSED_BY_COLS(FUSED_CONSUME);
#undef FUSED_CONSUME
                if (!TOK16 && ct == 0 && fa.trace && n < DFM_CUDA_TRACE_ITEMS)
                    fa.trace[(size_t)blockIdx.x * FUSED_TRACE_STRIDE + FUSED_TRACE_N + 4 * n + 3] = dfm_globaltimer();
            }
#undef FUSED_BY_COLS
        }
        if (ct == 0) { /* warps 9-11 leave once they have done every posted expert */
            __threadfence_block();
            *(volatile int *)&s_rqq.end = 1;
        }
        if (ct == 0 && fa.trace) {
            unsigned long long *tr = fa.trace + (size_t)blockIdx.x * FUSED_TRACE_STRIDE;
            tr[FT_WAIT1] = tw1;
            tr[FT_WAIT2] = tw2;
            tr[FT_ITEMS1] = tn1;
            tr[FT_ITEMS2] = tn2;
        }
    }

    /* ---- 4. combine (the 256 consumer threads) ---- */
    const dfm_reduce_args_t red = dfm_reduce_args(&w, &op, half);
    /* Arrive as dfm_cta_arrive, over the consumers' barrier: one thread
     * fences for every consumer's GEMM2 stores to home ranks. */
    wg_bar_sync(FUSED_BAR_DONE, FUSED_CONSUMERS);
    if (ct == 0) {
        FUSED_STAMP(fa, FT_G2_DONE);
        if (!ll) dfm_fence_acq_rel_sys(); /* tagged words need no fence */
        const unsigned int ticket = dfm_atom_add_acq_rel_gpu(&fa.fs->g2_arrived, 1u);
        s_last = ticket == gridDim.x - 1;
        s_ticket = fa.reduce_warm ? (int)ticket : (int)blockIdx.x;
        if (s_last) {
            fa.fs->g2_arrived = 0;
            fa.fs->item_next[half] = 0; /* every producer has claimed its last (past the end) */
        }
    }
    wg_bar_sync(FUSED_BAR_DONE, FUSED_CONSUMERS);
    /* (where r_first is computed: each kernel's instructions as measured, the
     * non-LLK ones those of the kernels before the tagged combine) */
    long long r_first = 0;
    if constexpr (LLK) r_first = (long long)s_ticket * FUSED_CONSUMERS + ct;
    if (LLK && ll) { /* the reduction waits for each tagged word it reads */
        if (ct == 0) FUSED_STAMP(fa, FT_COMBINE_IN);
        fused_reduce_ll(red, &w, local + dfm_off_combine_ll(&w.L, half, 0, 0), seq, r_first,
                        (long long)gridDim.x * FUSED_CONSUMERS);
        if (fa.trace) {
            wg_bar_sync(FUSED_BAR_DONE, FUSED_CONSUMERS);
            if (ct == 0) FUSED_STAMP(fa, FT_END);
        }
        return;
    }
    if (s_last && ct < R) dfm_st_release_sys(w.peer[ct] + dfm_off_combine_flag(&w.L, half, w.rank), seq);
    /* The reduction's units go to the CTAs in the order they arrived (the
     * first to be done with GEMM2 wait longest for the combine flags), and
     * with FUSED_REDUCE_WARM 2 those CTAs run their first unit once without
     * storing while they wait (a stride past every unit: one pass of the
     * loop, which adds the stride once): the code of fused_reduce and the
     * tokens' ids and weights are then in the SM's caches when the rows are in. */
    if constexpr (!LLK) r_first = (long long)s_ticket * FUSED_CONSUMERS + ct;
    if (fa.reduce_warm == 2 && !s_last && s_ticket * FUSED_CONSUMERS < op.num_tokens * (w.hidden / 8)) {
        dfm_reduce_args_t dry = red;
        dry.out = NULL;
        fused_reduce(dry, r_first, 1LL << 62); /* the first unit only */
    }
    if (ct < R)
        dfm_wait_flag(&w, local + dfm_off_combine_flag(&w.L, half, ct), seq, ct, DFM_CUDA_WAIT_COMBINE);
    wg_bar_sync(FUSED_BAR_DONE, FUSED_CONSUMERS);
    if (ct == 0) FUSED_STAMP(fa, FT_COMBINE_IN);
    fused_reduce(red, r_first, (long long)gridDim.x * FUSED_CONSUMERS);
    if (fa.trace) {
        wg_bar_sync(FUSED_BAR_DONE, FUSED_CONSUMERS);
        if (ct == 0) FUSED_STAMP(fa, FT_END);
    }
}

/* ---- host side ------------------------------------------------------------------- */

struct dfm_cuda_fused {
    fused_state_t *state; /* device: header, g1_done [G], q_ready [G] */
    fused_args_t args;
    int grid;
    int smem[DFM_NUM_QUANT];
    /* tensor maps per mode: A maps fixed per context (built on first use), W
     * maps of the last (w1, w2) pair seen */
    int have_a[DFM_NUM_QUANT];
    const void *w1_of[DFM_NUM_QUANT], *w2_of[DFM_NUM_QUANT];
    fused_maps_t maps[DFM_NUM_QUANT];
    /* version 5 (FP8, world.tok16 allocated): its kernel's shared memory, and
     * the FP8 maps with a1 over the f16 copy (built with the FP8 ones) */
    int smem16;
    int smem_ll[DFM_NUM_QUANT]; /* the tagged-combine kernels' (fused_kernel_of's llk) */
    CUtensorMap a1_16[WG_A_MAPS];
    fused_maps_t maps16;
};

/* tok16: version 5; llk: the kernel that can send the tagged combine rows
 * (FUSED_COMBINE_LL, not with version 5); the others are main's code. */
static const void *fused_kernel_of(int quant, int tok16 = 0, int llk = 0) {
    if (quant == DFM_QUANT_FP8 && tok16) return (const void *)fused_kernel<DFM_QUANT_FP8, true>;
    if (quant == DFM_QUANT_FP8)
        return llk ? (const void *)fused_kernel<DFM_QUANT_FP8, false, true> : (const void *)fused_kernel<DFM_QUANT_FP8>;
    if (quant == DFM_QUANT_INT8)
        return llk ? (const void *)fused_kernel<DFM_QUANT_INT8, false, true> : (const void *)fused_kernel<DFM_QUANT_INT8>;
    return llk ? (const void *)fused_kernel<DFM_QUANT_BF16, false, true> : (const void *)fused_kernel<DFM_QUANT_BF16>;
}

void dfm_cuda_fused_destroy(dfm_cuda_fused_t *f) {
    if (f == NULL) return;
    cudaFree(f->args.trace);
    cudaFree(f->state);
    free(f);
}

cudaError_t dfm_cuda_fused_create(const dfm_cuda_world_t *w, int path, dfm_cuda_fused_t **out) {
    *out = NULL;
    /* the pipeline: asked for, or by DFM_CUDA_FUSED=0 where the config leaves it to the library */
    if (path == DFM_PATH_PIPELINE || (path == DFM_PATH_DEFAULT && !dfm_cuda_env_int("DFM_CUDA_FUSED", 1, 0, 1)))
        return cudaSuccess;
    dfm_cuda_fused_t *f = (dfm_cuda_fused_t *)calloc(1, sizeof *f);
    if (f == NULL) return cudaErrorMemoryAllocation;
    const int G = w->num_local_experts;
    const size_t g1_off = sizeof(fused_state_t);
    const size_t q_off = dfm_align_up(g1_off + (size_t)G * sizeof(unsigned int), 8);
    /* q_ready, g1_ready, rq_claim, rq_done, w_ready, w_claim, w_done */
    const size_t u64s = (size_t)G * sizeof(unsigned long long);
    const size_t bytes = q_off + 7 * u64s;
    cudaError_t err = cudaMalloc((void **)&f->state, bytes);
    if (err == cudaSuccess) err = cudaMemset(f->state, 0, bytes);
    f->args.fs = f->state;
    f->args.g1_done = (unsigned int *)((char *)f->state + g1_off);
    f->args.q_ready = (unsigned long long *)((char *)f->state + q_off);
    f->args.g1_ready = (unsigned long long *)((char *)f->state + q_off + u64s);
    f->args.rq_claim = (unsigned long long *)((char *)f->state + q_off + 2 * u64s);
    f->args.rq_done = (unsigned long long *)((char *)f->state + q_off + 3 * u64s);
    f->args.w_ready = (unsigned long long *)((char *)f->state + q_off + 4 * u64s);
    f->args.w_claim = (unsigned long long *)((char *)f->state + q_off + 5 * u64s);
    f->args.w_done = (unsigned long long *)((char *)f->state + q_off + 6 * u64s);
    f->grid = w->num_sms > 0 ? w->num_sms : 1;
    const char *tr = getenv("DFM_CUDA_FUSED_TRACE");
    if (err == cudaSuccess && tr && !strcmp(tr, "1")) {
        const size_t tb = (size_t)f->grid * FUSED_TRACE_STRIDE * sizeof(unsigned long long);
        err = cudaMalloc((void **)&f->args.trace, tb);
        if (err == cudaSuccess) err = cudaMemset(f->args.trace, 0, tb);
    }
    f->args.w_evict_first = dfm_cuda_w_evict_first();
    f->args.l2_pf = dfm_cuda_env_int("DFM_CUDA_FUSED_L2_PF", FUSED_L2_PF_STAGES, 0, 64);
    f->args.spec_pf = dfm_cuda_env_int("DFM_CUDA_FUSED_SPEC_PF", FUSED_SPEC_PF_STAGES, 0, 64);
    f->args.own_pf = dfm_cuda_env_int("DFM_CUDA_FUSED_OWN_PF", FUSED_OWN_PF_STAGES, 0, 64);
    f->args.rq_warps = dfm_cuda_env_int("DFM_CUDA_FUSED_RQ_WARPS", FUSED_RQ_WARPS, 0, 4);
    if (f->args.rq_warps < 3) f->args.rq_warps = 0; /* modes 1 and 2 are gone */
    f->args.eager_rq = dfm_cuda_env_int("DFM_CUDA_FUSED_EAGER_RQ", -1, 0, 3); /* -1: by the call's mode */
    f->args.rq_ahead = dfm_cuda_env_int("DFM_CUDA_FUSED_RQ_AHEAD", FUSED_RQ_AHEAD, 0, 64);
    f->args.dynamic = dfm_cuda_env_int("DFM_CUDA_FUSED_DYNAMIC", FUSED_DYNAMIC, 0, 1);
    f->args.send_skip0 = dfm_cuda_env_int("DFM_CUDA_FUSED_SEND_SKIP0", FUSED_SEND_SKIP0, 0, 1);
    f->args.arrive_work = dfm_cuda_env_int("DFM_CUDA_FUSED_ARRIVE_WORK", FUSED_ARRIVE_WORK, 0, 1);
    f->args.g2_scatter = dfm_cuda_env_int("DFM_CUDA_FUSED_G2_SCATTER", FUSED_G2_SCATTER, 0, 2);
    f->args.reduce_warm = dfm_cuda_env_int("DFM_CUDA_FUSED_REDUCE_WARM", FUSED_REDUCE_WARM, 0, 2);
    f->args.ll = dfm_cuda_env_int("DFM_CUDA_FUSED_COMBINE_LL", FUSED_COMBINE_LL, 0, 1);
    for (int v = 0; v <= 2 * DFM_NUM_QUANT && err == cudaSuccess; v++) {
        /* v < DFM_NUM_QUANT: mode v; v == DFM_NUM_QUANT: FP8 version 5; above:
         * mode v - DFM_NUM_QUANT - 1 with the tagged combine */
        const int m = v < DFM_NUM_QUANT ? v : v - DFM_NUM_QUANT - 1;
        const void *k = v < DFM_NUM_QUANT    ? fused_kernel_of(v)
                        : v == DFM_NUM_QUANT ? fused_kernel_of(DFM_QUANT_FP8, 1)
                                             : fused_kernel_of(m, 0, 1);
        int *smem = v < DFM_NUM_QUANT ? &f->smem[v] : v == DFM_NUM_QUANT ? &f->smem16 : &f->smem_ll[m];
        *smem = wg_v3_smem(k);
        if (*smem <= 0) {
            err = cudaErrorInvalidValue;
            break;
        }
        err = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, *smem);
        int per_sm = 0;
        if (err == cudaSuccess)
            err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k, FUSED_THREADS, (size_t)*smem);
        /* every CTA spins on work of others: all must be resident */
        if (err == cudaSuccess && per_sm * w->num_sms < f->grid) err = cudaErrorCooperativeLaunchTooLarge;
        /* the routing bitmap lives in the dynamic shared memory */
        if (err == cudaSuccess &&
            (size_t)w->num_experts * dfm_bitmap_words(DFM_MAX_TOKENS) * 4 + 1024 > (size_t)*smem)
            err = cudaErrorInvalidValue;
    }
    if (err != cudaSuccess) {
        dfm_cuda_fused_destroy(f);
        return err;
    }
    *out = f;
    return cudaSuccess;
}

static int fused_maps(dfm_cuda_fused_t *f, const dfm_cuda_world_t *w, const dfm_cuda_op_t *op, int tok16) {
    const int q = op->quant, cb = q == DFM_QUANT_BF16 ? 2 : 1;
    const int G = w->num_local_experts, R = w->num_ranks, M = w->num_max;
    const int H = w->hidden, I = w->inter;
    const long long rows = (long long)G * R * M;
    fused_maps_t *m = &f->maps[q];
    if (!f->have_a[q]) {
        char *local = w->peer[w->rank];
        for (int i = 0; i < WG_A_MAPS; i++) {
            if (wg_make_map(&m->a1[i], local + dfm_off_recv_rows(&w->L, 0, 0), 2 * rows, H * cb,
                            w->L.row_bytes, 1 << i) ||
                wg_make_map(&m->a2[i], w->act_q, rows, I * cb, (size_t)I * cb, 1 << i) ||
                (q == DFM_QUANT_FP8 && w->tok16 &&
                 wg_make_map(&f->a1_16[i], w->tok16, rows, H * 2, (size_t)H * 2, 1 << i)))
                return -1;
        }
        f->have_a[q] = 1;
    }
    if (f->w1_of[q] != op->w1 || f->w2_of[q] != op->w2) {
        f->w1_of[q] = NULL;
        f->w2_of[q] = NULL;
        if (wg_make_map(&m->w1, op->w1, (long long)G * 2 * I, H * cb, (size_t)H * cb, 128) ||
            wg_make_map(&m->w2, op->w2, (long long)G * H, I * cb, (size_t)I * cb, 128))
            return -1;
        f->w1_of[q] = op->w1;
        f->w2_of[q] = op->w2;
    }
    if (tok16) {
        f->maps16 = *m;
        memcpy(f->maps16.a1, f->a1_16, sizeof f->a1_16);
    }
    return 0;
}

cudaError_t dfm_cuda_fused(dfm_cuda_fused_t *f, const dfm_cuda_world_t *w, const dfm_cuda_op_t *op,
                           cudaStream_t stream, const cudaEvent_t *ev) {
    /* version 5's GEMM1 where the pipeline's would run it (gemm.cu) */
    const int tok16 = dfm_cuda_tok16_call(w, op);
    if (((uintptr_t)op->w1 & 15) != 0 || ((uintptr_t)op->w2 & 15) != 0 ||
        w->num_local_experts > WG_MAX_G || fused_maps(f, w, op, tok16))
        return cudaErrorNotSupported;
    const int T = op->num_tokens, sms = w->num_sms > 0 ? w->num_sms : 1;
    const int chunks = (int)((size_t)w->hidden * dfm_code_bytes((dfm_quant_t)op->quant) / 16);
    /* dispatch units per token as dispatch.cu: cover the SMs, >= 32 chunks each */
    int parts = T > 0 ? sms / T : 1;
    if (parts > chunks / 32) parts = chunks / 32;
    if (parts < 1) parts = 1;
    parts = dfm_cuda_env_int("DFM_CUDA_FUSED_PARTS", parts, 1, chunks); /* send-probe */
    fused_args_t a = f->args;
    a.parts = parts;
    if (a.eager_rq < 0) a.eager_rq = op->quant == DFM_QUANT_INT8 ? FUSED_EAGER_RQ_INT8 : FUSED_EAGER_RQ;

    /* the kernel that can send tagged combine rows where this rank's T
     * allows them (every rank's T must: the kernel learns it from the counts) */
    const int llk = !tok16 && a.ll && w->L.ll_tokens > 0 && T <= w->L.ll_tokens;
    void *args[] = {tok16 ? (void *)&f->maps16 : (void *)&f->maps[op->quant], (void *)w, (void *)op, (void *)&a};
    /* dfm_launch's key: the maps are a function of the world, the op's
     * weights and tok16, so the argument bytes are of these and the world */
    struct {
        dfm_cuda_op_t op;
        fused_args_t a;
        int tok16, llk;
    } key;
    static_assert(sizeof key <= DFM_LAUNCH_KEY_MAX, "dfm_launch compares at most DFM_LAUNCH_KEY_MAX bytes");
    memset(&key, 0, sizeof key);
    key.op = *op;
    memcpy(&key.a, &a, sizeof a);
    key.tok16 = tok16;
    key.llk = llk;
    cudaError_t err = ev ? cudaEventRecord(ev[0], stream) : cudaSuccess;
    if (err == cudaSuccess)
        err = dfm_launch(fused_kernel_of(op->quant, tok16, llk), dim3((unsigned)f->grid), dim3(FUSED_THREADS), args,
                         (size_t)(tok16 ? f->smem16 : llk ? f->smem_ll[op->quant] : f->smem[op->quant]), stream, 1,
                         &key, sizeof key);
    for (int i = 1; i < 4 && err == cudaSuccess && ev; i++) err = cudaEventRecord(ev[i], stream);
    return err;
}

int dfm_cuda_fused_trace(dfm_cuda_fused_t *f, unsigned long long *buf, int cap) {
    if (f == NULL || f->args.trace == NULL) return -1;
    const int n = f->grid * FUSED_TRACE_STRIDE;
    if (cap < n) return -1;
    if (cudaMemcpy(buf, f->args.trace, (size_t)n * sizeof *buf, cudaMemcpyDeviceToHost) != cudaSuccess) return -1;
    return f->grid;
}
