/*
 * dfm_bench.cu - the benchmark driver, nccl-tests form: named configurations
 * of PERF.md, R ranks as threads (one GPU each), warm-up and iteration flags,
 * median CUDA-event times, a floor column, CSV out.
 *
 * Per configuration, T and routing it times, on every rank:
 *   dispatch  dfm_dispatch (route + quantize + send + pack), alone
 *   combine   dfm_combine (y home + weighted reduce), alone
 *   layer     dfm_fused_moe as the pipeline of launches (DFM_CUDA_FUSED=0, this
 *             driver's default; the library's own default is the fused kernel)
 *   gemms     the expert phase inside dfm_fused_moe (GEMM1 + SwiGLU, requant,
 *             GEMM2 writing into the home ranks' combine slots), from the
 *             internal phase events (dfm_cuda_time_phases), in a second pass
 * Each is the median over -n iterations after -w warm-up, then the max over
 * ranks (the layer ends when the slowest rank ends). Weights are random codes
 * (never zeros) in >= 2 sets, rotated every call, >= 512 MB apart, so that
 * no call finds its weights in L2 (50-60 MB).
 *
 * The floor (PERF.md), from this run's own measurements:
 *   floor = max over ranks r of max( active_experts(r) * 3*I*H * code bytes / copy_bw,
 *                                    rows(r) * 6*I*H / datasheet tensor peak )
 *           + 2 flag hops
 * copy_bw = device-to-device copy of 1 GiB (bytes read + written, best GPU),
 * hop = st.release.sys / ld.acquire.sys ping-pong between GPU 0 and 1.
 *
 * Routing (PERF.md): "uniform" = K distinct experts from uniform random
 * scores, at every T; "skew" = each slot to one of 2 hot experts with
 * probability 1/2, else uniform (duplicates allowed, as SPEC 3 permits), and
 * "drop10" = uniform with each slot -1 at 10%, both at T = -s (32).
 *
 * With -d DIR the routing of every case is written there (int64 idx[T*K]
 * then float weights[T*K] per rank) with manifest.csv, so that
 * bench/torch_baseline.py times the torch baseline on the very same tokens.
 *
 * With -L every case runs "communication disabled" instead: one rank on GPU 0
 * holding the busiest rank's experts, fed by its own tokens routed so that each
 * expert receives exactly the rows it receives in the R-rank case
 * (local_routing); the rows keep the R-rank case's config, ranks, T and
 * routing names and floor, so that layer(R ranks) - layer(-L) is what the
 * communication costs (run it with DFM_CUDA_FUSED=1 for the fused kernel's).
 *
 *   dfm_bench [-r ranks] [-c config-substring] [-t T,T,..] [-s T_routes]
 *             [-w warmup] [-n iters] [-o csv] [-d routing-dir] [-L] [-G]
 *
 * -G: keep PERF.md's experts per rank G at any R: E = table E x R / 4, the row
 * named <config>@E<E> when that differs from the table (R = 8: E doubled, as
 * issue 7 asks; configs with min_ranks keep their E).
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
#include "cuda/cuda_internal.h" /* dfm_cuda_time_phases */

#include "cuda_check.h" /* CK */

#define MAX_T 8
#define MAX_CASES 16
#define MAX_R 8

typedef struct {
    const char *name;
    int H, I, E, K;
    dfm_quant_t quant;
    int Ts[MAX_T]; /* PERF.md's T per rank, 0-terminated */
    int min_ranks; /* run only with at least this many ranks; E never scaled by -G */
} bench_config_t;

/* PERF.md's table (E for 4 ranks); -G scales E by R / 4 so that every rank
 * keeps the table's G. dsv3-e256-ep8 is DeepSeek-V3's own E = 256 on 8 ranks
 * (G = 32), the EP = 8 deployment (issue 7). */
static const bench_config_t configs[] = {
    {"dsv3-e32", 7168, 2048, 32, 8, DFM_QUANT_FP8, {1, 32, 128, 256, 1024, 0}, 0},
    {"dsv3-e256", 7168, 2048, 256, 8, DFM_QUANT_FP8, {32, 128, 0}, 0},
    {"qwen3-235b", 4096, 1536, 128, 8, DFM_QUANT_FP8, {1, 32, 128, 0}, 0},
    {"qwen3-30b-bf16", 2048, 768, 128, 8, DFM_QUANT_BF16, {32, 128, 0}, 0},
    {"dsv3-e32-int8", 7168, 2048, 32, 8, DFM_QUANT_INT8, {32, 0}, 0},
    {"dsv3-e256-ep8", 7168, 2048, 256, 8, DFM_QUANT_FP8, {1, 32, 128, 0}, 8},
};
#define NUM_CONFIGS (int)(sizeof configs / sizeof configs[0])

/* Datasheet dense tensor peaks (H100/H200 SXM: same SMs and clocks). */
#define PEAK_FP8_FLOPS 1979e12
#define PEAK_BF16_FLOPS 989e12

enum { ROUTE_UNIFORM = 0, ROUTE_SKEW = 1, ROUTE_DROP10 = 2 };
static const char *const route_names[] = {"uniform", "skew", "drop10"};

