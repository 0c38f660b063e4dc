/*
 * dfm_bench.cu - the benchmark driver, nccl-tests form: named configurations
 * of PERF.md, R ranks as threads (one GPU each), warm-up and iteration flags,
 * median CUDA-event times of dfm_dispatch, dfm_combine and dfm_fused_moe,
 * and the floor of PERF.md computed from the same run's measured
 * device-to-device copy bandwidth and flag hop. One row per config and T,
 * CSV with -o.
 *
 * The expert GEMMs only run inside the fused call today, so "gemms" is
 * estimated as fused - dispatch - combine (dispatch here also packs, combine
 * also copies y home: the estimate is low). Not here yet: the torch
 * baseline of PERF.md (NCCL all_to_all + torch._scaled_grouped_mm).
 *
 *   dfm_bench [-r ranks] [-c config-substring] [-w warmup] [-n iters] [-o csv]
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cuda_runtime.h>

extern "C" {
#include "dfm.h"
}

#define CK(call)                                                                            \
    do {                                                                                    \
        cudaError_t e_ = (call);                                                            \
        if (e_ != cudaSuccess) {                                                            \
            fprintf(stderr, "CUDA error %s at %s:%d\n", cudaGetErrorString(e_), __FILE__,   \
                    __LINE__);                                                              \
            exit(2);                                                                        \
        }                                                                                   \
    } while (0)

typedef struct {
    const char *name;
    int H, I, E, K;
    dfm_quant_t quant;
    int Ts[6];
} bench_config_t;

static const bench_config_t configs[] = {
    {"dsv3-e32", 7168, 2048, 32, 8, DFM_QUANT_FP8, {1, 32, 128, 256, 1024, 0}},
    {"dsv3-e256", 7168, 2048, 256, 8, DFM_QUANT_FP8, {32, 128, 0}},
    {"qwen3-235b", 4096, 1536, 128, 8, DFM_QUANT_FP8, {1, 32, 128, 0}},
    {"qwen3-30b-bf16", 2048, 768, 128, 8, DFM_QUANT_BF16, {32, 128, 0}},
    {"dsv3-e32-int8", 7168, 2048, 32, 8, DFM_QUANT_INT8, {32, 0}},
};
#define NUM_CONFIGS (int)(sizeof configs / sizeof configs[0])

static uint64_t rng_state = 0x1234567u;
static uint64_t rng_u64(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double rng_uniform(void) { return (double)(rng_u64() >> 11) * (1.0 / 9007199254740992.0); }

static uint16_t f2bf(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static int cmp_f(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}
static float median(float *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_f);
    return v[n / 2];
}

/* ---- the two measured ceilings ------------------------------------------ */

/* Device-to-device copy of 1 GiB: bytes read + written per second. */
static double measure_copy_bw(int dev) {
    CK(cudaSetDevice(dev));
    const size_t bytes = 1ull << 30;
    void *a, *b;
    CK(cudaMalloc(&a, bytes));
    CK(cudaMalloc(&b, bytes));
    CK(cudaMemset(a, 1, bytes));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    float t[10];
    for (int i = 0; i < 12; i++) {
        CK(cudaEventRecord(e0));
        CK(cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice));
        CK(cudaEventRecord(e1));
        CK(cudaEventSynchronize(e1));
        if (i >= 2) CK(cudaEventElapsedTime(&t[i - 2], e0, e1));
    }
    cudaFree(a);
    cudaFree(b);
    return 2.0 * (double)bytes / (median(t, 10) * 1e-3);
}

/* One flag hop between GPU 0 and GPU 1: st.release.sys / ld.acquire.sys
 * ping-pong through peer pointers; the hop is the round trip / 2. */
