/*
 * dispatch.cu - the dispatch phase of the CUDA backend: routing, per-token
 * quantization (SPEC 3.1) fused into the send, the stores into the owners'
 * receive slots through LSA pointers, the flags, the bounded wait, and the
 * packing into the DeepEP-style outputs of dfm_dispatch (SPEC section 5).
 *
 * One launch (dispatch_kernel) does all of it. Every CTA routes the whole
 * batch for itself (a bitmap of first slots per expert in shared memory: no
 * inter-CTA dependency), quantizes and sends its share of token rows, and
 * arrives on a counter; the last CTA to arrive publishes the counts and raises
 * the flags. The fused path then waits in that last CTA only (the expert
 * GEMMs are the next launch); dfm_dispatch waits in every CTA and packs.
 *
 * A CTA that waits holds its SM. For dfm_dispatch every CTA waits, also for
 * this rank's own flag, which the last CTA to arrive raises: that CTA must
 * not be kept off the machine by the waiting ones, so the launch is
 * cooperative (all CTAs resident at once, or the launch fails). The grid
 * never exceeds the number of SMs, and dfm_cuda_comm_init checks that one
 * CTA of the largest shared memory fits an SM. The fused path's wait (the
 * last CTA only, for the peers) needs no co-residency. Counts first with the
 * payload overlapped with the weight stream is later work (PERF.md
 * principle 1).
 *
 * After a timeout (SPEC 7) the kernel stores nothing more into peers: a
 * failed context sends no rows, publishes no counts, raises no flag, and
 * the call's rows are zero so the expert GEMMs send nothing either.
 */
#include "dispatch_steps.cuh"

#define DISPATCH_THREADS 256
#define DISPATCH_WARPS (DISPATCH_THREADS / DFM_WARP)
/* Pack: one warp copies PACK_SEG 16-byte chunks of a row per unit. */
#define PACK_SEG 64

/* Largest dynamic shared memory of the kernel: the bitmap [E][ceil(T/32)]
 * u32 at E = DFM_MAX_EXPERTS, T = DFM_MAX_TOKENS (128 KB). */
#define DISPATCH_MAX_SMEM ((size_t)DFM_MAX_EXPERTS * (DFM_MAX_TOKENS / 32) * 4)

/* ---- the kernel ---------------------------------------------------------------
 *
 * Reads  topk_idx [T][K] i64 and x [T][H] bf16 (caller), st->seq.
 * Writes, on the owner rank of each distinct valid expert e of token t
 *        (local expert g = e % G, row (g, me, j), j = the ordinal of t among
 *        this rank's tokens naming e):
 *          recv_rows[half][row]  H codes   recv_scale[half][row]  f32
 *          recv_meta[half][row]  t * Kmax + k
 *        and, from the last CTA to arrive, on every rank dst:
 *          recv_counts[half][me][g], src_info[half][me] = {quant, K, T, dropped},
 *          dispatch_flag[half][me] = seq (release, system scope);
 *        st->seq/cur_seq (and pend for a dispatch).
 *        After the wait (bounded, one thread per source): row_begin/row_count
 *        [G][R], row_total [G], ep_recv_count [G*R] (g*R + src),
 *        async->invalid_total/mismatch_total (last CTA); for dfm_dispatch also recv_x,
 *        recv_scale, recv_src_info, layout_range, recv_count (SPEC 5).
 * Shared: bits [E][ceil(T/32)] u32, bit t of expert e set when a first slot
 *        of token t names e (so j = bits of e below t); reused for the scan
 *        of the received counts once the counts are published.
 * Roles: work unit (t, p) = part p of P of token t's codes: the CTA computes
 *        the row's amax (block reduction over all H), each thread quantizes
 *        16-byte chunks (IEEE division per element: bit-identical to the CPU
 *        backend) and stores each to every destination. Pack: warp unit
 *        (packed row, PACK_SEG chunks), 16 bytes per lane.
 */
