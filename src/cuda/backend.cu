/*
 * backend.cu - the CUDA backend's entry points behind src/backend.h: context
 * creation (device, transport, every private buffer the context will ever
 * use), the three operators as stream-ordered pipelines of launches, and the
 * asynchronous error read without synchronizing.
 *
 * Arguments arrive validated by src/api.c. Nothing here allocates or
 * synchronizes inside a call; every call is capturable in a CUDA graph (the
 * sequence numbers live in device memory, see cuda_internal.h).
 */
#include <stdio.h>
#include <stdlib.h>

#include "cuda_internal.h"
#include "fused.cuh"

/*
 * The launches of one dfm_fused_moe call as a cached CUDA graph. Five plain
 * launches cost ~18 us of host time per call on an H100 host; setting the
 * parameters of the five kernel nodes of an instantiated graph and launching
 * it once costs ~4 us (bench/host_cost). So the first call of a context
 * (per path: pipeline, fused kernel) builds the graph from its launches
 * (dfm_launch adds a node per launch, chained in launch order) and
 * instantiates it; every later call passes each launch's parameters to its
 * node (cudaGraphExecKernelNodeSetParams: kernel, grid, block, shared memory
 * and arguments may all change; launches already made are unaffected), or
 * skips the ~0.7 us update where the launch's key bytes, kernel and shape
 * equal those the node was last set from, and launches the graph on the
 * caller's stream. A call whose launches do not
 * match the graph (count, cooperative or not) drops it and launches plainly;
 * the next call builds a new one. Not used while the caller's stream is being
 * captured (the caller's graph must hold the kernels themselves), with the
 * benchmark's phase events, or with DFM_CUDA_GRAPH=0.
 */
#define DFM_GRAPH_NODES 8
typedef struct {
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    cudaGraphNode_t node[DFM_GRAPH_NODES];
    int coop[DFM_GRAPH_NODES];
    /* what the node's parameters were last set from (dfm_launch's key): the
     * kernel, shape, and the caller's key bytes; key_ok 0: unknown, update */
    const void *func[DFM_GRAPH_NODES];
    dim3 grid[DFM_GRAPH_NODES], block[DFM_GRAPH_NODES];
    size_t smem[DFM_GRAPH_NODES];
    unsigned char key[DFM_GRAPH_NODES][DFM_LAUNCH_KEY_MAX];
    size_t key_len[DFM_GRAPH_NODES];
    int key_ok[DFM_GRAPH_NODES];
    int n;        /* nodes of the graph */
    int seen;     /* launches of the current call */
    int building; /* this call adds the nodes */
    int bad;      /* a launch did not fit the graph: the call launches plainly */
} launch_graph_t;

/* The graph the launches of the current host thread go to (each rank of a
 * threads world is a thread); NULL: plain launches. */
static thread_local launch_graph_t *cur_graph;

static void graph_drop(launch_graph_t *g) {
    if (g->exec) cudaGraphExecDestroy(g->exec);
    if (g->graph) cudaGraphDestroy(g->graph);
    memset(g, 0, sizeof *g);
}

/* Remember what node i's parameters were set from (key NULL or too long:
 * nothing, so the next call updates it). */
static void graph_note_key(launch_graph_t *g, int i, const void *func, dim3 grid, dim3 block, size_t smem,
                           const void *key, size_t key_len) {
    g->key_ok[i] = key != NULL && key_len <= DFM_LAUNCH_KEY_MAX;
    if (!g->key_ok[i]) return;
    g->func[i] = func;
    g->grid[i] = grid;
    g->block[i] = block;
    g->smem[i] = smem;
    if (key_len) memcpy(g->key[i], key, key_len);
    g->key_len[i] = key_len;
}