static const char *quant_name(dfm_quant_t q) {
    return q == DFM_QUANT_FP8 ? "fp8" : q == DFM_QUANT_INT8 ? "int8" : "bf16";
}

/* splitmix64, seeded per (config, case, rank) so every run routes alike. */
typedef struct {
    uint64_t s;
} rng_t;
static uint64_t rng_u64(rng_t *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double rng_uniform(rng_t *r) { return (double)(rng_u64(r) >> 11) * (1.0 / 9007199254740992.0); }
static int rng_int(rng_t *r, int n) { return (int)(rng_u64(r) % (uint64_t)n); }

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

/* Random weight codes, never NaN/Inf and never zero-filled: fp8 e4m3 codes
 * of magnitude 0.5..0.94 with random sign; int8 in [-127, 127]; bf16 of
 * magnitude 2^-7..2^-6 with random sign. */
static __global__ void fill_codes_kernel(uint8_t *p, size_t n, uint64_t seed, int mode) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        uint64_t z = seed + (i + 1) * 0x9e3779b97f4a7c15ull;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        uint8_t b = (uint8_t)z;
        if (mode == 0) b = (uint8_t)((b & 0x87u) | 0x30u);
        else if (mode == 1) b = b == 0x80u ? 0x81u : b;
        else b = (i & 1) ? (uint8_t)((b & 0x80u) | 0x3cu) : b; /* bf16, little endian */
        p[i] = b;
    }
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
        CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice));
        CK(cudaEventRecord(e1));
        CK(cudaEventSynchronize(e1));
        if (i >= 2) CK(cudaEventElapsedTime(&t[i - 2], e0, e1));
    }
    cudaFree(a);
    cudaFree(b);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
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
    CK(cudaGetLastError());
    CK(cudaSetDevice(0));
    CK(cudaEventRecord(e0));
    pingpong_kernel<<<1, 1>>>(f[0], f[1], 1, n);
    CK(cudaGetLastError());
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
    int T, route;
    int64_t *idx[MAX_R]; /* per rank [T][K] */
    float *wt[MAX_R];
    /* -L: the busiest rank's experts fed by its own lT tokens (local_routing) */
    int lT;
    int64_t *lidx;
    float *lwt;
    /* per-rank medians, us */
    float disp[MAX_R], comb[MAX_R], layer[MAX_R];
    float ph_disp[MAX_R], ph_gemm[MAX_R], ph_comb[MAX_R], ph_total[MAX_R];
    int failed;
} bench_case_t;

typedef struct {
    const bench_config_t *c;
    int R, M, warmup, iters, num_cases;
    int local; /* -L: one rank, each case's local routing */
    bench_case_t cases[MAX_CASES];
    dfm_config_t cfg;
    dfm_unique_id_t id;
    pthread_barrier_t bar;
} bench_world_t;

typedef struct {
    bench_world_t *w;
    int rank;
} bench_arg_t;

#define MAX_SETS 8

/* Append " name median/max" of v[0..n) to line (" name -" when n = 0). */
static int append_stat(char *line, int len, size_t cap, const char *name, float *v, int n) {
    if ((size_t)len >= cap) return len;
    if (n == 0) return len + snprintf(line + len, cap - (size_t)len, " %s -", name);
    float mx = v[0];
    for (int i = 1; i < n; i++) mx = v[i] > mx ? v[i] : mx;
    return len + snprintf(line + len, cap - (size_t)len, " %s %.1f/%.1f", name, median(v, n), mx);
}

/* With DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1: where the fused kernel's last
 * call spent its time, on stderr: per trace point, the median and the max
 * over CTAs of (stamp - earliest CTA entry), us; then per-CTA phase durations. */
