/*
 * dispatch_steps.cuh - the steps of dispatch that both dispatch.cu (the
 * separate and pipelined dispatch) and fused.cu (the one-kernel operator)
 * run: routing a batch into a first-slot bitmap, and the per-token
 * quantization of SPEC 3.1 fused into the stores into the owners' receive
 * slots. Device code only; the callers own the flags and the waits.
 */
#ifndef DFM_CUDA_DISPATCH_STEPS_CUH
#define DFM_CUDA_DISPATCH_STEPS_CUH

#include "device_common.cuh"

#ifndef DFM_SEND_X4
#define DFM_SEND_X4 4 /* x loads a thread in flight for a token's amax (dfm_dispatch_send) */
#endif

/* A received row's meta with this bit: the row carries no codes; its first 8
 * bytes name the row of the same half that does (dfm_dispatch_send's DEDUP). */
#define DFM_META_ALIAS 0x80000000u


/* u32 words per expert of the first-slot bitmap of T tokens. */
static __host__ __device__ __forceinline__ int dfm_bitmap_words(int T) {
    return T > 0 ? (T + 31) / 32 : 1;
}

/* Code of v under scale s (fp8 or int8), IEEE division as in the CPU backend. */
static __device__ __forceinline__ uint32_t dfm_code1(float v, float s, dfm_quant_t q) {
    if (s == 0.0f) return 0u;
    if (q == DFM_QUANT_FP8) return dfm_f32_to_e4m3(v / s);
    return (uint32_t)(uint8_t)dfm_f32_to_int8(v / s);
}

/* 16 codes (fp8/int8) or 8 (bf16) of row xr, chunk c, as one 16-byte word. */
static __device__ __forceinline__ uint4 dfm_codes16(const uint16_t *xr, int c, float s,
                                                    dfm_quant_t q) {
    uint32_t o[4];
    if (q == DFM_QUANT_BF16) {
        const uint4 v = *(const uint4 *)(xr + (size_t)c * 8);
        const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int i = 0; i < 4; i++)
            o[i] = dfm_dev_f32_to_bf16(dfm_bf16_lo(u[i])) |
                   (dfm_dev_f32_to_bf16(dfm_bf16_hi(u[i])) << 16);
    } else {
        const uint4 a = *(const uint4 *)(xr + (size_t)c * 16);
        const uint4 b = *(const uint4 *)(xr + (size_t)c * 16 + 8);
        const uint32_t u[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const uint32_t p = u[2 * i], r = u[2 * i + 1];
            o[i] = dfm_code1(dfm_bf16_lo(p), s, q) | (dfm_code1(dfm_bf16_hi(p), s, q) << 8) |
                   (dfm_code1(dfm_bf16_lo(r), s, q) << 16) | (dfm_code1(dfm_bf16_hi(r), s, q) << 24);
        }
    }
    return make_uint4(o[0], o[1], o[2], o[3]);
}

/*
 * Route: s_bits [E][W] u32 gets bit t of expert e when a first slot of token
 * t names e (so a token's row index at e is the number of bits below t);
 * *s_dropped counts slots outside [-1, E). Every CTA does it for itself.
 */
template <int NT>
static __device__ __forceinline__ void dfm_dispatch_route(const dfm_cuda_op_t &op, int E, int W,
                                                          uint32_t *s_bits, int *s_dropped) {
    const int tid = threadIdx.x, T = op.num_tokens, K = op.num_topk;
    for (int i = tid; i < E * W; i += NT) s_bits[i] = 0u;
    if (tid == 0) *s_dropped = 0;
    __syncthreads();
    /* a token a thread where K <= 8: its ids loaded at once, the first-slot
     * test in registers (a slot a thread, with dfm_slot_is_first's chain of
     * loads, took ~24 us of every CTA at T = 1024, K = 8; thirty-seventh
     * session). Up to 16 ids in registers made ptxas serialize version 5's
     * wgmma (C7511), so K > 8 keeps a slot a thread. */
    int dropped = 0;
    if (K <= 8) {
        for (int t = tid; t < T; t += NT) {
            const int64_t *row = op.topk_idx + (size_t)t * K;
            int e[8];
#pragma unroll
            for (int k = 0; k < 8; k++) {
                const int64_t v = k < K ? row[k] : -1;
                dropped += v < -1 || v >= E;
                e[k] = v >= 0 && v < E ? (int)v : -1;
            }
#pragma unroll
            for (int k = 0; k < 8; k++) {
                bool first = e[k] >= 0;
#pragma unroll
                for (int j = 0; j < k; j++) first = first && e[j] != e[k];
                if (first) atomicOr(&s_bits[e[k] * W + (t >> 5)], 1u << (t & 31));
            }
        }
    } else {
        for (int i = tid; i < T * K; i += NT) {
            const int t = i / K, k = i % K;
            const int64_t *row = op.topk_idx + (size_t)t * K;
            const int64_t e = row[k];
            dropped += e < -1 || e >= E;
            if (dfm_slot_is_first(row, k, E)) atomicOr(&s_bits[(int)e * W + (t >> 5)], 1u << (t & 31));
        }
    }
    if (dropped) atomicAdd(s_dropped, dropped);
    __syncthreads();
}