/* Node i was last set from exactly these: its parameters stand. */
static int graph_same(const launch_graph_t *g, int i, const void *func, dim3 grid, dim3 block, size_t smem,
                      const void *key, size_t key_len) {
    return key != NULL && g->key_ok[i] && g->func[i] == func && g->grid[i].x == grid.x &&
           g->grid[i].y == grid.y && g->grid[i].z == grid.z && g->block[i].x == block.x &&
           g->block[i].y == block.y && g->block[i].z == block.z && g->smem[i] == smem &&
           g->key_len[i] == key_len && (key_len == 0 || memcmp(g->key[i], key, key_len) == 0);
}

cudaError_t dfm_launch(const void *func, dim3 grid, dim3 block, void **args, size_t smem,
                       cudaStream_t stream, int cooperative, const void *key, size_t key_len) {
    launch_graph_t *g = cur_graph;
    if (g == NULL) {
        cudaLaunchConfig_t cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.gridDim = grid;
        cfg.blockDim = block;
        cfg.dynamicSmemBytes = smem;
        cfg.stream = stream;
        cudaLaunchAttribute attr[1];
        attr[0].id = cudaLaunchAttributeCooperative;
        attr[0].val.cooperative = 1;
        cfg.attrs = attr;
        cfg.numAttrs = cooperative ? 1 : 0;
        return cudaLaunchKernelExC(&cfg, func, args);
    }
    cudaKernelNodeParams kp;
    memset(&kp, 0, sizeof kp);
    kp.func = (void *)func;
    kp.gridDim = grid;
    kp.blockDim = block;
    kp.sharedMemBytes = (unsigned int)smem;
    kp.kernelParams = args;
    const int i = g->seen++;
    if (g->bad || i >= DFM_GRAPH_NODES) {
        g->bad = 1;
        return cudaSuccess;
    }
    if (g->building) {
        cudaError_t err = cudaGraphAddKernelNode(&g->node[i], g->graph, i ? &g->node[i - 1] : NULL,
                                                 i ? 1 : 0, &kp);
        if (err == cudaSuccess && cooperative) {
            cudaLaunchAttributeValue v;
            memset(&v, 0, sizeof v);
            v.cooperative = 1;
            err = cudaGraphKernelNodeSetAttribute(g->node[i], cudaLaunchAttributeCooperative, &v);
        }
        g->coop[i] = cooperative;
        graph_note_key(g, i, func, grid, block, smem, key, key_len);
        g->n = i + 1;
        if (err != cudaSuccess) g->bad = 1;
    } else if (i >= g->n || g->coop[i] != cooperative) {
        g->bad = 1;
    } else if (!graph_same(g, i, func, grid, block, smem, key, key_len)) {
        g->key_ok[i] = 0; /* until the update is known to have taken */
        if (cudaGraphExecKernelNodeSetParams(g->exec, g->node[i], &kp) != cudaSuccess) g->bad = 1;
        else graph_note_key(g, i, func, grid, block, smem, key, key_len);
    }
    if (g->bad) (void)cudaGetLastError(); /* the call launches plainly instead */
    return cudaSuccess;
}

/* Run `launches` (a callable doing one call's launches on stream s, returning
 * the first error) through graph g, or plainly when g is NULL. */
template <class F> static cudaError_t via_graph(launch_graph_t *g, cudaStream_t s, F launches) {
    if (g == NULL) return launches();
    g->seen = 0;
    g->bad = 0;
    g->building = g->exec == NULL;
    if (g->building && cudaGraphCreate(&g->graph, 0) != cudaSuccess) {
        (void)cudaGetLastError();
        graph_drop(g);
        return launches();
    }
    cur_graph = g;
    cudaError_t err = launches();
    cur_graph = NULL;
    if (err == cudaErrorNotSupported && g->seen == 0) { /* nothing launched: the caller falls back */
        if (g->building) graph_drop(g);
        return err;
    }
    if (err == cudaSuccess && !g->bad && g->seen == g->n && g->building &&
        cudaGraphInstantiate(&g->exec, g->graph, 0) != cudaSuccess)
        g->bad = 1;
    if (err != cudaSuccess || g->bad || g->seen != g->n) {
        (void)cudaGetLastError();
        graph_drop(g);
        return launches(); /* nothing was enqueued: launch the call plainly */
    }
    return cudaGraphLaunch(g->exec, s);
}