static void print_trace(dfm_ctx_t *ctx, int rank, const char *name, int T, int route, int local) {
    enum { FT_ENTRY, FT_SENT, FT_COUNTS, FT_G1_OPEN, FT_G1_DONE, FT_G2_OPEN, FT_G2_DONE, FT_COMBINE_IN, FT_END,
           FT_ROUTED };
    static const char *pts[DFM_CUDA_TRACE_STAMPS] = {"entry",   "sent",    "counts",     "g1-open", "g1-done",
                                                     "g2-open", "g2-done", "combine-in", "end",     "routed"};
    /* per-CTA durations between consecutive phases (a CTA counts where it
     * has both ends: the GEMM1 ones only with GEMM1 items) */
    static const int seg[][2] = {{FT_ENTRY, FT_SENT},         {FT_SENT, FT_COUNTS},     {FT_ENTRY, FT_G1_OPEN},
                                 {FT_G1_OPEN, FT_G1_DONE},    {FT_G1_DONE, FT_G2_OPEN}, {FT_G2_OPEN, FT_G2_DONE},
                                 {FT_G2_DONE, FT_COMBINE_IN}, {FT_COMBINE_IN, FT_END},  {FT_ENTRY, FT_ROUTED},
                                 {FT_ROUTED, FT_SENT}};
    static const char *segn[] = {"send",       "sent->counts", "to-g1", "g1", "g1->g2", "g2", "wait-peers", "reduce",
                                 "route", "units+arrive"};
    const char *e = getenv("DFM_CUDA_FUSED_TRACE");
    if (e == NULL || strcmp(e, "1") != 0) return;
    enum { CAP = 1024 * DFM_CUDA_TRACE_STRIDE, P = DFM_CUDA_TRACE_STRIDE, S = DFM_CUDA_TRACE_STAMPS };
    static thread_local unsigned long long buf[CAP];
    const int grid = dfm_cuda_fused_trace_get(ctx, buf, CAP);
    if (grid <= 0) return;
    unsigned long long t0 = ~0ull;
    for (int b = 0; b < grid; b++) t0 = buf[(size_t)b * P] < t0 ? buf[(size_t)b * P] : t0;
    char line[1024];
    float v[1024];
    int len = snprintf(line, sizeof line, "trace %s T=%d %s%s rank %d (us from the first entry, median/max over CTAs):",
                       name, T, route_names[route], local ? " -L" : "", rank);
    for (int p = 0; p < S; p++) { /* p = 0: the CTAs' entries (launch skew) */
        int n = 0;
        for (int b = 0; b < grid; b++)
            if (buf[(size_t)b * P + p] >= t0) v[n++] = (float)((double)(buf[(size_t)b * P + p] - t0) * 1e-3);
        len = append_stat(line, len, sizeof line, pts[p], v, n);
    }
    fprintf(stderr, "%s\n", line);
    /* DFM_CUDA_FUSED_TRACE_ITEMS=PREFIX: every CTA's items (its first
     * DFM_CUDA_TRACE_ITEMS) to PREFIX.<config>.T<T>.rank<r>.csv, us from the
     * first entry: taken by the consumers, gate open, GEMM done */
    const char *ip = getenv("DFM_CUDA_FUSED_TRACE_ITEMS");
    if (ip && *ip) {
        char path[512];
        snprintf(path, sizeof path, "%s.%s.T%d.rank%d.csv", ip, name, T, rank);
        FILE *f = fopen(path, "w");
        if (f) {
            fprintf(f, "cta,n,u,g,taken,open,done\n");
            for (int b = 0; b < grid; b++)
                for (int n = 0; n < DFM_CUDA_TRACE_ITEMS; n++) {
                    const unsigned long long *r = buf + (size_t)b * P + DFM_CUDA_TRACE_POINTS + 4 * n;
                    if (r[0] == 0 && n > 0) break;
                    if (r[1] < t0) break;
                    fprintf(f, "%d,%d,%llu,%llu,%.3f,%.3f,%.3f\n", b, n, r[0] >> 12, r[0] & 4095,
                            (double)(r[1] - t0) * 1e-3, (double)(r[2] - t0) * 1e-3,
                            r[3] >= t0 ? (double)(r[3] - t0) * 1e-3 : -1.0);
                }
            fclose(f);
        }
    }
    { /* send-probe: the CTAs whose sends end last */
        int b1 = -1, b2 = -1;
        for (int b = 0; b < grid; b++) {
            const unsigned long long x = buf[(size_t)b * P + FT_SENT];
            if (b1 < 0 || x > buf[(size_t)b1 * P + FT_SENT]) b2 = b1, b1 = b;
            else if (b2 < 0 || x > buf[(size_t)b2 * P + FT_SENT]) b2 = b;
        }
        if (b2 >= 0)
            fprintf(stderr, "trace %s T=%d rank %d last sends: CTA %d at %.1f us, CTA %d at %.1f us\n", name, T, rank,
                    b1, (double)(buf[(size_t)b1 * P + FT_SENT] - t0) * 1e-3, b2,
                    (double)(buf[(size_t)b2 * P + FT_SENT] - t0) * 1e-3);
    }
    len = snprintf(line, sizeof line, "trace %s T=%d %s%s rank %d per-CTA phases (us, median/max over CTAs):", name,
                   T, route_names[route], local ? " -L" : "", rank);
    for (int q = 0; q < (int)(sizeof seg / sizeof seg[0]); q++) {
        int n = 0;
        for (int b = 0; b < grid; b++) {
            const unsigned long long s0 = buf[(size_t)b * P + seg[q][0]], s1 = buf[(size_t)b * P + seg[q][1]];
            if (s0 >= t0 && s1 >= s0) v[n++] = (float)((double)(s1 - s0) * 1e-3);
        }
        len = append_stat(line, len, sizeof line, segn[q], v, n);
    }
    fprintf(stderr, "%s\n", line);
    /* the waits before items' gates (us) and the items, over the CTAs with
     * items of that GEMM */
    static const char *wn[] = {"g1-wait", "g2-wait", "g1-items", "g2-items"};
    len = snprintf(line, sizeof line, "trace %s T=%d %s%s rank %d per-CTA waits (median/max over CTAs):", name, T,
                   route_names[route], local ? " -L" : "", rank);
    for (int q = 0; q < 4; q++) {
        int n = 0;
        for (int b = 0; b < grid; b++) {
            const unsigned long long items = buf[(size_t)b * P + S + 2 + (q & 1)];
            if (items > 0) v[n++] = q < 2 ? (float)((double)buf[(size_t)b * P + S + q] * 1e-3) : (float)items;
        }
        len = append_stat(line, len, sizeof line, wn[q], v, n);
    }
    fprintf(stderr, "%s\n", line);
}

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
    /* Weight sets, rotated every call: >= 2 sets and >= 512 MB between two
     * uses of one set, at most ~30 GB. */
    const size_t w1b = (size_t)G * 2 * I * H * cb, w2b = (size_t)G * H * I * cb;
    int nsets = (int)((512ull << 20) / (w1b + w2b)) + 1;
    if (nsets < 2) nsets = 2;
    if (nsets > MAX_SETS) nsets = MAX_SETS;
    while (nsets > 1 && (size_t)nsets * (w1b + w2b) > (30ull << 30)) nsets--;
    void *w1[MAX_SETS], *w2[MAX_SETS];
    float *s1, *s2;
    const int mode = c->quant == DFM_QUANT_FP8 ? 0 : c->quant == DFM_QUANT_INT8 ? 1 : 2;
    for (int s = 0; s < nsets; s++) {
        CK(cudaMalloc(&w1[s], w1b));
        CK(cudaMalloc(&w2[s], w2b));
        fill_codes_kernel<<<1024, 256>>>((uint8_t *)w1[s], w1b, 0x1000u * rank + 2 * s, mode);
        fill_codes_kernel<<<1024, 256>>>((uint8_t *)w2[s], w2b, 0x1000u * rank + 2 * s + 1, mode);
        CK(cudaGetLastError());
    }
    CK(cudaMalloc(&s1, (size_t)G * 2 * I * 4));
    CK(cudaMalloc(&s2, (size_t)G * H * 4));
    CK(cudaMemset(s1, 0x3c, (size_t)G * 2 * I * 4)); /* 0.0115 */
    CK(cudaMemset(s2, 0x3c, (size_t)G * H * 4));
    rng_t xr = {0xabcdefull + (uint64_t)rank};
    uint16_t *hx = (uint16_t *)malloc((size_t)M * H * 2);
    for (size_t i = 0; i < (size_t)M * H; i++) hx[i] = f2bf((float)(rng_uniform(&xr) * 2 - 1));
    void *x, *out, *recv_x, *y, *idx, *wt;
    float *recv_scale;
    int32_t *recv_count;
    int64_t *range;
    CK(cudaMalloc(&x, (size_t)M * H * 2));
    CK(cudaMemcpy(x, hx, (size_t)M * H * 2, cudaMemcpyHostToDevice));
    CK(cudaMalloc(&out, (size_t)M * H * 2));
    CK(cudaMalloc(&recv_x, rows * H * cb));
    CK(cudaMalloc(&y, rows * H * 2));
    fill_codes_kernel<<<1024, 256>>>((uint8_t *)y, rows * H * 2, 0x77u + rank, 2);
    CK(cudaGetLastError());
    CK(cudaMalloc(&recv_scale, rows * 4));
    CK(cudaMalloc(&recv_count, G * 4));
    CK(cudaMalloc(&range, G * R * 8));
    CK(cudaMalloc(&idx, (size_t)M * K * 8));
    CK(cudaMalloc(&wt, (size_t)M * K * 4));
    CK(cudaDeviceSynchronize());
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    const int n = w->warmup + w->iters;
    cudaEvent_t ev[4], ph[4];
    for (int j = 0; j < 4; j++) {
        CK(cudaEventCreate(&ev[j]));
        CK(cudaEventCreate(&ph[j]));
    }
    float *t[7];
    for (int j = 0; j < 7; j++) t[j] = (float *)malloc(n * sizeof(float));

    for (int ci = 0; ci < w->num_cases; ci++) {
        bench_case_t *bc = &w->cases[ci];
        const int T = w->local ? bc->lT : bc->T;
        if (w->local && T == 0) continue; /* no local equivalent (over SPEC's 1024 tokens) */
        CK(cudaMemcpy(idx, w->local ? bc->lidx : bc->idx[rank], (size_t)T * K * 8, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(wt, w->local ? bc->lwt : bc->wt[rank], (size_t)T * K * 4, cudaMemcpyHostToDevice));
        int bad = 0;
        /* pass 0: dispatch, combine, whole layer; pass 1: layer with phase events */
        for (int pass = 0; pass < 2; pass++) {
            if (pass == 1 && dfm_cuda_time_phases(ctx, ph) != DFM_SUCCESS) {
                fprintf(stderr, "rank %d: dfm_cuda_time_phases failed\n", rank);
                exit(2);
            }
            for (int it = 0; it < n; it++) {
                const int set = (it + pass) % nsets;
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
                if (pass == 1) {
                    bad |= dfm_fused_moe(ctx, &fa) != DFM_SUCCESS;
                    CK(cudaEventSynchronize(ph[3]));
                    CK(cudaEventElapsedTime(&t[3][it], ph[0], ph[1]));
                    CK(cudaEventElapsedTime(&t[4][it], ph[1], ph[2]));
                    CK(cudaEventElapsedTime(&t[5][it], ph[2], ph[3]));
                    CK(cudaEventElapsedTime(&t[6][it], ph[0], ph[3]));
                    continue;
                }
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
                CK(cudaEventRecord(ev[0], st));
                bad |= dfm_dispatch(ctx, &da, &h) != DFM_SUCCESS;
                CK(cudaEventRecord(ev[1], st));
                bad |= dfm_combine(ctx, &ca) != DFM_SUCCESS;
                CK(cudaEventRecord(ev[2], st));
                bad |= dfm_fused_moe(ctx, &fa) != DFM_SUCCESS;
                CK(cudaEventRecord(ev[3], st));
                CK(cudaEventSynchronize(ev[3]));
                CK(cudaEventElapsedTime(&t[0][it], ev[0], ev[1]));
                CK(cudaEventElapsedTime(&t[1][it], ev[1], ev[2]));
                CK(cudaEventElapsedTime(&t[2][it], ev[2], ev[3]));
            }
            if (pass == 1) dfm_cuda_time_phases(ctx, NULL);
        }
        print_trace(ctx, rank, c->name, T, bc->route, w->local);
        float *med[7] = {&bc->disp[rank], &bc->comb[rank], &bc->layer[rank], &bc->ph_disp[rank],
                         &bc->ph_gemm[rank], &bc->ph_comb[rank], &bc->ph_total[rank]};
        for (int j = 0; j < 7; j++) *med[j] = median(t[j] + w->warmup, w->iters) * 1e3f;
        dfm_status_t ae = DFM_SUCCESS;
        dfm_get_async_error(ctx, &ae);
        if (bad || ae != DFM_SUCCESS) {
            fprintf(stderr, "rank %d %s T=%d %s: %s\n", rank, c->name, T, route_names[bc->route],
                    dfm_ctx_last_error(ctx));
            bc->failed = 1;
        }
    }
    pthread_barrier_wait(&w->bar);
    dfm_ctx_destroy(ctx);
    for (int s = 0; s < nsets; s++) {
        cudaFree(w1[s]);
        cudaFree(w2[s]);
    }
    cudaFree(s1); cudaFree(s2); cudaFree(x); cudaFree(out); cudaFree(recv_x); cudaFree(y);
    cudaFree(recv_scale); cudaFree(recv_count); cudaFree(range); cudaFree(idx); cudaFree(wt);
    for (int j = 0; j < 4; j++) {
        cudaEventDestroy(ev[j]);
        cudaEventDestroy(ph[j]);
    }
    cudaStreamDestroy(st);
    free(hx);
    for (int j = 0; j < 7; j++) free(t[j]);
    return NULL;
}

