/*
 * dispatch.cu - the dispatch phase of the CUDA backend: routing, per-token
 * quantization (SPEC 3.1) fused into the send, the stores into the owners'
 * receive slots through LSA pointers, the flags, the bounded wait, and the
 * packing into the DeepEP-style outputs of dfm_dispatch (SPEC section 5).
 *
 * Four launches, in stream order: route (also starts the call's sequence
 * number), send, wait, and (dfm_dispatch only) pack. The fused path reads
 * the receive slots in place and skips pack. Fast single-kernel dispatch
 * (counts first, payload overlapped with the weight stream) is later work.
 */
#include "device_common.cuh"

/* ---- route ------------------------------------------------------------------
 *
 * Reads  topk_idx [T][K] i64 (caller).
 * Writes tok_pos [T][Kmax] (ordinal of token t among this rank's tokens
 *        routed to expert idx[t][k], only for first slots), tok_count [E],
 *        st->seq/cur_seq (and pend for a dispatch), st->dropped.
 * Roles: every CTA stages the first-slot map of all T*K slots in shared
 * memory (i16: expert, or -1 for unused/out-of-range/repeated slots); warp w
 * of CTA b owns expert b*ROUTE_WARPS + w and ranks the tokens that name it
 * in token order with ballots. CTA 0 also counts dropped slots and, thread 0,
 * takes the call's sequence number.
 */
#define ROUTE_WARPS 16

static __global__ void __launch_bounds__(ROUTE_WARPS * DFM_WARP)
    route_kernel(const __grid_constant__ dfm_cuda_world_t w,
                 const __grid_constant__ dfm_cuda_op_t op) {
    extern __shared__ int16_t s_first[]; /* [T*K] */
    __shared__ int s_dropped;
    const int T = op.num_tokens, K = op.num_topk, E = w.num_experts;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

    if (blockIdx.x == 0 && tid == 0) {
        s_dropped = 0;
        dfm_cuda_state_t *st = w.st;
        unsigned long long seq = st->seq + 1;
        st->seq = seq;
        st->cur_seq = seq;
        if (op.kind == DFM_CUDA_OP_DISPATCH) {
            st->pend[st->pend_tail & 1u] = seq;
            st->pend_tail++;
        }
    }
    __syncthreads();
    for (int i = tid; i < T * K; i += blockDim.x) {
        const int t = i / K, k = i % K;
        const int64_t *row = op.topk_idx + (size_t)t * K;
        const int64_t e = row[k];
        int first = e >= 0 && e < E;
        for (int j = 0; j < k && first; j++)
            if (row[j] == e) first = 0;
        s_first[i] = first ? (int16_t)e : (int16_t)-1;
        if (blockIdx.x == 0 && (e < -1 || e >= E)) atomicAdd(&s_dropped, 1);
    }
    __syncthreads();
    if (blockIdx.x == 0 && tid == 0) w.st->dropped = s_dropped;

    const int e = blockIdx.x * ROUTE_WARPS + warp;
    if (e >= E) return;
    int base = 0;
    for (int t0 = 0; t0 < T; t0 += DFM_WARP) {
        const int t = t0 + lane;
        int hit = -1;
        if (t < T)
            for (int k = 0; k < K; k++)
                if (s_first[t * K + k] == e) hit = k;
        const unsigned int ballot = __ballot_sync(0xffffffffu, hit >= 0);
        if (hit >= 0)
            w.tok_pos[(size_t)t * w.max_topk + hit] =
                base + __popc(ballot & ((1u << lane) - 1u));
        base += __popc(ballot);
    }
    if (lane == 0) w.tok_count[e] = base;
}

