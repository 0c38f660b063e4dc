/*
 * gemm_wgmma.cuh - the swap-AB grouped GEMM of the expert phase on Hopper
 * tensor cores (wgmma) fed by the bulk tensor copy engine (TMA), shared by
 * the CUDA backend (gemm.cu) and its scratch benchmark (dev/cuda/gemm_wgmma.cu).
 *
 * Swap AB: the weight's output channels sit on wgmma's M side (m64) and the
 * tokens of one expert on N (n8 .. n128, picked per item from the expert's
 * row count), so 1..128 rows per expert waste almost no tensor-core work and
 * every weight byte is read from HBM once per token pass. Both operands are
 * K-major in shared memory with the 128-byte swizzle that TMA writes.
 *
 * Two versions, picked by the template parameter VER (docs/PERF_NOTES.md):
 *   2  fixed ring of WG_STAGES x (16 KB W + 16 KB A), one 8-row A box per
 *      chunk (up to 16 TMA boxes per stage);
 *   3  the ring is sized in the kernel from the widest item of the launch
 *      (16 KB W + as many A rows as that item's wgmma N), so narrow launches
 *      keep 8-12 weight stages in flight instead of 5; the exchange buffer is
 *      sized the same way (GEMM2 stages its bf16 rows in it); an expert's
 *      token rows packed across sources (wg_col_src: up to 128 rows one
 *      pass, 160 for INT8 / BF16 / QGMMA: WG_PASS_COLS), each source's run loaded as
 *      two overlapping boxes
 *      (wg_pack_boxes); with -DWG_PACK=0 the chunked layout of version 2
 *      loaded as few large boxes (popcount(chunks) per source block);
 *   (4) version 3 on clusters of 2 CTAs sharing the token rows by TMA
 *      multicast (wg_gemm_kernel_cl; the scratch benchmark only).
 *   5  version 3 for FP8 GEMM1 on f16 tensor cores (PROMOTE 1) whose token
 *      rows were widened to f16 once, before the launch (gemm.cu's widen
 *      kernel): the A maps are over that f16 copy (one half, 2 bytes a K
 *      element) and each box comes as two 64-element K-halves, the layout
 *      wg_fp8_widen_tokens writes, so the consumers skip the per-stage
 *      widening, its two 256-thread barriers and the proxy fence.
 * FP8 promotion interval, template parameter PROMOTE of wg_consume and
 * wg_gemm_kernel (docs/PERF_NOTES.md, "FP8 promotion interval"):
 *   1   the default: the FP8 codes are widened to f16 in the consumer (every
 *       e4m3 value is an f16) and multiplied on HGMMA with fp32
 *       accumulation, so every product is exact and every sum fp32, like
 *       the CPU backend (the QGMMA variants below keep fewer bits inside the
 *       tensor core, and their requantized act flips codes often enough to
 *       exceed SPEC 3.3's FP8 tolerance on small calls, and on calls with
 *       heavy-tailed tokens at any T); weights are still
 *       streamed as FP8 (wg_fp8_widen_tokens explains the layout);
 *   128 each stage's 4 wgmma k32 are chained into a fresh `part` (scale_d =
 *       kk > 0) and `part` is added into fp32 `acc` once per stage (SPEC 3.2's
 *       minimum; the default);
 *   32  every wgmma k32 goes into a fresh `part` (scale_d = 0), is waited for
 *       and added into `acc`: the tensor core's narrower-than-fp32 internal
 *       accumulation then spans 32 products instead of 128 (4 waits a stage).
 * Only GEMM1 needs 1: its act is requantized (SPEC 3.1 step 5); GEMM2's
 * output goes to bf16, where QGMMA's ~1e-4 relative error is invisible, so
 * GEMM2 keeps QGMMA with promotion every 128 (f16 costs up to 1.3-1.9x GEMM
 * time: docs/PERF_NOTES.md). Defaults: WG_FP8_PROMOTE (GEMM1, 1) and
 * WG_FP8_PROMOTE2 (GEMM2, 128); gemm.cu instantiates all three and picks at
 * context creation (DFM_CUDA_FP8_PROMOTE=1|32|128 sets GEMM1; GEMM2 follows
 * it except that 1 gives 128); fused.cu takes the macros.
 * INT8 and BF16 ignore PROMOTE (the same code for either value).
 * What it leaves out: the requantization between the two GEMMs (gemm.cu),
 * split-K, clusters/multicast, and any wait on dispatch flags (fused path).
 */
#ifndef DFM_GEMM_WGMMA_CUH
#define DFM_GEMM_WGMMA_CUH

#include <cuda.h> /* CUtensorMap and the encode prototype's types; no -lcuda */
#include <cuda_runtime.h>
#include <stdint.h>

#include <type_traits>

#include "gemm_wgmma_ops.cuh"

#ifndef DFM_QUANT_FP8_ID
#define DFM_QUANT_FP8_ID 0 /* must match dfm_quant_t (checked in gemm.cu) */
#define DFM_QUANT_INT8_ID 1
#define DFM_QUANT_BF16_ID 2
#endif

#define WG_BN 128        /* output channels per item: two m64 halves (GEMM1: gate | up) */
#define WG_BK 128        /* bytes of K per pipeline stage (128 fp8/int8 or 64 bf16) */
#define WG_MAXCOLS 128   /* token columns per pass (16 chunks of 8 rows) */
/* FP8 GEMM1 runs version 5 (tokens widened to f16 once) from this many expected
 * rows per local expert (T * topk / G; gemm.cu, DFM_CUDA_TOK16_ROWS overrides):
 * at ~64 rows version 3 is ~4% faster, at ~32 ~25%; at ~116 version 5 ~10%
 * (gemm_bench, docs/PERF_NOTES.md eleventh session). gemm_bench's version l too. */
#define WG_TOK16_ROWS 96
#ifndef WG_PASS_COLS
#define WG_PASS_COLS 160 /* version 3, packed, INT8 / BF16 / FP8 QGMMA (promote 128): columns per pass */
#endif
#define WG_STAGES 5       /* version 2's ring */
#ifndef WG_STAGE_GEMM2
#define WG_STAGE_GEMM2 1 /* GEMM2's epilogue stages its bf16 rows in shared memory (wg_consume) */
#endif
#ifndef WG_MAX_STAGES
#define WG_MAX_STAGES 16 /* version 3's ring (sized at run time; -D for measurements) */
#endif
#define WG_A_MAPS 8       /* A maps: map i has boxes of 1 << i rows (1 .. 128) */
#ifndef WG_PACK
#define WG_PACK 1         /* version 3: an expert's rows packed across sources (wg_col_src) */
#endif
#define WG_THREADS 288   /* warps 0-7: two consumer warpgroups; warp 8: producer */
#define WG_MAX_G 1024
#ifndef WG_FP8_PROMOTE
#define WG_FP8_PROMOTE 1 /* GEMM1's FP8 values of K per promotion into fp32: 1 (f16 HGMMA), 32 or 128 */
#endif
#ifndef WG_FP8_PROMOTE2
#define WG_FP8_PROMOTE2 128 /* GEMM2's (its output is not requantized: QGMMA's error stays ~1e-4) */
#endif
#ifndef WG_DEBUG_NOMATH
#define WG_DEBUG_NOMATH 0 /* 1: consumers skip the math (timing of the ring alone; results wrong) */
#endif
#ifndef WG_SPLIT_SWIGLU
#define WG_SPLIT_SWIGLU 1 /* GEMM1's SwiGLU epilogue shared by both warpgroups (0: WG0 alone) */
#endif
#ifndef WG_FAST_SILU
#define WG_FAST_SILU 1 /* silu(g) * u with __expf / __fdividef (1) or expf and a division (0) */
#endif
#ifndef WG_BALANCE
#define WG_BALANCE 1 /* items spread evenly over just enough CTAs for the launch's rounds (0: all CTAs) */
#endif
#ifndef WG_EPI_JB
#define WG_EPI_JB 4 /* column chunks (8 columns) per batch of the epilogue's loads */
#endif
#ifndef WG_EPI_CB
#define WG_EPI_CB 4 /* GEMM2's staged rows: 16-byte pieces per thread and batch of the copy out */
#endif
#ifndef WG_EARLY_BSCALE
#define WG_EARLY_BSCALE 1 /* the channel scales loaded before the stage loop (0: in the epilogue) */
#endif
#ifndef WG_TRACE
#define WG_TRACE 0 /* 1: thread 0 of each CTA records clock64 per item (measurement only; gemm_bench) */
#endif
#if WG_TRACE
#define WG_TR_ITEMS 8
__device__ unsigned long long wg_trace[2][160][WG_TR_ITEMS][5];
static __shared__ unsigned long long wg_tr_s[5];
#define WG_TMARK(k) do { if (threadIdx.x == 0) wg_tr_s[k] = clock64(); } while (0)
#else
#define WG_TMARK(k) do { } while (0)
#endif
#ifndef WG_PIPE
#define WG_PIPE 1 /* 0: version 1 consumer (wait for each stage's wgmmas) */
#endif
#define WG_W_BYTES (WG_BN * WG_BK)
#define WG_A_BYTES (WG_MAXCOLS * WG_BK)
#define WG_STAGE_BYTES (WG_W_BYTES + WG_A_BYTES)
#define WG_XCH_BYTES (128 * (WG_MAXCOLS / 2) * 4)
#define WG_SMEM_BYTES (WG_STAGES * WG_STAGE_BYTES + WG_XCH_BYTES + 1024)
/* Version 3 takes all the dynamic shared memory a CTA can have: the per-block
 * opt-in maximum less the kernel's static shared memory (host: wg_v3_smem). */

/* Shared-memory ring of one launch: stages, bytes per stage (W first, then A);
 * bh: FP8 with PROMOTE 1 only, two buffers of acols x 256 bytes that hold a
 * stage's token rows widened to f16 (wg_fp8_widen_tokens), else NULL. */
typedef struct {
    int nst;
    int sb;
    unsigned char *bh;
    int bhs; /* bytes per bh buffer: 256 x the launch's widest item (fixed, so
                items of different widths never overlap the other buffer) */
} wg_ring_t;