/* Routing of one case on one rank (PERF.md). */
static void make_routing(const bench_config_t *c, int route, int T, rng_t *r, int hot0, int hot1,
                         int64_t *idx, float *wt) {
    const int K = c->K, E = c->E;
    for (int t = 0; t < T; t++)
        for (int k = 0; k < K; k++) {
            int64_t e;
            if (route == ROUTE_SKEW && rng_int(r, 2)) {
                e = rng_int(r, 2) ? hot0 : hot1;
            } else if (route == ROUTE_SKEW) {
                e = rng_int(r, E);
            } else { /* K distinct experts = top-k of uniform random scores */
                int again;
                do {
                    e = rng_int(r, E);
                    again = 0;
                    for (int j = 0; j < k; j++) again |= idx[t * K + j] == e;
                } while (again);
            }
            idx[t * K + k] = e;
            wt[t * K + k] = (float)rng_uniform(r);
        }
    if (route == ROUTE_DROP10)
        for (int i = 0; i < T * K; i++)
            if (rng_int(r, 10) == 0) idx[i] = -1;
}

/*
 * -L ("communication disabled"): the same per-expert row counts as the
 * busiest rank o of the R-rank case (most received rows), every token local.
 * A one-rank world holds o's G experts; its lT tokens are routed so that
 * expert g receives exactly rows(o, g) of them: the rows of each expert in
 * turn go to consecutive tokens (cyclically), so one token never names an
 * expert twice, and lT = max(max_g rows, ceil(total / K)) keeps every token
 * within K slots (unused slots -1). lT = 0 when over SPEC's 1024 tokens.
 */