typedef struct {
    int device;
    dfm_cuda_transport_t *transport;
    dfm_cuda_world_t world;
    dfm_cuda_async_t *async_host; /* host view of world.async */
    /* Benchmark-only phase timing (dfm_cuda_time_phases): four events the
     * caller owns, recorded around the phases of dfm_fused_moe; NULL: off. */
    const cudaEvent_t *phase_ev;
    unsigned int seen_invalid, seen_mismatch; /* async totals already reported */
    dfm_cuda_fused_t *fused; /* one-kernel dfm_fused_moe; NULL: the pipeline (config.path, DFM_CUDA_FUSED=0) */
    int use_graphs;          /* DFM_CUDA_GRAPH unset or not "0" */
    launch_graph_t graph[2]; /* dfm_fused_moe's launches: [0] the pipeline, [1] the fused kernel */
} cuda_impl_t;

static dfm_status_t cuda_get_unique_id(const dfm_config_t *config, dfm_unique_id_t *id) {
    return dfm_cuda_transport_unique_id(config, id);
}

/* Free everything the context holds. `failed`: creation failed; then the
 * transport is aborted, not destroyed, so nothing waits for peers that may
 * never have arrived. */
static void free_impl(cuda_impl_t *im, int failed) {
    if (im == NULL) return;
    dfm_cuda_world_t *w = &im->world;
    graph_drop(&im->graph[0]);
    graph_drop(&im->graph[1]);
    dfm_cuda_fused_destroy(im->fused);
    cudaFree(w->st);
    cudaFree(w->row_begin);
    cudaFree(w->row_count);
    cudaFree(w->row_total);
    cudaFree(w->act);
    cudaFree(w->act_q);
    cudaFree(w->act_s);
    cudaFree(w->tok16);
    /* A context failed by a timeout in a call is destroyed, not aborted:
     * ncclCommDestroy of the healthy peers waits for this rank's (in NCCL
     * 2.28 its teardown meets the other local ranks), and an aborted comm
     * never comes (seen: the peer-timeout pytest hung in destroy). */
    if (im->async_host) cudaFreeHost(im->async_host);
    if (failed)
        dfm_cuda_transport_abort(im->transport);
    else
        dfm_cuda_transport_destroy(im->transport);
    free(im);
}

/* cudaMalloc that names the buffer and its bytes on failure. */
static dfm_status_t dev_alloc(dfm_ctx_t *ctx, void **p, size_t bytes, const char *what) {
    if (bytes == 0) bytes = 16;
    cudaError_t err = cudaMalloc(p, bytes);
    if (err != cudaSuccess) {
        *p = NULL;
        (void)cudaGetLastError();
        return dfm_set_error(ctx, DFM_ERROR_OUT_OF_MEMORY,
                             "cudaMalloc of %s (%zu bytes) on device %d failed: %s", what, bytes,
                             ((cuda_impl_t *)ctx->impl)->device, cudaGetErrorString(err));
    }
    return DFM_SUCCESS;
}