/* Bytes of ring.bh for a launch whose widest item has acols token columns. */
static __host__ __device__ __forceinline__ int wg_bh_bytes(int mode, int promote, int acols) {
    return mode == DFM_QUANT_FP8_ID && promote == 1 ? 2 * acols * 256 : 0;
}

/*
 * One launch. A rows live in the TMA map tm_a: row index = half * half_rows +
 * (g * R + src) * M + j for the j-th row (j < row_count[g][src]) that rank src
 * sent to local expert g. W rows in tm_w: g * n_out + channel, k_bytes each.
 */
typedef struct {
    int G, R, M;
    int n_out;   /* output channels: 2I (GEMM1, permuted gate/up tiles) or H (GEMM2) */
    int k_bytes; /* K * code bytes */
    int inter;   /* I: row length of act (GEMM1) */
    const int *row_count;            /* [G][R] */
    const float *a_scale;            /* per A row (same index as the map's row) */
    const float *b_scale;            /* [G][n_out] or NULL (ones) */
    const unsigned long long *cur_seq; /* buffer half = *cur_seq & 1; NULL: half 0 */
    long long half_rows;             /* A rows (and a_scale entries) per half */
    float *act;                      /* GEMM1 output [G*R*M][I] fp32 (no half) */
    int w_evict_first;               /* W loads with the L2 evict_first policy (wg_policy_evict_first) */
} wg_gemm_args_t;

/* ---- PTX wrappers ------------------------------------------------------------ */

static __device__ __forceinline__ uint32_t wg_smem_u32(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}
static __device__ __forceinline__ void wg_mbar_init(uint64_t *bar, int count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(wg_smem_u32(bar)), "r"(count)
                 : "memory");
}
static __device__ __forceinline__ void wg_mbar_wait_at(uint32_t a, int parity) {
    uint32_t ok;
    do {
        asm volatile("{\n.reg .pred p;\n"
                     "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
                     "selp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(ok)
                     : "r"(a), "r"(parity)
                     : "memory");
    } while (!ok);
}
static __device__ __forceinline__ void wg_mbar_wait(uint64_t *bar, int parity) {
    wg_mbar_wait_at(wg_smem_u32(bar), parity);
}
static __device__ __forceinline__ void wg_mbar_arrive_at(uint32_t a) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(a) : "memory");
}
/* Ring position: stage s of nst and its phase parity ph, one step on. */
static __device__ __forceinline__ void wg_ring_next(int &s, int &ph, int nst) {
    if (++s == nst) {
        s = 0;
        ph ^= 1;
    }
}
static __device__ __forceinline__ void wg_mbar_arrive(uint64_t *bar) { wg_mbar_arrive_at(wg_smem_u32(bar)); }
static __device__ __forceinline__ void wg_mbar_expect_tx(uint64_t *bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(wg_smem_u32(bar)),
                 "r"(bytes)
                 : "memory");
}
static __device__ __forceinline__ void wg_tma_2d(void *dst, const CUtensorMap *map, int c0, int c1,
                                                 uint64_t *bar) {
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
                 " [%0], [%1, {%2, %3}], [%4];" ::"r"(wg_smem_u32(dst)),
                 "l"((uint64_t)map), "r"(c0), "r"(c1), "r"(wg_smem_u32(bar))
                 : "memory");
}
/* The same with an L2 cache policy (wg_policy_evict_first). */
static __device__ __forceinline__ void wg_tma_2d_hint(void *dst, const CUtensorMap *map, int c0, int c1,
                                                      uint64_t *bar, uint64_t policy) {
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint"
                 " [%0], [%1, {%2, %3}], [%4], %5;" ::"r"(wg_smem_u32(dst)),
                 "l"((uint64_t)map), "r"(c0), "r"(c1), "r"(wg_smem_u32(bar)), "l"(policy)
                 : "memory");
}
/* Weights are read once per launch (or by the CTAs of one tile's passes at
 * about the same time): first out of L2, so that the token rows and act,
 * which every CTA of an expert reads again, stay. */
static __device__ __forceinline__ uint64_t wg_policy_evict_first(void) {
    uint64_t p;
    asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(p));
    return p;
}
/* One box of `map` (its box size) into L2, nothing waits for it. */
static __device__ __forceinline__ void wg_prefetch_l2(const CUtensorMap *map, int c0, int c1) {
    asm volatile("cp.async.bulk.prefetch.tensor.2d.L2.global.tile [%0, {%1, %2}];" ::"l"((uint64_t)map),
                 "r"(c0), "r"(c1)
                 : "memory");
}
/* The same box written into the shared memory of every CTA of `mask` in the
 * cluster (same offset), each completing bytes on its own barrier at `bar`'s offset. */
static __device__ __forceinline__ void wg_tma_2d_mc(void *dst, const CUtensorMap *map, int c0, int c1,
                                                    uint64_t *bar, uint16_t mask) {
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster"
                 " [%0], [%1, {%2, %3}], [%4], %5;" ::"r"(wg_smem_u32(dst)),
                 "l"((uint64_t)map), "r"(c0), "r"(c1), "r"(wg_smem_u32(bar)), "h"(mask)
                 : "memory");
}
static __device__ __forceinline__ uint32_t wg_cluster_rank(void) {
    uint32_t r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
    return r;
}
/* Every thread of every CTA of the cluster (barrier.cluster, not aligned). */
static __device__ __forceinline__ void wg_cluster_sync(void) {
    asm volatile("barrier.cluster.arrive.release;\n\tbarrier.cluster.wait.acquire;" ::: "memory");
}
/* A consumer warp is done with a ring stage: arrive on its empty barrier;
 * CL (a cluster of 2 sharing the token rows by multicast) also on the other
 * CTA's, whose producer writes into this CTA's stage too. */
template <bool CL>
static __device__ __forceinline__ void wg_release(uint32_t bar) {
    wg_mbar_arrive_at(bar);
    if constexpr (CL) {
        uint32_t rb;
        asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(rb) : "r"(bar), "r"(wg_cluster_rank() ^ 1u));
        /* CTA-scope release (the default), as in CUTLASS's cluster pipelines:
         * what it orders is this warp's reads of the stage, all complete */
        asm volatile("mbarrier.arrive.shared::cluster.b64 _, [%0];" ::"r"(rb) : "memory");
    }
}
static __device__ __forceinline__ void wg_fence(void) { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
static __device__ __forceinline__ void wg_commit(void) { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
static __device__ __forceinline__ void wg_wait0(void) { asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory"); }
static __device__ __forceinline__ void wg_reg_fence(float &x) { asm volatile("" : "+f"(x)::"memory"); }
static __device__ __forceinline__ void wg_reg_fence(int &x) { asm volatile("" : "+r"(x)::"memory"); }
static __device__ __forceinline__ uint32_t wg_dyn_smem_size(void) {
    uint32_t r;
    asm volatile("mov.u32 %0, %%dynamic_smem_size;" : "=r"(r));
    return r;
}
static __device__ __forceinline__ void wg_bar_sync(int id, int n) {
    asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(n) : "memory");
}
static __device__ __forceinline__ void wg_st_shared_u16(uint32_t addr, uint16_t v) {
    asm volatile("st.shared.u16 [%0], %1;" ::"r"(addr), "h"(v) : "memory");
}
/* Two tagged combine words (wg_consume's OUT::kLL path), each 8 bytes whole
 * (as NCCL's LL protocol stores its flag-and-data pairs), polled by the home
 * rank (fused.cu's fused_ld_tagged2). */
static __device__ __forceinline__ void wg_st_tagged_v2(uint64_t *p, uint64_t a, uint64_t b) {
    asm volatile("st.volatile.global.v2.u64 [%0], {%1, %2};" ::"l"(p), "l"(a), "l"(b) : "memory");
}
static __device__ __forceinline__ void wg_st_shared_u32(uint32_t addr, uint32_t v) {
    asm volatile("st.shared.u32 [%0], %1;" ::"r"(addr), "r"(v) : "memory");
}
static __device__ __forceinline__ uint4 wg_ld_shared_v4(uint32_t addr) {
    uint4 v;
    asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "r"(addr)
                 : "memory");
    return v;
}

/* Shared-memory matrix descriptor: K-major, 128-byte swizzle, 8-row groups
 * 1024 bytes apart (SBO), LBO unused for this layout (1). */
static __device__ __forceinline__ uint64_t wg_desc(uint32_t addr) {
    return (uint64_t)((addr & 0x3FFFFu) >> 4) | ((uint64_t)1 << 16) | ((uint64_t)(1024 >> 4) << 32) |
           ((uint64_t)1 << 62);
}

/* fn##_nN(args) for the wgmma width N of the template set (8 .. 128). */
#define WG_BY_N(fn, N, ...)                                    \
    do {                                                       \
        if constexpr (N == 8) fn##_n8(__VA_ARGS__);            \
        else if constexpr (N == 16) fn##_n16(__VA_ARGS__);     \
        else if constexpr (N == 24) fn##_n24(__VA_ARGS__);     \
        else if constexpr (N == 32) fn##_n32(__VA_ARGS__);     \
        else if constexpr (N == 48) fn##_n48(__VA_ARGS__);     \
        else if constexpr (N == 64) fn##_n64(__VA_ARGS__);     \
        else if constexpr (N == 96) fn##_n96(__VA_ARGS__);     \
        else if constexpr (N == 128) fn##_n128(__VA_ARGS__);   \
        else fn##_n160(__VA_ARGS__);                           \
    } while (0)

/* X(N) for the narrowest wgmma N (wg_pad_cols) that holds `cols` token rows:
 * the run-time width of an item -> the consumer instantiated for it. */
#define WG_BY_COLS(cols, X)             \
    do {                                \
        if ((cols) <= 8) X(8);          \
        else if ((cols) <= 16) X(16);   \
        else if ((cols) <= 24) X(24);   \
        else if ((cols) <= 32) X(32);   \
        else if ((cols) <= 48) X(48);   \
        else if ((cols) <= 64) X(64);   \
        else if ((cols) <= 96) X(96);   \
        else X(128);                    \
    } while (0)

template <int MODE, int N, typename T>
static __device__ __forceinline__ void wg_mma(T *d, uint64_t da, uint64_t db, int scale_d) {
    if constexpr (MODE == DFM_QUANT_FP8_ID) WG_BY_N(wgmma_fp8, N, d, da, db, scale_d);
    else if constexpr (MODE == DFM_QUANT_INT8_ID) WG_BY_N(wgmma_s8, N, d, da, db, scale_d);
    else WG_BY_N(wgmma_bf16, N, d, da, db, scale_d);
}

/* Two e4m3 codes (low and high byte of h) -> f16x2, exactly (every e4m3 value is an f16). */
static __device__ __forceinline__ uint32_t wg_e4m3x2_to_f16x2(uint32_t h) {
    uint32_t d;
    asm("cvt.rn.f16x2.e4m3x2 %0, %1;" : "=r"(d) : "h"((unsigned short)h));
    return d;
}

template <int N>
static __device__ __forceinline__ void wg_mma_f16rs(float *d, const uint32_t *a, uint64_t db, int scale_d) {
    WG_BY_N(wgmma_f16rs, N, d, a, db, scale_d);
}

/* FP8 on f16 tensor cores: this thread's weight codes of the stage at st
 * (rows r0w and r0w + 8, K-halves h at h * 1024; wlo: its first 16 bytes of
 * row r0w, swizzled, the next 16 at wlo ^ 16) into raw[h][0..7]. */
static __device__ __forceinline__ void wg_f16_load_w(uint32_t (&raw)[2][8], uint32_t st, uint32_t wlo) {
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const uint4 lo = wg_ld_shared_v4(st + h * 1024 + wlo);
        const uint4 hi = wg_ld_shared_v4(st + h * 1024 + (wlo ^ 16));
        raw[h][0] = lo.x; raw[h][1] = lo.y; raw[h][2] = lo.z; raw[h][3] = lo.w;
        raw[h][4] = hi.x; raw[h][5] = hi.y; raw[h][6] = hi.z; raw[h][7] = hi.w;
    }
}