static void local_routing(bench_case_t *bc, int R, int E, int K, rng_t *r) {
    const int G = E / R;
    int *rows = (int *)calloc((size_t)E, sizeof(int));
    for (int src = 0; src < R; src++)
        for (int t = 0; t < bc->T; t++)
            for (int k = 0; k < K; k++) {
                const int64_t e = bc->idx[src][t * K + k];
                int dup = e < 0;
                for (int j = 0; j < k && !dup; j++) dup = bc->idx[src][t * K + j] == e;
                if (!dup) rows[e]++;
            }
    int o = 0, best = -1;
    for (int q = 0; q < R; q++) {
        int n = 0;
        for (int g = 0; g < G; g++) n += rows[q * G + g];
        if (n > best) best = n, o = q;
    }
    int mx = 0;
    for (int g = 0; g < G; g++) mx = rows[o * G + g] > mx ? rows[o * G + g] : mx;
    int lT = (best + K - 1) / K;
    lT = mx > lT ? mx : lT;
    bc->lT = lT <= 1024 ? lT : 0;
    bc->lidx = (int64_t *)malloc((size_t)(bc->lT ? bc->lT : 1) * K * 8);
    bc->lwt = (float *)malloc((size_t)(bc->lT ? bc->lT : 1) * K * 4);
    int *used = (int *)calloc((size_t)(bc->lT ? bc->lT : 1), sizeof(int));
    for (int i = 0; i < bc->lT * K; i++) {
        bc->lidx[i] = -1;
        bc->lwt[i] = (float)rng_uniform(r);
    }
    long long cursor = 0;
    for (int g = 0; g < G && bc->lT; g++)
        for (int j = 0; j < rows[o * G + g]; j++, cursor++) {
            const int t = (int)(cursor % bc->lT);
            bc->lidx[t * K + used[t]++] = g;
        }
    free(used);
    free(rows);
}