static dfm_status_t create_common(dfm_ctx_t *ctx, const dfm_unique_id_t *id, void *nccl_comm) {
    const dfm_config_t *c = &ctx->config;
    cuda_impl_t *im = (cuda_impl_t *)calloc(1, sizeof *im);
    if (im == NULL) return dfm_set_error(ctx, DFM_ERROR_OUT_OF_MEMORY, "out of host memory");
    ctx->impl = im;
    dfm_status_t st = DFM_SUCCESS;
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        st = dfm_set_error(ctx, DFM_ERROR_UNSUPPORTED, "no CUDA device is visible");
        goto fail;
    }
    if (nccl_comm == NULL) {
        if (c->device >= 0) {
            if (c->device >= ndev) {
                st = dfm_set_error(ctx, DFM_ERROR_INVALID_ARGUMENT,
                                   "config.device: %d is outside 0..%d", c->device, ndev - 1);
                goto fail;
            }
            cudaSetDevice(c->device);
        }
    }
    {
        cudaDeviceProp prop;
        cudaGetDevice(&im->device);
        if (cudaGetDeviceProperties(&prop, im->device) != cudaSuccess || prop.major != 9) {
            st = dfm_set_error(ctx, DFM_ERROR_UNSUPPORTED,
                               "device %d is compute capability %d.%d; the cuda backend is built "
                               "for Hopper (sm_90a)",
                               im->device, prop.major, prop.minor);
            goto fail;
        }
    }
    DFM_CHECK_GOTO(dfm_cuda_transport_create(ctx, id, nccl_comm, &im->transport, im->world.peer),
                   st, fail);
    cudaGetDevice(&im->device); /* create_from_nccl moved to the comm's device */

    {
        dfm_cuda_world_t *w = &im->world;
        const size_t R = (size_t)c->num_ranks, G = (size_t)(c->num_experts / c->num_ranks);
        const size_t M = (size_t)c->num_max_dispatch_tokens_per_rank, I = (size_t)c->inter;
        const size_t rows = G * R * M;
        const size_t code = (c->quant_modes & DFM_QUANT_MASK(DFM_QUANT_BF16)) ? 2 : 1;
        w->L = ctx->layout;
        w->rank = ctx->rank;
        w->num_ranks = c->num_ranks;
        w->num_local_experts = (int)G;
        w->num_experts = c->num_experts;
        w->hidden = c->hidden;
        w->inter = c->inter;
        w->max_topk = c->max_topk;
        w->num_max = (int)M;
        w->timeout_ns = (unsigned long long)(c->timeout_s * 1e9);
        DFM_CHECK_GOTO(dev_alloc(ctx, (void **)&w->st, sizeof(dfm_cuda_state_t), "state"), st, fail);
        DFM_CHECK_GOTO(dev_alloc(ctx, (void **)&w->row_begin, G * R * 4, "row_begin"), st, fail);
        DFM_CHECK_GOTO(dev_alloc(ctx, (void **)&w->row_count, G * R * 4, "row_count"), st, fail);
        DFM_CHECK_GOTO(dev_alloc(ctx, (void **)&w->row_total, G * 4, "row_total"), st, fail);
        DFM_CHECK_GOTO(dev_alloc(ctx, (void **)&w->act, rows * I * 4, "act scratch"), st, fail);
        DFM_CHECK_GOTO(dev_alloc(ctx, (void **)&w->act_q, rows * I * code, "act codes"), st, fail);
        DFM_CHECK_GOTO(dev_alloc(ctx, (void **)&w->act_s, rows * 4, "act scales"), st, fail);
        /* the f16 token copy of version 5, where a call can reach its threshold */
        const int t16 = dfm_cuda_tok16_rows();
        if (t16 >= 0 && c->hidden % 128 == 0 && (long long)M * c->max_topk >= (long long)t16 * G)
            DFM_CHECK_GOTO(dev_alloc(ctx, (void **)&w->tok16, rows * c->hidden * 2, "f16 token rows"), st, fail);
        if (cudaMemset(w->st, 0, sizeof(dfm_cuda_state_t)) != cudaSuccess ||
            cudaMemset(w->row_count, 0, G * R * 4) != cudaSuccess ||
            cudaMemset(w->row_total, 0, G * 4) != cudaSuccess) {
            st = dfm_set_error(ctx, DFM_ERROR_SYSTEM, "cudaMemset of the context state failed");
            goto fail;
        }
        if (cudaHostAlloc((void **)&im->async_host, sizeof(dfm_cuda_async_t),
                          cudaHostAllocMapped | cudaHostAllocPortable) != cudaSuccess ||
            cudaHostGetDevicePointer((void **)&w->async, im->async_host, 0) != cudaSuccess) {
            st = dfm_set_error(ctx, DFM_ERROR_SYSTEM, "cudaHostAlloc of the async-error word failed");
            goto fail;
        }
        memset((void *)im->async_host, 0, sizeof(dfm_cuda_async_t));
        if (cudaDeviceGetAttribute(&w->num_sms, cudaDevAttrMultiProcessorCount, im->device) !=
                cudaSuccess ||
            dfm_cuda_comm_init() != cudaSuccess) {
            st = dfm_set_error(ctx, DFM_ERROR_SYSTEM,
                               "setting up the dispatch/combine kernels failed");
            goto fail;
        }
        if (dfm_cuda_experts_init() != cudaSuccess) {
            st = dfm_set_error(ctx, DFM_ERROR_SYSTEM, "cudaFuncSetAttribute of the GEMM kernels failed");
            goto fail;
        }
        const char *ge = getenv("DFM_CUDA_GRAPH");
        im->use_graphs = !(ge && ge[0] == '0' && ge[1] == 0);
        if (dfm_cuda_fused_create(w, ctx->config.path, &im->fused) != cudaSuccess) {
            st = dfm_set_error(ctx, DFM_ERROR_SYSTEM,
                               "setting up the fused kernel failed (config.path = DFM_PATH_PIPELINE or "
                               "DFM_CUDA_FUSED=0 selects the pipeline)");
            goto fail;
        }
        ctx->path = im->fused ? DFM_PATH_FUSED_KERNEL : DFM_PATH_PIPELINE;
        if (cudaDeviceSynchronize() != cudaSuccess) {
            st = dfm_set_error(ctx, DFM_ERROR_SYSTEM, "device failed during context creation");
            goto fail;
        }
    }
    return DFM_SUCCESS;