/* FP8 on f16 tensor cores, one stage of K (128 values): this thread's weight
 * codes (raw[h][q]: K-half h, word q, as loaded from the stage) widened to the
 * f16 A fragments, then the stage's 8 k16 wgmmas against the f16 token tile of
 * descriptor desc() (K-half q >> 2 at N * 128 bytes; taken after the
 * widening, as the code this replaced did), committed as one group.
 * after: the accumulators hold earlier stages (else the first wgmma overwrites). */
template <int N, int NR, class DESC>
static __device__ __forceinline__ void wg_f16_stage_mma(float (&acc)[NR], const uint32_t (&raw)[2][8], DESC desc,
                                                        bool after) {
    uint32_t a[8][4];
#pragma unroll
    for (int q = 0; q < 8; q++) {
        a[q][0] = wg_e4m3x2_to_f16x2(raw[0][q]);
        a[q][1] = wg_e4m3x2_to_f16x2(raw[1][q]);
        a[q][2] = wg_e4m3x2_to_f16x2(raw[0][q] >> 16);
        a[q][3] = wg_e4m3x2_to_f16x2(raw[1][q] >> 16);
    }
    const uint64_t db = desc();
#pragma unroll
    for (int i = 0; i < NR; i++) wg_reg_fence(acc[i]);
    wg_fence();
#pragma unroll
    for (int q = 0; q < 8; q++)
        wg_mma_f16rs<N>(acc, a[q], db + (((q >> 2) * (N * 128) + (q & 3) * 32) >> 4), after || q > 0);
    wg_commit();
}

/*
 * FP8 PROMOTE 1 ("exact"): the stage's 128 values of K are taken in a
 * permuted order that lets every thread read its weight codes with two
 * 16-byte loads per row. k16 step q (0..7), slot s (0..15) of the f16
 * wgmma holds K byte  pi(q, s) = tig*32 + q*4 + hi*2 + lo  of the stage,
 * where tig = (s & 7) >> 1, hi = s >> 3, lo = s & 1. A dot product does not
 * depend on the order of its terms, so the weights (A, registers) and the
 * tokens (B, shared memory) only have to agree on it:
 *   A: thread (row r, tig) loads bytes tig*32 .. +31 of row r; word q of
 *      them gives slots tig*2 +{0,1} (bytes 0,1) and 8 + tig*2 +{0,1} (2,3);
 *   B: wg_fp8_widen_tokens writes token n's f16 value of slot s of step q
 *      at half (q >> 2) of bh (N rows x 128 bytes each, 128B swizzle like
 *      TMA's), row n, byte (q & 3) * 32 + s * 2.
 */
/* Version 5's f16 token rows: f16 position o of a row holds K element
 * wg_tok16_k(o) of the FP8 row. Per 128-element block of K, the two
 * 64-element halves hold what wg_fp8_widen_tokens writes into its halves
 * (before the swizzle): half hh, position p has K = 16 c + 4 (l >> 1) +
 * 2 (l & 1) + (p & 1) with l = p >> 3, c = 2 ((p & 7) >> 1) + hh. Pairs
 * (o even, o + 1) are K neighbours. Checked on the CPU against a model of
 * wg_fp8_widen_tokens by tests/test_layout.cu. */
static __host__ __device__ __forceinline__ int wg_tok16_k(int o) {
    const int hh = (o >> 6) & 1, p = o & 63, l = p >> 3;
    return (o & ~127) + 16 * (2 * ((p & 7) >> 1) + hh) + 4 * (l >> 1) + 2 * (l & 1) + (p & 1);
}
/* Its inverse: the f16 position of K element k (K = 16 c + r: half c & 1,
 * position 8 l + 2 (c >> 1) + (r & 1) with l = 2 (r >> 2) + ((r >> 1) & 1)).
 * Even k and k + 1 land on one 32-bit word. Checked by tests/test_layout.cu. */
static __host__ __device__ __forceinline__ int wg_tok16_o(int k) {
    const int c = (k >> 4) & 7, r = k & 15, l = 2 * (r >> 2) + ((r >> 1) & 1);
    return (k & ~127) + 64 * (c & 1) + 8 * l + 2 * (c >> 1) + (r & 1);
}

template <int N>
static __device__ __forceinline__ void wg_fp8_widen_tokens(uint32_t src, uint32_t bh, int t256) {
#pragma unroll
    for (int u0 = 0; u0 < N * 8; u0 += 256) {
        const int u = u0 + t256;
        if ((N * 8) % 256 != 0 && u >= N * 8) break;
        const int n = u >> 3, c = u & 7, sw = n & 7;
        const uint4 v = wg_ld_shared_v4(src + n * 128 + ((c ^ sw) << 4));
        const uint32_t wv[4] = {v.x, v.y, v.z, v.w};
        const uint32_t dst = bh + (c & 1) * (N * 128) + n * 128 + (c >> 1) * 4;
#pragma unroll
        for (int b4 = 0; b4 < 4; b4++) { /* step q = (c & 1) * 4 + b4 */
            wg_st_shared_u32(dst + (((b4 * 2) ^ sw) << 4), wg_e4m3x2_to_f16x2(wv[b4]));
            wg_st_shared_u32(dst + (((b4 * 2 + 1) ^ sw) << 4), wg_e4m3x2_to_f16x2(wv[b4] >> 16));
        }
    }
}

static __device__ __forceinline__ uint32_t wg_f32_to_bf16(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x0040u;
    u += 0x7fffu + ((u >> 16) & 1u);
    return u >> 16;
}

/* One FP8 promotion group of a stage (wg_consume, PROMOTE 128): columns
 * [C0, C0 + W) of the item, 4 x k32 QGMMA chained into `part` (W / 2
 * registers; scale_d = 0 first), waited for and added into the group's
 * accumulators acc[C0 / 2 ..] (the m64nN fragment holds 8-column chunk j
 * at d[j * 4 .. + 3], so columns C0.. start at acc[C0 / 2]). The token rows
 * of the group start C0 rows into the stage's A tile: its descriptor moves
 * by C0 x 128 bytes. */
template <int MODE, int C0, int W>
static __device__ __forceinline__ void wg_fp8_stage_group(float *acc, float *part, uint64_t dw, uint64_t da) {
#pragma unroll
    for (int i = 0; i < W / 2; i++) wg_reg_fence(part[i]);
    wg_fence();
#pragma unroll
    for (int kk = 0; kk < 4; kk++) wg_mma<MODE, W>(part, dw + kk * 2, da + ((C0 * 128) >> 4) + kk * 2, kk > 0);
    wg_commit();
    wg_wait0();
#pragma unroll
    for (int i = 0; i < W / 2; i++) wg_reg_fence(part[i]);
#pragma unroll
    for (int i = 0; i < W / 2; i++) acc[C0 / 2 + i] += part[i];
}

/* One token column of an item, as the epilogue needs it (wg_consume): the
 * row's scale and where its outputs go (GEMM1: the act row at the item's 64
 * channels; GEMM2: the bf16 row at the item's 128); ptr 0 = a padding column. */
typedef struct {
    uintptr_t ptr;
    float sa;
} wg_col_t;

/* silu(g) * u, SPEC 3.1 step 4. WG_FAST_SILU: ex2.approx and an approximate
 * division (a few ulp of fp32, some 1e-7 relative: far below the FP8 / INT8
 * requantization step that follows, so codes flip as rarely as they do
 * from accumulation order; g -> -inf gives -0, g -> +inf gives g). */
static __device__ __forceinline__ float wg_silu_mul(float g, float u) {
    if constexpr (WG_FAST_SILU) return __fmul_rn(__fdividef(g, 1.0f + __expf(-g)), u);
    else return __fmul_rn(g / (1.0f + expf(-g)), u);
}

/* The wgmma width that covers `cols` token columns (the template set of N). */
static __host__ __device__ __forceinline__ int wg_pad_cols(int cols) {
    return cols <= 32 ? (cols + 7) & ~7 : cols <= 48 ? 48 : cols <= 64 ? 64 : cols <= 96 ? 96 : cols <= 128 ? 128 : 160;
}