static int parse_list(const char *s, int *v, int max) {
    int n = 0;
    while (s && *s && n < max) {
        v[n++] = atoi(s);
        s = strchr(s, ',');
        if (s) s++;
    }
    return n;
}

int main(int argc, char **argv) {
    /* The library runs the one-kernel operator unless DFM_CUDA_FUSED=0; this
     * driver's own default stays the pipeline of launches (its dispatch / gemms /
     * combine columns are the pipeline's phases): DFM_CUDA_FUSED=1 for the fused. */
    setenv("DFM_CUDA_FUSED", "0", 0);
    int R = 0, warmup = 5, iters = 30, opt, route_T = 32, num_tf = 0, tf[MAX_T], local = 0, keep_g = 0;
    const char *filter = NULL, *csv = NULL, *dump = NULL;
    while ((opt = getopt(argc, argv, "r:c:t:s:w:n:o:d:LG")) != -1) {
        if (opt == 'r') R = atoi(optarg);
        else if (opt == 'c') filter = optarg;
        else if (opt == 't') num_tf = parse_list(optarg, tf, MAX_T - 1);
        else if (opt == 's') route_T = atoi(optarg);
        else if (opt == 'w') warmup = atoi(optarg);
        else if (opt == 'n') iters = atoi(optarg);
        else if (opt == 'o') csv = optarg;
        else if (opt == 'd') dump = optarg;
        else if (opt == 'L') local = 1;
        else if (opt == 'G') keep_g = 1;
        else {
            fprintf(stderr, "usage: %s [-r ranks] [-c config] [-t T,T,..] [-s T_routes] "
                            "[-w warmup] [-n iters] [-o csv] [-d routing-dir] [-L] [-G]\n", argv[0]);
            return 2;
        }
    }
    if (iters < 1) iters = 1;
    int ndev = 0;
    CK(cudaGetDeviceCount(&ndev));
    if (R <= 0) R = ndev;
    /* -L runs on GPU 0 alone: the R ranks only shape the routing */
    if ((R > ndev && !local) || R > MAX_R) {
        fprintf(stderr, "dfm_bench: %d ranks but %d GPUs\n", R, ndev);
        return 2;
    }
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    double bw = 0;
    for (int d = 0; d < (local ? 1 : R); d++) {
        const double b = measure_copy_bw(d);
        bw = b > bw ? b : bw;
    }
    const double hop = measure_hop_us(R <= ndev ? R : ndev);
    printf("# dfm_bench: %d x %s, d2d copy %.2f TB/s (read+write, best GPU), flag hop %.2f us\n",
           R, prop.name, bw / 1e12, hop);
    printf("# times: median of %d iterations after %d warm-up, max over ranks, us; "
           "gemms = expert phase inside the layer\n", iters, warmup);
    /* which path dfm_fused_moe takes, and the fused kernel's knobs set in vain
     * (DFM_CUDA_FUSED_*: read by the kernel only; this driver's default is the
     * pipeline, so a knob without DFM_CUDA_FUSED=1 changes nothing) */
    const char *fe = getenv("DFM_CUDA_FUSED");
    const int fused = fe && !strcmp(fe, "1");
    printf("# path: %s\n", fused ? "the fused kernel (DFM_CUDA_FUSED=1)"
                                 : "the pipeline of launches (DFM_CUDA_FUSED=0, this driver's default)");
    for (char **e = environ; !fused && *e; e++)
        if (!strncmp(*e, "DFM_CUDA_FUSED_", 15))
            fprintf(stderr, "dfm_bench: %.*s is set, but the pipeline runs: the fused kernel's knobs need "
                            "DFM_CUDA_FUSED=1\n", (int)strcspn(*e, "="), *e);
    if (local)
        printf("# -L: communication disabled: one rank on GPU 0 with the busiest rank's experts and "
               "per-expert rows, every token local (ranks and T name the case it mirrors)\n");
    printf("%-15s %5s %5s %-8s %8s %8s %8s %8s %8s %7s\n", "config", "ranks", "T", "routing",
           "floor", "dispatch", "gemms", "combine", "layer", "lay/flr");
    FILE *fcsv = csv ? fopen(csv, "w") : NULL;
    if (csv && !fcsv) {
        fprintf(stderr, "dfm_bench: cannot write %s\n", csv);
        return 2;
    }
    if (fcsv)
        fprintf(fcsv, "config,ranks,T,routing,mode,card,copy_TBps,hop_us,active_max,rows_max,"
                      "floor_weights_us,floor_flops_us,floor_us,dispatch_us,gemms_us,combine_us,"
                      "layer_us,layer_over_floor,layer_dispatch_us,layer_combine_us,"
                      "layer_phased_us,ok\n");
    FILE *man = NULL;
    if (dump) {
        char path[1024];
        snprintf(path, sizeof path, "%s/manifest.csv", dump);
        man = fopen(path, "w");
        if (!man) {
            fprintf(stderr, "dfm_bench: cannot write %s\n", path);
            return 2;
        }
        fprintf(man, "config,H,I,E,K,mode,ranks,M,T,routing,prefix\n");
    }
    int status = 0;
    for (int ci = 0; ci < NUM_CONFIGS; ci++) {
        if (filter && !strstr(configs[ci].name, filter)) continue;
        if (R < configs[ci].min_ranks) continue;
        bench_config_t sc = configs[ci]; /* this run's copy: -G may scale E */
        char sname[64];
        if (keep_g && !sc.min_ranks && R != 4) {
            if ((sc.E * R) % 4) continue;
            sc.E = sc.E * R / 4;
            snprintf(sname, sizeof sname, "%s@E%d", configs[ci].name, sc.E);
            sc.name = sname;
            if (sc.E > DFM_MAX_EXPERTS) {
                fprintf(stderr, "dfm_bench: %s: E = %d is over DFM_MAX_EXPERTS; skipped\n", sc.name, sc.E);
                continue;
            }
        }
        const bench_config_t *c = &sc;
        if (c->E % R) continue;
        bench_world_t *w = (bench_world_t *)calloc(1, sizeof *w);
        w->c = c;
        w->R = R;
        w->warmup = warmup;
        w->iters = iters;
        const int *Ts = num_tf ? tf : c->Ts; /* -t replaces PERF.md's list */
        const int nT = num_tf ? num_tf : MAX_T;
        int cnt = 0;
        for (int ti = 0; ti < nT && Ts[ti] > 0; ti++) {
            w->cases[cnt].T = Ts[ti];
            w->cases[cnt++].route = ROUTE_UNIFORM;
        }
        for (int route = ROUTE_SKEW; route <= ROUTE_DROP10 && route_T > 0; route++) {
            w->cases[cnt].T = route_T;
            w->cases[cnt++].route = route;
        }
        w->num_cases = cnt;
        int M = 0;
        for (int i = 0; i < cnt; i++) M = w->cases[i].T > M ? w->cases[i].T : M;
        w->M = M;
        const int G = c->E / R, K = c->K;
        rng_t hr = {0x5eedull * (ci + 1)};
        const int hot0 = rng_int(&hr, c->E);
        int hot1;
        do hot1 = rng_int(&hr, c->E);
        while (hot1 == hot0);
        for (int i = 0; i < cnt; i++) {
            bench_case_t *bc = &w->cases[i];
            for (int r = 0; r < R; r++) {
                rng_t rr = {0x1234567ull + 7919ull * ci + 104729ull * (uint64_t)bc->T +
                            15485863ull * bc->route + 32452843ull * r};
                bc->idx[r] = (int64_t *)malloc((size_t)bc->T * K * 8);
                bc->wt[r] = (float *)malloc((size_t)bc->T * K * 4);
                make_routing(c, bc->route, bc->T, &rr, hot0, hot1, bc->idx[r], bc->wt[r]);
                if (man) {
                    char path[1024];
                    snprintf(path, sizeof path, "%s/%s.%s.T%d.r%d.bin", dump, c->name,
                             route_names[bc->route], bc->T, r);
                    FILE *f = fopen(path, "wb");
                    if (!f || fwrite(bc->idx[r], 8, (size_t)bc->T * K, f) != (size_t)bc->T * K ||
                        fwrite(bc->wt[r], 4, (size_t)bc->T * K, f) != (size_t)bc->T * K) {
                        fprintf(stderr, "dfm_bench: cannot write %s\n", path);
                        return 2;
                    }
                    fclose(f);
                }
            }
            if (man)
                fprintf(man, "%s,%d,%d,%d,%d,%s,%d,%d,%d,%s,%s.%s.T%d\n", c->name, c->H, c->I,
                        c->E, c->K, quant_name(c->quant), R, M, bc->T, route_names[bc->route],
                        c->name, route_names[bc->route], bc->T);
        }
        if (man) fflush(man);
        bench_config_t lc = *c; /* -L: the busiest rank's G experts, one rank */
        if (local) {
            rng_t lr = {0x10ca1ull + 7919ull * ci};
            int lM = 1;
            for (int i = 0; i < cnt; i++) {
                local_routing(&w->cases[i], R, c->E, K, &lr);
                lM = w->cases[i].lT > lM ? w->cases[i].lT : lM;
            }
            lc.E = G;
            w->c = &lc;
            w->R = 1;
            w->M = lM;
            w->local = 1;
        }
        dfm_config_t cfg = DFM_CONFIG_INIT;
        cfg.backend = DFM_BACKEND_CUDA;
        cfg.num_ranks = w->R;
        cfg.hidden = c->H;
        cfg.inter = c->I;
        cfg.num_experts = w->c->E;
        cfg.max_topk = c->K;
        cfg.num_max_dispatch_tokens_per_rank = w->M;
        cfg.quant_modes = DFM_QUANT_MASK(c->quant);
        cfg.timeout_s = 20.0;
        w->cfg = cfg;
        if (dfm_get_unique_id(&cfg, &w->id) != DFM_SUCCESS) {
            fprintf(stderr, "dfm_get_unique_id failed\n");
            return 2;
        }
        pthread_barrier_init(&w->bar, NULL, (unsigned)w->R);
        pthread_t th[MAX_R];
        bench_arg_t args[MAX_R];
        for (int r = 0; r < w->R; r++) {
            args[r].w = w;
            args[r].rank = r;
            pthread_create(&th[r], NULL, bench_rank, &args[r]);
        }
        for (int r = 0; r < w->R; r++) pthread_join(th[r], NULL);
        pthread_barrier_destroy(&w->bar);
        const size_t cbw = c->quant == DFM_QUANT_BF16 ? 2 : 1;
        const double peak = c->quant == DFM_QUANT_BF16 ? PEAK_BF16_FLOPS : PEAK_FP8_FLOPS;
        const double ih = (double)c->I * c->H;
        char *seen = (char *)malloc((size_t)c->E);
        for (int i = 0; i < cnt; i++) {
            bench_case_t *bc = &w->cases[i];
            /* per owner rank: active local experts (any slot of any rank) and
             * received rows (distinct (source token, expert) pairs) */
            int active[MAX_R] = {0}, nrows[MAX_R] = {0};
            memset(seen, 0, (size_t)c->E);
            for (int r = 0; r < R; r++)
                for (int t = 0; t < bc->T; t++)
                    for (int k = 0; k < K; k++) {
                        const int64_t e = bc->idx[r][t * K + k];
                        if (e < 0) continue;
                        int dup = 0;
                        for (int j = 0; j < k; j++) dup |= bc->idx[r][t * K + j] == e;
                        if (dup) continue;
                        nrows[e / G]++;
                        if (!seen[e]) {
                            seen[e] = 1;
                            active[e / G]++;
                        }
                    }
            double fw = 0, ff = 0, fl = 0;
            int amax = 0, rmax = 0;
            for (int o = 0; o < R; o++) {
                const double wo = active[o] * 3.0 * ih * cbw / bw * 1e6;
                const double fo = nrows[o] * 6.0 * ih / peak * 1e6;
                fw = wo > fw ? wo : fw;
                ff = fo > ff ? fo : ff;
                fl = fmax(fl, fmax(wo, fo));
                amax = active[o] > amax ? active[o] : amax;
                rmax = nrows[o] > rmax ? nrows[o] : rmax;
            }
            const double floor_us = fl + 2.0 * hop;
            float v[7] = {0};
            for (int r = 0; r < R; r++) {
                const float m[7] = {bc->disp[r], bc->comb[r], bc->layer[r], bc->ph_disp[r],
                                    bc->ph_gemm[r], bc->ph_comb[r], bc->ph_total[r]};
                for (int j = 0; j < 7; j++) v[j] = fmaxf(v[j], m[j]);
            }
            const int skip = local && bc->lT == 0; /* no local equivalent: no row */
            if (local) {
                free(bc->lidx);
                free(bc->lwt);
            }
            if (skip) {
                for (int r = 0; r < R; r++) {
                    free(bc->idx[r]);
                    free(bc->wt[r]);
                }
                continue;
            }
            status |= bc->failed;
            printf("%-15s %5d %5d %-8s %8.1f %8.1f %8.1f %8.1f %8.1f %7.2f%s\n", c->name, R, bc->T,
                   route_names[bc->route], floor_us, v[0], v[4], v[1], v[2], v[2] / floor_us,
                   bc->failed ? "  FAILED" : "");
            if (fcsv)
                fprintf(fcsv, "%s,%d,%d,%s,%s,%s,%.3f,%.3f,%d,%d,%.1f,%.1f,%.1f,%.1f,%.1f,%.1f,"
                              "%.1f,%.3f,%.1f,%.1f,%.1f,%d\n",
                        c->name, R, bc->T, route_names[bc->route], quant_name(c->quant), prop.name,
                        bw / 1e12, hop, amax, rmax, fw, ff, floor_us, v[0], v[4], v[1], v[2],
                        v[2] / floor_us, v[3], v[5], v[6], !bc->failed);
            for (int r = 0; r < R; r++) {
                free(bc->idx[r]);
                free(bc->wt[r]);
            }
        }
        free(seen);
        free(w);
        fflush(stdout);
        if (fcsv) fflush(fcsv);
    }
    if (fcsv) fclose(fcsv);
    if (man) fclose(man);
    return status ? 1 : 0;
}
