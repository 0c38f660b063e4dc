/*
 * host_cost - host (CPU) time per call of dfm_fused_moe on one GPU, beside
 * the CUDA runtime primitives a call is made of, so the library's share of
 * the per-call host overhead (issue 6) can be taken apart.
 *
 *   build/bench/host_cost [-T tokens] [-n calls]
 *
 * Each figure is the CPU time of this thread per call (CLOCK_THREAD_CPUTIME_ID,
 * so time spent waiting for a core is left out; dfm_fused_moe's wall-clock time
 * of the same burst beside it), best of 20 bursts of n calls,
 * the stream synchronized between bursts so the launch queue never fills.
 * One rank (R = 1), H = 7168, I = 2048, E = G = 2, top-2, fp8: a short GPU
 * time per call. The pipeline of launches unless DFM_CUDA_FUSED=1 is in the
 * environment (then the fused kernel, the library's default).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cuda_runtime.h>

#include "dfm.h"

#include "cuda_check.h" /* CK */

typedef struct {
    char bytes[1600]; /* about a GEMM launch's parameters (tensor maps + args) */
} big_param_t;

static __global__ void empty_kernel(int x) { (void)x; }
static __global__ void big_kernel(big_param_t p) { (void)p; }

static double clock_us(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec * 1e-3;
}

/* wall-clock time per call of the burst with the best CPU time (below) */
static double last_wall;

/* best of 20 bursts of n calls, us of this thread's CPU time per call */
template <class F> static double best_us(F fn, int n, cudaStream_t st) {
    for (int i = 0; i < n; i++) fn();
    CK(cudaStreamSynchronize(st));
    double best = 1e30;
    for (int r = 0; r < 20; r++) {
        const double t0 = clock_us(CLOCK_THREAD_CPUTIME_ID), w0 = clock_us(CLOCK_MONOTONIC);
        for (int i = 0; i < n; i++) fn();
        const double t = (clock_us(CLOCK_THREAD_CPUTIME_ID) - t0) / n;
        const double w = (clock_us(CLOCK_MONOTONIC) - w0) / n;
        if (t < best) {
            best = t;
            last_wall = w;
        }
        CK(cudaStreamSynchronize(st));
    }
    return best;
}

