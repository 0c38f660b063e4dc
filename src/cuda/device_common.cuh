/*
 * device_common.cuh - device helpers shared by the CUDA kernels: the
 * library's flags (system-scope release/acquire through LSA pointers), the
 * bounded wait on a peer's flag, and small block reductions.
 *
 * Flags are stored with st.release.sys and read with ld.acquire.sys: the
 * writer and the reader are different GPUs, so gpu scope would not order
 * the payload before the flag. NCCL's LSA barrier is not used for waits:
 * it spins without bound, and every wait here must end after the timeout.
 */
#ifndef DFM_DEVICE_COMMON_CUH
#define DFM_DEVICE_COMMON_CUH

#include "cuda_internal.h"

#define DFM_WARP 32

static __device__ __forceinline__ unsigned long long dfm_globaltimer(void) {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

static __device__ __forceinline__ void dfm_st_release_sys(void *p, unsigned long long v) {
    asm volatile("st.release.sys.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}

/* A release-acquire fence at system scope. After a bar.sync it orders what
 * every thread of the CTA stored before the barrier (the PTX memory model's
 * cumulativity) before this thread's later strong writes, so one thread can
 * fence for its CTA. */
static __device__ __forceinline__ void dfm_fence_acq_rel_sys(void) {
    asm volatile("fence.acq_rel.sys;" ::: "memory");
}

/* atomicAdd with acquire-release semantics at GPU scope; returns the old value. */
static __device__ __forceinline__ unsigned int dfm_atom_add_acq_rel_gpu(unsigned int *p, unsigned int v) {
    unsigned int old;
    asm volatile("atom.acq_rel.gpu.global.add.u32 %0, [%1], %2;" : "=r"(old) : "l"(p), "r"(v) : "memory");
    return old;
}

/*
 * A CTA that has stored to peers arrives on *done (every CTA of the grid
 * once, the last resets it): one thread fences for the whole CTA after the
 * barrier and counts it with an acquire-release atomic. Returns, in every
 * thread, whether this CTA came last; the last one's later release stores
 * (st.release.sys after a barrier) then order every CTA's stores before
 * them. s_last is the caller's shared scratch. Contains two __syncthreads.
 */
static __device__ __forceinline__ int dfm_cta_arrive_n(unsigned int *done, int *s_last, unsigned int n) {
    __syncthreads();
    if (threadIdx.x == 0) {
        dfm_fence_acq_rel_sys();
        *s_last = dfm_atom_add_acq_rel_gpu(done, 1u) == n - 1;
    }
    __syncthreads();
    return *s_last;
}
static __device__ __forceinline__ int dfm_cta_arrive(unsigned int *done, int *s_last) {
    return dfm_cta_arrive_n(done, s_last, gridDim.x);
}

static __device__ __forceinline__ unsigned long long dfm_ld_acquire_sys(const void *p) {
    unsigned long long v;
    asm volatile("ld.acquire.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
    return v;
}

/* GPU scope: flags that only this GPU's threads write and read (the fused
 * kernel's per-expert readiness words). A system-scope release waits for
 * more than the GPU's own point of coherence. */
static __device__ __forceinline__ unsigned long long dfm_ld_acquire_gpu(const void *p) {
    unsigned long long v;
    asm volatile("ld.acquire.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
    return v;
}
static __device__ __forceinline__ void dfm_st_release_gpu(void *p, unsigned long long v) {
    asm volatile("st.release.gpu.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}

static __device__ __forceinline__ unsigned int dfm_ld_volatile_u32(const unsigned int *p) {
    return *(const volatile unsigned int *)p;
}

/* Record a timeout: the context's state (device) and the host-mapped word. */
static __device__ void dfm_record_timeout(const dfm_cuda_world_t *w, int src, int what,
                                          unsigned long long seq) {
    atomicExch(&w->st->failed, 1u);
    w->async->timeout_src = (unsigned int)src;
    w->async->timeout_what = (unsigned int)what;
    w->async->timeout_seq = seq;
    __threadfence_system();
    w->async->timeout = 1u;
    __threadfence_system();
}

/*
 * Whether the context has failed (a wait timed out, in this kernel or an
 * earlier one), the same answer in every thread of the block. From then on
 * a kernel stores nothing more into peers' regions and raises no flag: the
 * peers time out too instead of reading a half-written call (SPEC 7). Called
 * by the whole block (it is a barrier).
 */
static __device__ __forceinline__ int dfm_block_failed(const dfm_cuda_world_t *w) {
    return __syncthreads_or(threadIdx.x == 0 && dfm_ld_volatile_u32(&w->st->failed) != 0u);
}

/*
 * Spin until the u64 flag equals seq (acquire, system scope), at most the
 * world's timeout (measured on %globaltimer). Returns 1 when it arrived, 0 on
 * timeout or when an earlier wait of this context already timed out (a
 * failed context does not wait again; its results are undefined and the
 * host reports DFM_ERROR_TIMEOUT).
 */
static __device__ int dfm_wait_flag(const dfm_cuda_world_t *w, const void *flag,
                                    unsigned long long seq, int src, int what) {
    if (dfm_ld_volatile_u32(&w->st->failed)) return 0;
    if (dfm_ld_acquire_sys(flag) == seq) return 1;
    unsigned long long t0 = dfm_globaltimer();
    for (unsigned int spin = 1;; spin++) {
        if (dfm_ld_acquire_sys(flag) == seq) return 1;
        if ((spin & 63u) == 0) {
            if (dfm_ld_volatile_u32(&w->st->failed)) return 0;
            if (dfm_globaltimer() - t0 > w->timeout_ns) {
                dfm_record_timeout(w, src, what, seq);
                return 0;
            }
        }
    }
}

static __device__ __forceinline__ float dfm_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Max over the block (blockDim.x a multiple of 32, <= 1024); every thread
 * gets the result. `red` is 32 floats of shared memory. */
static __device__ float dfm_block_max(float v, float *red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int nwarps = blockDim.x >> 5;
    v = dfm_warp_max(v);
    __syncthreads(); /* red may still be read by a previous call */
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = lane < nwarps ? red[lane] : 0.0f;
    return dfm_warp_max(v);
}

/* dfm_f32_to_bf16 of dfm_common.h (round to nearest even, NaN stays NaN)
 * without the memcpy bit casts, which cost a stack frame in unrolled loops. */
static __device__ __forceinline__ uint32_t dfm_dev_f32_to_bf16(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x0040u;
    u += 0x7fffu + ((u >> 16) & 1u);
    return u >> 16;
}

/* Unpack two bf16 of a 32-bit word to floats (low half first). */
static __device__ __forceinline__ float dfm_bf16_lo(uint32_t u) { return __uint_as_float(u << 16); }
static __device__ __forceinline__ float dfm_bf16_hi(uint32_t u) { return __uint_as_float(u & 0xffff0000u); }

/* Slots of a token whose combine rows are loaded at once by dfm_combine_reduce. */
#ifndef DFM_REDUCE_SLOTS
#define DFM_REDUCE_SLOTS 8
#endif

/*
 * The combine reduction (SPEC section 3), shared by combine.cu and the fused
 * kernel: units i = first, first + stride, .. of (token t, 8 columns c):
 * out[t][c..c+7] = bf16( sum over k with a valid expert e of w[t,k] *
 * y(first slot naming e) ), fp32, increasing k, products and sums rounded
 * separately (no FMA contraction, as the CPU backend's C code); exact zeros
 * for a token without a valid slot. The combine rows of up to
 * DFM_REDUCE_SLOTS slots are loaded before any is summed (one memory round
 * trip for K <= 8 instead of one per slot); the sums keep the slot order.
 */
/* What the reduction reads, as values: a caller out of line (the fused
 * kernel's) gets them in registers instead of loading its kernel's
 * parameters through pointers, one dependent load after another
 * (w->rank, then w->peer[rank], then the rows). */
typedef struct {
    const char *rows;    /* combine row (t, k) of the call's half: rows + (t * kmax + k) * hidden * 2 */
    const int64_t *idx;  /* topk_idx [T][K] */
    const float *wts;    /* topk_weights [T][K] */
    uint16_t *out;       /* [T][hidden] bf16; NULL: a dry run, nothing stored (the fused
                          * kernel's warm-up of the code and the ids before the combine wait) */
    int num_tokens, num_topk, kmax, hidden, num_experts;
} dfm_reduce_args_t;

static __device__ __forceinline__ dfm_reduce_args_t dfm_reduce_args(const dfm_cuda_world_t *w,
                                                                    const dfm_cuda_op_t *op, int half) {
    dfm_reduce_args_t a;
    a.rows = w->peer[w->rank] + dfm_off_combine_row(&w->L, half, 0, 0);
    a.idx = op->topk_idx;
    a.wts = op->topk_weights;
    a.out = op->out;
    a.num_tokens = op->num_tokens;
    a.num_topk = op->num_topk;
    a.kmax = w->L.max_topk;
    a.hidden = w->hidden;
    a.num_experts = w->num_experts;
    return a;
}

/* The 8 bf16 at column c of combine row (t, k). */
static __device__ __forceinline__ const uint4 *dfm_reduce_row(const dfm_reduce_args_t &a, int t, int k, int c) {
    return (const uint4 *)(a.rows + ((size_t)t * a.kmax + k) * (size_t)a.hidden * 2 + (size_t)c * 2);
}

/* acc[0..8) += w x the 8 bf16 of v, in fp32 with one rounding each (SPEC 3). */
static __device__ __forceinline__ void dfm_reduce_add(float acc[8], const uint4 v, float w) {
    const uint32_t uw[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int x = 0; x < 4; x++) {
        acc[2 * x] = __fadd_rn(acc[2 * x], __fmul_rn(w, dfm_bf16_lo(uw[x])));
        acc[2 * x + 1] = __fadd_rn(acc[2 * x + 1], __fmul_rn(w, dfm_bf16_hi(uw[x])));
    }
}

/* The 8 sums as bf16 into out[t][c..c+8) (nothing when out is NULL: a dry run). */
static __device__ __forceinline__ void dfm_reduce_store(const dfm_reduce_args_t &a, const float acc[8], int t,
                                                        int c) {
    uint32_t o[4];
#pragma unroll
    for (int x = 0; x < 4; x++)
        o[x] = dfm_dev_f32_to_bf16(acc[2 * x]) | (dfm_dev_f32_to_bf16(acc[2 * x + 1]) << 16);
    if (a.out) *(uint4 *)(a.out + (size_t)t * a.hidden + c) = make_uint4(o[0], o[1], o[2], o[3]);
}

static __device__ __forceinline__ void dfm_combine_reduce(const dfm_reduce_args_t a, long long first,
                                                          long long stride) {
    const int K = a.num_topk, H = a.hidden, E = a.num_experts, groups = H / 8;
    const long long total = (long long)a.num_tokens * groups;
    if (K <= DFM_REDUCE_SLOTS) {
        /* the token's ids and weights loaded at once, the slot naming each
         * expert first found in registers (the search below loads ir[f]
         * again and again, one dependent load after another) */
        for (long long i = first; i < total; i += stride) {
            const int t = (int)(i / groups), c = (int)(i % groups) * 8;
            const int64_t *ir = a.idx + (size_t)t * K;
            const float *wr = a.wts + (size_t)t * K;
            int64_t e[DFM_REDUCE_SLOTS];
            float wk[DFM_REDUCE_SLOTS];
#pragma unroll
            for (int u = 0; u < DFM_REDUCE_SLOTS; u++) {
                e[u] = u < K ? ir[u] : -1;
                wk[u] = u < K ? wr[u] : 0.0f;
            }
            uint4 v[DFM_REDUCE_SLOTS];
            bool ok[DFM_REDUCE_SLOTS];
#pragma unroll
            for (int u = 0; u < DFM_REDUCE_SLOTS; u++) {
                ok[u] = e[u] >= 0 && e[u] < E;
                int f = u;
#pragma unroll
                for (int j = u - 1; j >= 0; j--)
                    if (e[j] == e[u]) f = j;
                v[u] = ok[u] ? *dfm_reduce_row(a, t, f, c)
                             : make_uint4(0u, 0u, 0u, 0u);
            }
            float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
#pragma unroll
            for (int u = 0; u < DFM_REDUCE_SLOTS; u++)
                if (ok[u]) dfm_reduce_add(acc, v[u], wk[u]);
            dfm_reduce_store(a, acc, t, c);
        }
        return;
    }
    for (long long i = first; i < total; i += stride) {
        const int t = (int)(i / groups), c = (int)(i % groups) * 8;
        const int64_t *ir = a.idx + (size_t)t * K;
        const float *wr = a.wts + (size_t)t * K;
        float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int k0 = 0; k0 < K; k0 += DFM_REDUCE_SLOTS) {
            uint4 v[DFM_REDUCE_SLOTS];
            float wk[DFM_REDUCE_SLOTS];
            bool ok[DFM_REDUCE_SLOTS];
#pragma unroll
            for (int u = 0; u < DFM_REDUCE_SLOTS; u++) {
                const int k = k0 + u;
                const int64_t e = k < K ? ir[k] : -1;
                ok[u] = e >= 0 && e < E;
                int f = 0;
                if (ok[u])
                    while (ir[f] != e) f++;
                wk[u] = ok[u] ? wr[k] : 0.0f;
                v[u] = ok[u] ? *dfm_reduce_row(a, t, f, c)
                             : make_uint4(0u, 0u, 0u, 0u);
            }
#pragma unroll
            for (int u = 0; u < DFM_REDUCE_SLOTS; u++)
                if (ok[u]) dfm_reduce_add(acc, v[u], wk[u]);
        }
        dfm_reduce_store(a, acc, t, c);
    }
}

#define DFM_SCAN_THREADS 256

/* Exclusive prefix sums of the received counts, flat in (g, src) order:
 * scan[g*R + src] = packed begin of rows (g, src) counted from row 0 of
 * expert 0; scan[G*R] = all rows. Counts clamped to [0, M]. Called by the
 * whole block, which has DFM_SCAN_THREADS threads. */
static __device__ void dfm_recv_scan(const dfm_cuda_world_t *w, int half, int *scan) {
    __shared__ int s_part[DFM_SCAN_THREADS];
    const int R = w->num_ranks, G = w->num_local_experts, M = w->num_max, n = G * R;
    const int tid = threadIdx.x, per = (n + DFM_SCAN_THREADS - 1) / DFM_SCAN_THREADS;
    const char *local = w->peer[w->rank];
    int sum = 0;
    for (int i = tid * per; i < n && i < (tid + 1) * per; i++) {
        const int g = i / R, src = i % R;
        int c = ((const int32_t *)(local + dfm_off_recv_counts(&w->L, half, src)))[g];
        c = c < 0 ? 0 : (c > M ? M : c);
        scan[i] = c;
        sum += c;
    }
    s_part[tid] = sum;
    __syncthreads();
    if (tid < DFM_WARP) { /* warp 0 scans the partial sums, 8 per lane */
        int v[DFM_SCAN_THREADS / DFM_WARP], own = 0;
#pragma unroll
        for (int i = 0; i < DFM_SCAN_THREADS / DFM_WARP; i++) {
            v[i] = s_part[tid * (DFM_SCAN_THREADS / DFM_WARP) + i];
            own += v[i];
        }
        int incl = own;
#pragma unroll
        for (int o = 1; o < DFM_WARP; o <<= 1) {
            const int y = __shfl_up_sync(0xffffffffu, incl, o);
            if (tid >= o) incl += y;
        }
        int ex = incl - own;
#pragma unroll
        for (int i = 0; i < DFM_SCAN_THREADS / DFM_WARP; i++) {
            s_part[tid * (DFM_SCAN_THREADS / DFM_WARP) + i] = ex;
            ex += v[i];
        }
        if (tid == DFM_WARP - 1) scan[n] = incl;
    }
    __syncthreads();
    int acc = s_part[tid];
    for (int i = tid * per; i < n && i < (tid + 1) * per; i++) {
        const int c = scan[i];
        scan[i] = acc;
        acc += c;
    }
    __syncthreads();
}

/*
 * NT threads (idx = 0 .. NT-1 among them): act row phys (fp32) -> act_q row
 * phys (codes) and act_s[phys] (its scale): SPEC 3.1 step 5, the CPU
 * backend's arithmetic (amax over the row, dfm_quant_scale, dfm_code_store).
 * group_max(m) returns the max of m over the NT threads (every one of them
 * calls it once). dfm_requant_row is the warp's case, used by the pipeline's
 * requant kernel; the fused kernel spreads a row over its 256 consumer
 * threads (fused_requant_row).
 * The row is read in blocks of V4 float4 per thread (NT x 4 x V4 values),
 * every load of a block issued before any is used; a row of one block
 * (I <= 2048 with a warp and V4 = 16, or 256 threads and V4 = 2: DeepSeek-V3,
 * Qwen3) is quantized from registers, so a row costs one memory round trip
 * per block and pass instead of one per 128 values (the fused kernel's GEMM2
 * items wait for these rows).
 */
template <int V4, int NT>
static __device__ __forceinline__ void dfm_requant_load(const float *a, int b, int I, int idx, float4 (&v)[V4]) {
#pragma unroll
    for (int k = 0; k < V4; k++) {
        const int i = b + (k * NT + idx) * 4;
        v[k] = i < I ? *(const float4 *)(a + i) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
}

template <int V4, int NT, class GROUP_MAX>
static __device__ __forceinline__ void dfm_requant_row_by(const dfm_cuda_world_t *w, size_t phys, dfm_quant_t q,
                                                          int idx, GROUP_MAX group_max) {
    const int I = w->inter;
    const int blk = NT * 4 * V4;
    const float *a = w->act + phys * I;
    float4 v[V4];
    float amax = 0.0f;
    if (q != DFM_QUANT_BF16) { /* BF16 codes need no scale (1): no amax, no group_max */
        for (int b = 0; b < I; b += blk) {
            dfm_requant_load<V4, NT>(a, b, I, idx, v);
#pragma unroll
            for (int k = 0; k < V4; k++) /* padding reads 0: no effect on the max */
                amax = fmaxf(amax, fmaxf(fmaxf(fabsf(v[k].x), fabsf(v[k].y)), fmaxf(fabsf(v[k].z), fabsf(v[k].w))));
        }
        amax = group_max(amax);
    }
    const float s = dfm_quant_scale(amax, q);
    for (int b = 0; b < I; b += blk) {
        if (I > blk || q == DFM_QUANT_BF16) /* else the row is still in v */
            dfm_requant_load<V4, NT>(a, b, I, idx, v);
#pragma unroll
        for (int k = 0; k < V4; k++) {
            const int i = b + (k * NT + idx) * 4;
            if (i >= I) continue;
            if (q == DFM_QUANT_BF16) {
                const uint32_t c0 = dfm_dev_f32_to_bf16(v[k].x), c1 = dfm_dev_f32_to_bf16(v[k].y);
                const uint32_t c2 = dfm_dev_f32_to_bf16(v[k].z), c3 = dfm_dev_f32_to_bf16(v[k].w);
                *(uint2 *)((uint16_t *)w->act_q + phys * I + i) = make_uint2(c0 | (c1 << 16), c2 | (c3 << 16));
            } else {
                uint8_t c[4];
                dfm_code_store(c, 0, v[k].x, s, q);
                dfm_code_store(c, 1, v[k].y, s, q);
                dfm_code_store(c, 2, v[k].z, s, q);
                dfm_code_store(c, 3, v[k].w, s, q);
                *(uint32_t *)((uint8_t *)w->act_q + phys * I + i) =
                    c[0] | ((uint32_t)c[1] << 8) | ((uint32_t)c[2] << 16) | ((uint32_t)c[3] << 24);
            }
        }
    }
    if (idx == 0) w->act_s[phys] = s;
}

/* One warp a row (V4 = 16: 2048 values a round trip). */
template <int V4 = 16>
static __device__ void dfm_requant_row(const dfm_cuda_world_t *w, size_t phys, dfm_quant_t q) {
    dfm_requant_row_by<V4, DFM_WARP>(w, phys, q, threadIdx.x & (DFM_WARP - 1),
                                     [](float m) { return dfm_warp_max(m); });
}

#endif /* DFM_DEVICE_COMMON_CUH */
