/*
 * gemm.cu - the expert phase of the CUDA backend's fused path (SPEC 3.2):
 * grouped GEMM1 with dequantization and SwiGLU in its epilogue, per-token
 * requantization of the activation, grouped GEMM2 with dequantization to
 * bf16 whose epilogue stores each result straight into the home rank's
 * combine slot through its LSA pointer.
 *
 * Two GEMM implementations:
 *   - the default: swap-AB wgmma + TMA persistent grouped GEMM of
 *     gemm_wgmma.cuh (QGMMA/IGMMA/HGMMA, weights streamed once per token
 *     pass of up to 128 rows per expert), version 3 (ring sized from the
 *     launch's widest item, few large A boxes); DFM_CUDA_GEMM=v2 selects
 *     version 2 (fixed 5-stage ring, 8-row A boxes). Tensor maps are cached
 *     per host thread, keyed by base pointer, shape, stride and box;
 *   - the fallback: mma.sync (m16n8k32 e4m3/s8, m16n8k16 bf16) with a
 *     3-stage cp.async pipeline (issue 3's kernel), used when a tensor map
 *     cannot be built (driver entry point missing) or when
 *     DFM_CUDA_GEMM=mma is set in the environment. Both need 16-byte aligned
 *     weights; src/api.c refuses others before launch.
 * FP8 on the wgmma kernels: by default GEMM1's codes are widened to f16 and
 * multiplied on HGMMA with fp32 accumulation (exact products, fp32 sums, so
 * the requantized act matches the CPU backend's), GEMM2 runs QGMMA promoted
 * every 128 values of K; DFM_CUDA_FP8_PROMOTE=32 or 128 at context creation
 * puts both on QGMMA with partial sums promoted into fp32 after every wgmma
 * k32 or every 128 values of K (WG_FP8_PROMOTE sets the default at build time). The mma.sync fallback always promotes every 128;
 * fused.cu's kernel takes WG_FP8_PROMOTE. INT8 accumulates exactly in int32.
 */
#include <atomic>
#include <cstdio>
#include <cstdlib>

#include "device_common.cuh"
#include "gemm_wgmma.cuh"

#include <stdlib.h>

static_assert(DFM_QUANT_FP8 == DFM_QUANT_FP8_ID && DFM_QUANT_INT8 == DFM_QUANT_INT8_ID &&
                  DFM_QUANT_BF16 == DFM_QUANT_BF16_ID,
              "gemm_wgmma.cuh mode ids");

#define GEMM_BM 64      /* rows (tokens) per tile */
#define GEMM_BN 128     /* output channels per tile: one permuted gate/up tile */
#define GEMM_BK 128     /* bytes of K per stage: 128 fp8/int8 or 64 bf16 values */
#define GEMM_STAGES 3
#define GEMM_THREADS 256 /* 8 warps: 2 along M (32 rows) x 4 along N */
#define GEMM_LDS (GEMM_BK + 16) /* padded shared row: ldmatrix without bank conflicts */
#define GEMM_STAGE_BYTES ((GEMM_BM + GEMM_BN) * GEMM_LDS)
#define GEMM_SMEM_BYTES (GEMM_STAGES * GEMM_STAGE_BYTES)
#define GEMM_MAX_Y 4096 /* CTAs along the (expert, m-tile) axis; they stride */

/* ---- PTX wrappers ------------------------------------------------------------ */

static __device__ __forceinline__ void cp_async16(void *smem, const void *gmem, int src_bytes) {
    const unsigned int s = (unsigned int)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(s), "l"(gmem),
                 "r"(src_bytes)
                 : "memory");
}
static __device__ __forceinline__ void cp_async_commit(void) {
    asm volatile("cp.async.commit_group;" ::: "memory");
}
template <int N> static __device__ __forceinline__ void cp_async_wait(void) {
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

static __device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void *smem) {
    const unsigned int s = (unsigned int)__cvta_generic_to_shared(smem);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s));
}

/* One 16x8 tile times 32 bytes of K: e4m3 (k32, f32 acc), s8 (k32, s32 acc),
 * bf16 (k16, f32 acc). The fragments have the same byte layout in all three. */