/* ---- send -------------------------------------------------------------------
 *
 * Reads  x [T][H] bf16, topk_idx, tok_pos, tok_count, st->cur_seq.
 * Writes, on the owner rank of each distinct valid expert e of token t
 *        (local expert g = e % G, row (g, me, j = tok_pos[t][k])):
 *          recv_rows[half][row]  H codes   recv_scale[half][row]  f32
 *          recv_meta[half][row]  t * Kmax + k
 *        and, from the last CTA to finish, on every rank dst:
 *          recv_counts[half][me][g] = tok_count[dst*G + g]
 *          src_info[half][me] = {quant, K, T, dropped}
 *          dispatch_flag[half][me] = seq (release, system scope)
 * Roles: CTA t quantizes token t once into shared memory (amax by block
 * reduction, s = amax/qmax, IEEE division per element: bit-identical to the
 * CPU backend through dfm_code_store) and copies the codes to each
 * destination with 16-byte stores. Grid max(T, 1) so that T = 0 still signals.
 */
#define SEND_THREADS 256

static __global__ void __launch_bounds__(SEND_THREADS)
    send_kernel(const __grid_constant__ dfm_cuda_world_t w,
                const __grid_constant__ dfm_cuda_op_t op) {
    extern __shared__ __align__(16) unsigned char s_codes[]; /* H * code bytes */
    __shared__ float s_red[32];
    __shared__ int s_last;
    const int tid = threadIdx.x, t = blockIdx.x;
    const int H = w.hidden, K = op.num_topk, G = w.num_local_experts, E = w.num_experts;
    const dfm_quant_t q = (dfm_quant_t)op.quant;
    const size_t cb = dfm_code_bytes(q);
    const unsigned long long seq = w.st->cur_seq;
    const int half = dfm_seq_half(seq);

    if (t < op.num_tokens) {
        const uint16_t *xr = op.x + (size_t)t * H;
        float amax = 0.0f;
        for (int i = tid * 8; i < H; i += SEND_THREADS * 8) {
            const uint4 v = *(const uint4 *)(xr + i);
            const uint32_t u[4] = {v.x, v.y, v.z, v.w};
            for (int c = 0; c < 4; c++)
                amax = fmaxf(amax, fmaxf(fabsf(dfm_bf16_lo(u[c])), fabsf(dfm_bf16_hi(u[c]))));
        }
        amax = dfm_block_max(amax, s_red);
        const float s = dfm_quant_scale(amax, q);
        for (int i = tid; i < H; i += SEND_THREADS)
            dfm_code_store(s_codes, (size_t)i, dfm_bf16_to_f32(xr[i]), s, q);
        __syncthreads();

        const int64_t *ir = op.topk_idx + (size_t)t * K;
        const int chunks = (int)(H * cb / 16);
        for (int k = 0; k < K; k++) {
            const int64_t e = ir[k];
            int first = e >= 0 && e < E;
            for (int j = 0; j < k && first; j++)
                if (ir[j] == e) first = 0;
            if (!first) continue;
            const int dst = (int)(e / G), g = (int)(e % G);
            const int j = w.tok_pos[(size_t)t * w.max_topk + k];
            const size_t row = dfm_recv_row(&w.L, g, w.rank, j);
            char *base = w.peer[dst];
            uint4 *drow = (uint4 *)(base + dfm_off_recv_rows(&w.L, half, row));
            const uint4 *srow = (const uint4 *)s_codes;
            for (int c = tid; c < chunks; c += SEND_THREADS) drow[c] = srow[c];
            if (tid == 0) {
                *(float *)(base + dfm_off_recv_scale(&w.L, half, row)) = s;
                *(int32_t *)(base + dfm_off_recv_meta(&w.L, half, row)) = t * w.max_topk + k;
            }
        }
    }

    /* Last CTA out publishes the counts and raises the flags. */
    __threadfence_system();
    __syncthreads();
    if (tid == 0) s_last = atomicAdd(&w.st->send_done, 1u) == gridDim.x - 1;
    __syncthreads();
    if (!s_last) return;
    __threadfence();
    const int R = w.num_ranks;
    for (int i = tid; i < R * G; i += SEND_THREADS) {
        const int dst = i / G, g = i % G;
        int32_t *cnt = (int32_t *)(w.peer[dst] + dfm_off_recv_counts(&w.L, half, w.rank));
        cnt[g] = w.tok_count[i];
    }
    if (tid < R) {
        int32_t *info = (int32_t *)(w.peer[tid] + dfm_off_src_info(&w.L, half, w.rank));
        info[DFM_INFO_QUANT] = op.quant;
        info[DFM_INFO_TOPK] = K;
        info[DFM_INFO_TOKENS] = op.num_tokens;
        info[DFM_INFO_DROPPED] = w.st->dropped;
    }
    __threadfence_system();
    __syncthreads();
    if (tid < R) dfm_st_release_sys(w.peer[tid] + dfm_off_dispatch_flag(&w.L, half, w.rank), seq);
    if (tid == 0) w.st->send_done = 0;
}

