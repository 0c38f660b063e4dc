/*
 * dfm_common.h - definitions shared by the C backends, the CUDA kernels and
 * the tests: number formats (bf16, FP8 E4M3, int8) with the exact rounding of
 * SPEC section 3.1, the layout of a rank's symmetric buffer (slot offsets and
 * sizes), and the sequence-number rules of the protocol.
 *
 * Plain C99 with static inline functions; under nvcc the same functions are
 * __host__ __device__. Nothing here allocates or does I/O.
 */
#ifndef DFM_COMMON_H
#define DFM_COMMON_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dfm.h"

#ifdef __CUDACC__
#define DFM_HD __host__ __device__
#else
#define DFM_HD
#endif

#define DFM_FP8_MAX 448.0f
#define DFM_INT8_MAX 127.0f

/* ---- bit casts ------------------------------------------------------------ */

DFM_HD static inline uint32_t dfm_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

DFM_HD static inline float dfm_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* ---- bf16 ------------------------------------------------------------------ */

DFM_HD static inline float dfm_bf16_to_f32(uint16_t h) { return dfm_bits_f32((uint32_t)h << 16); }

/* Round to nearest even; NaN stays a (quiet) NaN, overflow goes to inf. */
DFM_HD static inline uint16_t dfm_f32_to_bf16(float f) {
    uint32_t u = dfm_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* ---- FP8 E4M3 ("fn": bias 7, max 448, S.1111.111 is NaN, no inf) ----------- */

DFM_HD static inline float dfm_e4m3_to_f32(uint8_t c) {
    uint32_t sign = (uint32_t)(c & 0x80u) << 24;
    uint32_t e = (c >> 3) & 15u, m = c & 7u;
    if (e == 15u && m == 7u) return dfm_bits_f32(sign | 0x7fc00000u);
    if (e == 0u) {
        float v = (float)m * 0.001953125f; /* m * 2^-9, exact */
        return sign ? -v : v;
    }
    return dfm_bits_f32(sign | ((e - 7u + 127u) << 23) | (m << 20));
}

/*
 * Round to nearest even with saturation to +-448 (PTX
 * cvt.rn.satfinite.e4m3x2.f32): |f| >= 448 and inf give 448, NaN gives NaN.
 */
DFM_HD static inline uint8_t dfm_f32_to_e4m3(float f) {
    uint32_t u = dfm_f32_bits(f);
    uint8_t sign = (uint8_t)((u >> 24) & 0x80u);
    u &= 0x7fffffffu;
    if (u > 0x7f800000u) return (uint8_t)(sign | 0x7fu);
    if (u >= 0x43e00000u) return (uint8_t)(sign | 0x7eu); /* >= 448 */
    if (u < 0x3c800000u) {                                   /* < 2^-6: subnormal */
        /* quantum 2^-9; the product is exact, rintf rounds to nearest even.
         * A result of 8 is the smallest normal (code 0x08), as it should be. */
        float a = dfm_bits_f32(u) * 512.0f;
        return (uint8_t)(sign | (uint8_t)rintf(a));
    }
    uint32_t exp = (u >> 23) - 127u + 7u; /* 1..15 */
    uint32_t mant = u & 0x7fffffu;
    uint32_t r = (exp << 3) | (mant >> 20);
    uint32_t rem = mant & 0xfffffu;
    if (rem > 0x80000u || (rem == 0x80000u && (r & 1u))) r++;
    return (uint8_t)(sign | r); /* < 448 never rounds past 0x7e */
}

/* ---- int8 ------------------------------------------------------------------ */

/* rne(q) clamped to [-127, 127] (SPEC 3.1). */
DFM_HD static inline int8_t dfm_f32_to_int8(float q) {
    float r = rintf(q);
    if (r > DFM_INT8_MAX) r = DFM_INT8_MAX;
    if (r < -DFM_INT8_MAX) r = -DFM_INT8_MAX;
    return (int8_t)r;
}

/* ---- modes ------------------------------------------------------------------ */

DFM_HD static inline size_t dfm_code_bytes(dfm_quant_t q) { return q == DFM_QUANT_BF16 ? 2u : 1u; }

/* s = amax / qmax in fp32 (SPEC 3.1); bf16 has no scale (1). */
DFM_HD static inline float dfm_quant_scale(float amax, dfm_quant_t q) {
    if (q == DFM_QUANT_FP8) return amax / DFM_FP8_MAX;
    if (q == DFM_QUANT_INT8) return amax / DFM_INT8_MAX;
    return 1.0f;
}

/* Value of one code (element i of a row of codes). */
DFM_HD static inline float dfm_code_value(const void *codes, size_t i, dfm_quant_t q) {
    if (q == DFM_QUANT_FP8) return dfm_e4m3_to_f32(((const uint8_t *)codes)[i]);
    if (q == DFM_QUANT_INT8) return (float)((const int8_t *)codes)[i];
    return dfm_bf16_to_f32(((const uint16_t *)codes)[i]);
}

/*
 * Code of v under scale s (s from dfm_quant_scale of the row's amax). A row
 * whose amax is 0 has s == 0 and all codes 0. Writes element i of codes.
 */
DFM_HD static inline void dfm_code_store(void *codes, size_t i, float v, float s, dfm_quant_t q) {
    if (q == DFM_QUANT_FP8)
        ((uint8_t *)codes)[i] = s == 0.0f ? (uint8_t)0 : dfm_f32_to_e4m3(v / s);
    else if (q == DFM_QUANT_INT8)
        ((int8_t *)codes)[i] = s == 0.0f ? (int8_t)0 : dfm_f32_to_int8(v / s);
    else
        ((uint16_t *)codes)[i] = dfm_f32_to_bf16(v);
}

/* Permuted w1 channel p holds original channel h*I + t*64 + c (SPEC 4). */
DFM_HD static inline int dfm_perm_source(int p, int inter) {
    int t = p / 128, h = (p % 128) / 64, c = p % 64;
    return h * inter + t * 64 + c;
}

/* ---- sequence numbers --------------------------------------------------------
 *
 * Each operation (a fused call, or a dispatch with its combine) takes the
 * next sequence number of its context: 1, 2, 3, ... Flags in peers' buffers
 * are written with the sequence number of the call they complete (release)
 * and a waiter spins until the flag equals its own number (acquire). Call n
 * uses buffer half n & 1, so two calls may be in flight; a flag left over
 * from call n-2 holds n-2 and cannot be mistaken for n. Flags start at 0,
 * which no call uses. Reuse of a half is safe because every rank finishes
 * call n before any rank can complete call n+1's exchange with it.
 */
DFM_HD static inline int dfm_seq_half(uint64_t seq) { return (int)(seq & 1u); }

/* ---- the symmetric buffer ----------------------------------------------------
 *
 * Every rank owns one region of `region_bytes`, all at the same offsets (a
 * symmetric heap: POSIX shm on CPU, an NCCL window on CUDA). Peers write into
 * it; the owner reads it. Per half h (0, 1):
 *
 *   dispatch_flag [2][R]        u64  src -> seq once src's rows for me are in
 *   combine_flag  [2][R]        u64  src -> seq once src's results for me are in
 *   src_info      [2][R][8]     i32  from src: quant, num_topk, num_tokens,
 *                                    number of dropped (out of range) slots,
 *                                    whether src's fused kernel runs version 5
 *                                    in this call (CUDA; 0 elsewhere), 3 spare
 *   recv_counts   [2][R][G]     i32  rows src sent to my local expert g (the
 *                                    fused kernel's: tag << 16 | rows)
 *   recv_meta     [2][G][R][M]  i32  row j of (g, src): token * Kmax + slot
 *   recv_scale    [2][G][R][M]  f32  per-row scale of the codes
 *   recv_rows     [2][G][R][M]  row_bytes each: codes (H * code bytes)
 *   combine_rows  [2][M][Kmax]  H bf16 each: expert result for my (t, slot)
 *   combine_ll    [2][ML][Kmax] H / 2 u64 each (CUDA backend only): the same
 *                                    results as tagged words, (tag << 32) |
 *                                    two bf16, for calls whose every rank has
 *                                    T <= ML (the fused kernel, see fused.cu)
 *
 * M = num_max_dispatch_tokens_per_rank, ML = min(M, DFM_COMBINE_LL_TOKENS,
 * DFM_COMBINE_LL_ELEMS / (Kmax * H)) on the CUDA backend, 0 on the CPU backend. Row (g, src, j) is the j-th token of
 * src (in token order) routed to g; each (token, expert) pair goes once. A
 * combine row is written by the rank holding the expert of the token's first
 * slot that names it.
 */
#define DFM_ALIGN 128u
#ifndef DFM_COMBINE_LL_TOKENS
#define DFM_COMBINE_LL_TOKENS 64 /* tokens a rank of the tagged combine rows (combine_ll) */
#endif
/* Values a rank (T * Kmax * H) of the tagged rows at most: they are twice the
 * bytes of combine_rows, which costs more than the flags they save beyond
 * ~1M values (twenty-fifth session, 4 x H100: dsv3-e32 T = 32, 1.8M values,
 * +6.7 us tagged; qwen3-235b T = 32, 1M values, -1.7 us; every T = 1 row
 * 3-4 us faster). Also bounds combine_ll to 8 MiB. */
#ifndef DFM_COMBINE_LL_ELEMS
#define DFM_COMBINE_LL_ELEMS (1u << 20)
#endif
#define DFM_SRC_INFO_WORDS 8
enum { DFM_INFO_QUANT = 0, DFM_INFO_TOPK = 1, DFM_INFO_TOKENS = 2, DFM_INFO_DROPPED = 3, DFM_INFO_TOK16 = 4 };

typedef struct {
    int num_ranks, num_local_experts, hidden, inter, max_topk, num_max;
    int ll_tokens;    /* ML: tokens a rank of combine_ll (0: none) */
    size_t row_bytes; /* H * largest code size of the config's modes */
    size_t off_dispatch_flag, off_combine_flag, off_src_info, off_recv_counts;
    size_t off_recv_meta, off_recv_scale, off_recv_rows, off_combine_rows, off_combine_ll;
    size_t region_bytes;
} dfm_layout_t;

DFM_HD static inline size_t dfm_align_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

/* Fills *L from the config's numbers. */
static inline void dfm_layout_init(dfm_layout_t *L, const dfm_config_t *c) {
    size_t R = (size_t)c->num_ranks, G = (size_t)(c->num_experts / c->num_ranks);
    size_t M = (size_t)c->num_max_dispatch_tokens_per_rank, K = (size_t)c->max_topk;
    size_t H = (size_t)c->hidden, off = 0;
    size_t code = (c->quant_modes & DFM_QUANT_MASK(DFM_QUANT_BF16)) ? 2u : 1u;
    L->num_ranks = c->num_ranks;
    L->num_local_experts = (int)G;
    L->hidden = c->hidden;
    L->inter = c->inter;
    L->max_topk = c->max_topk;
    L->num_max = c->num_max_dispatch_tokens_per_rank;
    L->row_bytes = dfm_align_up(H * code, 16);
    size_t ml = M < DFM_COMBINE_LL_TOKENS ? M : DFM_COMBINE_LL_TOKENS;
    if (ml > DFM_COMBINE_LL_ELEMS / (K * H)) ml = DFM_COMBINE_LL_ELEMS / (K * H);
    L->ll_tokens = c->backend == DFM_BACKEND_CUDA ? (int)ml : 0;
#define DFM_LAYOUT_FIELD(field, bytes)                                                   \
    do {                                                                                 \
        L->field = off;                                                                  \
        off = dfm_align_up(off + 2 * (bytes), DFM_ALIGN);                                \
    } while (0)
    DFM_LAYOUT_FIELD(off_dispatch_flag, R * sizeof(uint64_t));
    DFM_LAYOUT_FIELD(off_combine_flag, R * sizeof(uint64_t));
    DFM_LAYOUT_FIELD(off_src_info, R * DFM_SRC_INFO_WORDS * sizeof(int32_t));
    DFM_LAYOUT_FIELD(off_recv_counts, R * G * sizeof(int32_t));
    DFM_LAYOUT_FIELD(off_recv_meta, G * R * M * sizeof(int32_t));
    DFM_LAYOUT_FIELD(off_recv_scale, G * R * M * sizeof(float));
    DFM_LAYOUT_FIELD(off_recv_rows, G * R * M * L->row_bytes);
    DFM_LAYOUT_FIELD(off_combine_rows, M * K * H * sizeof(uint16_t));
    DFM_LAYOUT_FIELD(off_combine_ll, (size_t)L->ll_tokens * K * H * 4u);
#undef DFM_LAYOUT_FIELD
    L->region_bytes = off;
}

/* Index of row (g, src, j) inside one half of recv_meta/scale/rows. */
DFM_HD static inline size_t dfm_recv_row(const dfm_layout_t *L, int g, int src, int j) {
    return ((size_t)g * (size_t)L->num_ranks + (size_t)src) * (size_t)L->num_max + (size_t)j;
}

/* Offsets (from the start of a region) of the slots of half h. */
DFM_HD static inline size_t dfm_off_dispatch_flag(const dfm_layout_t *L, int h, int src) {
    return L->off_dispatch_flag + ((size_t)h * (size_t)L->num_ranks + (size_t)src) * sizeof(uint64_t);
}
DFM_HD static inline size_t dfm_off_combine_flag(const dfm_layout_t *L, int h, int src) {
    return L->off_combine_flag + ((size_t)h * (size_t)L->num_ranks + (size_t)src) * sizeof(uint64_t);
}
DFM_HD static inline size_t dfm_off_src_info(const dfm_layout_t *L, int h, int src) {
    return L->off_src_info +
           ((size_t)h * (size_t)L->num_ranks + (size_t)src) * DFM_SRC_INFO_WORDS * sizeof(int32_t);
}
DFM_HD static inline size_t dfm_off_recv_counts(const dfm_layout_t *L, int h, int src) {
    return L->off_recv_counts +
           ((size_t)h * (size_t)L->num_ranks + (size_t)src) * (size_t)L->num_local_experts *
               sizeof(int32_t);
}
DFM_HD static inline size_t dfm_rows_per_half(const dfm_layout_t *L) {
    return (size_t)L->num_local_experts * (size_t)L->num_ranks * (size_t)L->num_max;
}
DFM_HD static inline size_t dfm_off_recv_meta(const dfm_layout_t *L, int h, size_t row) {
    return L->off_recv_meta + ((size_t)h * dfm_rows_per_half(L) + row) * sizeof(int32_t);
}
DFM_HD static inline size_t dfm_off_recv_scale(const dfm_layout_t *L, int h, size_t row) {
    return L->off_recv_scale + ((size_t)h * dfm_rows_per_half(L) + row) * sizeof(float);
}
DFM_HD static inline size_t dfm_off_recv_rows(const dfm_layout_t *L, int h, size_t row) {
    return L->off_recv_rows + ((size_t)h * dfm_rows_per_half(L) + row) * L->row_bytes;
}
DFM_HD static inline size_t dfm_off_combine_row(const dfm_layout_t *L, int h, int t, int k) {
    size_t per_half = (size_t)L->num_max * (size_t)L->max_topk;
    size_t row = (size_t)h * per_half + (size_t)t * (size_t)L->max_topk + (size_t)k;
    return L->off_combine_rows + row * (size_t)L->hidden * sizeof(uint16_t);
}

/* Tagged combine row (t, k) of half h (t < ll_tokens): H / 2 u64 words. */
DFM_HD static inline size_t dfm_off_combine_ll(const dfm_layout_t *L, int h, int t, int k) {
    size_t per_half = (size_t)L->ll_tokens * (size_t)L->max_topk;
    size_t row = (size_t)h * per_half + (size_t)t * (size_t)L->max_topk + (size_t)k;
    return L->off_combine_ll + row * (size_t)L->hidden * 4u;
}

/*
 * Routing of one token row: for slot k, the first slot of the row naming the
 * same valid expert, or -1 if slot k is unused (-1), out of range, or a
 * repeat. Expert ids outside [-1, E) count as dropped.
 */
DFM_HD static inline int dfm_slot_is_first(const int64_t *idx_row, int k, int num_experts) {
    int64_t e = idx_row[k];
    if (e < 0 || e >= num_experts) return 0;
    for (int j = 0; j < k; j++)
        if (idx_row[j] == e) return 0;
    return 1;
}

/* The first slot of the row that names the same expert as slot k. */
DFM_HD static inline int dfm_first_slot(const int64_t *idx_row, int k) {
    int j = 0;
    while (idx_row[j] != idx_row[k]) j++;
    return j;
}

#endif /* DFM_COMMON_H */