/*
 * Quantize and send this CTA's share of the batch. Work unit (t, p) = part p
 * of `parts` of token t's codes: the CTA computes the row's amax (block
 * reduction over all H), each thread quantizes 16-byte chunks and stores
 * each to every destination of the token (row (g, me, j) of the owner's
 * half); part 0 also writes the row's scale and meta (t * Kmax + slot).
 * BF16 codes are the values themselves (scale 1): a kernel compiled for
 * BF16 alone (QM = DFM_QUANT_BF16: the fused kernel's) skips the amax pass;
 * QM = -1: any mode (op.quant).
 * DEDUP (the fused kernel's version 5): bit r of `dedup` (read in warp 0)
 * says that rank r widens the rows it receives (DFM_INFO_TOK16). A token's
 * codes then go once to such a rank, into the row of the token's lowest slot
 * there; each other row of the token there gets only its meta, with
 * DFM_META_ALIAS set, and in its first 8 bytes the index of the row that
 * holds the codes (the receiver's widening reads them from there and copies
 * that row's scale).
 * s_red [32], s_dst/s_rank [DFM_MAX_TOPK] are the caller's shared scratch.
 */
template <int NT, int QM = -1, bool DEDUP = false>
static __device__ __forceinline__ void dfm_dispatch_send(const dfm_cuda_world_t &w,
                                                         const dfm_cuda_op_t &op,
                                                         const uint32_t *s_bits, int W, int parts,
                                                         int half, float *s_red, size_t *s_dst,
                                                         int *s_rank, int u0,
                                                         unsigned int dedup = 0u) {
    static_assert(DFM_MAX_TOPK <= 32 && NT % 32 == 0, "a token's slots in warp 0's lanes");
    const int tid = threadIdx.x, T = op.num_tokens, K = op.num_topk, E = w.num_experts;
    const int G = w.num_local_experts, H = w.hidden;
    constexpr bool BF16 = QM == DFM_QUANT_BF16;
    const dfm_quant_t q = (dfm_quant_t)op.quant;
    const int chunks = (int)((size_t)H * dfm_code_bytes(q) / 16);
    for (int u = u0; u < T * parts; u += gridDim.x) {
        const int t = u / parts, p = u % parts;
        const uint16_t *xr = op.x + (size_t)t * H;
        /* the row's amax: DFM_SEND_X4 16-byte loads a thread in flight at
         * once (7168 values of 384 threads: one round trip, not three) */
        float amax = 0.0f;
        for (int i0 = tid * 8; !BF16 && i0 < H; i0 += DFM_SEND_X4 * NT * 8) {
            uint4 v[DFM_SEND_X4];
#pragma unroll
            for (int b = 0; b < DFM_SEND_X4; b++) {
                const int i = i0 + b * NT * 8;
                v[b] = i < H ? *(const uint4 *)(xr + i) : make_uint4(0u, 0u, 0u, 0u);
            }
#pragma unroll
            for (int b = 0; b < DFM_SEND_X4; b++) {
                const uint32_t uu[4] = {v[b].x, v[b].y, v[b].z, v[b].w};
#pragma unroll
                for (int c = 0; c < 4; c++)
                    amax = fmaxf(amax, fmaxf(fabsf(dfm_bf16_lo(uu[c])), fabsf(dfm_bf16_hi(uu[c]))));
            }
        }
        /* the token's ids in warp 0's lanes (one load each, K <= 32) and a
         * slot's earlier duplicates found by shuffles, not by a chain of
         * dependent loads (dfm_slot_is_first): 1.7 -> 0.5 us at T = 1 */
        int64_t ek = -1;
        bool first = false;
        if (tid < 32) {
            ek = tid < K ? op.topk_idx[(size_t)t * K + tid] : -1;
            first = ek >= 0 && ek < E;
            for (int j = 0; j < K; j++) {
                const int64_t ej = __shfl_sync(0xffffffffu, ek, j);
                if (j < tid && ej == ek) first = false;
            }
        }
        if (tid < K) {
            size_t off = (size_t)-1;
            int dst = 0;
            if (first) {
                const int e = (int)ek;
                const uint32_t *b = s_bits + (size_t)e * W;
                int j = __popc(b[t >> 5] & ((1u << (t & 31)) - 1u));
                for (int x = 0; x < (t >> 5); x++) j += __popc(b[x]);
                dst = e / G;
                off = dfm_recv_row(&w.L, e % G, w.rank, j);
            }
            s_dst[tid] = off;
            s_rank[tid] = dst;
        }
        if constexpr (DEDUP) {
            if (tid < 32) { /* lo: the lowest slot of the token at dst, if dst widens */
                const size_t mine = tid < K ? s_dst[tid] : (size_t)-1; /* this thread's own stores */
                const int dst = tid < K ? s_rank[tid] : 0;
                const bool v5 = mine != (size_t)-1 && ((dedup >> dst) & 1u);
                const unsigned int at = __ballot_sync(0xffffffffu, v5);
                int lo = -1;
                for (int j = 0; j < K; j++) {
                    const int dj = __shfl_sync(0xffffffffu, dst, j);
                    if (lo < 0 && ((at >> j) & 1u) && dj == dst) lo = j;
                }
                const size_t from = __shfl_sync(0xffffffffu, mine, v5 ? lo : tid);
                if (v5 && lo != tid) { /* an alias row: no codes, no scale (the receiver takes both from row `from`) */
                    s_dst[tid] = (size_t)-1;
                    if (p == 0) {
                        char *base = w.peer[dst];
                        *(int32_t *)(base + dfm_off_recv_meta(&w.L, half, mine)) =
                            (t * w.max_topk + tid) | (int32_t)DFM_META_ALIAS;
                        *(unsigned long long *)(base + dfm_off_recv_rows(&w.L, half, mine)) = from;
                    }
                }
            }
        }
        if (!BF16)
            amax = dfm_block_max(amax, s_red); /* also orders s_dst/s_rank */
        else
            __syncthreads(); /* s_dst/s_rank */
        const float s = dfm_quant_scale(amax, q);
        const int c0 = (int)((long long)chunks * p / parts);
        const int c1 = (int)((long long)chunks * (p + 1) / parts);
        for (int c = c0 + tid; c < c1; c += NT) {
            const uint4 v = dfm_codes16(xr, c, s, q);
            for (int k = 0; k < K; k++) {
                const size_t row = s_dst[k];
                if (row == (size_t)-1) continue;
                uint4 *d = (uint4 *)(w.peer[s_rank[k]] + dfm_off_recv_rows(&w.L, half, row));
                d[c] = v;
            }
        }
        if (p == 0 && tid < K && s_dst[tid] != (size_t)-1) {
            char *base = w.peer[s_rank[tid]];
            *(float *)(base + dfm_off_recv_scale(&w.L, half, s_dst[tid])) = s;
            *(int32_t *)(base + dfm_off_recv_meta(&w.L, half, s_dst[tid])) = t * w.max_topk + tid;
        }
        __syncthreads(); /* s_dst is rewritten by the next unit */
    }
}

/*
 * After the wait (one thread, in one CTA of the call): fold what every
 * source reported in src_info into the host-mapped async words as running
 * totals (the host remembers what it has reported): slots dropped for an
 * expert id outside [-1, E), and a peer that called with another mode.
 * Only one thread of one stream-ordered kernel writes them at a time.
 */
static __device__ __forceinline__ void dfm_dispatch_note_faults(const dfm_cuda_world_t &w,
                                                                const dfm_cuda_op_t &op,
                                                                int half) {
    const char *local = w.peer[w.rank];
    unsigned int dropped = 0, mismatch = 0;
    for (int src = 0; src < w.num_ranks; src++) {
        const int32_t *info = (const int32_t *)(local + dfm_off_src_info(&w.L, half, src));
        dropped += (unsigned int)info[DFM_INFO_DROPPED];
        mismatch |= info[DFM_INFO_QUANT] != op.quant;
    }
    if (dropped > 0) w.async->invalid_total += dropped;
    if (mismatch) w.async->mismatch_total += 1u;
    if (dropped > 0 || mismatch) __threadfence_system();
}

#endif /* DFM_CUDA_DISPATCH_STEPS_CUH */