/* ---- wait -------------------------------------------------------------------
 *
 * Reads  dispatch_flag[half][*], recv_counts[half][*][*], src_info[half][*]
 *        of this rank's region.
 * Writes row_begin/row_count [G][R], row_total [G], ep_recv_count [G*R]
 *        (optional, g*R + src), async->invalid_expert when a rank dropped
 *        slots. One CTA: thread src < R waits for src's flag (bounded); then
 *        thread g < G (strided) builds expert g's packed row ranges. Counts
 *        are clamped to [0, M], so a timed-out call cannot index out of range.
 */
#define WAIT_THREADS 256

static __global__ void __launch_bounds__(WAIT_THREADS)
    wait_kernel(const __grid_constant__ dfm_cuda_world_t w,
                const __grid_constant__ dfm_cuda_op_t op) {
    const int tid = threadIdx.x, R = w.num_ranks, G = w.num_local_experts, M = w.num_max;
    const unsigned long long seq = w.st->cur_seq;
    const int half = dfm_seq_half(seq);
    const char *local = w.peer[w.rank];
    if (tid < R)
        dfm_wait_flag(&w, local + dfm_off_dispatch_flag(&w.L, half, tid), seq, tid,
                      DFM_CUDA_WAIT_DISPATCH);
    __syncthreads();
    for (int g = tid; g < G; g += WAIT_THREADS) {
        int begin = 0;
        for (int src = 0; src < R; src++) {
            int c = ((const int32_t *)(local + dfm_off_recv_counts(&w.L, half, src)))[g];
            c = c < 0 ? 0 : (c > M ? M : c);
            w.row_begin[g * R + src] = begin;
            w.row_count[g * R + src] = c;
            if (op.ep_recv_count) op.ep_recv_count[g * R + src] = c;
            begin += c;
        }
        w.row_total[g] = begin;
    }
    if (tid == 0) {
        int dropped = 0;
        for (int src = 0; src < R; src++)
            dropped += ((const int32_t *)(local + dfm_off_src_info(&w.L, half, src)))[DFM_INFO_DROPPED];
        if (dropped > 0) {
            w.async->invalid_expert = (unsigned int)dropped;
            __threadfence_system();
        }
    }
}

/* ---- pack (dfm_dispatch only) -------------------------------------------------
 *
 * Reads  recv_rows/scale/meta[half] of this rank's region, row_begin/count.
 * Writes recv_x [G][R*M][H] codes: row begin(g,src)+j = slot (g, src, j);
 *        recv_scale [G][R*M]; recv_src_info [G][R*M] = src*M + token;
 *        layout_range [G][R] = begin << 32 | count; recv_count [G].
 * Rows past recv_count[g] are left as they were.
 * Roles: CTA (g*R + src, y); warp w copies rows j = y*8 + w, stepping by
 * gridDim.y*8, 16 bytes per lane.
 */
#define PACK_THREADS 256
#define PACK_SPLIT 4