/* Item v of the CTA's static schedule -> (expert g, channel tile, token pass).
 * s_prefix[g] = items of experts < g; an expert has n_tiles * passes items. */
static __device__ __forceinline__ void wg_item(const int *s_prefix, int G, int n_tiles, int v,
                                               int &g, int &tile, int &pass) {
    int lo = 0, hi = G - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) >> 1;
        if (s_prefix[mid] <= v) lo = mid;
        else hi = mid - 1;
    }
    g = lo;
    const int npass = (s_prefix[g + 1] - s_prefix[g]) / n_tiles;
    const int local = v - s_prefix[g];
    tile = local / npass;
    pass = local % npass;
}

/* The CTAs a launch of `total` items uses out of `grid` (WG_BALANCE): as
 * many rounds as the grid needs, over as few CTAs as fill them evenly (448
 * items on 132 CTAs: 4 rounds on 112 instead of 3 full and one of 52), so the
 * last round's CTAs no longer stream with most of the GPU idle. CTA b takes
 * items b, b + step, ... (tests/test_layout.cu checks the cover). */
static __host__ __device__ __forceinline__ int wg_balanced_step(int total, int grid) {
    const int rounds = (total + grid - 1) / grid;
    return rounds > 0 ? (total + rounds - 1) / rounds : grid;
}

/* The A tensor maps of one launch (one struct: indexed at run time). */
typedef struct {
    CUtensorMap a[WG_A_MAPS];
} wg_amaps_t;

/*
 * Two column layouts of an expert's token rows (the A rows it received,
 * source by source; its items take 128 columns per token pass):
 *   chunked (version 2, the fused kernel): each source's rows padded to
 *     chunks of 8 (wg_chunk), a pass takes 16 chunks;
 *   packed (version 3 with WG_PACK): the rows back to back across sources
 *     (wg_col_src), a pass takes 128 rows. At ~32 rows per source the
 *     chunked layout pads ~4 rows per source: with 4 sources ~125 rows
 *     become ~18 chunks, past one pass, and every weight tile is streamed
 *     twice (the second time for 1-3 chunks); packed, they are one pass.
 *     The producer loads each source's run of a pass as power-of-two boxes
 *     (wg_pack_boxes), which need not start on an 8-row group in shared
 *     memory: TMA's 128-byte swizzle follows the destination address, as
 *     the wgmma descriptors do.
 * Columns of expert g in the layout (8 x its chunks, or its rows).
 */
template <bool PACK>
static __host__ __device__ __forceinline__ int wg_expert_cols(const int *row_count, int R, int g) {
    int cols = 0;
    for (int src = 0; src < R; src++) {
        const int cnt = row_count[g * R + src];
        cols += PACK ? cnt : (cnt + 7) & ~7;
    }
    return cols;
}

/* Packed layout: column c of expert g -> its source and row (src -1 past
 * the expert's rows). Host-callable, like wg_pack_boxes: tests/test_layout.cu
 * checks the layout on the CPU. */
static __host__ __device__ __forceinline__ void wg_col_src(const wg_gemm_args_t &p, int g, int c, int &src_out, int &j) {
    int acc = 0;
    src_out = -1;
    j = 0;
    for (int src = 0; src < p.R; src++) {
        const int cnt = p.row_count[g * p.R + src];
        if (c >= acc && c < acc + cnt) {
            src_out = src;
            j = c - acc;
        }
        acc += cnt;
    }
}

#define WG_PACK_MAX_R 16 /* packed: <= 2 boxes per source, one per producer lane: R <= 16 */

/* Packed layout, producer side: the boxes of pass `pass` of expert g. A
 * source's run of L rows in the pass (2^b <= L < 2^(b+1)) is two boxes of
 * 2^b rows, the first from its start and the second ending at its end (one
 * when L = 2^b): where they overlap they write the same rows to the same
 * shared-memory bytes, so their unordered arrival is harmless, and no box
 * writes outside its run. At most two boxes of one size per source: as few
 * as the chunked layout's; cutting each run into popcount(L) boxes of 1 to
 * 128 rows was measured slower than the chunked layout (docs/PERF_NOTES.md,
 * eighth session). Box `lane` is this lane's: its first A row (with hbase,
 * the buffer half), its first column in the pass and its map (b); nbox: the
 * boxes of the pass (<= 2 R <= 32); tx_rows: the rows all boxes write (the
 * stage's transaction bytes / 128). Scalars only (an array written through
 * a runtime index would live on the stack). */
static __host__ __device__ __forceinline__ int wg_log2_floor(int x) { /* x >= 1 */
#ifdef __CUDA_ARCH__
    return 31 - __clz(x);
#else
    return 31 - __builtin_clz((unsigned)x);
#endif
}

static __host__ __device__ __forceinline__ void wg_pack_boxes(const wg_gemm_args_t &p, int g, int pass, long long hbase,
                                                     int lane, int &arow, int &boff, int &bsel, int &nbox,
                                                     int &tx_rows, int pw = WG_MAXCOLS) {
    const int c_lo = pass * pw;
    int acc = 0;
    nbox = 0;
    tx_rows = 0;
    arow = boff = bsel = 0;
    for (int sr = 0; sr < p.R; sr++) {
        const int cnt = p.row_count[g * p.R + sr];
        const int k = max(acc, c_lo), hi = min(acc + cnt, c_lo + pw);
        if (k < hi) {
            const int b = wg_log2_floor(hi - k); /* hi - k <= pw <= 255: b <= 7 */
            const int two = hi - k != 1 << b;
            if (lane == nbox || (two && lane == nbox + 1)) {
                const int j = lane == nbox ? k - acc : hi - acc - (1 << b); /* first row in the run */
                arow = (int)(hbase + (long long)(g * p.R + sr) * p.M + j);
                boff = acc + j - c_lo;
                bsel = b;
            }
            nbox += 1 + two;
            tx_rows += (1 + two) << b;
        }
        acc += cnt;
    }
}

/* Chunked layout, producer side (version 3 with WG_PACK=0, the fused kernel
 * with FUSED_PACK=0): the boxes of pass `pass` of expert g, the binary
 * decomposition of each source block's chunks in the pass (boxes of 8 to
 * 128 rows, largest first; at most 16: each is >= 1 chunk). Outputs as
 * wg_pack_boxes's. */
static __host__ __device__ __forceinline__ void wg_chunk_boxes(const wg_gemm_args_t &p, int g, int pass, long long hbase,
                                                      int lane, int &arow, int &boff, int &bsel, int &nbox,
                                                      int &tx_rows) {
    const int c_lo = pass * 16, c_hi = c_lo + 16;
    int acc = 0;
    arow = boff = bsel = 0;
    nbox = 0;
    for (int sr = 0; sr < p.R; sr++) {
        const int c = (p.row_count[g * p.R + sr] + 7) >> 3;
        int k = max(acc, c_lo);
        const int hi = min(acc + c, c_hi);
        while (k < hi) {
            int b = wg_log2_floor(hi - k);
            b = b > 4 ? 4 : b;
            if (nbox == lane) {
                bsel = 3 + b; /* 8 << b rows */
                arow = (int)(hbase + (long long)(g * p.R + sr) * p.M + (k - acc) * 8);
                boff = (k - c_lo) * 8;
            }
            nbox++;
            k += 1 << b;
        }
        acc += c;
    }
    tx_rows = 8 * max(0, min(16, acc - c_lo));
}

/* Chunk kc (8 rows) of expert g -> first A row of it (relative to the half)
 * and rows valid in it; also returns the expert's chunk count. */
static __host__ __device__ __forceinline__ int wg_chunk(const wg_gemm_args_t &p, int g, int kc, int &src_out,
                                               int &j0, int &valid) {
    int acc = 0;
    src_out = -1; j0 = 0; valid = 0;
    for (int src = 0; src < p.R; src++) {
        const int cnt = p.row_count[g * p.R + src];
        const int c = (cnt + 7) >> 3;
        if (kc >= acc && kc < acc + c) {
            src_out = src;
            j0 = (kc - acc) * 8;
            valid = cnt - j0 < 8 ? cnt - j0 : 8;
        }
        acc += c;
    }
    return acc;
}

/* An OUT with a member kLL (fused.cu's fused_out_t) gives its column table
 * entries by ptr_at (a row of either format), and with kLL true GEMM2's
 * output may go as tagged words (out.ll(), out.tag()); any other OUT has
 * row() alone. */
template <class T, class = void> struct wg_has_ptr_at : std::false_type {};
template <class T> struct wg_has_ptr_at<T, std::void_t<decltype(T::kLL)>> : std::true_type {};
template <class T, class = void> struct wg_has_ll : std::false_type {};
template <class T> struct wg_has_ll<T, std::void_t<decltype(T::kLL)>> : std::integral_constant<bool, T::kLL> {};

/*
 * Consumer side of one item: token columns n = 8 * chunks of this pass,
 * padded up to the wgmma width N. Warpgroup wg multiplies channel rows
 * wg*64 .. +63 of the stage's W tile by all N columns. FP8: each stage's
 * 128 values of K (PROMOTE 128) or each wgmma's 32 (PROMOTE 32) go into
 * `part` (fresh) and are added into fp32 `acc` (SPEC 3.2 step 2); INT8
 * accumulates in int32; BF16 in fp32.
 *
 * Accumulator fragment of m64nN: thread t (warp w4 = t/32 of the
 * warpgroup, lane l) holds rows w4*16 + l/4 (+8) and columns j*8 + (l%4)*2
 * (+1) for j < N/8: d[j*4 + {0,1,2,3}] = (r, c), (r, c+1), (r+8, c), (r+8, c+1).
 */
template <int MODE, int PHASE, int N, class OUT, int PROMOTE = WG_FP8_PROMOTE, bool LOOKAHEAD = true,
          bool STAGE = true, bool PACK = false, bool CL = false, int PW = WG_MAXCOLS, bool TOK16 = false>
