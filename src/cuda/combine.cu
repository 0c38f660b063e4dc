/*
 * combine.cu - the combine phase of the CUDA backend: (dfm_combine only)
 * the caller's expert outputs sent home into the combine slots, then the
 * flags (release, system scope), the bounded wait, and the weighted fp32
 * reduction of SPEC section 3 into out.
 *
 * In the fused path GEMM2's epilogue has already stored every result into
 * its home slot, so only signal/wait and reduce run. Folding the signal
 * into GEMM2 and reducing per token as its results arrive is later work.
 */
#include "device_common.cuh"

/* Sequence number of the call this combine finishes: a dfm_combine takes the
 * oldest outstanding dispatch; a fused call is the call in progress. */
static __device__ __forceinline__ unsigned long long combine_seq(const dfm_cuda_world_t *w,
                                                                 const dfm_cuda_op_t *op) {
    if (op->kind == DFM_CUDA_OP_COMBINE) return w->st->pend[w->st->pend_head & 1u];
    return w->st->cur_seq;
}

/* ---- send (dfm_combine only) ---------------------------------------------------
 *
 * Reads  y [G][R*M][H] bf16 (caller; row begin(g,src)+j is slot (g, src, j)),
 *        recv_counts[half] and recv_meta[half] of this rank's region (still
 *        intact: the half is reused only by the call after next).
 * Writes combine_rows[half][t][k] (H bf16) on rank src, (t, k) from meta.
 * Roles: CTA (g*R + src, y); warp w copies rows j = y*8 + w (stride
 * gridDim.y*8), 16 bytes per lane.
 */
#define CSEND_THREADS 256
#define CSEND_SPLIT 4

static __global__ void __launch_bounds__(CSEND_THREADS)
    combine_send_kernel(const __grid_constant__ dfm_cuda_world_t w,
                        const __grid_constant__ dfm_cuda_op_t op) {
    const int R = w.num_ranks, M = w.num_max, H = w.hidden;
    const int g = blockIdx.x / R, src = blockIdx.x % R;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const unsigned long long seq = combine_seq(&w, &op);
    const int half = dfm_seq_half(seq);
    const char *local = w.peer[w.rank];
    int begin = 0, count = 0;
    for (int s = 0; s <= src; s++) {
        int c = ((const int32_t *)(local + dfm_off_recv_counts(&w.L, half, s)))[g];
        c = c < 0 ? 0 : (c > M ? M : c);
        if (s < src) begin += c;
        else count = c;
    }
    const int warps = CSEND_THREADS / DFM_WARP;
    for (int j = blockIdx.y * warps + warp; j < count; j += gridDim.y * warps) {
        const size_t row = dfm_recv_row(&w.L, g, src, j);
        const int meta = *(const int32_t *)(local + dfm_off_recv_meta(&w.L, half, row));
        int t = meta / w.max_topk, k = meta % w.max_topk;
        t = t < 0 ? 0 : (t >= M ? M - 1 : t);
        k = k < 0 ? 0 : k;
        const uint4 *s = (const uint4 *)(op.y + ((size_t)g * R * M + (size_t)(begin + j)) * H);
        uint4 *d = (uint4 *)(w.peer[src] + dfm_off_combine_row(&w.L, half, t, k));
        for (int c = lane; c < H / 8; c += DFM_WARP) d[c] = s[c];
    }
}

/* ---- signal and wait -------------------------------------------------------------
 *
 * Writes combine_flag[half][me] = seq on every rank (release, system scope),
 *        after this rank's results for that rank are all stored (the previous
 *        kernel on the stream stored them).
 * Reads  combine_flag[half][src] of this rank's region for every src (bounded).
 * For a dfm_combine, pops the dispatch from the device FIFO and makes it the
 * call in progress for the reduce.
 * Roles: one CTA; thread r < R signals rank r and then waits for rank r.
 */
#define CWAIT_THREADS 32

static __global__ void __launch_bounds__(CWAIT_THREADS)
    combine_wait_kernel(const __grid_constant__ dfm_cuda_world_t w,
                        const __grid_constant__ dfm_cuda_op_t op) {
    const int tid = threadIdx.x, R = w.num_ranks;
    const unsigned long long seq = combine_seq(&w, &op);
    const int half = dfm_seq_half(seq);
    __syncthreads();
    if (tid == 0 && op.kind == DFM_CUDA_OP_COMBINE) {
        w.st->cur_seq = seq;
        w.st->pend_head++;
    }
    __threadfence_system();
    if (tid < R) {
        dfm_st_release_sys(w.peer[tid] + dfm_off_combine_flag(&w.L, half, w.rank), seq);
        dfm_wait_flag(&w, w.peer[w.rank] + dfm_off_combine_flag(&w.L, half, tid), seq, tid,
                      DFM_CUDA_WAIT_COMBINE);
    }
}