static __global__ void pingpong_kernel(unsigned long long *mine, unsigned long long *peer,
                                       int first, int n) {
    for (int i = 1; i <= n; i++) {
        if (first) {
            asm volatile("st.release.sys.global.u64 [%0], %1;" ::"l"(peer), "l"((unsigned long long)i) : "memory");
            unsigned long long v;
            do asm volatile("ld.acquire.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(mine) : "memory");
            while (v != (unsigned long long)i);
        } else {
            unsigned long long v;
            do asm volatile("ld.acquire.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(mine) : "memory");
            while (v != (unsigned long long)i);
            asm volatile("st.release.sys.global.u64 [%0], %1;" ::"l"(peer), "l"((unsigned long long)i) : "memory");
        }
    }
}

static double measure_hop_us(int ndev) {
    if (ndev < 2) return 0.0;
    unsigned long long *f[2];
    for (int d = 0; d < 2; d++) {
        CK(cudaSetDevice(d));
        cudaDeviceEnablePeerAccess(1 - d, 0);
        (void)cudaGetLastError();
        CK(cudaMalloc(&f[d], 8));
        CK(cudaMemset(f[d], 0, 8));
        CK(cudaDeviceSynchronize());
    }
    const int n = 2000;
    cudaEvent_t e0, e1;
    CK(cudaSetDevice(0));
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    CK(cudaSetDevice(1));
    pingpong_kernel<<<1, 1>>>(f[1], f[0], 0, n);
    CK(cudaSetDevice(0));
    CK(cudaEventRecord(e0));
    pingpong_kernel<<<1, 1>>>(f[0], f[1], 1, n);
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    float ms;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    CK(cudaSetDevice(1));
    CK(cudaDeviceSynchronize());
    cudaFree(f[1]);
    CK(cudaSetDevice(0));
    cudaFree(f[0]);
    return ms * 1e3 / n / 2.0;
}

/* ---- one configuration -------------------------------------------------- */

typedef struct {
    const bench_config_t *c;
    int R, M, warmup, iters;
    dfm_config_t cfg;
    dfm_unique_id_t id;
    int64_t *idx[8][6];  /* per rank, per T */
    float *wt[8][6];
    int active[8][6];    /* local experts that receive a token */
    float t_disp[8][6], t_comb[8][6], t_fused[8][6];
    pthread_barrier_t bar;
} bench_world_t;

typedef struct {
    bench_world_t *w;
    int rank;
} bench_arg_t;

static void *bench_rank(void *p) {
    bench_arg_t *a = (bench_arg_t *)p;
    bench_world_t *w = a->w;
    const bench_config_t *c = w->c;
    const int rank = a->rank, R = w->R, M = w->M, G = c->E / R, H = c->H, I = c->I, K = c->K;
    const size_t cb = c->quant == DFM_QUANT_BF16 ? 2 : 1, rows = (size_t)G * R * M;
    CK(cudaSetDevice(rank));
    dfm_config_t cfg = w->cfg;
    cfg.device = rank;
    dfm_ctx_t *ctx = NULL;
    char err[512];
    if (dfm_ctx_create(&ctx, &cfg, &w->id, rank, err, sizeof err) != DFM_SUCCESS) {
        fprintf(stderr, "rank %d: %s\n", rank, err);
        exit(2);
    }
    /* Weight sets rotated so that they are not served from L2 (50 MB). */
    const size_t wbytes = (size_t)G * 3 * I * H * cb;
    int nsets = (int)((256ull << 20) / wbytes) + 1;
    if (nsets > 4) nsets = 4;
    void *w1[4], *w2[4];
    float *s1, *s2;
    for (int s = 0; s < nsets; s++) {
        CK(cudaMalloc(&w1[s], (size_t)G * 2 * I * H * cb));
        CK(cudaMalloc(&w2[s], (size_t)G * H * I * cb));
        CK(cudaMemset(w1[s], 0x31, (size_t)G * 2 * I * H * cb)); /* small codes, no NaN */
        CK(cudaMemset(w2[s], 0x31, (size_t)G * H * I * cb));
    }
    CK(cudaMalloc(&s1, (size_t)G * 2 * I * 4));
    CK(cudaMalloc(&s2, (size_t)G * H * 4));
    CK(cudaMemset(s1, 0x3c, (size_t)G * 2 * I * 4)); /* 0.0115 */
    CK(cudaMemset(s2, 0x3c, (size_t)G * H * 4));
    uint16_t *hx = (uint16_t *)malloc((size_t)M * H * 2);
    for (size_t i = 0; i < (size_t)M * H; i++) hx[i] = f2bf((float)(rng_uniform() * 2 - 1));
    void *x, *out, *recv_x, *y, *idx, *wt;
    float *recv_scale;
    int32_t *recv_count;
    int64_t *range;
    CK(cudaMalloc(&x, (size_t)M * H * 2));
    CK(cudaMemcpy(x, hx, (size_t)M * H * 2, cudaMemcpyHostToDevice));
    CK(cudaMalloc(&out, (size_t)M * H * 2));
    CK(cudaMalloc(&recv_x, rows * H * cb));
    CK(cudaMalloc(&y, rows * H * 2));
    CK(cudaMemset(y, 0, rows * H * 2));
    CK(cudaMalloc(&recv_scale, rows * 4));
    CK(cudaMalloc(&recv_count, G * 4));
    CK(cudaMalloc(&range, G * R * 8));
    CK(cudaMalloc(&idx, (size_t)M * K * 8));
    CK(cudaMalloc(&wt, (size_t)M * K * 4));
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    const int n = w->warmup + w->iters;
    cudaEvent_t ev[2][64];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 64; j++) CK(cudaEventCreate(&ev[i][j]));
    float *td = (float *)malloc(n * sizeof(float)), *tc = (float *)malloc(n * sizeof(float)),
          *tf = (float *)malloc(n * sizeof(float));

    for (int ti = 0; ti < 6 && c->Ts[ti]; ti++) {
        const int T = c->Ts[ti];
        CK(cudaMemcpy(idx, w->idx[rank][ti], (size_t)T * K * 8, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(wt, w->wt[rank][ti], (size_t)T * K * 4, cudaMemcpyHostToDevice));
        for (int it = 0; it < n; it++) {
            const int set = it % nsets;
            dfm_dispatch_args_t da = {};
            da.x = x;
            da.topk_idx = (const int64_t *)idx;
            da.num_tokens = T;
            da.num_topk = K;
            da.quant = c->quant;
            da.recv_x = recv_x;
            da.recv_scale = recv_scale;
            da.recv_count = recv_count;
            da.layout_range = range;
            da.stream = st;
            dfm_handle_t h;
            dfm_combine_args_t ca = {};
            ca.y = y;
            ca.topk_idx = (const int64_t *)idx;
            ca.topk_weights = (const float *)wt;
            ca.handle = &h;
            ca.out = out;
            ca.stream = st;
            dfm_moe_args_t fa = {};
            fa.x = x;
            fa.topk_idx = (const int64_t *)idx;
            fa.topk_weights = (const float *)wt;
            fa.num_tokens = T;
            fa.num_topk = K;
            fa.quant = c->quant;
            fa.w1 = w1[set];
            fa.w1_scale = s1;
            fa.w2 = w2[set];
            fa.w2_scale = s2;
            fa.out = out;
            fa.stream = st;
            CK(cudaEventRecord(ev[0][0], st));
            if (dfm_dispatch(ctx, &da, &h) != DFM_SUCCESS) fprintf(stderr, "%s\n", dfm_ctx_last_error(ctx));
            CK(cudaEventRecord(ev[0][1], st));
            if (dfm_combine(ctx, &ca) != DFM_SUCCESS) fprintf(stderr, "%s\n", dfm_ctx_last_error(ctx));
            CK(cudaEventRecord(ev[0][2], st));
            if (dfm_fused_moe(ctx, &fa) != DFM_SUCCESS) fprintf(stderr, "%s\n", dfm_ctx_last_error(ctx));
            CK(cudaEventRecord(ev[0][3], st));
            CK(cudaEventSynchronize(ev[0][3]));
            CK(cudaEventElapsedTime(&td[it], ev[0][0], ev[0][1]));
            CK(cudaEventElapsedTime(&tc[it], ev[0][1], ev[0][2]));
            CK(cudaEventElapsedTime(&tf[it], ev[0][2], ev[0][3]));
        }
        w->t_disp[rank][ti] = median(td + w->warmup, w->iters) * 1e3f;
        w->t_comb[rank][ti] = median(tc + w->warmup, w->iters) * 1e3f;
        w->t_fused[rank][ti] = median(tf + w->warmup, w->iters) * 1e3f;
        dfm_status_t ae;
        dfm_get_async_error(ctx, &ae);
        if (ae != DFM_SUCCESS) fprintf(stderr, "rank %d async error: %s\n", rank, dfm_ctx_last_error(ctx));
    }
    pthread_barrier_wait(&w->bar);
    dfm_ctx_destroy(ctx);
    for (int s = 0; s < nsets; s++) {
        cudaFree(w1[s]);
        cudaFree(w2[s]);
    }
    cudaFree(s1); cudaFree(s2); cudaFree(x); cudaFree(out); cudaFree(recv_x); cudaFree(y);
    cudaFree(recv_scale); cudaFree(recv_count); cudaFree(range); cudaFree(idx); cudaFree(wt);
    cudaStreamDestroy(st);
    free(hx); free(td); free(tc); free(tf);
    return NULL;
}

int main(int argc, char **argv) {
    int R = 0, warmup = 5, iters = 30, opt;
    const char *filter = NULL, *csv = NULL;
    while ((opt = getopt(argc, argv, "r:c:w:n:o:")) != -1) {
        if (opt == 'r') R = atoi(optarg);
        else if (opt == 'c') filter = optarg;
        else if (opt == 'w') warmup = atoi(optarg);
        else if (opt == 'n') iters = atoi(optarg);
        else if (opt == 'o') csv = optarg;
    }
    int ndev = 0;
    CK(cudaGetDeviceCount(&ndev));
    if (R <= 0) R = ndev;
    if (R > ndev || R > 8) {
        fprintf(stderr, "dfm_bench: %d ranks but %d GPUs\n", R, ndev);
        return 2;
    }
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    const double bw = measure_copy_bw(0), hop = measure_hop_us(R);
    printf("# dfm_bench: %d x %s, d2d copy %.2f TB/s (read+write), flag hop %.2f us\n", R,
           prop.name, bw / 1e12, hop);
    printf("# times: median of %d iterations after %d warm-up, max over ranks, us\n", iters, warmup);
    printf("%-16s %5s %5s %9s %9s %9s %9s %9s %8s\n", "config", "ranks", "T", "floor", "dispatch",
           "combine", "gemms~", "fused", "fus/flr");
    FILE *fcsv = csv ? fopen(csv, "w") : NULL;
    if (fcsv)
        fprintf(fcsv, "config,ranks,T,card,copy_TBps,hop_us,floor_us,dispatch_us,combine_us,gemms_est_us,fused_us,fused_over_floor\n");
    for (int ci = 0; ci < NUM_CONFIGS; ci++) {
        const bench_config_t *c = &configs[ci];
        if (filter && !strstr(c->name, filter)) continue;
        if (c->E % R) continue;
        bench_world_t *w = (bench_world_t *)calloc(1, sizeof *w);
        w->c = c;
        w->R = R;
        w->warmup = warmup;
        w->iters = iters;
        int M = 0;
        for (int ti = 0; ti < 6 && c->Ts[ti]; ti++) M = c->Ts[ti] > M ? c->Ts[ti] : M;
        w->M = M;
        const int G = c->E / R;
        /* routing: top-k of uniform random scores = K distinct random experts */
        for (int r = 0; r < R; r++)
            for (int ti = 0; ti < 6 && c->Ts[ti]; ti++) {
                const int T = c->Ts[ti];
                w->idx[r][ti] = (int64_t *)malloc((size_t)T * c->K * 8);
                w->wt[r][ti] = (float *)malloc((size_t)T * c->K * 4);
                for (int t = 0; t < T; t++)
                    for (int k = 0; k < c->K; k++) {
                        int64_t e;
                        int again;
                        do {
                            e = (int64_t)(rng_u64() % (uint64_t)c->E);
                            again = 0;
                            for (int j = 0; j < k; j++) again |= w->idx[r][ti][t * c->K + j] == e;
                        } while (again);
                        w->idx[r][ti][t * c->K + k] = e;
                        w->wt[r][ti][t * c->K + k] = (float)rng_uniform();
                    }
            }
        dfm_config_t cfg = DFM_CONFIG_INIT;
        cfg.backend = DFM_BACKEND_CUDA;
        cfg.num_ranks = R;
        cfg.hidden = c->H;
        cfg.inter = c->I;
        cfg.num_experts = c->E;
        cfg.max_topk = c->K;
        cfg.num_max_dispatch_tokens_per_rank = M;
        cfg.quant_modes = DFM_QUANT_MASK(c->quant);
        cfg.timeout_s = 20.0;
        w->cfg = cfg;
        if (dfm_get_unique_id(&cfg, &w->id) != DFM_SUCCESS) {
            fprintf(stderr, "dfm_get_unique_id failed\n");
            return 2;
        }
        pthread_barrier_init(&w->bar, NULL, (unsigned)R);
        pthread_t th[8];
        bench_arg_t args[8];
        for (int r = 0; r < R; r++) {
            args[r].w = w;
            args[r].rank = r;
            pthread_create(&th[r], NULL, bench_rank, &args[r]);
        }
        for (int r = 0; r < R; r++) pthread_join(th[r], NULL);
        const size_t cbw = c->quant == DFM_QUANT_BF16 ? 2 : 1;
        for (int ti = 0; ti < 6 && c->Ts[ti]; ti++) {
            /* active experts per owner rank: any token of any rank routed there */
            int max_active = 0;
            for (int owner = 0; owner < R; owner++) {
                int active = 0;
                for (int g = 0; g < G; g++) {
                    const int e = owner * G + g;
                    int hit = 0;
                    for (int r = 0; r < R && !hit; r++)
                        for (int i = 0; i < c->Ts[ti] * c->K && !hit; i++) hit = w->idx[r][ti][i] == e;
                    active += hit;
                }
                max_active = active > max_active ? active : max_active;
            }
            const double floor_us =
                (double)max_active * 3.0 * c->I * c->H * cbw / bw * 1e6 + 2.0 * hop;
            float d = 0, cm = 0, f = 0;
            for (int r = 0; r < R; r++) {
                d = fmaxf(d, w->t_disp[r][ti]);
                cm = fmaxf(cm, w->t_comb[r][ti]);
                f = fmaxf(f, w->t_fused[r][ti]);
            }
            const float gm = f - d - cm;
            printf("%-16s %5d %5d %9.1f %9.1f %9.1f %9.1f %9.1f %8.2f\n", c->name, R, c->Ts[ti],
                   floor_us, d, cm, gm, f, f / floor_us);
            if (fcsv)
                fprintf(fcsv, "%s,%d,%d,%s,%.3f,%.3f,%.1f,%.1f,%.1f,%.1f,%.1f,%.3f\n", c->name, R,
                        c->Ts[ti], prop.name, bw / 1e12, hop, floor_us, d, cm, gm, f, f / floor_us);
        }
        fflush(stdout);
    }
    if (fcsv) fclose(fcsv);
    return 0;
}