static __device__ __forceinline__ void wg_consume(const wg_gemm_args_t &p, const OUT &out,
                                                  unsigned char *smem, const wg_ring_t ring,
                                                  uint64_t *s_full, uint64_t *s_empty, float *xch,
                                                  wg_col_t *s_tab, int &it, int g, int tile, int pass, int half) {
    static_assert(PROMOTE == 128 || PROMOTE == 32 || PROMOTE == 1,
                  "FP8 promotion interval: 128, 32 or 1 (f16 tensor cores) values of K");
    static_assert(N <= PW && (PW == WG_MAXCOLS || PACK), "columns per pass: 128, or more when packed");
    constexpr int NR = N / 2;
    typedef typename std::conditional<MODE == DFM_QUANT_INT8_ID, int, float>::type acc_t;
    const int tid = threadIdx.x, t = tid & 127, wg = tid >> 7, lane = tid & 31, w4 = t >> 5;
    const int nk = (p.k_bytes + WG_BK - 1) / WG_BK;
    /* The item's column table (wg_col_t), filled before the stage loop (no
     * accumulators live yet): one thread per token column looks up its row
     * (wg_chunk), its scale and its output row once, and the epilogue's
     * fragment loops read shared memory. Looked up inside those loops, every
     * column paid its own chain of dependent global loads (a_scale, the GEMM2
     * row's meta) one after the other: several us per item without weight
     * streaming. Each warpgroup fills its own table between two barriers of
     * its own (the first: its reads of the previous item's table and staging
     * are done). */
    wg_col_t *tab = s_tab + wg * PW;
    /* Epilogue batches (below) and early channel scales where the registers
     * allow: FP8 GEMM1 carries `part` (QGMMA) or the widened weights (f16)
     * through its stage loop, version 2 has no packed table. JB 0: one column
     * at a time. */
    constexpr bool TIGHT = MODE == DFM_QUANT_FP8_ID && PHASE == 1;
    constexpr int JB = !TIGHT ? WG_EPI_JB : PROMOTE == 1 || CL ? 0 : 2, JBE = JB ? JB : 1, CB = PACK ? WG_EPI_CB : 1;
    constexpr bool EARLY_BS = WG_EARLY_BSCALE && !TIGHT && PACK;
    /* this thread's two channel scales, loaded now: under the weight stream a
     * global load takes microseconds, which the epilogue would wait out */
    float sb0 = 1.0f, sb1 = 1.0f;
    if (EARLY_BS && p.b_scale) {
        const float *bs = p.b_scale + (size_t)g * p.n_out + (size_t)tile * WG_BN + wg * 64;
        sb0 = bs[w4 * 16 + (lane >> 2)];
        sb1 = bs[w4 * 16 + (lane >> 2) + 8];
    }
    wg_bar_sync(4 + wg, 128);
#pragma unroll 1
    for (int col = t; col < N; col += 128) { /* N > 128: two columns for some threads */
        int src, j;
        if constexpr (PACK) {
            wg_col_src(p, g, pass * PW + col, src, j);
        } else {
            int j0, valid;
            wg_chunk(p, g, pass * 16 + (col >> 3), src, j0, valid);
            j = j0 + (col & 7);
            if ((col & 7) >= valid) src = -1;
        }
        wg_col_t c;
        c.sa = 0.0f;
        c.ptr = 0;
        if (src >= 0) {
            const long long phys = (long long)(g * p.R + src) * p.M + j;
            c.sa = p.a_scale[(long long)half * p.half_rows + phys];
            if constexpr (PHASE == 1) c.ptr = (uintptr_t)(p.act + phys * p.inter + (size_t)tile * 64);
            else if constexpr (wg_has_ptr_at<OUT>::value) c.ptr = out.ptr_at(g, src, j, phys, half, tile * WG_BN);
            else c.ptr = (uintptr_t)(out.row(g, src, j, phys, half) + (size_t)tile * WG_BN);
        }
        tab[col] = c;
    }
    wg_bar_sync(4 + wg, 128);
    WG_TMARK(1);

    acc_t acc[NR];
    /* FP8 promotion groups: past 128 columns the stage's columns are
     * multiplied and promoted 64 at a time through one `part` (a 160-column
     * item would otherwise hold 160 accumulators) */
    constexpr int NG = N > WG_MAXCOLS ? 64 : N;
    float part[MODE == DFM_QUANT_FP8_ID && PROMOTE != 1 ? NG / 2 : 1];
#pragma unroll
    for (int i = 0; i < NR; i++) acc[i] = 0;

    /* FP8 keeps version 1: its per-stage promotion reads `part` right after
     * the wait, and a ping-pong of two parts made ptxas serialize the wgmmas
     * (C7514) and spill; see docs/PERF_NOTES.md. */
    constexpr bool PIPE = WG_PIPE && MODE != DFM_QUANT_FP8_ID;
    /* Ring position of `it` (one division per item; then one step per stage),
     * and every shared-memory address as a 32-bit offset computed once: the
     * stage loop is latency-bound on its own instruction chain (ncu source
     * counters: the producer finds the ring full), so every instruction
     * taken out of it counts. A wgmma descriptor is linear in its address
     * (wg_desc), so a stage's descriptors are a base plus constants. */
    int s = it % ring.nst, ph = (it / ring.nst) & 1;
    const uint32_t ring0 = wg_smem_u32(smem), full0 = wg_smem_u32(s_full), empty0 = wg_smem_u32(s_empty);
    if constexpr (WG_DEBUG_NOMATH) {
        /* measurement only (-DWG_DEBUG_NOMATH=1, wrong results): the ring
         * drained without any math, what the producer and TMA alone reach */
        for (int kt = 0; kt < nk; kt++, it++) {
            wg_mbar_wait_at(full0 + s * 8, ph);
            __syncwarp();
            if (lane == 0) wg_release<CL>(empty0 + s * 8);
            wg_ring_next(s, ph, ring.nst);
        }
    } else if constexpr (MODE == DFM_QUANT_FP8_ID && PROMOTE == 1 && TOK16) {
        /*
         * FP8 on f16 HGMMA with the tokens already f16 in the stage (version
         * 5: K-half h of column c at A + h * N * 128 + c * 128, swizzled like
         * wg_fp8_widen_tokens's output). Stage kt+1's weight codes are loaded
         * into registers while stage kt's wgmmas run; a stage is released once
         * its wgmmas (which read its tokens) are done.
         */
        const int r0w = wg * 64 + w4 * 16 + (lane >> 2), tg = lane & 3, sw = (lane >> 2) & 7;
        const uint32_t wlo = r0w * 128 + (((2 * tg) ^ sw) << 4);
        uint32_t raw[2][8];
        auto load_w = [&](uint32_t st) {
            wg_f16_load_w(raw, st, wlo);
        };
        wg_mbar_wait_at(full0 + s * 8, ph);
        load_w(ring0 + s * ring.sb);
        for (int kt = 0; kt < nk; kt++, it++) {
            const uint32_t st = ring0 + s * ring.sb;
            wg_f16_stage_mma<N>(acc, raw, [&] { return wg_desc(st + WG_W_BYTES); }, kt > 0);
            const int s_done = s;
            wg_ring_next(s, ph, ring.nst);
            if (kt + 1 < nk) {
                wg_mbar_wait_at(full0 + s * 8, ph);
                load_w(ring0 + s * ring.sb);
            }
            wg_wait0();
#pragma unroll
            for (int i = 0; i < NR; i++) wg_reg_fence(acc[i]);
            __syncwarp();
            if (lane == 0) wg_release<CL>(empty0 + s_done * 8); /* its tokens are read */
        }
    } else if constexpr (MODE == DFM_QUANT_FP8_ID && PROMOTE == 1) {
        /*
         * FP8 on f16 HGMMA (wg_fp8_widen_tokens explains the layout). Stage
         * kt+1 is taken in (its tokens widened into bh, this thread's weight
         * codes loaded into registers, the ring stage released at once)
         * while stage kt's wgmmas run; then wait, and one barrier of the 256
         * consumer threads: every thread's part of kt+1 is in bh, and every
         * wgmma of kt is done before kt+2 overwrites kt's bh buffer.
         * LOOKAHEAD false (the fused kernel, whose registers are short) takes
         * each stage in at the top of its own iteration (barrier, then its
         * wgmmas): nothing but the accumulators live across the barrier.
         * Rows r0w and r0w + 8 of this thread share their swizzle (r & 7).
         */
        const int r0w = wg * 64 + w4 * 16 + (lane >> 2), tg = lane & 3, sw = (lane >> 2) & 7;
        /* this thread's first 16 bytes of row r0w (the next 16: ^ 16); kept in a
         * register with LOOKAHEAD only (the fused kernel has none to spare) */
        const uint32_t wlo_keep = r0w * 128 + (((2 * tg) ^ sw) << 4);
        const uint32_t bh0 = wg_smem_u32(ring.bh);
        int bpar = it & 1; /* bh buffer of the stage being multiplied */
        uint32_t raw[2][8]; /* this thread's weight codes of the next stage: rows r0w, r0w + 8 */
        auto take_in = [&](int par) { /* stage (s, ph) into bh buffer par; the position steps on */
            wg_mbar_wait_at(full0 + s * 8, ph);
            const uint32_t st = ring0 + s * ring.sb;
            const uint32_t wlo = LOOKAHEAD ? wlo_keep
                                           : (wg * 64 + w4 * 16 + (lane >> 2)) * 128 + ((((lane & 3) * 2) ^ ((lane >> 2) & 7)) << 4);
            wg_fp8_widen_tokens<N>(st + WG_W_BYTES, bh0 + par * ring.bhs, tid);
            wg_f16_load_w(raw, st, wlo);
            asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
            __syncwarp();
            if (lane == 0) wg_release<CL>(empty0 + s * 8); /* this warp is done with the stage */
            wg_ring_next(s, ph, ring.nst);
        };
        if (LOOKAHEAD) {
            take_in(bpar);
            wg_bar_sync(3, 256);
        }
        for (int kt = 0; kt < nk; kt++, it++) {
            if (!LOOKAHEAD) {
                take_in(bpar);
                wg_bar_sync(3, 256);
            }
            wg_f16_stage_mma<N>(acc, raw, [&] { return wg_desc(bh0 + (bpar ? ring.bhs : 0)); }, kt > 0);
            if (LOOKAHEAD && kt + 1 < nk) take_in(bpar ^ 1);
            wg_wait0();
#pragma unroll
            for (int i = 0; i < NR; i++) wg_reg_fence(acc[i]);
            if (LOOKAHEAD) wg_bar_sync(3, 256);
            bpar ^= 1;
        }
    } else if constexpr (!PIPE) {
        /* version 1: every stage waits for its own wgmmas before releasing */
        for (int kt = 0; kt < nk; kt++, it++) {
            wg_mbar_wait_at(full0 + s * 8, ph);
            const uint32_t st = ring0 + s * ring.sb;
            const uint64_t dw = wg_desc(st + wg * (64 * WG_BK)), da = wg_desc(st + WG_W_BYTES);
            if constexpr (MODE == DFM_QUANT_FP8_ID && PROMOTE == 32) {
                /* one wgmma k32 per fresh `part`, promoted right after its wait */
#pragma unroll
                for (int kk = 0; kk < 4; kk++) {
#pragma unroll
                    for (int i = 0; i < NR; i++) wg_reg_fence(part[i]);
                    wg_fence();
                    wg_mma<MODE, N>(part, dw + kk * 2, da + kk * 2, 0);
                    wg_commit();
                    wg_wait0();
#pragma unroll
                    for (int i = 0; i < NR; i++) wg_reg_fence(part[i]);
#pragma unroll
                    for (int i = 0; i < NR; i++) acc[i] += part[i];
                }
            } else if constexpr (MODE == DFM_QUANT_FP8_ID) {
                /* columns [0, N) in groups of NG (the last one narrower), each
                 * its own 4 x k32 chain into `part`, promoted after its wait */
                wg_fp8_stage_group<MODE, 0, (N < NG ? N : NG)>(acc, part, dw, da);
                if constexpr (N > NG) wg_fp8_stage_group<MODE, NG, (N - NG < NG ? N - NG : NG)>(acc, part, dw, da);
                if constexpr (N > 2 * NG) wg_fp8_stage_group<MODE, 2 * NG, N - 2 * NG>(acc, part, dw, da);
                static_assert(N <= 3 * NG, "FP8 promotion groups: at most three");
            } else {
#pragma unroll
                for (int i = 0; i < NR; i++) wg_reg_fence(acc[i]);
                wg_fence();
#pragma unroll
                for (int kk = 0; kk < 4; kk++) wg_mma<MODE, N>(acc, dw + kk * 2, da + kk * 2, 1);
                wg_commit();
                wg_wait0();
#pragma unroll
                for (int i = 0; i < NR; i++) wg_reg_fence(acc[i]);
            }
            __syncwarp();
            if (lane == 0) wg_release<CL>(empty0 + s * 8);
            wg_ring_next(s, ph, ring.nst);
        }
    } else {
        /* version 2 (INT8, BF16): stage kt's wgmmas are issued before stage
         * kt-1's are waited for (wait_group 1), so the tensor cores never
         * drain between stages; stage kt-1 is released then. */
        int prev_s = -1;
        for (int kt = 0; kt < nk; kt++, it++) {
            wg_mbar_wait_at(full0 + s * 8, ph);
            const uint32_t st = ring0 + s * ring.sb;
            const uint64_t dw = wg_desc(st + wg * (64 * WG_BK)), da = wg_desc(st + WG_W_BYTES);
            {
                wg_fence();
#pragma unroll
                for (int kk = 0; kk < 4; kk++)
                    wg_mma<MODE, N>(acc, dw + kk * 2, da + kk * 2, kt > 0 || kk > 0);
                wg_commit();
                asm volatile("wgmma.wait_group.sync.aligned 1;" ::: "memory");
            }
            if (prev_s >= 0) {
                __syncwarp();
                if (lane == 0) wg_release<CL>(empty0 + prev_s * 8);
            }
            prev_s = s;
            wg_ring_next(s, ph, ring.nst);
        }
        wg_wait0();
        {
#pragma unroll
            for (int i = 0; i < NR; i++) wg_reg_fence(acc[i]);
        }
        __syncwarp();
        if (lane == 0) wg_release<CL>(empty0 + prev_s * 8);
    }

    /* ---- epilogue ---- */
    WG_TMARK(2);
    const int r0 = w4 * 16 + (lane >> 2); /* rows r0, r0 + 8 of this warpgroup's 64 */
    if (!EARLY_BS && p.b_scale) {
        const float *bs = p.b_scale + (size_t)g * p.n_out + (size_t)tile * WG_BN + wg * 64;
        sb0 = bs[r0];
        sb1 = bs[r0 + 8];
    }
    /* The epilogue's loops take WG_EPI_JB column chunks at a time: first every
     * shared-memory load of the batch (column table, exchange), then the math
     * and the stores. One load, use and store per column in turn was a chain of
     * dependent shared-memory round trips (the stores' asm is a compiler
     * barrier): ~3 us per 128-column item, with the weight stream stalled. */

    if constexpr (PHASE == 1) {
        /* SwiGLU split between the warpgroups by column chunks: WG0 (gate)
         * takes chunks j < JS, WG1 (up) the rest. Thread t of either holds
         * the same (channel, column) positions, so each hands the other its
         * scaled values of the other's chunks through xch (slot i * 128 + t)
         * and computes its own: each does half the silu and the act stores
         * (with WG0 alone, WG1 waited out the whole of it). The values and
         * the arithmetic are those of the one-sided form, bit for bit, which
         * is JS = N / 8 (WG_SPLIT_SWIGLU=0: WG0 takes every chunk). */
        constexpr int JS = WG_SPLIT_SWIGLU ? (N / 8 + 1) / 2 : N / 8;
        wg_bar_sync(1, 256); /* both are done reading xch of the previous item */
#pragma unroll
        for (int j = 0; j < N / 8; j++) {
            if ((wg == 0) != (j >= JS)) continue; /* chunk j stays here */
#pragma unroll
            for (int q = 0; q < 2; q++) {
                const float sa = tab[j * 8 + (lane & 3) * 2 + q].sa; /* 0 for padding */
                xch[(j * 4 + q) * 128 + t] = __fmul_rn(__fmul_rn((float)acc[j * 4 + q], sa), sb0);
                xch[(j * 4 + 2 + q) * 128 + t] = __fmul_rn(__fmul_rn((float)acc[j * 4 + 2 + q], sa), sb1);
            }
        }
        wg_bar_sync(1, 256);
        WG_TMARK(3);
#pragma unroll
        for (int j0 = 0; j0 < N / 8; j0 += JBE) {
            asm volatile("" ::: "memory"); /* one batch's table entries live at a time (registers) */
            wg_col_t c[JBE][2];
            float oth[JBE][4];
#pragma unroll
            for (int jj = 0; jj < JBE && JB; jj++) {
                const int j = j0 + jj;
                if (j >= N / 8 || (wg == 0) != (j < JS)) continue; /* chunk j is the other's */
#pragma unroll
                for (int q = 0; q < 2; q++) c[jj][q] = tab[j * 8 + (lane & 3) * 2 + q];
#pragma unroll
                for (int i = 0; i < 4; i++) oth[jj][i] = xch[(j * 4 + i) * 128 + t];
            }
#pragma unroll
            for (int jj = 0; jj < JBE; jj++) {
                const int j = j0 + jj;
                if (j >= N / 8 || (wg == 0) != (j < JS)) continue;
#pragma unroll
                for (int q = 0; q < 2; q++) {
                    if (!JB) {
                        asm volatile("" ::: "memory");
                        c[jj][q] = tab[j * 8 + (lane & 3) * 2 + q];
                    }
                    if (!c[jj][q].ptr) continue;
                    float *arow = (float *)c[jj][q].ptr;
#pragma unroll
                    for (int h = 0; h < 2; h++) {
                        const int i = j * 4 + h * 2 + q;
                        const float own = __fmul_rn(__fmul_rn((float)acc[i], c[jj][q].sa), h ? sb1 : sb0);
                        const float other = JB ? oth[jj][h * 2 + q] : xch[i * 128 + t];
                        const float hg = wg == 0 ? own : other, hu = wg == 0 ? other : own;
                        arow[r0 + h * 8] = wg_silu_mul(hg, hu);
                    }
                }
            }
        }
    } else {
        /* The bf16 results go to the home ranks' combine slots, mostly over
         * NVLink. Straight from the fragments every store is a 16-byte piece
         * of a row (8 lanes x 2 bytes). With STAGE they go through shared
         * memory first (this warpgroup's 64 channels x N tokens, 128 bytes
         * per token, the 16-byte chunks XOR-swizzled by token so neither side
         * has bank conflicts) and each row segment leaves as 128 contiguous
         * bytes: 8 threads x 16 bytes. The staging area is the GEMM1 exchange
         * buffer (2 x 64 x N x 2 bytes <= its 256 x acols). Without STAGE
         * (the fused kernel: no registers to spare) the fragments go straight. */
        uint32_t stg = 0, s_lo[2] = {0, 0}, s_hi[2] = {0, 0}; /* 32-bit addresses: registers are tight */
        if constexpr (STAGE) {
            stg = wg_smem_u32(xch) + wg * (128 * N);
#pragma unroll
            for (int q = 0; q < 2; q++) { /* token jj = (lane & 3) * 2 + q of chunk j: + j * 1024 */
                const int jj = (lane & 3) * 2 + q;
                const uint32_t base = stg + jj * 128 + (r0 & 7) * 2;
                s_lo[q] = base + (((r0 >> 3) ^ jj) << 4);
                s_hi[q] = base + ((((r0 >> 3) + 1) ^ jj) << 4);
            }
        }
#pragma unroll
        for (int j0 = 0; j0 < N / 8; j0 += JBE) {
            asm volatile("" ::: "memory"); /* one batch's table entries live at a time (registers) */
            float sa[JBE][2];
            uintptr_t ptr[STAGE ? 1 : JBE][2];
#pragma unroll
            for (int jj = 0; jj < JBE; jj++)
#pragma unroll
                for (int q = 0; q < 2; q++) {
                    if (j0 + jj >= N / 8) continue;
                    const int n = (j0 + jj) * 8 + (lane & 3) * 2 + q;
                    sa[jj][q] = tab[n].sa; /* 0 for padding: STAGE stages zeros, the copy below skips them */
                    if constexpr (!STAGE) ptr[jj][q] = tab[n].ptr;
                }
#pragma unroll
            for (int jj = 0; jj < JBE; jj++) {
                const int j = j0 + jj;
                if (j >= N / 8) continue;
#pragma unroll
                for (int q = 0; q < 2; q++) {
                    const uint32_t lo = wg_f32_to_bf16(__fmul_rn(__fmul_rn((float)acc[j * 4 + q], sa[jj][q]), sb0));
                    const uint32_t hi = wg_f32_to_bf16(__fmul_rn(__fmul_rn((float)acc[j * 4 + 2 + q], sa[jj][q]), sb1));
                    if constexpr (STAGE) {
                        wg_st_shared_u16(s_lo[q] + j * 1024, (uint16_t)lo);
                        wg_st_shared_u16(s_hi[q] + j * 1024, (uint16_t)hi);
                    } else {
                        if (!ptr[STAGE ? 0 : jj][q]) continue;
                        uint16_t *yrow = (uint16_t *)ptr[STAGE ? 0 : jj][q] + wg * 64;
                        yrow[r0] = (uint16_t)lo;
                        yrow[r0 + 8] = (uint16_t)hi;
                    }
                }
            }
        }
        if constexpr (STAGE) {
            wg_bar_sync(4 + wg, 128);
            WG_TMARK(3);
#pragma unroll 1
            for (int c0 = t; c0 < N * 8; c0 += CB * 128) {
                uintptr_t ptr[CB];
                uint4 v[CB];
#pragma unroll
                for (int u = 0; u < CB; u++) {
                    const int c = c0 + u * 128, n = c >> 3, k = c & 7;
                    ptr[u] = c < N * 8 ? tab[n].ptr : 0;
                    if (ptr[u]) v[u] = wg_ld_shared_v4(stg + n * 128 + ((k ^ (n & 7)) << 4));
                }
                /* OUT::kLL and out.ll() (the fused kernel's tagged combine
                 * rows): each bf16 pair leaves as an 8-byte word (tag << 32) |
                 * pair, so the home rank knows it is in from the word itself
                 * (no fence, no flag): a row segment is 256 bytes, 8 threads
                 * x two 16-byte stores of two words. */
                if constexpr (wg_has_ll<OUT>::value) {
                    if (out.ll()) {
                        const uint64_t tag = (uint64_t)out.tag() << 32;
#pragma unroll
                        for (int u = 0; u < CB; u++) {
                            const int c = c0 + u * 128, k = c & 7;
                            if (!ptr[u]) continue;
                            uint64_t *d = (uint64_t *)ptr[u] + wg * 32 + k * 4;
                            wg_st_tagged_v2(d, tag | v[u].x, tag | v[u].y);
                            wg_st_tagged_v2(d + 2, tag | v[u].z, tag | v[u].w);
                        }
                        continue;
                    }
                }
#pragma unroll
                for (int u = 0; u < CB; u++) {
                    const int c = c0 + u * 128, k = c & 7;
                    if (ptr[u]) *(uint4 *)((uint16_t *)ptr[u] + wg * 64 + k * 8) = v[u];
                }
            }
        }
    }
}