fail:
    free_impl(im, 1);
    ctx->impl = NULL;
    return st;
}

static dfm_status_t cuda_create(dfm_ctx_t *ctx, const dfm_unique_id_t *id) {
    return create_common(ctx, id, NULL);
}

static dfm_status_t cuda_create_from_nccl(dfm_ctx_t *ctx, void *nccl_comm) {
    return create_common(ctx, NULL, nccl_comm);
}

/* Make the context's device current (no switch when it already is, the
 * usual case); returns the caller's device for launched() to restore. */
static int enter_device(const cuda_impl_t *im) {
    int prev = im->device;
    if (cudaGetDevice(&prev) != cudaSuccess) prev = im->device;
    if (prev != im->device) cudaSetDevice(im->device);
    return prev;
}

static void cuda_destroy(dfm_ctx_t *ctx) {
    cuda_impl_t *im = (cuda_impl_t *)ctx->impl;
    if (im == NULL) return;
    const int prev = enter_device(im);
    free_impl(im, 0);
    ctx->impl = NULL;
    cudaSetDevice(prev);
}

/* Restore the caller's device; turn a launch error into the status. */
static dfm_status_t launched(dfm_ctx_t *ctx, int prev, cudaError_t err, const char *what) {
    if (prev != ((cuda_impl_t *)ctx->impl)->device) cudaSetDevice(prev);
    if (err == cudaSuccess) return DFM_SUCCESS;
    return dfm_set_error(ctx, DFM_ERROR_SYSTEM, "%s: kernel launch failed: %s", what,
                         cudaGetErrorString(err));
}