static __global__ void __launch_bounds__(DISPATCH_THREADS)
    dispatch_kernel(const __grid_constant__ dfm_cuda_world_t w,
                    const __grid_constant__ dfm_cuda_op_t op, int parts) {
    extern __shared__ uint32_t s_bits[]; /* [E][W], later the scan [G*R + 1] */
    __shared__ float s_red[32];
    __shared__ int s_dropped, s_last;
    __shared__ size_t s_dst[DFM_MAX_TOPK]; /* row offset in peer[s_rank[k]], or none */
    __shared__ int s_rank[DFM_MAX_TOPK];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int T = op.num_tokens, K = op.num_topk, E = w.num_experts;
    const int G = w.num_local_experts, R = w.num_ranks, M = w.num_max, H = w.hidden;
    const int W = dfm_bitmap_words(T);
    const dfm_quant_t q = (dfm_quant_t)op.quant;
    const int chunks = (int)((size_t)H * dfm_code_bytes(q) / 16);
    const unsigned long long seq = *(volatile unsigned long long *)&w.st->seq + 1;
    const int half = dfm_seq_half(seq);

    /* Route (the first-slot bitmap of the whole batch), quantize and send;
     * on a failed context (an earlier wait timed out) send nothing. */
    const int stop = dfm_block_failed(&w);
    dfm_dispatch_route<DISPATCH_THREADS>(op, E, W, s_bits, &s_dropped);
    if (!stop)
        dfm_dispatch_send<DISPATCH_THREADS>(w, op, s_bits, W, parts, half, s_red, s_dst, s_rank, (int)blockIdx.x);

    /* Arrive; the last CTA publishes the counts and raises the flags. */
    const int last = dfm_cta_arrive(&w.st->send_done, &s_last);
    if (last) {
        /* Failed by now (here or a waiting CTA of this grid): keep the local
         * bookkeeping, publish nothing to peers. */
        const int quiet = dfm_block_failed(&w);
        for (int i = tid; i < R * G && !quiet; i += DISPATCH_THREADS) {
            const uint32_t *b = s_bits + (size_t)i * W;
            int n = 0;
            for (int x = 0; x < W; x++) n += __popc(b[x]);
            const int dst = i / G, g = i % G;
            ((int32_t *)(w.peer[dst] + dfm_off_recv_counts(&w.L, half, w.rank)))[g] = n;
        }
        if (tid < R && !quiet) {
            int32_t *info = (int32_t *)(w.peer[tid] + dfm_off_src_info(&w.L, half, w.rank));
            info[DFM_INFO_QUANT] = op.quant;
            info[DFM_INFO_TOPK] = K;
            info[DFM_INFO_TOKENS] = T;
            info[DFM_INFO_DROPPED] = s_dropped;
            info[DFM_INFO_TOK16] = 0; /* rows a (token, expert): fused.cu's dedup is not for us */
        }
        if (tid == 0) {
            dfm_cuda_state_t *st = w.st;
            st->seq = seq;
            st->cur_seq = seq;
            if (op.kind == DFM_CUDA_OP_DISPATCH) {
                st->pend[st->pend_tail & 1u] = seq;
                st->pend_tail++;
            }
            st->send_done = 0;
        }
        __syncthreads(); /* every thread's counts before the flags (release) */
        if (tid < R && !quiet)
            dfm_st_release_sys(w.peer[tid] + dfm_off_dispatch_flag(&w.L, half, w.rank), seq);
    }
    if (!last && op.kind != DFM_CUDA_OP_DISPATCH) return;

    /* Wait for every source (bounded), one thread per source. After a
     * timeout the call has no rows: zero counts keep the expert GEMMs (the
     * next launches) from storing results into the peers' combine slots. */
    const char *local = w.peer[w.rank];
    int arrived = 1;
    if (tid < R)
        arrived = dfm_wait_flag(&w, local + dfm_off_dispatch_flag(&w.L, half, tid), seq, tid,
                                DFM_CUDA_WAIT_DISPATCH);
    const int failed = __syncthreads_or(!arrived);
    int *scan = (int *)s_bits;
    dfm_recv_scan(&w, half, scan);

    if (last) {
        for (int i = tid; i < G * R; i += DISPATCH_THREADS) {
            const int g = i / R;
            const int begin = failed ? 0 : scan[i] - scan[g * R];
            const int count = failed ? 0 : scan[i + 1] - scan[i];
            w.row_begin[i] = begin;
            w.row_count[i] = count;
            if (op.ep_recv_count) op.ep_recv_count[i] = count;
            if (op.kind == DFM_CUDA_OP_DISPATCH)
                op.layout_range[i] = ((int64_t)begin << 32) | (int64_t)count;
        }
        for (int g = tid; g < G; g += DISPATCH_THREADS) {
            const int total = failed ? 0 : scan[(g + 1) * R] - scan[g * R];
            w.row_total[g] = total;
            if (op.kind == DFM_CUDA_OP_DISPATCH) op.recv_count[g] = total;
        }
        if (tid == 0 && !failed) dfm_dispatch_note_faults(w, op, half);
    }
    if (op.kind != DFM_CUDA_OP_DISPATCH) return;

    /* Pack: packed row r (flat over g, src, j) of expert g is recv_x row
     * g*R*M + (r - scan[g*R]). */
    const size_t row_bytes = (size_t)H * dfm_code_bytes(q);
    const int segs = (chunks + PACK_SEG - 1) / PACK_SEG;
    const long long units = failed ? 0 : (long long)scan[G * R] * segs;
    for (long long u = (long long)blockIdx.x * DISPATCH_WARPS + warp; u < units;
         u += (long long)gridDim.x * DISPATCH_WARPS) {
        const int r = (int)(u / segs), sg = (int)(u % segs);
        int lo = 0, hi = G * R - 1; /* last i with scan[i] <= r */
        while (lo < hi) {
            const int mid = (lo + hi + 1) >> 1;
            lo = scan[mid] <= r ? mid : lo;
            hi = scan[mid] <= r ? hi : mid - 1;
        }
        const int g = lo / R, src = lo % R, j = r - scan[lo];
        const size_t row = dfm_recv_row(&w.L, g, src, j);
        const size_t pr = (size_t)g * R * M + (size_t)(r - scan[g * R]);
        const uint4 *s = (const uint4 *)(local + dfm_off_recv_rows(&w.L, half, row));
        uint4 *d = (uint4 *)((char *)op.recv_x + pr * row_bytes);
        const int c1 = min(chunks, (sg + 1) * PACK_SEG);
        for (int c = sg * PACK_SEG + lane; c < c1; c += DFM_WARP) d[c] = s[c];
        if (sg == 0 && lane == 0) {
            op.recv_scale[pr] = *(const float *)(local + dfm_off_recv_scale(&w.L, half, row));
            if (op.recv_src_info) {
                const int meta = *(const int32_t *)(local + dfm_off_recv_meta(&w.L, half, row));
                op.recv_src_info[pr] = src * M + meta / w.max_topk;
            }
        }
    }
}