/*
 * The persistent grouped GEMM.
 *   tm_w: W [G * n_out][k_bytes] codes, box 128 x 128 bytes, 128B swizzle.
 *   tm_a.a[i]: A [rows][k_bytes] codes (row stride of the buffer), boxes of
 *     1 << i rows x 128 bytes (version 2 uses the 8-row map alone).
 *   PHASE 1 writes act[phys][I] at channel tile*64 + c: silu(gate) * up in fp32,
 *     gate = (acc * s_a) * s1[ch], up likewise (SPEC 3.2 steps 2-4).
 *   PHASE 2 writes bf16((acc * s_b) * s2[ch]) at out.row(g, src, j, phys, half)[ch].
 * Roles: warp 8 lane 0 waits for a free stage and issues the W box; the
 *   lanes the A boxes (version 2: one per 8-row chunk; version 3 chunked:
 *   the binary decomposition of each source block's chunks of the pass;
 *   packed: of each source's rows in the pass, wg_pack_boxes; column c of
 *   the pass at A + c * 128 bytes); warps 0-3 (WG0:
 *   gate / channels 0-63) and 4-7 (WG1: up / channels 64-127) run wgmma and
 *   the epilogue. Every role walks the same schedule (items blockIdx.x,
 *   +gridDim.x, ...) over the same ring, so the ring position `it` agrees
 *   without any exchange. Shared memory: ring.nst x (16 KB W + A rows), the
 *   exchange (WG1 -> WG0 up values, GEMM1; the output rows' staging, GEMM2),
 *   the two warpgroups' column tables (static, wg_col_t), barriers (named: 1
 *   both consumer warpgroups, 3 the f16 token tile, 4 + wg one warpgroup's
 *   column table and GEMM2 staging).
 */