int main(int argc, char **argv) {
    int T = 32, n = 20;
    setenv("DFM_CUDA_FUSED", "0", 0); /* as before: the pipeline unless asked */
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-T")) T = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-n")) n = atoi(argv[i + 1]);
    }
    const int H = 7168, I = 2048, E = 2, K = 2, M = T < 8 ? 8 : T;
    CK(cudaSetDevice(0));
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));

    dfm_config_t cfg = DFM_CONFIG_INIT;
    cfg.backend = DFM_BACKEND_CUDA;
    cfg.num_ranks = 1;
    cfg.hidden = H;
    cfg.inter = I;
    cfg.num_experts = E;
    cfg.max_topk = K;
    cfg.num_max_dispatch_tokens_per_rank = M;
    cfg.quant_modes = DFM_QUANT_MASK(DFM_QUANT_FP8);
    cfg.device = 0;
    dfm_unique_id_t id;
    char err[512];
    dfm_ctx_t *ctx = NULL;
    if (dfm_get_unique_id(&cfg, &id) != DFM_SUCCESS ||
        dfm_ctx_create(&ctx, &cfg, &id, 0, err, sizeof err) != DFM_SUCCESS) {
        fprintf(stderr, "context: %s\n", err);
        return 2;
    }
    void *x, *idx, *wt, *w1, *w2, *s1, *s2, *out;
    CK(cudaMalloc(&x, (size_t)T * H * 2));
    CK(cudaMalloc(&idx, (size_t)T * K * 8));
    CK(cudaMalloc(&wt, (size_t)T * K * 4));
    CK(cudaMalloc(&w1, (size_t)E * 2 * I * H));
    CK(cudaMalloc(&w2, (size_t)E * H * I));
    CK(cudaMalloc(&s1, (size_t)E * 2 * I * 4));
    CK(cudaMalloc(&s2, (size_t)E * H * 4));
    CK(cudaMalloc(&out, (size_t)T * H * 2));
    CK(cudaMemset(x, 0, (size_t)T * H * 2));
    CK(cudaMemset(w1, 0, (size_t)E * 2 * I * H));
    CK(cudaMemset(w2, 0, (size_t)E * H * I));
    CK(cudaMemset(s1, 0, (size_t)E * 2 * I * 4));
    CK(cudaMemset(s2, 0, (size_t)E * H * 4));
    CK(cudaMemset(wt, 0, (size_t)T * K * 4));
    {
        int64_t *h = (int64_t *)malloc((size_t)T * K * 8);
        for (int i = 0; i < T * K; i++) h[i] = i % K;
        CK(cudaMemcpy(idx, h, (size_t)T * K * 8, cudaMemcpyHostToDevice));
        free(h);
    }
    dfm_moe_args_t a = {};
    a.x = x;
    a.topk_idx = (const int64_t *)idx;
    a.topk_weights = (const float *)wt;
    a.num_tokens = T;
    a.num_topk = K;
    a.quant = DFM_QUANT_FP8;
    a.w1 = w1;
    a.w1_scale = (const float *)s1;
    a.w2 = w2;
    a.w2_scale = (const float *)s2;
    a.out = out;
    a.stream = st;
    int bad = 0;
    auto call = [&] { bad |= dfm_fused_moe(ctx, &a) != DFM_SUCCESS; };
    const double moe = best_us(call, n, st), moe_wall = last_wall;
    if (bad) {
        fprintf(stderr, "dfm_fused_moe failed: %s\n", dfm_ctx_last_error(ctx));
        return 1;
    }
    dfm_status_t ae;
    const double poll = best_us([&] { dfm_get_async_error(ctx, &ae); }, n, st);

    int dev;
    const double getdev = best_us([&] { cudaGetDevice(&dev); }, n, st);
    const double empty = best_us([&] { empty_kernel<<<132, 128, 0, st>>>(1); }, n, st);
    big_param_t bp;
    memset(&bp, 0, sizeof bp);
    const double big = best_us([&] { big_kernel<<<132, 288, 0, st>>>(bp); }, n, st);
    cudaLaunchConfig_t lc;
    memset(&lc, 0, sizeof lc);
    lc.gridDim = dim3(132);
    lc.blockDim = dim3(128);
    lc.stream = st;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeCooperative;
    at[0].val.cooperative = 1;
    lc.attrs = at;
    lc.numAttrs = 1;
    int one = 1;
    void *args[] = {&one};
    const double coop = best_us([&] { CK(cudaLaunchKernelExC(&lc, (const void *)empty_kernel, args)); }, n, st);
    cudaEvent_t ev;
    CK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    const double rec = best_us([&] { cudaEventRecord(ev, st); }, n, st);

    /* The same call captured once as a CUDA graph: what a launch of the
     * whole graph costs, and a launch after every kernel node's parameters
     * are set again (what a per-call update of a cached graph would pay). */
    cudaGraph_t graph;
    cudaGraphExec_t gexec;
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    call();
    CK(cudaStreamEndCapture(st, &graph));
    CK(cudaGraphInstantiate(&gexec, graph, 0));
    const double glaunch = best_us([&] { cudaGraphLaunch(gexec, st); }, n, st);
    size_t nn = 0;
    CK(cudaGraphGetNodes(graph, NULL, &nn));
    cudaGraphNode_t nodes[64];
    cudaKernelNodeParams kp[64];
    int kn[64], nk = 0;
    if (nn > 64) nn = 64;
    CK(cudaGraphGetNodes(graph, nodes, &nn));
    for (size_t i = 0; i < nn; i++) {
        cudaGraphNodeType t;
        CK(cudaGraphNodeGetType(nodes[i], &t));
        if (t == cudaGraphNodeTypeKernel) {
            CK(cudaGraphKernelNodeGetParams(nodes[i], &kp[nk]));
            kn[nk++] = (int)i;
        }
    }
    const double gset = best_us([&] {
        for (int i = 0; i < nk; i++) cudaGraphExecKernelNodeSetParams(gexec, nodes[kn[i]], &kp[i]);
        cudaGraphLaunch(gexec, st);
    }, n, st);

    /* GPU time per call back to back, for context */
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    CK(cudaEventRecord(e0, st));
    for (int i = 0; i < 50; i++) call();
    CK(cudaEventRecord(e1, st));
    CK(cudaEventSynchronize(e1));
    float ms;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    const char *fused = getenv("DFM_CUDA_FUSED");
    printf("host_cost: T=%d H=%d I=%d E=%d K=%d fp8, R=1, path %s, host us/call (CPU time, best of 20 x %d):\n",
           T, H, I, E, K, fused && fused[0] == '1' ? "fused" : "pipeline", n);
    printf("  dfm_fused_moe %.2f (wall %.2f) | dfm_get_async_error %.2f | GPU %.1f us/call back to back\n", moe,
           moe_wall, poll, ms * 1e3 / 50);
    printf("  primitives: cudaGetDevice %.2f, launch (4 B params) %.2f, launch (1600 B params) %.2f, "
           "cooperative launch %.2f, cudaEventRecord %.2f\n",
           getdev, empty, big, coop, rec);
    printf("  CUDA graph of the call (%zu nodes, %d kernels): cudaGraphLaunch %.2f; every kernel node's "
           "parameters set + launch %.2f\n", nn, nk, glaunch, gset);
    dfm_ctx_destroy(ctx);
    return 0;
}