static dfm_status_t cuda_fused_moe(dfm_ctx_t *ctx, const dfm_moe_args_t *a, uint64_t seq) {
    cuda_impl_t *im = (cuda_impl_t *)ctx->impl;
    (void)seq; /* the device keeps its own */
    dfm_cuda_op_t op;
    memset(&op, 0, sizeof op);
    op.kind = DFM_CUDA_OP_FUSED;
    op.quant = a->quant;
    op.num_tokens = a->num_tokens;
    op.num_topk = a->num_topk;
    op.x = (const uint16_t *)a->x;
    op.topk_idx = a->topk_idx;
    op.topk_weights = a->topk_weights;
    op.w1 = a->w1;
    op.w1_scale = a->quant == DFM_QUANT_BF16 ? NULL : a->w1_scale;
    op.w2 = a->w2;
    op.w2_scale = a->quant == DFM_QUANT_BF16 ? NULL : a->w2_scale;
    op.out = (uint16_t *)a->out;
    op.ep_recv_count = a->ep_recv_count;
    cudaStream_t s = (cudaStream_t)a->stream;
    const int prev = enter_device(im);
    const cudaEvent_t *ev = im->phase_ev;
    int graphs = im->use_graphs && ev == NULL;
    if (graphs) { /* a caller capturing its stream gets the kernels in its own graph */
        cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
        if (cudaStreamIsCapturing(s, &cs) != cudaSuccess) {
            (void)cudaGetLastError();
            graphs = 0;
        } else if (cs != cudaStreamCaptureStatusNone) {
            graphs = 0;
        }
    }
    const dfm_cuda_world_t *w = &im->world;
    if (im->fused) { /* one persistent kernel; NotSupported: the pipeline below */
        cudaError_t ferr = via_graph(graphs ? &im->graph[1] : NULL, s,
                                     [&] { return dfm_cuda_fused(im->fused, w, &op, s, ev); });
        if (ferr != cudaErrorNotSupported) return launched(ctx, prev, ferr, "dfm_fused_moe (fused kernel)");
    }
    cudaError_t err = via_graph(graphs ? &im->graph[0] : NULL, s, [&] {
        cudaError_t e = ev ? cudaEventRecord(ev[0], s) : cudaSuccess;
        if (e == cudaSuccess) e = dfm_cuda_dispatch(w, &op, s);
        if (e == cudaSuccess && ev) e = cudaEventRecord(ev[1], s);
        if (e == cudaSuccess) e = dfm_cuda_experts(w, &op, s);
        if (e == cudaSuccess && ev) e = cudaEventRecord(ev[2], s);
        if (e == cudaSuccess) e = dfm_cuda_combine(w, &op, s);
        if (e == cudaSuccess && ev) e = cudaEventRecord(ev[3], s);
        return e;
    });
    return launched(ctx, prev, err, "dfm_fused_moe");
}

/* Internal, for bench/dfm_bench.cu only (declared in cuda_internal.h). */
extern "C" dfm_status_t dfm_cuda_time_phases(dfm_ctx_t *ctx, const cudaEvent_t events[4]) {
    if (ctx == NULL || ctx->impl == NULL || ctx->ops != &dfm_cuda_backend)
        return DFM_ERROR_INVALID_ARGUMENT;
    ((cuda_impl_t *)ctx->impl)->phase_ev = events;
    return DFM_SUCCESS;
}

extern "C" int dfm_cuda_fused_trace_get(dfm_ctx_t *ctx, unsigned long long *buf, int cap) {
    if (ctx == NULL || ctx->impl == NULL || ctx->ops != &dfm_cuda_backend || buf == NULL) return -1;
    cuda_impl_t *im = (cuda_impl_t *)ctx->impl;
    const int prev = enter_device(im);
    const int grid = dfm_cuda_fused_trace(im->fused, buf, cap);
    if (prev != im->device) cudaSetDevice(prev);
    return grid;
}

