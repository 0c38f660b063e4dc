/*
 * cuda_internal.h - what the files of the CUDA backend share: the context's
 * device-resident state, the world description every kernel gets by value,
 * the description of one call, and the entry points of each phase
 * (transport, dispatch, experts, combine).
 *
 * Included only by src/cuda/*.cu (compiled as CUDA C++). NCCL's own types
 * never appear here: they stay inside transport.cu.
 */
#ifndef DFM_CUDA_INTERNAL_H
#define DFM_CUDA_INTERNAL_H

/* C headers first, so that backend.h's includes are already guarded when it
 * is wrapped in extern "C" below (math.h has C++ overloads). */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cuda_runtime.h>

extern "C" {
#include "backend.h"
}

/*
 * Device memory, one per context. The dispatch kernel of every dispatch or
 * fused call takes `seq` + 1 and, from its last CTA, records it in `seq` and
 * `cur_seq`; later kernels of the same call read `cur_seq`. Dispatches
 * push their number into `pend` and the matching combine pops it, so combine
 * finds its buffer half on the device (a value baked into a captured CUDA
 * graph would repeat on replay). Calls of one context must be ordered on the
 * device (one stream, or streams the caller orders).
 */
typedef struct {
    unsigned long long seq;     /* last sequence number issued (0: none) */
    unsigned long long cur_seq; /* sequence number of the call in progress */
    unsigned long long pend[2]; /* dispatches waiting for their combine */
    unsigned int pend_head, pend_tail;
    unsigned int send_done; /* CTAs of a dispatch/combine kernel arrived (last resets) */
    unsigned int failed;    /* a wait timed out: later waits give up at once */
    int dropped;            /* unused */
    int pad;
} dfm_cuda_state_t;

/* Host-mapped pinned memory: written by kernels, read by poll_async_error
 * without any synchronization. */
enum { DFM_CUDA_WAIT_DISPATCH = 1, DFM_CUDA_WAIT_COMBINE = 2 };
typedef struct {
    volatile unsigned int timeout;         /* 1 once a wait on a peer timed out */
    volatile unsigned int timeout_src;     /* the peer that never arrived */
    volatile unsigned int timeout_what;    /* DFM_CUDA_WAIT_* */
    volatile unsigned int invalid_total;   /* dropped slots seen, running total */
    volatile unsigned int mismatch_total;  /* calls where a peer used another mode */
    volatile unsigned long long timeout_seq;
} dfm_cuda_async_t;

/*
 * The world as kernels see it, passed by value (__grid_constant__).
 * peer[r] is the base of rank r's symmetric region (an NCCL LSA pointer;
 * peer[rank] is this rank's own), laid out by dfm_layout_t.
 * Private scratch (plain device memory of this rank):
 *   tok_pos, tok_count       unused (NULL): dispatch routes in shared memory
 *   row_begin [G][R]    i32  packed begin of rows (g, src) in the current call
 *   row_count [G][R]    i32  rows (g, src) in the current call (clamped to M)
 *   row_total [G]       i32  rows of local expert g in the current call
 *   act       [G*R*M][I] f32 SwiGLU output per received row (fused path)
 *   act_q     [G*R*M][I] codes (1 or 2 bytes), act_s [G*R*M] f32: requantized
 *   tok16     [G*R*M][H] f16 or NULL: GEMM1's FP8 tokens widened once, each
 *             128-element block of K in the order of wg_fp8_widen_tokens
 *             (gemm.cu's widen kernel; allocated when
 *             M * max_topk >= dfm_cuda_tok16_rows() * G)
 * Rows of act/act_q/act_s/tok16 are indexed like the receive slots (dfm_recv_row).
 */
typedef struct {
    dfm_layout_t L;
    char *peer[DFM_MAX_RANKS];
    int rank, num_ranks, num_local_experts, num_experts;
    int hidden, inter, max_topk, num_max;
    unsigned long long timeout_ns;
    dfm_cuda_state_t *st;
    dfm_cuda_async_t *async; /* device address of the mapped struct */
    int32_t *tok_pos, *tok_count;
    int32_t *row_begin, *row_count, *row_total;
    float *act;
    void *act_q;
    float *act_s;
    uint16_t *tok16;
    int num_sms; /* the device's SMs: the dispatch and combine grids stay <= this */
} dfm_cuda_world_t;