/* ---- launcher and entry ------------------------------------------------------------ */

cudaError_t dfm_cuda_comm_init(void) {
    cudaError_t err = cudaFuncSetAttribute(dispatch_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           (int)DISPATCH_MAX_SMEM);
    /* grid <= SMs: co-resident when one CTA of the largest smem fits an SM */
    int per_sm = 0;
    if (err == cudaSuccess)
        err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, dispatch_kernel, DISPATCH_THREADS,
                                                            DISPATCH_MAX_SMEM);
    if (err == cudaSuccess && per_sm < 1) err = cudaErrorCooperativeLaunchTooLarge;
    return err;
}

cudaError_t dfm_cuda_dispatch(const dfm_cuda_world_t *w, const dfm_cuda_op_t *op,
                              cudaStream_t stream) {
    const int T = op->num_tokens, sms = w->num_sms > 0 ? w->num_sms : 1;
    const int chunks = (int)((size_t)w->hidden * dfm_code_bytes((dfm_quant_t)op->quant) / 16);
    /* Parts per token: enough units to cover the SMs, each >= 32 chunks. */
    int parts = T > 0 ? sms / T : 1;
    if (parts > chunks / 32) parts = chunks / 32;
    if (parts < 1) parts = 1;
    int grid = T * parts;
    if (op->kind == DFM_CUDA_OP_DISPATCH || grid > sms) grid = sms; /* pack uses them all */
    if (grid < 1) grid = 1;
    const int E = w->num_experts;
    size_t smem = (size_t)E * dfm_bitmap_words(T) * 4;
    if (smem < (size_t)(w->num_local_experts * w->num_ranks + 1) * 4)
        smem = (size_t)(w->num_local_experts * w->num_ranks + 1) * 4;
    void *args[] = {(void *)w, (void *)op, (void *)&parts};
    struct { /* the argument bytes besides the world (dfm_launch's key) */
        dfm_cuda_op_t op;
        int parts;
    } key;
    memset(&key, 0, sizeof key);
    key.op = *op;
    key.parts = parts;
    return dfm_launch((const void *)dispatch_kernel, dim3((unsigned)grid), dim3(DISPATCH_THREADS), args, smem, stream,
                      op->kind == DFM_CUDA_OP_DISPATCH, &key, sizeof key);
}