static dfm_status_t cuda_dispatch(dfm_ctx_t *ctx, const dfm_dispatch_args_t *a, uint64_t seq) {
    cuda_impl_t *im = (cuda_impl_t *)ctx->impl;
    (void)seq;
    dfm_cuda_op_t op;
    memset(&op, 0, sizeof op);
    op.kind = DFM_CUDA_OP_DISPATCH;
    op.quant = a->quant;
    op.num_tokens = a->num_tokens;
    op.num_topk = a->num_topk;
    op.x = (const uint16_t *)a->x;
    op.topk_idx = a->topk_idx;
    op.recv_x = a->recv_x;
    op.recv_scale = a->recv_scale;
    op.recv_count = a->recv_count;
    op.layout_range = a->layout_range;
    op.recv_src_info = a->recv_src_info;
    op.ep_recv_count = a->ep_recv_count;
    const int prev = enter_device(im);
    cudaError_t err = dfm_cuda_dispatch(&im->world, &op, (cudaStream_t)a->stream);
    return launched(ctx, prev, err, "dfm_dispatch");
}

static dfm_status_t cuda_combine(dfm_ctx_t *ctx, const dfm_combine_args_t *a) {
    cuda_impl_t *im = (cuda_impl_t *)ctx->impl;
    dfm_cuda_op_t op;
    memset(&op, 0, sizeof op);
    op.kind = DFM_CUDA_OP_COMBINE;
    op.quant = a->handle->quant;
    op.num_tokens = a->handle->num_tokens;
    op.num_topk = a->handle->num_topk;
    op.topk_idx = a->topk_idx;
    op.topk_weights = a->topk_weights;
    op.out = (uint16_t *)a->out;
    op.y = (const uint16_t *)a->y;
    const int prev = enter_device(im);
    cudaError_t err = dfm_cuda_combine(&im->world, &op, (cudaStream_t)a->stream);
    return launched(ctx, prev, err, "dfm_combine");
}

static dfm_status_t cuda_peek_fatal(dfm_ctx_t *ctx) {
    const volatile dfm_cuda_async_t *a = ((cuda_impl_t *)ctx->impl)->async_host;
    return a->timeout ? DFM_ERROR_TIMEOUT : DFM_SUCCESS;
}

static dfm_status_t cuda_poll_async_error(dfm_ctx_t *ctx) {
    cuda_impl_t *im = (cuda_impl_t *)ctx->impl;
    volatile dfm_cuda_async_t *a = im->async_host;
    if (a->timeout)
        return dfm_set_error(ctx, DFM_ERROR_TIMEOUT,
                             "rank %d: rank %u never raised its %s flag of call %llu within "
                             "timeout_s = %g s; recreate the context",
                             ctx->rank, a->timeout_src,
                             a->timeout_what == DFM_CUDA_WAIT_DISPATCH ? "dispatch" : "combine",
                             (unsigned long long)a->timeout_seq, ctx->config.timeout_s);
    /* Running totals kept by the device; report what is new since the last
     * poll (the device never writes them back, so nothing is lost). */
    const unsigned int mismatch = a->mismatch_total, invalid = a->invalid_total;
    if (mismatch != im->seen_mismatch) {
        im->seen_mismatch = mismatch;
        return dfm_set_error(ctx, DFM_ERROR_MISMATCH,
                             "rank %d: a peer called with another quantization mode", ctx->rank);
    }
    if (invalid != im->seen_invalid) {
        const unsigned int n = invalid - im->seen_invalid;
        im->seen_invalid = invalid;
        return dfm_set_error(ctx, DFM_ERROR_INVALID_EXPERT,
                             "topk_idx: %u slot(s) named an expert outside [-1, %d) and were "
                             "dropped",
                             n, ctx->config.num_experts);
    }
    return DFM_SUCCESS;
}

extern "C" {
extern const dfm_backend_ops_t dfm_cuda_backend;
const dfm_backend_ops_t dfm_cuda_backend = {
    "cuda",
    cuda_get_unique_id,
    cuda_create,
    cuda_create_from_nccl,
    cuda_destroy,
    cuda_fused_moe,
    cuda_dispatch,
    cuda_combine,
    cuda_poll_async_error,
    cuda_peek_fatal,
};
}