static __global__ void __launch_bounds__(PACK_THREADS)
    pack_kernel(const __grid_constant__ dfm_cuda_world_t w,
                const __grid_constant__ dfm_cuda_op_t op) {
    const int R = w.num_ranks, M = w.num_max, H = w.hidden;
    const int g = blockIdx.x / R, src = blockIdx.x % R;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const unsigned long long seq = w.st->cur_seq;
    const int half = dfm_seq_half(seq);
    const char *local = w.peer[w.rank];
    const size_t cb = dfm_code_bytes((dfm_quant_t)op.quant), row_bytes = (size_t)H * cb;
    const int begin = w.row_begin[g * R + src], count = w.row_count[g * R + src];
    if (blockIdx.y == 0 && threadIdx.x == 0) {
        op.layout_range[g * R + src] = ((int64_t)begin << 32) | (int64_t)count;
        if (src == 0) op.recv_count[g] = w.row_total[g];
    }
    const int warps = PACK_THREADS / DFM_WARP;
    for (int j = blockIdx.y * warps + warp; j < count; j += gridDim.y * warps) {
        const size_t row = dfm_recv_row(&w.L, g, src, j);
        const size_t p = (size_t)g * R * M + (size_t)(begin + j);
        const uint4 *s = (const uint4 *)(local + dfm_off_recv_rows(&w.L, half, row));
        uint4 *d = (uint4 *)((char *)op.recv_x + p * row_bytes);
        for (size_t c = lane; c < row_bytes / 16; c += DFM_WARP) d[c] = s[c];
        if (lane == 0) {
            op.recv_scale[p] = *(const float *)(local + dfm_off_recv_scale(&w.L, half, row));
            if (op.recv_src_info) {
                const int meta = *(const int32_t *)(local + dfm_off_recv_meta(&w.L, half, row));
                op.recv_src_info[p] = src * M + meta / w.max_topk;
            }
        }
    }
}

/* ---- launchers and entry ------------------------------------------------------ */

static cudaError_t route_launch(const dfm_cuda_world_t *w, const dfm_cuda_op_t *op,
                                cudaStream_t stream) {
    const int blocks = (w->num_experts + ROUTE_WARPS - 1) / ROUTE_WARPS;
    const size_t smem = (size_t)op->num_tokens * op->num_topk * sizeof(int16_t);
    route_kernel<<<blocks, ROUTE_WARPS * DFM_WARP, smem, stream>>>(*w, *op);
    return cudaGetLastError();
}

static cudaError_t send_launch(const dfm_cuda_world_t *w, const dfm_cuda_op_t *op,
                               cudaStream_t stream) {
    const int blocks = op->num_tokens > 0 ? op->num_tokens : 1;
    const size_t smem = (size_t)w->hidden * dfm_code_bytes((dfm_quant_t)op->quant);
    send_kernel<<<blocks, SEND_THREADS, smem, stream>>>(*w, *op);
    return cudaGetLastError();
}

static cudaError_t wait_launch(const dfm_cuda_world_t *w, const dfm_cuda_op_t *op,
                               cudaStream_t stream) {
    wait_kernel<<<1, WAIT_THREADS, 0, stream>>>(*w, *op);
    return cudaGetLastError();
}

static cudaError_t pack_launch(const dfm_cuda_world_t *w, const dfm_cuda_op_t *op,
                               cudaStream_t stream) {
    const dim3 grid((unsigned)(w->num_local_experts * w->num_ranks), PACK_SPLIT);
    pack_kernel<<<grid, PACK_THREADS, 0, stream>>>(*w, *op);
    return cudaGetLastError();
}

cudaError_t dfm_cuda_dispatch(const dfm_cuda_world_t *w, const dfm_cuda_op_t *op,
                              cudaStream_t stream) {
    /* Shared memory stays under 48 KB: T*K*2 <= 32 KB (route), H*2 <= 32 KB
     * (send), so no opt-in is needed. */
    cudaError_t err = route_launch(w, op, stream);
    if (err == cudaSuccess) err = send_launch(w, op, stream);
    if (err == cudaSuccess) err = wait_launch(w, op, stream);
    if (err == cudaSuccess && op->kind == DFM_CUDA_OP_DISPATCH) err = pack_launch(w, op, stream);
    return err;
}