static __device__ __forceinline__ void mma_fp8(float d[4], const uint32_t a[4], const uint32_t b[2]) {
    asm volatile("mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
static __device__ __forceinline__ void mma_s8(int d[4], const uint32_t a[4], const uint32_t b[2]) {
    asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
static __device__ __forceinline__ void mma_bf16(float d[4], const uint32_t a[4], const uint32_t b[2]) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

/* Stage kt of a tile: 64 A rows (gathered by phys row, zero past the rows
 * and past K) and 128 B rows of 128 bytes, one 16-byte cp.async each. */
static __device__ __forceinline__ void gemm_load_stage(unsigned char *smem, int kt,
                                                       const int *s_phys, const char *a_base,
                                                       size_t a_row_bytes, const char *b_base,
                                                       int k_bytes) {
    unsigned char *sA = smem + (kt % GEMM_STAGES) * GEMM_STAGE_BYTES;
    unsigned char *sB = sA + GEMM_BM * GEMM_LDS;
    const int kb0 = kt * GEMM_BK;
    for (int c = threadIdx.x; c < (GEMM_BM + GEMM_BN) * (GEMM_BK / 16); c += GEMM_THREADS) {
        const int r = c / (GEMM_BK / 16), kb = kb0 + (c % (GEMM_BK / 16)) * 16;
        const char *src;
        unsigned char *dst;
        int ok;
        if (r < GEMM_BM) {
            const int phys = s_phys[r];
            ok = phys >= 0 && kb < k_bytes;
            src = ok ? a_base + (size_t)phys * a_row_bytes + kb : a_base;
            dst = sA + r * GEMM_LDS + (kb - kb0);
        } else {
            const int n = r - GEMM_BM;
            ok = kb < k_bytes;
            src = ok ? b_base + (size_t)n * k_bytes + kb : b_base;
            dst = sB + n * GEMM_LDS + (kb - kb0);
        }
        cp_async16(dst, src, ok ? 16 : 0);
    }
}

/* ---- the grouped GEMM ------------------------------------------------------------
 *
 * PHASE 1 (GEMM1): A = receive slots recv_rows[half][phys] (H codes, scale
 *   recv_scale), B = w1 [G][2I][H] codes (K-contiguous, permuted gate/up),
 *   N = 2I. Tile n covers permuted channels n*128 .. n*128+127: gate
 *   channels n*64+c in the first 64, the matching up channels in the next
 *   64. Epilogue: h = (acc * s_a) * s1, act = silu(gate) * up in fp32,
 *   stored to act [phys][I] at n*64 + c (BF16 mode: requant rounds it to
 *   bf16 once, which is SPEC 3.2 step 4 and 5 together).
 * PHASE 2 (GEMM2): A = act_q [phys][I] codes (scale act_s), B = w2 [G][H][I],
 *   N = H. Epilogue: y = bf16((acc * s_b) * s2), stored to the home rank src
 *   of the row: combine_rows[half][t][k] (t, k from recv_meta).
 * phys = dfm_recv_row(g, src, j). A tile of expert g covers packed rows
 *   m0 .. m0+63 (ordered by src, then j; row_begin/row_count of the call).
 * Roles: grid.x = N / 128 tiles; grid.y strides over (expert, m-tile) pairs,
 *   skipping empty ones. 8 warps: warp (wm, wn) computes rows wm*32..+31 and
 *   four n8 fragments: PHASE 1 gate wn*16..+15 and up 64+wn*16..+15 (so a
 *   thread holds the gate and up values of the same channel), PHASE 2
 *   wn*32..+31. Shared memory: GEMM_STAGES x (64 A rows + 128 B rows) x 144 B.
 */
template <int MODE, int PHASE>
static __global__ void __launch_bounds__(GEMM_THREADS)
    expert_gemm_kernel(const __grid_constant__ dfm_cuda_world_t w,
                       const __grid_constant__ dfm_cuda_op_t op) {
    extern __shared__ __align__(128) unsigned char smem[];
    __shared__ int s_phys[GEMM_BM];
    __shared__ float s_ascale[GEMM_BM];
    __shared__ char *s_dst[GEMM_BM];

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp & 1, wn = warp >> 1;
    const int R = w.num_ranks, G = w.num_local_experts, M = w.num_max;
    const int H = w.hidden, I = w.inter;
    const unsigned long long seq = w.st->cur_seq;
    const int half = dfm_seq_half(seq);
    const char *local = w.peer[w.rank];
    const int cb = MODE == DFM_QUANT_BF16 ? 2 : 1;

    const int N = PHASE == 1 ? 2 * I : H;
    const int k_bytes = (PHASE == 1 ? H : I) * cb;
    const char *a_base = PHASE == 1 ? local + dfm_off_recv_rows(&w.L, half, 0)
                                    : (const char *)w.act_q;
    const size_t a_row_bytes = PHASE == 1 ? w.L.row_bytes : (size_t)I * cb;
    const float *a_scale = PHASE == 1 ? (const float *)(local + dfm_off_recv_scale(&w.L, half, 0))
                                      : w.act_s;
    const char *b_all = (const char *)(PHASE == 1 ? op.w1 : op.w2);
    const float *b_scale = PHASE == 1 ? op.w1_scale : op.w2_scale;
    const int n_tile = blockIdx.x;
    const int mtiles = (R * M + GEMM_BM - 1) / GEMM_BM;
    const int nk = (k_bytes + GEMM_BK - 1) / GEMM_BK;
    /* B rows of the two 16-row ldmatrix groups of this warp */
    const int nb0 = PHASE == 1 ? wn * 16 : wn * 32;
    const int nb1 = PHASE == 1 ? 64 + wn * 16 : wn * 32 + 16;

    for (int work = blockIdx.y; work < G * mtiles; work += gridDim.y) {
        const int g = work / mtiles, m0 = (work % mtiles) * GEMM_BM;
        const int total = w.row_total[g];
        if (m0 >= total) continue;
        const char *b_base = b_all + ((size_t)g * N + (size_t)n_tile * GEMM_BN) * k_bytes;

        __syncthreads(); /* the previous tile's epilogue is done with s_* */
        if (tid < GEMM_BM) {
            const int pr = m0 + tid;
            int phys = -1;
            char *dst = NULL;
            if (pr < total)
                for (int src = 0; src < R; src++) {
                    const int b = w.row_begin[g * R + src], c = w.row_count[g * R + src];
                    if (pr >= b && pr < b + c) {
                        phys = (int)dfm_recv_row(&w.L, g, src, pr - b);
                        if (PHASE == 2) {
                            int meta = *(const int32_t *)(local + dfm_off_recv_meta(&w.L, half, (size_t)phys));
                            int t = meta / w.max_topk, k = meta % w.max_topk;
                            t = t < 0 ? 0 : (t >= M ? M - 1 : t);
                            k = k < 0 ? 0 : k;
                            dst = w.peer[src] + dfm_off_combine_row(&w.L, half, t, k);
                        }
                        break;
                    }
                }
            s_phys[tid] = phys;
            s_ascale[tid] = phys >= 0 ? a_scale[phys] : 0.0f;
            s_dst[tid] = dst;
        }
        __syncthreads();

        float accf[2][4][4];
        int acci[2][4][4];
#pragma unroll
        for (int mi = 0; mi < 2; mi++)
#pragma unroll
            for (int nj = 0; nj < 4; nj++)
#pragma unroll
                for (int c = 0; c < 4; c++) {
                    accf[mi][nj][c] = 0.0f;
                    acci[mi][nj][c] = 0;
                }

#pragma unroll
        for (int s = 0; s < GEMM_STAGES - 1; s++) {
            if (s < nk) gemm_load_stage(smem, s, s_phys, a_base, a_row_bytes, b_base, k_bytes);
            cp_async_commit();
        }
        for (int kt = 0; kt < nk; kt++) {
            cp_async_wait<GEMM_STAGES - 2>();
            __syncthreads();
            if (kt + GEMM_STAGES - 1 < nk)
                gemm_load_stage(smem, kt + GEMM_STAGES - 1, s_phys, a_base, a_row_bytes, b_base,
                                k_bytes);
            cp_async_commit();

            const unsigned char *sA = smem + (kt % GEMM_STAGES) * GEMM_STAGE_BYTES;
            const unsigned char *sB = sA + GEMM_BM * GEMM_LDS;
            float part[2][4][4]; /* FP8: this stage's 128 values of K */
#pragma unroll
            for (int mi = 0; mi < 2; mi++)
#pragma unroll
                for (int nj = 0; nj < 4; nj++)
#pragma unroll
                    for (int c = 0; c < 4; c++) part[mi][nj][c] = 0.0f;
            const int mat = lane >> 3, r8 = lane & 7;
#pragma unroll
            for (int kc = 0; kc < GEMM_BK / 32; kc++) {
                uint32_t af[2][4], bfr[4][2], d[4];
#pragma unroll
                for (int mi = 0; mi < 2; mi++)
                    ldmatrix_x4(af[mi], sA + (wm * 32 + mi * 16 + r8 + (mat & 1) * 8) * GEMM_LDS +
                                            kc * 32 + (mat >> 1) * 16);
                ldmatrix_x4(d, sB + (nb0 + r8 + (mat >> 1) * 8) * GEMM_LDS + kc * 32 + (mat & 1) * 16);
                bfr[0][0] = d[0]; bfr[0][1] = d[1]; bfr[1][0] = d[2]; bfr[1][1] = d[3];
                ldmatrix_x4(d, sB + (nb1 + r8 + (mat >> 1) * 8) * GEMM_LDS + kc * 32 + (mat & 1) * 16);
                bfr[2][0] = d[0]; bfr[2][1] = d[1]; bfr[3][0] = d[2]; bfr[3][1] = d[3];
#pragma unroll
                for (int mi = 0; mi < 2; mi++)
#pragma unroll
                    for (int nj = 0; nj < 4; nj++) {
                        if (MODE == DFM_QUANT_FP8) mma_fp8(part[mi][nj], af[mi], bfr[nj]);
                        else if (MODE == DFM_QUANT_INT8) mma_s8(acci[mi][nj], af[mi], bfr[nj]);
                        else mma_bf16(accf[mi][nj], af[mi], bfr[nj]);
                    }
            }
            if (MODE == DFM_QUANT_FP8) {
#pragma unroll
                for (int mi = 0; mi < 2; mi++)
#pragma unroll
                    for (int nj = 0; nj < 4; nj++)
#pragma unroll
                        for (int c = 0; c < 4; c++) accf[mi][nj][c] += part[mi][nj][c];
            }
        }
        cp_async_wait<0>();
        if (MODE == DFM_QUANT_INT8) {
#pragma unroll
            for (int mi = 0; mi < 2; mi++)
#pragma unroll
                for (int nj = 0; nj < 4; nj++)
#pragma unroll
                    for (int c = 0; c < 4; c++) accf[mi][nj][c] = (float)acci[mi][nj][c];
        }

        /* Epilogue: c0,c1 of a fragment are row lane/4, columns (lane%4)*2 +
         * {0,1}; c2,c3 the same columns of row lane/4 + 8. */
#pragma unroll
        for (int mi = 0; mi < 2; mi++)
#pragma unroll
            for (int hr = 0; hr < 2; hr++) {
                const int lr = wm * 32 + mi * 16 + (lane >> 2) + hr * 8;
                const int phys = s_phys[lr];
                if (phys < 0) continue;
                const float sa = s_ascale[lr];
                if (PHASE == 1) {
#pragma unroll
                    for (int nj = 0; nj < 2; nj++) {
                        const int c = wn * 16 + nj * 8 + (lane & 3) * 2; /* 0..63 */
                        const size_t pg = (size_t)g * N + (size_t)n_tile * GEMM_BN + c;
                        float out[2];
#pragma unroll
                        for (int q = 0; q < 2; q++) {
                            const float s1g = b_scale ? b_scale[pg + q] : 1.0f;
                            const float s1u = b_scale ? b_scale[pg + 64 + q] : 1.0f;
                            const float hg = __fmul_rn(__fmul_rn(accf[mi][nj][hr * 2 + q], sa), s1g);
                            const float hu = __fmul_rn(__fmul_rn(accf[mi][nj + 2][hr * 2 + q], sa), s1u);
                            float a = __fmul_rn(hg / (1.0f + expf(-hg)), hu);
                            out[q] = a;
                        }
                        *(float2 *)(w.act + (size_t)phys * I + (size_t)n_tile * 64 + c) =
                            make_float2(out[0], out[1]);
                    }
                } else {
                    uint16_t *dst = (uint16_t *)s_dst[lr];
#pragma unroll
                    for (int nj = 0; nj < 4; nj++) {
                        const int col = n_tile * GEMM_BN + wn * 32 + nj * 8 + (lane & 3) * 2;
                        const size_t ps = (size_t)g * H + col;
                        const float s20 = b_scale ? b_scale[ps] : 1.0f;
                        const float s21 = b_scale ? b_scale[ps + 1] : 1.0f;
                        const uint32_t y0 = dfm_dev_f32_to_bf16(__fmul_rn(__fmul_rn(accf[mi][nj][hr * 2], sa), s20));
                        const uint32_t y1 = dfm_dev_f32_to_bf16(__fmul_rn(__fmul_rn(accf[mi][nj][hr * 2 + 1], sa), s21));
                        *(uint32_t *)(dst + col) = y0 | (y1 << 16);
                    }
                }
            }
    }
}

/* ---- requantization ------------------------------------------------------------
 *
 * Reads  act [phys][I] f32, row_count of the call.
 * Writes act_q [phys][I] codes and act_s [phys] (SPEC 3.1 per token over the
 *        I values; BF16: the bf16 values, scale 1).
 * Roles: CTA (g*R + src, y); warp w quantizes rows j = y*8 + w (stride
 * gridDim.y*8): amax by warp reduction, then 4 codes per lane per step.
 */
#define REQUANT_THREADS 256
#define REQUANT_SPLIT 8

template <int Q>
static __global__ void __launch_bounds__(REQUANT_THREADS)
    requant_kernel(const __grid_constant__ dfm_cuda_world_t w) {
    const int R = w.num_ranks;
    const int g = blockIdx.x / R, src = blockIdx.x % R;
    const int warp = threadIdx.x >> 5;
    const dfm_quant_t q = (dfm_quant_t)Q;
    const int count = w.row_count[g * R + src];
    const int warps = REQUANT_THREADS / DFM_WARP;
    for (int j = blockIdx.y * warps + warp; j < count; j += gridDim.y * warps)
        dfm_requant_row(&w, dfm_recv_row(&w.L, g, src, j), q);
}

/*
 * GEMM1's FP8 tokens widened to f16 once for version 5 (world.tok16): row
 * (g, src, j) of the current half's receive slots -> tok16[phys] in the K
 * order of wg_tok16_k (that of wg_fp8_widen_tokens); TMA then loads each
 * 64-element half as a 128-byte box and swizzles it as the software did.
 * Roles: CTA (g * R + src, y); rows j = y, y + gridDim.y, ...; a thread two
 * f16 (one cvt.f16x2.e4m3x2) per step.
 */
#define WIDEN_THREADS 256
#define WIDEN_SPLIT 16
static __global__ void __launch_bounds__(WIDEN_THREADS) widen_kernel(const __grid_constant__ dfm_cuda_world_t w) {
    const int R = w.num_ranks, H = w.hidden;
    const int g = blockIdx.x / R, src = blockIdx.x % R;
    const int count = w.row_count[g * R + src];
    const int half = dfm_seq_half(w.st->cur_seq);
    const char *local = w.peer[w.rank];
    for (int j = blockIdx.y; j < count; j += gridDim.y) {
        const size_t phys = (size_t)(g * R + src) * w.num_max + j;
        const uint8_t *in = (const uint8_t *)(local + dfm_off_recv_rows(&w.L, half, phys));
        uint32_t *out = (uint32_t *)(w.tok16 + phys * H);
        for (int o = 2 * (int)threadIdx.x; o < H; o += 2 * WIDEN_THREADS) {
            const int k = wg_tok16_k(o); /* and k + 1 */
            const uint32_t two = (uint32_t)in[k] | (uint32_t)in[k + 1] << 8;
            out[o >> 1] = wg_e4m3x2_to_f16x2(two);
        }
    }
}

/* ---- launchers and entries --------------------------------------------------- */

static const void *gemm_kernel(int quant, int phase) {
    if (quant == DFM_QUANT_FP8)
        return phase == 1 ? (const void *)expert_gemm_kernel<DFM_QUANT_FP8, 1>
                          : (const void *)expert_gemm_kernel<DFM_QUANT_FP8, 2>;
    if (quant == DFM_QUANT_INT8)
        return phase == 1 ? (const void *)expert_gemm_kernel<DFM_QUANT_INT8, 1>
                          : (const void *)expert_gemm_kernel<DFM_QUANT_INT8, 2>;
    return phase == 1 ? (const void *)expert_gemm_kernel<DFM_QUANT_BF16, 1>
                      : (const void *)expert_gemm_kernel<DFM_QUANT_BF16, 2>;
}

/* ---- the wgmma path ---------------------------------------------------------- */

/* GEMM2's destination of row (g, src, j): the home rank's combine slot of
 * its (token, slot), read from recv_meta (clamped like the fallback does). */
struct combine_out_t {
    dfm_cuda_world_t w;
    __device__ uint16_t *row(int g, int src, int j, long long phys, int half) const {
        const char *local = w.peer[w.rank];
        const int meta = *(const int32_t *)(local + dfm_off_recv_meta(&w.L, half, (size_t)phys));
        int t = meta / w.max_topk, k = meta % w.max_topk;
        t = t < 0 ? 0 : (t >= w.num_max ? w.num_max - 1 : t);
        k = k < 0 ? 0 : k;
        return (uint16_t *)(w.peer[src] + dfm_off_combine_row(&w.L, half, t, k));
    }
};

/* PROMOTE: FP8's promotion interval (INT8 and BF16 have one kernel each). */
template <int VER, int PROMOTE> static const void *wg_kernel_v(int quant, int phase) {
    if (quant == DFM_QUANT_FP8)
        return phase == 1 ? (const void *)wg_gemm_kernel<DFM_QUANT_FP8, 1, VER, combine_out_t, PROMOTE>
                          : (const void *)wg_gemm_kernel<DFM_QUANT_FP8, 2, VER, combine_out_t, PROMOTE>;
    if (quant == DFM_QUANT_INT8)
        return phase == 1 ? (const void *)wg_gemm_kernel<DFM_QUANT_INT8, 1, VER, combine_out_t>
                          : (const void *)wg_gemm_kernel<DFM_QUANT_INT8, 2, VER, combine_out_t>;
    return phase == 1 ? (const void *)wg_gemm_kernel<DFM_QUANT_BF16, 1, VER, combine_out_t>
                      : (const void *)wg_gemm_kernel<DFM_QUANT_BF16, 2, VER, combine_out_t>;
}
/* promote 1 (f16 tensor cores) has version 3, and version 5 for FP8 GEMM1
 * with the tokens widened before the launch (world.tok16); wg_launch asks. */
static const void *wg_kernel(int quant, int phase, int ver, int promote) {
    if (promote == 1 && ver == 5 && quant == DFM_QUANT_FP8 && phase == 1)
        return (const void *)wg_gemm_kernel<DFM_QUANT_FP8, 1, 5, combine_out_t, 1>;
    if (promote == 1) return wg_kernel_v<3, 1>(quant, phase);
    if (promote == 32)
        return ver == 2 ? wg_kernel_v<2, 32>(quant, phase) : wg_kernel_v<3, 32>(quant, phase);
    return ver == 2 ? wg_kernel_v<2, 128>(quant, phase) : wg_kernel_v<3, 128>(quant, phase);
}
static const int wg_promotes[3] = {128, 32, 1}; /* index pi of wg_smem3 */
static int wg_promote_index(int promote) { return promote == 32 ? 1 : promote == 1 ? 2 : 0; }

static int wg_num_sms;
static int wg_disabled; /* DFM_CUDA_GEMM=mma */
static int wg_version;  /* 3, or 2 with DFM_CUDA_GEMM=v2 */
static int wg_promote;  /* FP8 promotion interval of the wgmma kernels: 1, 32 or 128 */
static int wg_smem3[DFM_NUM_QUANT][2][3]; /* version 3's dynamic shared memory [q][phase][promote index] */
static int wg_smem5;                      /* version 5's (FP8 GEMM1, f16 tokens) */
/* W loads with the L2 evict_first policy (DFM_CUDA_W_EVICT_FIRST=0: normal) */
static int wg_evict_first;
/* Version 5 from wg_tok16_rows expected rows per local expert (gemm_wgmma.cuh's
 * WG_TOK16_ROWS or DFM_CUDA_TOK16_ROWS); -1: never (DFM_CUDA_TOK16=0). */
static int wg_tok16_rows = WG_TOK16_ROWS;

int dfm_cuda_env_int(const char *name, int def, int lo, int hi) {
    const char *e = getenv(name);
    if (!e || !*e) return def;
    char *end = NULL;
    const long v = strtol(e, &end, 10);
    if (*end || v < lo || v > hi) {
        fprintf(stderr, "dfm: %s=%s is not an integer in [%d, %d]; using %d\n", name, e, lo, hi, def);
        return def;
    }
    return (int)v;
}
int dfm_cuda_w_evict_first(void) { return wg_evict_first; }

/* GEMM2's output is not requantized: it keeps QGMMA (128) when GEMM1 runs f16 (1). */
static int wg_phase_promote(int phase) { return phase == 2 && wg_promote == 1 ? 128 : wg_promote; }

cudaError_t dfm_cuda_experts_init(void) {
    const char *e = getenv("DFM_CUDA_GEMM");
    wg_disabled = e && !strcmp(e, "mma");
    wg_version = e && !strcmp(e, "v2") ? 2 : 3;
    wg_evict_first = dfm_cuda_env_int("DFM_CUDA_W_EVICT_FIRST", 1, 0, 1);
    wg_tok16_rows = dfm_cuda_tok16_rows();
    const char *pe = getenv("DFM_CUDA_FP8_PROMOTE");
    wg_promote = WG_FP8_PROMOTE;
    if (pe && *pe) {
        if (!strcmp(pe, "32")) wg_promote = 32;
        else if (!strcmp(pe, "128")) wg_promote = 128;
        else if (!strcmp(pe, "1")) wg_promote = 1;
        else {
            static std::atomic<int> warned;
            if (!warned.exchange(1))
                fprintf(stderr, "dfm: DFM_CUDA_FP8_PROMOTE=%s is not 1, 32 or 128; using %d\n", pe,
                        WG_FP8_PROMOTE);
        }
    }
    for (int q = 0; q < DFM_NUM_QUANT; q++)
        for (int phase = 1; phase <= 2; phase++) {
            cudaError_t err = cudaFuncSetAttribute(gemm_kernel(q, phase),
                                                   cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                   GEMM_SMEM_BYTES);
            if (err != cudaSuccess) return err;
            for (int pi = 0; pi < 3; pi++) {
                const int promote = wg_promotes[pi];
                if (pi && q != DFM_QUANT_FP8) { /* the same kernel as promote 128 */
                    wg_smem3[q][phase - 1][pi] = wg_smem3[q][phase - 1][0];
                    continue;
                }
                if (promote != 1) {
                    err = cudaFuncSetAttribute(wg_kernel(q, phase, 2, promote),
                                               cudaFuncAttributeMaxDynamicSharedMemorySize, WG_SMEM_BYTES);
                    if (err != cudaSuccess) return err;
                }
                const int sm3 = wg_v3_smem(wg_kernel(q, phase, 3, promote));
                wg_smem3[q][phase - 1][pi] = sm3;
                if (sm3 <= 0) return cudaErrorInvalidValue;
                err = cudaFuncSetAttribute(wg_kernel(q, phase, 3, promote),
                                           cudaFuncAttributeMaxDynamicSharedMemorySize, sm3);
                if (err != cudaSuccess) return err;
            }
        }
    wg_smem5 = wg_v3_smem(wg_kernel(DFM_QUANT_FP8, 1, 5, 1));
    if (wg_smem5 <= 0) return cudaErrorInvalidValue;
    cudaError_t err = cudaFuncSetAttribute(wg_kernel(DFM_QUANT_FP8, 1, 5, 1),
                                           cudaFuncAttributeMaxDynamicSharedMemorySize, wg_smem5);
    if (err != cudaSuccess) return err;
    int dev = 0;
    err = cudaGetDevice(&dev);
    if (err == cudaSuccess)
        err = cudaDeviceGetAttribute(&wg_num_sms, cudaDevAttrMultiProcessorCount, dev);
    return err;
}

int dfm_cuda_tok16_rows(void) {
    return dfm_cuda_env_int("DFM_CUDA_TOK16", 1, 0, 1) ? dfm_cuda_env_int("DFM_CUDA_TOK16_ROWS", WG_TOK16_ROWS, 0, 1 << 20)
                                                       : -1;
}

/* Whether this call's FP8 GEMM1 takes its tokens widened once (version 5):
 * the f16 copy allocated, and this rank's tokens expected to give each local
 * expert at least wg_tok16_rows rows (every rank sends about as many). The
 * fused kernel asks too (its GEMM1 is always on f16 tensor cores). */
int dfm_cuda_tok16_call(const dfm_cuda_world_t *w, const dfm_cuda_op_t *op) {
    return w->tok16 != NULL && op->quant == DFM_QUANT_FP8 && wg_tok16_rows >= 0 &&
           (long long)op->num_tokens * op->num_topk >= (long long)wg_tok16_rows * w->num_local_experts;
}
/* Version 5 for the pipeline's GEMM1: also FP8 on f16 tensor cores (PROMOTE 1), version 3. */
static int wg_tok16(const dfm_cuda_world_t *w, const dfm_cuda_op_t *op) {
    return dfm_cuda_tok16_call(w, op) && wg_phase_promote(1) == 1 && wg_version == 3;
}

/* Tensor maps, cached per host thread (each rank of -p threads is a thread):
 * a map is a pure function of (base, rows, k_bytes, stride, box rows), and is
 * copied into the launch's parameters, so reusing one is always safe. */
#define WG_MAP_CACHE 64
typedef struct {
    const void *base;
    long long rows;
    size_t stride;
    int k_bytes, box, used;
    CUtensorMap map;
} wg_map_ent_t;
static thread_local wg_map_ent_t wg_maps[WG_MAP_CACHE];
static thread_local int wg_maps_next;

static int wg_cached_map(CUtensorMap *m, const void *base, long long rows, int k_bytes, size_t stride,
                         int box) {
    for (int i = 0; i < WG_MAP_CACHE; i++) {
        const wg_map_ent_t *c = &wg_maps[i];
        if (c->used && c->base == base && c->rows == rows && c->stride == stride && c->k_bytes == k_bytes &&
            c->box == box) {
            *m = c->map;
            return 0;
        }
    }
    const int r = wg_make_map(m, base, rows, k_bytes, stride, box);
    if (r) return r;
    wg_map_ent_t *c = &wg_maps[wg_maps_next];
    wg_maps_next = (wg_maps_next + 1) % WG_MAP_CACHE;
    c->base = base; c->rows = rows; c->stride = stride; c->k_bytes = k_bytes; c->box = box; c->used = 1;
    c->map = *m;
    return 0;
}

/* W map (box 128 rows) and the A maps (1 << i-row boxes; version 2 uses
 * the 8-row one alone). */
static int wg_build_maps(CUtensorMap *tw, wg_amaps_t *ta, const void *w, long long w_rows, int w_k_bytes,
                         const void *a, long long a_rows, int a_k_bytes, size_t a_stride, int ver) {
    if (wg_cached_map(tw, w, w_rows, w_k_bytes, (size_t)w_k_bytes, 128)) return -1;
    for (int i = 0; i < WG_A_MAPS; i++) {
        if (ver == 2 && i != 3) continue;
        if (wg_cached_map(&ta->a[i], a, a_rows, a_k_bytes, a_stride, 1 << i)) return -1;
    }
    return 0;
}

/* dfm_launch's key for a wgmma GEMM launch: its argument bytes (tensor
 * maps, wg_gemm_args_t, the output's world) are a function of the world,
 * fixed for the context and so for its graph, and of these: the op's weight
 * and scale pointers, mode, phase, version, promotion and the W load
 * policy. A call with the same weights then skips the node's ~0.7 us
 * update. */
typedef struct {
    const void *w1, *w2, *w1_scale, *w2_scale;
    int quant, phase, ver, promote, evict_first;
} wg_key_t;

static wg_key_t wg_key(const dfm_cuda_op_t *op, int phase, int ver, int promote) {
    wg_key_t k;
    memset(&k, 0, sizeof k); /* padding compared too */
    k.w1 = op->w1;
    k.w2 = op->w2;
    k.w1_scale = op->w1_scale;
    k.w2_scale = op->w2_scale;
    k.quant = op->quant;
    k.phase = phase;
    k.ver = ver;
    k.promote = promote;
    k.evict_first = wg_evict_first;
    return k;
}

/* Launch one wgmma GEMM; returns cudaErrorNotSupported (nothing launched)
 * when a tensor map cannot be built, so the caller falls back. */
static cudaError_t wg_launch(const dfm_cuda_world_t *w, const dfm_cuda_op_t *op, int phase,
                             cudaStream_t stream) {
    const int G = w->num_local_experts, R = w->num_ranks, M = w->num_max;
    const int H = w->hidden, I = w->inter;
    const int cb = op->quant == DFM_QUANT_BF16 ? 2 : 1;
    const long long rows = (long long)G * R * M;
    const int promote = wg_phase_promote(phase);
    const int ver = phase == 1 && wg_tok16(w, op) ? 5 : op->quant == DFM_QUANT_FP8 && promote == 1 ? 3 : wg_version;
    char *local = w->peer[w->rank];
    CUtensorMap tw;
    wg_amaps_t ta;
    memset(&ta, 0, sizeof ta);
    wg_gemm_args_t a;
    memset(&a, 0, sizeof a);
    a.G = G; a.R = R; a.M = M;
    a.inter = I;
    a.row_count = w->row_count;
    a.w_evict_first = wg_evict_first;
    if (phase == 1) {
        a.n_out = 2 * I;
        a.k_bytes = H * cb;
        a.a_scale = (const float *)(local + dfm_off_recv_scale(&w->L, 0, 0));
        a.b_scale = op->w1_scale;
        a.cur_seq = &w->st->cur_seq;
        a.half_rows = rows;
        a.act = w->act;
        /* version 5: the tokens are the f16 copy (one half, 2 bytes a K element) */
        if (ver == 5 ? wg_build_maps(&tw, &ta, op->w1, (long long)G * 2 * I, H * cb, w->tok16, rows, H * 2,
                                     (size_t)H * 2, ver)
                     : wg_build_maps(&tw, &ta, op->w1, (long long)G * 2 * I, H * cb,
                                     local + dfm_off_recv_rows(&w->L, 0, 0), 2 * rows, H * cb, w->L.row_bytes, ver))
            return cudaErrorNotSupported;
    } else {
        a.n_out = H;
        a.k_bytes = I * cb;
        a.a_scale = w->act_s;
        a.b_scale = op->w2_scale;
        a.cur_seq = &w->st->cur_seq; /* the combine slots' half */
        a.half_rows = 0;              /* act_q has one half */
        if (wg_build_maps(&tw, &ta, op->w2, (long long)G * H, I * cb, w->act_q, rows, I * cb, (size_t)I * cb, ver))
            return cudaErrorNotSupported;
    }
    combine_out_t out;
    out.w = *w;
    void *args[] = {(void *)&tw, (void *)&ta, (void *)&a, (void *)&out};
    const int pi = wg_promote_index(promote);
    const size_t smem = ver == 2 ? WG_SMEM_BYTES : ver == 5 ? (size_t)wg_smem5 : (size_t)wg_smem3[op->quant][phase - 1][pi];
    const wg_key_t key = wg_key(op, phase, ver, promote);
    return dfm_launch((const void *)wg_kernel(op->quant, phase, ver, promote), dim3((unsigned)wg_num_sms),
                      dim3(WG_THREADS), args, smem, stream, 0, &key, sizeof key);
}

static int wg_usable(const dfm_cuda_world_t *w, const dfm_cuda_op_t *op) {
    return !wg_disabled && wg_num_sms > 0 && w->num_local_experts <= WG_MAX_G && w->num_ranks <= WG_PACK_MAX_R &&
           ((uintptr_t)op->w1 & 15) == 0 && ((uintptr_t)op->w2 & 15) == 0;
}

/* With DFM_DEBUG set, say once per phase and process which kernel ran. */
static void note_path(int phase, const char *path) {
    static std::atomic<int> said[3];
    if (getenv("DFM_DEBUG") && !said[phase].exchange(1))
        fprintf(stderr, "dfm: GEMM%d runs %s\n", phase, path);
}

static cudaError_t gemm_launch(const dfm_cuda_world_t *w, const dfm_cuda_op_t *op, int phase,
                               cudaStream_t stream) {
    if (wg_usable(w, op)) {
        cudaError_t err = wg_launch(w, op, phase, stream);
        if (err != cudaErrorNotSupported) {
            if (phase == 1 && wg_tok16(w, op))
                note_path(phase, "wgmma v5 (fp8 tokens widened to f16 before the launch, fp32 accumulation)");
            else if (op->quant == DFM_QUANT_FP8 && wg_phase_promote(phase) == 1)
                note_path(phase, "wgmma v3 (fp8 widened to f16, fp32 accumulation)");
            else if (op->quant == DFM_QUANT_FP8 && wg_phase_promote(phase) == 32)
                note_path(phase, wg_version == 2 ? "wgmma v2 (fp8 promote 32)" : "wgmma v3 (fp8 promote 32)");
            else
                note_path(phase, wg_version == 2 ? "wgmma v2" : "wgmma v3");
            return err;
        }
    }
    note_path(phase, "the mma.sync fallback");
    const int N = phase == 1 ? 2 * w->inter : w->hidden;
    const int mtiles = (w->num_ranks * w->num_max + GEMM_BM - 1) / GEMM_BM;
    int gy = w->num_local_experts * mtiles;
    if (gy > GEMM_MAX_Y) gy = GEMM_MAX_Y;
    const dim3 grid((unsigned)(N / GEMM_BN), (unsigned)gy);
    void *args[] = {(void *)w, (void *)op};
    return dfm_launch((const void *)gemm_kernel(op->quant, phase), grid, dim3(GEMM_THREADS), args,
                      GEMM_SMEM_BYTES, stream, 0);
}

static cudaError_t requant_launch(const dfm_cuda_world_t *w, const dfm_cuda_op_t *op,
                                  cudaStream_t stream) {
    const dim3 grid((unsigned)(w->num_local_experts * w->num_ranks), REQUANT_SPLIT);
    /* its only argument is the world: the same bytes every call of a mode,
     * so a cached graph's node keeps its parameters (an empty key) */
    void *args[] = {(void *)w};
    const void *k = op->quant == DFM_QUANT_FP8    ? (const void *)requant_kernel<DFM_QUANT_FP8>
                    : op->quant == DFM_QUANT_INT8 ? (const void *)requant_kernel<DFM_QUANT_INT8>
                                                  : (const void *)requant_kernel<DFM_QUANT_BF16>;
    return dfm_launch(k, grid, dim3(REQUANT_THREADS), args, 0, stream, 0, "", 0);
}

static cudaError_t widen_launch(const dfm_cuda_world_t *w, cudaStream_t stream) {
    const dim3 grid((unsigned)(w->num_local_experts * w->num_ranks), WIDEN_SPLIT);
    void *args[] = {(void *)w};
    return dfm_launch((const void *)widen_kernel, grid, dim3(WIDEN_THREADS), args, 0, stream, 0, "", 0);
}

cudaError_t dfm_cuda_experts(const dfm_cuda_world_t *w, const dfm_cuda_op_t *op,
                             cudaStream_t stream) {
    cudaError_t err = cudaSuccess;
    if (wg_usable(w, op) && wg_tok16(w, op)) err = widen_launch(w, stream);
    if (err == cudaSuccess) err = gemm_launch(w, op, 1, stream);
    if (err == cudaSuccess) err = requant_launch(w, op, stream);
    if (err == cudaSuccess) err = gemm_launch(w, op, 2, stream);
    return err;
}