/* ---- reduce ------------------------------------------------------------------------
 *
 * Reads  topk_idx/topk_weights [T][K] (caller), combine_rows[half][t][*].
 * Writes out [T][H] bf16: out[t] = bf16( sum over k with a valid expert e of
 *        w[t,k] * y(first slot naming e) ), fp32, increasing k, products and
 *        sums rounded separately (no FMA contraction, as the CPU backend's C
 *        code); exact zeros for a token without a valid slot.
 * Roles: CTA t; thread 0 resolves each slot to its first slot (or -1); each
 * thread then reduces 8 columns per step with 16-byte loads.
 */
#define REDUCE_THREADS 256

static __global__ void __launch_bounds__(REDUCE_THREADS)
    combine_reduce_kernel(const __grid_constant__ dfm_cuda_world_t w,
                          const __grid_constant__ dfm_cuda_op_t op) {
    __shared__ int s_first[DFM_MAX_TOPK];
    __shared__ float s_w[DFM_MAX_TOPK];
    const int t = blockIdx.x, K = op.num_topk, H = w.hidden, E = w.num_experts;
    const int half = dfm_seq_half(w.st->cur_seq);
    if (threadIdx.x == 0) {
        const int64_t *ir = op.topk_idx + (size_t)t * K;
        for (int k = 0; k < K; k++) {
            const int64_t e = ir[k];
            int f = -1;
            if (e >= 0 && e < E)
                for (int j = 0; j <= k; j++)
                    if (ir[j] == e) {
                        f = j;
                        break;
                    }
            s_first[k] = f;
            s_w[k] = op.topk_weights[(size_t)t * K + k];
        }
    }
    __syncthreads();
    const char *local = w.peer[w.rank];
    for (int c = threadIdx.x * 8; c < H; c += REDUCE_THREADS * 8) {
        float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int k = 0; k < K; k++) {
            const int f = s_first[k];
            if (f < 0) continue;
            const float wk = s_w[k];
            const uint4 v = *(const uint4 *)(local + dfm_off_combine_row(&w.L, half, t, f) +
                                             (size_t)c * 2);
            const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
            for (int i = 0; i < 4; i++) {
                acc[2 * i] = __fadd_rn(acc[2 * i], __fmul_rn(wk, dfm_bf16_lo(u[i])));
                acc[2 * i + 1] = __fadd_rn(acc[2 * i + 1], __fmul_rn(wk, dfm_bf16_hi(u[i])));
            }
        }
        uint32_t o[4];
#pragma unroll
        for (int i = 0; i < 4; i++)
            o[i] = dfm_dev_f32_to_bf16(acc[2 * i]) |
                   (dfm_dev_f32_to_bf16(acc[2 * i + 1]) << 16);
        *(uint4 *)(op.out + (size_t)t * H + c) = make_uint4(o[0], o[1], o[2], o[3]);
    }
}

/* ---- launchers and entry ------------------------------------------------------------ */

static cudaError_t combine_send_launch(const dfm_cuda_world_t *w, const dfm_cuda_op_t *op,
                                       cudaStream_t stream) {
    const dim3 grid((unsigned)(w->num_local_experts * w->num_ranks), CSEND_SPLIT);
    combine_send_kernel<<<grid, CSEND_THREADS, 0, stream>>>(*w, *op);
    return cudaGetLastError();
}

static cudaError_t combine_wait_launch(const dfm_cuda_world_t *w, const dfm_cuda_op_t *op,
                                       cudaStream_t stream) {
    combine_wait_kernel<<<1, CWAIT_THREADS, 0, stream>>>(*w, *op);
    return cudaGetLastError();
}

static cudaError_t combine_reduce_launch(const dfm_cuda_world_t *w, const dfm_cuda_op_t *op,
                                         cudaStream_t stream) {
    if (op->num_tokens == 0) return cudaSuccess;
    combine_reduce_kernel<<<op->num_tokens, REDUCE_THREADS, 0, stream>>>(*w, *op);
    return cudaGetLastError();
}

cudaError_t dfm_cuda_combine(const dfm_cuda_world_t *w, const dfm_cuda_op_t *op,
                             cudaStream_t stream) {
    cudaError_t err = cudaSuccess;
    if (op->kind == DFM_CUDA_OP_COMBINE) err = combine_send_launch(w, op, stream);
    if (err == cudaSuccess) err = combine_wait_launch(w, op, stream);
    if (err == cudaSuccess) err = combine_reduce_launch(w, op, stream);
    return err;
}