template <int MODE, int PHASE, int VER, class OUT, int PROMOTE>
static __device__ __forceinline__ void wg_gemm_run(const CUtensorMap &tm_w, const wg_amaps_t &tm_a,
                                                   const wg_gemm_args_t &p, const OUT &out) {
    constexpr bool CL = VER == 4; /* version 3 on clusters of 2 (wg_gemm_kernel_cl) */
    constexpr bool PACK = VER >= 3 && WG_PACK;
    constexpr bool TOK16 = VER == 5; /* FP8 GEMM1, tokens widened to f16 before the launch */
    static_assert(!TOK16 || (MODE == DFM_QUANT_FP8_ID && PROMOTE == 1 && PHASE == 1 && WG_PACK),
                  "version 5: FP8 GEMM1 on f16 tensor cores, packed columns");
    /* columns per pass: WG_PASS_COLS for INT8, BF16 and FP8 QGMMA with
     * promotion every 128 (past 128 columns it promotes 64 columns at a time
     * through one `part`, wg_fp8_stage_group: 80 + 32 accumulators, within
     * the 168 registers a 9-warp CTA may use); 128 for promotion every 32
     * and for the f16 path (its widened token tiles would leave 2 stages) */
    constexpr int PW = PACK && !CL && (MODE != DFM_QUANT_FP8_ID || PROMOTE == 128 || TOK16) ? WG_PASS_COLS : WG_MAXCOLS;
    static_assert(PW == WG_MAXCOLS || PW == 160, "WG_PASS_COLS: 128 or 160 (the wgmma N the dispatch below adds)");
    extern __shared__ unsigned char smem_raw[];
    __shared__ int s_prefix[WG_MAX_G + 1];
    __shared__ int s_maxcols;
    __shared__ __align__(8) uint64_t s_full[WG_MAX_STAGES], s_empty[WG_MAX_STAGES];
    __shared__ wg_col_t s_tab[2 * PW];
    unsigned char *smem = (unsigned char *)(((uintptr_t)smem_raw + 1023) & ~(uintptr_t)1023);
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int G = p.G;
    const int n_tiles = p.n_out / WG_BN;
    /* CL: the two CTAs of a cluster take the channel tiles 2 tp and 2 tp + 1
     * of one (expert, pass) and each loads every other A box for both
     * (multicast): they walk one schedule of tile pairs in step, same ring
     * positions (the ring's shape depends only on the counts) */
    const int crank = CL ? (int)wg_cluster_rank() : 0;
    const int sched_tiles = CL ? n_tiles / 2 : n_tiles;   /* the host launches CL with n_tiles even */
    const int v0 = CL ? (int)blockIdx.x >> 1 : (int)blockIdx.x;
    int vstep = CL ? (int)gridDim.x >> 1 : (int)gridDim.x;
    const int half = p.cur_seq ? (int)(*p.cur_seq & 1ull) : 0;

    if (tid == 0) s_maxcols = 0;
    __syncthreads();
    /* items per expert: n_tiles * ceil(columns / PW); widest pass of the launch */
    int my_maxcols = 0;
    for (int g = tid; g < G; g += blockDim.x) {
        const int cols = wg_expert_cols<PACK>(p.row_count, p.R, g);
        s_prefix[g + 1] = ((cols + PW - 1) / PW) * sched_tiles;
        my_maxcols = max(my_maxcols, cols);
    }
    if (my_maxcols > 0) atomicMax(&s_maxcols, my_maxcols);
    if (tid == 0) {
        s_prefix[0] = 0;
        for (int s = 0; s < WG_MAX_STAGES; s++) {
            wg_mbar_init(&s_full[s], 1);
            wg_mbar_init(&s_empty[s], CL ? 16 : 8); /* CL: both CTAs' consumer warps */
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();
    if constexpr (CL) wg_cluster_sync(); /* the other CTA's barriers exist before anything reaches them */
    if (warp == 0) { /* inclusive scan of s_prefix[1..G] */
        int carry = 0;
        for (int b = 0; b < G; b += 32) {
            int v = b + lane < G ? s_prefix[b + lane + 1] : 0;
            for (int o = 1; o < 32; o <<= 1) {
                const int u = __shfl_up_sync(0xffffffffu, v, o);
                if (lane >= o) v += u;
            }
            if (b + lane < G) s_prefix[b + lane + 1] = v + carry;
            carry += __shfl_sync(0xffffffffu, v, 31);
        }
    }
    __syncthreads();
    const int total = s_prefix[G];
    const int nk = (p.k_bytes + WG_BK - 1) / WG_BK;
    if constexpr (WG_BALANCE && !CL) {
        /* the CTAs past the balanced step leave (the whole CTA: no barrier
         * is pending) */
        vstep = wg_balanced_step(total, vstep);
        if (v0 >= vstep) return;
    }

    /* the ring */
    wg_ring_t ring;
    float *xch;
    if constexpr (VER == 2) {
        static_assert(MODE != DFM_QUANT_FP8_ID || PROMOTE != 1, "FP8 PROMOTE 1 needs version 3's ring");
        ring.nst = WG_STAGES;
        ring.sb = WG_STAGE_BYTES;
        ring.bh = nullptr;
        ring.bhs = 0;
        xch = (float *)(smem + WG_STAGES * WG_STAGE_BYTES);
    } else {
        const int acols = wg_pad_cols(min(PW, max(s_maxcols, 8)));
        const int xbytes = 128 * (acols / 2) * 4; /* GEMM1: the exchange; GEMM2: the staging */
        const int bhb = TOK16 ? 0 : wg_bh_bytes(MODE, PROMOTE, acols);
        const int avail = (int)wg_dyn_smem_size() - (int)(smem - smem_raw) - xbytes - bhb;
        ring.sb = WG_W_BYTES + acols * WG_BK * (TOK16 ? 2 : 1);
        ring.nst = min(WG_MAX_STAGES, avail / ring.sb);
        ring.bh = bhb ? smem + ring.nst * ring.sb : nullptr;
        ring.bhs = acols * 256;
        xch = (float *)(smem + ring.nst * ring.sb + bhb);
    }

    if (warp == 8) { /* producer */
        const uint64_t wpol = wg_policy_evict_first();
        int it = 0;
        for (int v = v0; v < total; v += vstep) {
            int g, tile, pass;
            wg_item(s_prefix, G, sched_tiles, v, g, tile, pass);
            if (CL) tile = 2 * tile + crank;
            const long long hbase = TOK16 ? 0 : (long long)half * p.half_rows; /* the f16 copy has one half */
            /* TOK16: K-half 1 of the tokens at A + npad * 128 (npad: the consumer's N) */
            const int npad = TOK16 ? wg_pad_cols(min(PW, wg_expert_cols<PACK>(p.row_count, p.R, g) - pass * PW)) : 0;
            int arow, boff, bsel, nbox, tx_rows; /* this lane's A box; the pass's boxes, rows they write */
            if constexpr (VER == 2) { /* one 8-row box per chunk, lane l chunk l of the pass */
                int src, j0, valid;
                const int nch = wg_chunk(p, g, pass * 16 + (lane & 15), src, j0, valid);
                const int nch_pass = min(16, nch - pass * 16);
                tx_rows = nch_pass * 8;
                arow = (int)(hbase + (long long)(g * p.R + (src < 0 ? 0 : src)) * p.M + j0);
                nbox = nch_pass;
                boff = lane * 8;
                bsel = 3;
            } else if constexpr (PACK) {
                wg_pack_boxes(p, g, pass, hbase, lane, arow, boff, bsel, nbox, tx_rows, PW);
            } else {
                wg_chunk_boxes(p, g, pass, hbase, lane, arow, boff, bsel, nbox, tx_rows);
            }
            const int wrow = g * p.n_out + tile * WG_BN;
            for (int kt = 0; kt < nk; kt++, it++) {
                const int s = it % ring.nst, r = it / ring.nst;
                if (lane == 0) {
                    wg_mbar_wait(&s_empty[s], (r & 1) ^ 1);
                    wg_mbar_expect_tx(&s_full[s], WG_W_BYTES + tx_rows * WG_BK * (TOK16 ? 2 : 1));
                }
                __syncwarp();
                unsigned char *st = smem + s * ring.sb;
                if (lane == 0) {
                    if (p.w_evict_first) wg_tma_2d_hint(st, &tm_w, kt * WG_BK, wrow, &s_full[s], wpol);
                    else wg_tma_2d(st, &tm_w, kt * WG_BK, wrow, &s_full[s]);
                }
                /* CL: box `lane` by the CTA of rank lane & 1, into both */
                if (lane < nbox && (!CL || (lane & 1) == crank)) {
                    if (CL) wg_tma_2d_mc(st + WG_W_BYTES + boff * WG_BK, &tm_a.a[bsel], kt * WG_BK, arow, &s_full[s], 3);
                    else if (TOK16)
#pragma unroll
                        for (int hh = 0; hh < 2; hh++) /* f16: 2 x 128 bytes of K a stage */
                            wg_tma_2d(st + WG_W_BYTES + (hh * npad + boff) * WG_BK, &tm_a.a[bsel],
                                      (2 * kt + hh) * WG_BK, arow, &s_full[s]);
                    else wg_tma_2d(st + WG_W_BYTES + boff * WG_BK, &tm_a.a[bsel], kt * WG_BK, arow, &s_full[s]);
                }
            }
        }
    } else { /* consumers */
        int it = 0;
#if WG_TRACE
        int n_item = 0;
        if (tid == 0 && blockIdx.x < 160)
            for (int i = 0; i < WG_TR_ITEMS; i++) wg_trace[PHASE - 1][blockIdx.x][i][0] = 0;
#endif
        for (int v = v0; v < total; v += vstep) {
            int g, tile, pass;
            wg_item(s_prefix, G, sched_tiles, v, g, tile, pass);
            if (CL) tile = 2 * tile + crank;
            const int cols = min(PW, wg_expert_cols<PACK>(p.row_count, p.R, g) - pass * PW);
            WG_TMARK(0);
/* GEMM2 stages its rows, except FP8 on f16 tensor cores (168 registers
 * already); -DWG_STAGE_GEMM2=0 turns staging off (for A/B measurements) */
#define WG_CONSUME(NN) \
    wg_consume<MODE, PHASE, NN, OUT, PROMOTE, true, WG_STAGE_GEMM2 && !(MODE == DFM_QUANT_FP8_ID && PROMOTE == 1), PACK, CL, PW, TOK16>( \
        p, out, smem, ring, s_full, s_empty, xch, s_tab, it, g, tile, pass, half)
            if constexpr (PW > 128) {
                if (cols > 128) WG_CONSUME(160);
                else WG_BY_COLS(cols, WG_CONSUME);
            } else {
                WG_BY_COLS(cols, WG_CONSUME);
            }
#undef WG_CONSUME
#if WG_TRACE
            if (tid == 0 && n_item < WG_TR_ITEMS && blockIdx.x < 160) {
                for (int k = 0; k < 4; k++) wg_trace[PHASE - 1][blockIdx.x][n_item][k] = wg_tr_s[k];
                wg_trace[PHASE - 1][blockIdx.x][n_item][4] = clock64();
            }
            n_item++;
#endif
        }
    }
    /* CL: no CTA leaves while the other may still arrive on its barriers */
    if constexpr (CL) wg_cluster_sync();
}

template <int MODE, int PHASE, int VER, class OUT, int PROMOTE = WG_FP8_PROMOTE>
static __global__ void __launch_bounds__(WG_THREADS, 1)
    wg_gemm_kernel(const __grid_constant__ CUtensorMap tm_w, const __grid_constant__ wg_amaps_t tm_a,
                   const __grid_constant__ wg_gemm_args_t p, const __grid_constant__ OUT out) {
    static_assert(VER == 2 || VER == 3 || VER == 5, "versions 2, 3 and 5 (4: wg_gemm_kernel_cl)");
    wg_gemm_run<MODE, PHASE, VER, OUT, PROMOTE>(tm_w, tm_a, p, out);
}

/* Version 3 on clusters of 2 CTAs that share each (expert, pass)'s token rows
 * by TMA multicast (wg_gemm_run with CL): at ~128 rows per expert a stage's
 * token rows are as many bytes as its weight tile, and every channel tile
 * read them from L2 again. The grid must be even and the expert's channel
 * tiles (n_out / 128) even. */
template <int MODE, int PHASE, class OUT, int PROMOTE = WG_FP8_PROMOTE>
static __global__ void __cluster_dims__(2, 1, 1) __launch_bounds__(WG_THREADS, 1)
    wg_gemm_kernel_cl(const __grid_constant__ CUtensorMap tm_w, const __grid_constant__ wg_amaps_t tm_a,
                      const __grid_constant__ wg_gemm_args_t p, const __grid_constant__ OUT out) {
    wg_gemm_run<MODE, PHASE, 4, OUT, PROMOTE>(tm_w, tm_a, p, out);
}

/* ---- host side --------------------------------------------------------------- */

typedef CUresult (*wg_encode_fn_t)(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *,
                                   const cuuint64_t *, const cuuint64_t *, const cuuint32_t *,
                                   const cuuint32_t *, CUtensorMapInterleave, CUtensorMapSwizzle,
                                   CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

/* cuTensorMapEncodeTiled through the runtime's driver entry point (no -lcuda). */
static inline wg_encode_fn_t wg_encode_fn(void) {
    static wg_encode_fn_t fn = NULL;
    if (!fn) {
        void *f = NULL;
        cudaDriverEntryPointQueryResult q;
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q) ==
                cudaSuccess &&
            q == cudaDriverEntryPointSuccess)
            fn = (wg_encode_fn_t)f;
    }
    return fn;
}

/* A 2D byte matrix [rows][k_bytes] with row stride `stride` bytes, boxes of
 * box_rows x 128 bytes, 128B swizzle; rows/columns past the end read as 0. */
static inline int wg_make_map(CUtensorMap *map, const void *base, long long rows, int k_bytes,
                              size_t stride, int box_rows) {
    wg_encode_fn_t fn = wg_encode_fn();
    if (!fn) return -1;
    const cuuint64_t dims[2] = {(cuuint64_t)k_bytes, (cuuint64_t)rows};
    const cuuint64_t strides[1] = {(cuuint64_t)stride};
    const cuuint32_t box[2] = {WG_BK, (cuuint32_t)box_rows};
    const cuuint32_t estr[2] = {1, 1};
    CUresult r = fn(map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, (void *)base, dims, strides, box, estr,
                    CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                    CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    return r == CUDA_SUCCESS ? 0 : (int)r;
}

/* Dynamic shared memory of a version-3 launch of `kernel`: the per-block
 * opt-in maximum less the kernel's static shared memory (0 on error). */
static inline int wg_v3_smem(const void *kernel) {
    int dev = 0, optin = 0;
    cudaFuncAttributes fa;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess ||
        cudaFuncGetAttributes(&fa, kernel) != cudaSuccess)
        return 0;
    return optin - (int)fa.sharedSizeBytes;
}

#endif /* DFM_GEMM_WGMMA_CUH */