enum { DFM_CUDA_OP_FUSED = 0, DFM_CUDA_OP_DISPATCH = 1, DFM_CUDA_OP_COMBINE = 2 };

/* One call, as the kernels need it (device pointers of the caller). */
typedef struct {
    int kind; /* DFM_CUDA_OP_* */
    int quant;
    int num_tokens, num_topk;
    const uint16_t *x;
    const int64_t *topk_idx;
    const float *topk_weights;
    const void *w1;
    const float *w1_scale;
    const void *w2;
    const float *w2_scale;
    uint16_t *out;
    int32_t *ep_recv_count;
    /* dfm_dispatch outputs */
    void *recv_x;
    float *recv_scale;
    int32_t *recv_count;
    int64_t *layout_range;
    int32_t *recv_src_info;
    /* dfm_combine input */
    const uint16_t *y;
} dfm_cuda_op_t;

/* ---- transport.cu: the NCCL corner --------------------------------------- */

typedef struct dfm_cuda_transport dfm_cuda_transport_t;

dfm_status_t dfm_cuda_transport_unique_id(const dfm_config_t *config, dfm_unique_id_t *id);

/*
 * Join the world (from `id`, or from the caller's `nccl_comm` when id is
 * NULL), allocate and register the symmetric region of ctx->layout, create
 * the device communicator and fill peer[] with every rank's region base.
 * Sets ctx->rank when joining a communicator. The CUDA device must be current.
 */
dfm_status_t dfm_cuda_transport_create(dfm_ctx_t *ctx, const dfm_unique_id_t *id,
                                       void *nccl_comm, dfm_cuda_transport_t **out,
                                       char *peer[DFM_MAX_RANKS]);
void dfm_cuda_transport_destroy(dfm_cuda_transport_t *t);
/* The same for a world whose creation failed: an owned communicator is
 * aborted, not destroyed (its peers may never have arrived). */
void dfm_cuda_transport_abort(dfm_cuda_transport_t *t);

/* ---- the phases (each enqueues its kernels on the stream) ------------------ */

/* Route, quantize and send this rank's tokens; wait for every rank's rows;
 * for DFM_CUDA_OP_DISPATCH also pack them into the caller's outputs. */
cudaError_t dfm_cuda_dispatch(const dfm_cuda_world_t *w, const dfm_cuda_op_t *op,
                              cudaStream_t stream);

/* GEMM1 + SwiGLU, requantization, GEMM2 writing straight into the home
 * ranks' combine slots (fused path). */
cudaError_t dfm_cuda_experts_init(void);
/* 1: the GEMMs load weights with the L2 evict_first policy (the default;
 * DFM_CUDA_W_EVICT_FIRST=0 turns it off), read by dfm_cuda_experts_init. */
int dfm_cuda_w_evict_first(void);
/* The integer in environment variable `name`, or def when it is unset, empty,
 * not an integer or outside [lo, hi] (the last two say so on stderr). */
int dfm_cuda_env_int(const char *name, int def, int lo, int hi);
/* Expected rows per local expert from which FP8 GEMM1 runs version 5 on an
 * f16 copy of the tokens (DFM_CUDA_TOK16_ROWS, default 96); -1 with
 * DFM_CUDA_TOK16=0. Read from the environment at each call of this. */
int dfm_cuda_tok16_rows(void);
/* Whether a call's FP8 GEMM1 runs on the f16 token copy (version 5): the copy
 * allocated and T * topk >= dfm_cuda_tok16_rows() * G. */
int dfm_cuda_tok16_call(const dfm_cuda_world_t *w, const dfm_cuda_op_t *op);
cudaError_t dfm_cuda_experts(const dfm_cuda_world_t *w, const dfm_cuda_op_t *op,
                             cudaStream_t stream);

