/*
 * combine.cu - the combine phase of the CUDA backend: (dfm_combine only)
 * the caller's expert outputs sent home into the combine slots, then the
 * flags (release, system scope), the bounded wait, and the weighted fp32
 * reduction of SPEC section 3 into out.
 *
 * One launch (combine_kernel). In the fused path GEMM2's epilogue (the
 * previous launch) has already stored every result into its home slot, so
 * every CTA raises the flags itself (the same value from each: no CTA waits
 * on another), waits, and reduces its share. For dfm_combine the CTAs send
 * the y rows, arrive on a counter, and the last one raises the flags. Folding
 * the signal into GEMM2 and reducing per token as its results arrive is
 * later work. The grid never exceeds the number of SMs; for dfm_combine
 * every CTA also waits for this rank's own flag, which the last CTA to
 * arrive raises, so that launch is cooperative (every CTA resident at once,
 * or the launch fails): waiting CTAs cannot keep the last sender off the
 * machine. The fused path's CTAs raise the flags themselves and need no
 * co-residency.
 *
 * After a timeout (SPEC 7) the kernel stores nothing more into peers: a
 * failed context sends no y rows and raises no flag.
 */
#include "device_common.cuh"

#define COMBINE_THREADS 256
#define COMBINE_WARPS (COMBINE_THREADS / DFM_WARP)
/* y rows: one warp copies CSEND_SEG 16-byte chunks of a row per unit. */
#define CSEND_SEG 64

/*
 * Reads  (dfm_combine) y [G][R*M][H] bf16 (caller; row begin(g,src)+j is slot
 *        (g, src, j)), recv_counts[half] and recv_meta[half] of this rank's
 *        region (still intact: the half is reused only by the call after
 *        next); topk_idx/topk_weights [T][K] (caller); combine_rows[half][t][*].
 * Writes (dfm_combine) combine_rows[half][t][k] (H bf16) on rank src, (t, k)
 *        from meta; combine_flag[half][me] = seq on every rank (release,
 *        system scope); for a dfm_combine pops the dispatch from the device
 *        FIFO (st->pend_head, st->cur_seq; last CTA);
 *        out [T][H] bf16: out[t] = bf16( sum over k with a valid expert e of
 *        w[t,k] * y(first slot naming e) ), fp32, increasing k, products and
 *        sums rounded separately (no FMA contraction, as the CPU backend's C
 *        code); exact zeros for a token without a valid slot.
 * Shared: the scan of the received counts [G*R + 1] (dfm_combine).
 * Roles: y rows: warp unit (row, CSEND_SEG chunks), 16 bytes per lane; wait:
 *        thread src < R; reduce: thread unit (t, 8 columns), 16-byte loads,
 *        flat over the grid.
 */
static __global__ void __launch_bounds__(COMBINE_THREADS)
    combine_kernel(const __grid_constant__ dfm_cuda_world_t w,
                   const __grid_constant__ dfm_cuda_op_t op) {
    extern __shared__ int s_scan[]; /* [G*R + 1] */
    __shared__ int s_last;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, R = w.num_ranks;
    const int H = w.hidden;
    volatile dfm_cuda_state_t *vst = w.st;
    /* A dfm_combine finishes the oldest outstanding dispatch; a fused call
     * the call in progress. */
    const unsigned long long seq =
        op.kind == DFM_CUDA_OP_COMBINE ? vst->pend[vst->pend_head & 1u] : vst->cur_seq;
    const int half = dfm_seq_half(seq);
    const char *local = w.peer[w.rank];

    if (op.kind == DFM_CUDA_OP_COMBINE) {
        const int G = w.num_local_experts, M = w.num_max, n = G * R;
        const int stop = dfm_block_failed(&w);
        dfm_recv_scan(&w, half, s_scan);
        const int chunks = H / 8, segs = (chunks + CSEND_SEG - 1) / CSEND_SEG;
        const long long units = stop ? 0 : (long long)s_scan[n] * segs;
        for (long long u = (long long)blockIdx.x * COMBINE_WARPS + warp; u < units;
             u += (long long)gridDim.x * COMBINE_WARPS) {
            const int r = (int)(u / segs), sg = (int)(u % segs);
            int lo = 0, hi = n - 1; /* last i with scan[i] <= r */
            while (lo < hi) {
                const int mid = (lo + hi + 1) >> 1;
                lo = s_scan[mid] <= r ? mid : lo;
                hi = s_scan[mid] <= r ? hi : mid - 1;
            }
            const int g = lo / R, src = lo % R, j = r - s_scan[lo];
            const size_t row = dfm_recv_row(&w.L, g, src, j);
            const int meta = *(const int32_t *)(local + dfm_off_recv_meta(&w.L, half, row));
            int t = meta / w.max_topk, k = meta % w.max_topk;
            t = t < 0 ? 0 : (t >= M ? M - 1 : t);
            k = k < 0 ? 0 : k;
            const uint4 *s =
                (const uint4 *)(op.y + ((size_t)g * R * M + (size_t)(r - s_scan[g * R])) * H);
            uint4 *d = (uint4 *)(w.peer[src] + dfm_off_combine_row(&w.L, half, t, k));
            const int c1 = min(chunks, (sg + 1) * CSEND_SEG);
            for (int c = sg * CSEND_SEG + lane; c < c1; c += DFM_WARP) d[c] = s[c];
        }
        /* Arrive; the last CTA pops the dispatch and raises the flags. */
        if (dfm_cta_arrive(&w.st->send_done, &s_last)) {
            const int quiet = dfm_block_failed(&w); /* local bookkeeping only */
            if (tid == 0) {
                w.st->cur_seq = seq;
                w.st->pend_head++;
                w.st->send_done = 0;
            }
            if (tid < R && !quiet)
                dfm_st_release_sys(w.peer[tid] + dfm_off_combine_flag(&w.L, half, w.rank), seq);
        }
    } else {
        const int quiet = dfm_block_failed(&w);
        if (tid < R && !quiet) {
            __threadfence_system();
            dfm_st_release_sys(w.peer[tid] + dfm_off_combine_flag(&w.L, half, w.rank), seq);
        }
    }

    if (tid < R)
        dfm_wait_flag(&w, local + dfm_off_combine_flag(&w.L, half, tid), seq, tid,
                      DFM_CUDA_WAIT_COMBINE);
    __syncthreads();

    dfm_combine_reduce(dfm_reduce_args(&w, &op, half), (long long)blockIdx.x * COMBINE_THREADS + tid,
                       (long long)gridDim.x * COMBINE_THREADS);
}

cudaError_t dfm_cuda_combine(const dfm_cuda_world_t *w, const dfm_cuda_op_t *op,
                             cudaStream_t stream) {
    const int sms = w->num_sms > 0 ? w->num_sms : 1;
    int grid = sms;
    if (op->kind != DFM_CUDA_OP_COMBINE) {
        const long long threads = (long long)op->num_tokens * (w->hidden / 8);
        const long long need = (threads + COMBINE_THREADS - 1) / COMBINE_THREADS;
        grid = need < 1 ? 1 : (need < sms ? (int)need : sms);
    }
    const size_t smem = op->kind == DFM_CUDA_OP_COMBINE
                            ? (size_t)(w->num_local_experts * w->num_ranks + 1) * sizeof(int)
                            : 0;
    void *args[] = {(void *)w, (void *)op};
    return dfm_launch((const void *)combine_kernel, dim3((unsigned)grid), dim3(COMBINE_THREADS), args, smem, stream,
                      op->kind == DFM_CUDA_OP_COMBINE, op, sizeof *op); /* key: the world aside, the op */
}