/* Once per context, at creation: the kernel attributes of dispatch/combine. */
cudaError_t dfm_cuda_comm_init(void);

/* For DFM_CUDA_OP_COMBINE send the caller's y rows home first; then signal,
 * wait for every rank's results and reduce them into out. */
cudaError_t dfm_cuda_combine(const dfm_cuda_world_t *w, const dfm_cuda_op_t *op,
                             cudaStream_t stream);

/* ---- benchmark hook (backend.cu) ------------------------------------------ */

/*
 * Phase timing for bench/dfm_bench.cu, not part of the public API: with
 * `events` (four events of the context's device, owned by the caller and
 * alive while set) every later dfm_fused_moe on this context records
 * events[0] before dispatch, [1] after dispatch, [2] after the expert GEMMs,
 * [3] after combine, on the call's stream. NULL turns it off (the default;
 * off costs one pointer test per call). Not for calls under graph capture.
 */
/*
 * Every kernel launch of the backend goes through dfm_launch (backend.cu):
 * a plain launch, or, inside dfm_fused_moe, a kernel node of the context's
 * cached CUDA graph of that call (the same launches, one cudaGraphLaunch).
 * `cooperative`: the runtime starts the kernel only with every CTA resident
 * at once and refuses a grid that cannot be (cudaErrorCooperativeLaunchTooLarge),
 * so a CTA that spins on a flag another CTA of the same grid raises can never
 * wait for a CTA that is not scheduled (the dispatch/combine kernels called
 * alone, the fused kernel). Capturable in a CUDA graph.
 * `key` (key_len bytes, at most DFM_LAUNCH_KEY_MAX; NULL: none) promises
 * that the argument bytes of a launch from this site are a function of the
 * context's world and of these bytes: when the key, kernel and shape equal
 * those its graph node was last set from, the node keeps its parameters
 * (each update costs ~0.7 us of host time). The comparison is exact.
 */
#define DFM_LAUNCH_KEY_MAX 320
cudaError_t dfm_launch(const void *func, dim3 grid, dim3 block, void **args, size_t smem,
                       cudaStream_t stream, int cooperative, const void *key = NULL, size_t key_len = 0);

extern "C" dfm_status_t dfm_cuda_time_phases(dfm_ctx_t *ctx, const cudaEvent_t events[4]);

/* The fused kernel's per-CTA trace of the last call (DFM_CUDA_FUSED=1 and
 * DFM_CUDA_FUSED_TRACE=1 at creation), for bench/dfm_bench.cu: [grid][14]:
 * DFM_CUDA_TRACE_STAMPS %globaltimer stamps (entry, sends done, counts in,
 * first GEMM1 gate open, last GEMM1 item done, first GEMM2 item open, GEMM2
 * done, combine flags in, end, route done; 0 = not reached by that CTA), then ns spent
 * before GEMM1 items' gates opened (helping, waiting; the first item's left
 * out: it is "to-g1"), the same for GEMM2 items, and the CTA's GEMM1 and
 * GEMM2 items. Synchronous. Returns the grid or -1. */
#define DFM_CUDA_TRACE_STAMPS 10
#define DFM_CUDA_TRACE_POINTS 14
/* Then the CTA's first DFM_CUDA_TRACE_ITEMS items, 4 words each: (u << 12) |
 * local expert (0: not reached), and %globaltimer stamps when the consumers
 * took it, when its gate was open (helping done), when its GEMM was done. A
 * CTA's record is DFM_CUDA_TRACE_STRIDE words. */
#define DFM_CUDA_TRACE_ITEMS 48
#define DFM_CUDA_TRACE_STRIDE (DFM_CUDA_TRACE_POINTS + 4 * DFM_CUDA_TRACE_ITEMS)
extern "C" int dfm_cuda_fused_trace_get(dfm_ctx_t *ctx, unsigned long long *buf, int cap);

#endif /* DFM_CUDA_INTERNAL_H */
