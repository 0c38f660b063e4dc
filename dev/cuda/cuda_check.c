/*
 * cuda_check.c - scratch self-check of the CUDA backend against the CPU
 * backend (the reference), R ranks as threads of one process, one GPU each.
 *
 * Per case, every rank runs the same inputs through both backends:
 *   1. dfm_dispatch twice (two calls in flight): recv_count, layout_range,
 *      ep_recv_count, and every valid row's codes, scale and src_info must
 *      be bit-identical;
 *   2. dfm_combine of both (in order) with the same y: out bit-identical;
 *   3. dfm_fused_moe: out within rel L2 1e-2 (fp8/int8) / 5e-3 (bf16) of
 *      the CPU backend, and also of the tests' float64 oracle;
 *   4. a run of fused calls with varying T (and T = 0), the last checked;
 *   5. ids out of range give DFM_ERROR_INVALID_EXPERT on every rank.
 * With -t, the last rank skips a fused call and the others must report
 * DFM_ERROR_TIMEOUT instead of hanging.
 *
 *   cuda_check [-r ranks] [-c substring] [-t] [-s seed] [-n iters] [-T timeout_s]
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cuda_runtime.h>

#include "dfm.h"
#include "common/dfm_common.h"
#include "../../tests/harness.h"
#include "../../tests/oracle.h"

typedef struct {
    const char *name;
    int H, I, E_per_rank, K, M;
    dfm_quant_t quant;
    int routing; /* 0 top-k, 1 skewed, 2 -1 slots + duplicates, 3 with invalid ids */
    int t_mode;  /* 0: T = M on every rank; 1: T differs per rank incl. 0 */
} check_case_t;

static const check_case_t cases[] = {
    {"fp8-small", 256, 128, 4, 4, 32, DFM_QUANT_FP8, 0, 0},
    {"fp8-dup-neg", 512, 192, 3, 6, 48, DFM_QUANT_FP8, 2, 1},
    {"fp8-skew", 1024, 256, 8, 8, 64, DFM_QUANT_FP8, 1, 0},
    {"int8-topk", 512, 256, 4, 8, 40, DFM_QUANT_INT8, 0, 1},
    {"bf16-topk", 384, 128, 4, 4, 33, DFM_QUANT_BF16, 2, 0},
    {"fp8-k16", 256, 64, 8, 16, 20, DFM_QUANT_FP8, 2, 1},
    {"fp8-invalid", 256, 128, 2, 4, 16, DFM_QUANT_FP8, 3, 0},
    {"fp8-wide", 2048, 512, 2, 2, 128, DFM_QUANT_FP8, 0, 1},
};
#define NUM_CASES (int)(sizeof cases / sizeof cases[0])

typedef struct {
    const check_case_t *c;
    int R, G, E, T[DFM_MAX_RANKS], T2[DFM_MAX_RANKS];
    dfm_config_t cfg_cpu, cfg_cuda;
    dfm_unique_id_t id_cpu, id_cuda;
    uint16_t *x[DFM_MAX_RANKS], *x2[DFM_MAX_RANKS];
    int64_t *idx[DFM_MAX_RANKS], *idx2[DFM_MAX_RANKS];
    float *wt[DFM_MAX_RANKS], *wt2[DFM_MAX_RANKS];
    uint16_t *w13, *w2;                 /* checkpoint [E][2I][H], [E][H][I] */
    void *w1q[DFM_MAX_RANKS], *w2q[DFM_MAX_RANKS];
    float *s1[DFM_MAX_RANKS], *s2[DFM_MAX_RANKS];
    oracle_weights_t ow;
    int timeout_test, iters;
    double timeout_s;
    pthread_barrier_t bar;
    int fails;
    pthread_mutex_t mu;
} world_t;

static double rel_l2(const uint16_t *a, const uint16_t *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)dfm_bf16_to_f32(a[i]) - (double)dfm_bf16_to_f32(b[i]);
        num += d * d;
        den += (double)dfm_bf16_to_f32(b[i]) * dfm_bf16_to_f32(b[i]);
    }
    if (den == 0) return num == 0 ? 0 : INFINITY;
    return sqrt(num / den);
}

#define FAIL(w, ...)                                                                       \
    do {                                                                                   \
        pthread_mutex_lock(&(w)->mu);                                                      \
        if ((w)->fails++ < 20) {                                                           \
            printf("  FAIL: " __VA_ARGS__);                                                \
            printf("\n");                                                                  \
        }                                                                                  \
        pthread_mutex_unlock(&(w)->mu);                                                    \
    } while (0)

#define CK(call)                                                                           \
    do {                                                                                   \
        cudaError_t e_ = (call);                                                           \
        if (e_ != cudaSuccess) {                                                           \
            printf("CUDA error %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, __LINE__); \
            exit(2);                                                                       \
        }                                                                                  \
    } while (0)

static void *dup_dev(const void *h, size_t bytes) {
    void *d = NULL;
    CK(cudaMalloc(&d, bytes ? bytes : 16));
    if (bytes) CK(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice));
    return d;
}

static void gen_routing(th_rng_t *rng, const check_case_t *c, int E, int T, int64_t *idx,
                        float *wt) {
    for (int t = 0; t < T; t++) {
        int64_t *row = idx + (size_t)t * c->K;
        /* distinct top-k of random scores = random distinct experts */
        for (int k = 0; k < c->K; k++) {
            int64_t e;
            int again;
            do {
                e = th_rng_int(rng, E);
                if (c->routing == 1 && th_rng_uniform(rng) < 0.5) e = th_rng_int(rng, 2);
                again = 0;
                for (int j = 0; j < k; j++) again |= row[j] == e;
            } while (again && c->K <= E && c->routing != 1);
            row[k] = e;
        }
        for (int k = 0; k < c->K; k++) {
            double u = th_rng_uniform(rng);
            if (c->routing >= 2 && u < 0.1) row[k] = -1;
            else if (c->routing >= 2 && u < 0.2 && k > 0) row[k] = row[th_rng_int(rng, k)];
            else if (c->routing == 3 && u < 0.25) row[k] = (th_rng_uniform(rng) < 0.5) ? E + 3 : -7;
            wt[(size_t)t * c->K + k] = (float)th_rng_uniform(rng);
        }
        if (c->routing >= 2 && t % 7 == 3)
            for (int k = 0; k < c->K; k++) row[k] = -1; /* a token with no expert */
    }
}

static void gen_x(th_rng_t *rng, uint16_t *x, int T, int H) {
    for (size_t i = 0; i < (size_t)T * H; i++) {
        double v = th_rng_normal(rng);
        if (th_rng_uniform(rng) < 0.002) v *= 50.0;
        x[i] = dfm_f32_to_bf16((float)v);
    }
}

static void world_init(world_t *w, const check_case_t *c, int R, uint64_t seed) {
    th_rng_t rng;
    th_rng_seed(&rng, seed);
    w->c = c;
    w->R = R;
    w->G = c->E_per_rank;
    w->E = c->E_per_rank * R;
    const int H = c->H, I = c->I, E = w->E, G = w->G;
    for (int r = 0; r < R; r++) {
        w->T[r] = c->t_mode == 0 ? c->M : (r % 3 == 1 ? 0 : c->M - 3 * r);
        if (w->T[r] < 0) w->T[r] = 0;
        w->T2[r] = (c->M + r) / 2;
        w->x[r] = th_alloc((size_t)(w->T[r] + 1) * H * 2);
        w->x2[r] = th_alloc((size_t)(w->T2[r] + 1) * H * 2);
        w->idx[r] = th_alloc((size_t)(w->T[r] + 1) * c->K * 8);
        w->idx2[r] = th_alloc((size_t)(w->T2[r] + 1) * c->K * 8);
        w->wt[r] = th_alloc((size_t)(w->T[r] + 1) * c->K * 4);
        w->wt2[r] = th_alloc((size_t)(w->T2[r] + 1) * c->K * 4);
        gen_x(&rng, w->x[r], w->T[r], H);
        gen_x(&rng, w->x2[r], w->T2[r], H);
        gen_routing(&rng, c, E, w->T[r], w->idx[r], w->wt[r]);
        gen_routing(&rng, c, E, w->T2[r], w->idx2[r], w->wt2[r]);
    }
    w->w13 = th_alloc((size_t)E * 2 * I * H * 2);
    w->w2 = th_alloc((size_t)E * H * I * 2);
    for (size_t i = 0; i < (size_t)E * 2 * I * H; i++)
        w->w13[i] = dfm_f32_to_bf16((float)(th_rng_normal(&rng) / sqrt((double)H)));
    for (size_t i = 0; i < (size_t)E * H * I; i++)
        w->w2[i] = dfm_f32_to_bf16((float)(th_rng_normal(&rng) / sqrt((double)I)));
    const size_t cb = c->quant == DFM_QUANT_BF16 ? 2 : 1;
    for (int r = 0; r < R; r++) {
        w->w1q[r] = th_alloc((size_t)G * 2 * I * H * cb);
        w->w2q[r] = th_alloc((size_t)G * H * I * cb);
        w->s1[r] = th_alloc((size_t)G * 2 * I * 4);
        w->s2[r] = th_alloc((size_t)G * H * 4);
        dfm_weights_prepare_w13(w->w13 + (size_t)r * G * 2 * I * H, G, H, I, c->quant, w->w1q[r], w->s1[r]);
        dfm_weights_prepare_w2(w->w2 + (size_t)r * G * H * I, G, H, I, c->quant, w->w2q[r], w->s2[r]);
    }
    oracle_weights_init(&w->ow, w->w13, w->w2, E, H, I, c->quant);
    dfm_config_t cfg = DFM_CONFIG_INIT;
    cfg.num_ranks = R;
    cfg.hidden = H;
    cfg.inter = I;
    cfg.num_experts = E;
    cfg.max_topk = c->K;
    cfg.num_max_dispatch_tokens_per_rank = c->M;
    cfg.quant_modes = DFM_QUANT_MASK(c->quant);
    cfg.timeout_s = w->timeout_test ? 3.0 : w->timeout_s;
    w->cfg_cpu = cfg;
    w->cfg_cuda = cfg;
    w->cfg_cuda.backend = DFM_BACKEND_CUDA;
    if (dfm_get_unique_id(&w->cfg_cpu, &w->id_cpu) != DFM_SUCCESS ||
        dfm_get_unique_id(&w->cfg_cuda, &w->id_cuda) != DFM_SUCCESS) {
        printf("dfm_get_unique_id failed\n");
        exit(2);
    }
    pthread_barrier_init(&w->bar, NULL, (unsigned)R);
    pthread_mutex_init(&w->mu, NULL);
}

typedef struct {
    world_t *w;
    int rank;
} rank_arg_t;

/* One dispatch's outputs on the host. */
typedef struct {
    void *recv_x;
    float *scale;
    int32_t *count, *src_info, *ep;
    int64_t *range;
} disp_out_t;

static void disp_alloc(disp_out_t *o, size_t rows, int G, int R, int H, size_t cb) {
    o->recv_x = th_alloc(rows * H * cb);
    o->scale = th_alloc(rows * 4);
    o->count = th_alloc((size_t)G * 4);
    o->src_info = th_alloc(rows * 4);
    o->ep = th_alloc((size_t)G * R * 4);
    o->range = th_alloc((size_t)G * R * 8);
}

static void compare_dispatch(world_t *w, int rank, const char *tag, const disp_out_t *a,
                             const disp_out_t *b, size_t cb) {
    const int G = w->G, R = w->R, M = w->c->M, H = w->c->H;
    int bad = 0;
    for (int g = 0; g < G; g++) {
        if (a->count[g] != b->count[g]) {
            FAIL(w, "rank %d %s: recv_count[%d] cuda %d cpu %d", rank, tag, g, a->count[g], b->count[g]);
            bad++;
            continue;
        }
        for (int s = 0; s < R; s++) {
            if (a->range[g * R + s] != b->range[g * R + s] || a->ep[g * R + s] != b->ep[g * R + s]) {
                FAIL(w, "rank %d %s: layout_range/ep_recv_count[%d][%d] cuda %llx/%d cpu %llx/%d",
                     rank, tag, g, s, (unsigned long long)a->range[g * R + s], a->ep[g * R + s],
                     (unsigned long long)b->range[g * R + s], b->ep[g * R + s]);
                bad++;
            }
        }
        for (int j = 0; j < b->count[g]; j++) {
            size_t p = (size_t)g * R * M + j;
            if (memcmp((char *)a->recv_x + p * H * cb, (char *)b->recv_x + p * H * cb, H * cb) ||
                memcmp(&a->scale[p], &b->scale[p], 4) || a->src_info[p] != b->src_info[p]) {
                if (bad++ < 3)
                    FAIL(w, "rank %d %s: row %d of expert %d differs (scale %g vs %g, src_info %d vs %d)",
                         rank, tag, j, g, a->scale[p], b->scale[p], a->src_info[p], b->src_info[p]);
            }
        }
    }
    if (bad == 0 && rank == 0) printf("    %s: dispatch bit-exact (rank 0 rows %d..)\n", tag, b->count[0]);
}

static void *rank_main(void *p) {
    rank_arg_t *ra = p;
    world_t *w = ra->w;
    const int rank = ra->rank, R = w->R, G = w->G, H = w->c->H, K = w->c->K, M = w->c->M;
    const dfm_quant_t q = w->c->quant;
    const size_t cb = q == DFM_QUANT_BF16 ? 2 : 1, rows = (size_t)G * R * M;
    const int T = w->T[rank], T2 = w->T2[rank];
    char err[512];
    CK(cudaSetDevice(rank));
    dfm_ctx_t *cpu = NULL, *gpu = NULL;
    if (dfm_ctx_create(&cpu, &w->cfg_cpu, &w->id_cpu, rank, err, sizeof err) != DFM_SUCCESS) {
        FAIL(w, "rank %d cpu create: %s", rank, err);
        return NULL;
    }
    dfm_config_t cfg_cuda = w->cfg_cuda; /* per rank: the device differs */
    cfg_cuda.device = rank;
    double t0 = th_now_s();
    if (dfm_ctx_create(&gpu, &cfg_cuda, &w->id_cuda, rank, err, sizeof err) != DFM_SUCCESS) {
        FAIL(w, "rank %d cuda create: %s", rank, err);
        dfm_ctx_destroy(cpu);
        return NULL;
    }
    if (rank == 0) printf("    contexts created (cuda %.2f s)\n", th_now_s() - t0);
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));

    /* device copies */
    void *d_x = dup_dev(w->x[rank], (size_t)T * H * 2), *d_x2 = dup_dev(w->x2[rank], (size_t)T2 * H * 2);
    void *d_idx = dup_dev(w->idx[rank], (size_t)T * K * 8), *d_idx2 = dup_dev(w->idx2[rank], (size_t)T2 * K * 8);
    void *d_wt = dup_dev(w->wt[rank], (size_t)T * K * 4), *d_wt2 = dup_dev(w->wt2[rank], (size_t)T2 * K * 4);
    void *d_w1 = dup_dev(w->w1q[rank], (size_t)G * 2 * w->c->I * H * cb);
    void *d_w2 = dup_dev(w->w2q[rank], (size_t)G * H * w->c->I * cb);
    void *d_s1 = dup_dev(w->s1[rank], (size_t)G * 2 * w->c->I * 4);
    void *d_s2 = dup_dev(w->s2[rank], (size_t)G * H * 4);

    /* ---- 1+2: two dispatches in flight, then their combines ---- */
    disp_out_t hc[2], hg[2];
    void *d_rx[2], *d_rs[2], *d_rc[2], *d_lr[2], *d_si[2], *d_ep[2];
    for (int i = 0; i < 2; i++) {
        disp_alloc(&hc[i], rows, G, R, H, cb);
        disp_alloc(&hg[i], rows, G, R, H, cb);
        CK(cudaMalloc(&d_rx[i], rows * H * cb));
        CK(cudaMalloc(&d_rs[i], rows * 4));
        CK(cudaMalloc(&d_rc[i], G * 4));
        CK(cudaMalloc(&d_lr[i], G * R * 8));
        CK(cudaMalloc(&d_si[i], rows * 4));
        CK(cudaMalloc(&d_ep[i], G * R * 4));
        CK(cudaMemset(d_rx[i], 0xa5, rows * H * cb));
    }
    dfm_handle_t hcpu[2], hgpu[2];
    for (int i = 0; i < 2; i++) {
        dfm_dispatch_args_t a = {0};
        a.x = i ? w->x2[rank] : w->x[rank];
        a.topk_idx = i ? w->idx2[rank] : w->idx[rank];
        a.num_tokens = i ? T2 : T;
        a.num_topk = K;
        a.quant = q;
        a.recv_x = hc[i].recv_x;
        a.recv_scale = hc[i].scale;
        a.recv_count = hc[i].count;
        a.layout_range = hc[i].range;
        a.recv_src_info = hc[i].src_info;
        a.ep_recv_count = hc[i].ep;
        if (dfm_dispatch(cpu, &a, &hcpu[i]) != DFM_SUCCESS)
            FAIL(w, "rank %d cpu dispatch: %s", rank, dfm_ctx_last_error(cpu));
        a.x = i ? d_x2 : d_x;
        a.topk_idx = i ? d_idx2 : d_idx;
        a.recv_x = d_rx[i];
        a.recv_scale = d_rs[i];
        a.recv_count = d_rc[i];
        a.layout_range = d_lr[i];
        a.recv_src_info = d_si[i];
        a.ep_recv_count = d_ep[i];
        a.stream = s;
        if (dfm_dispatch(gpu, &a, &hgpu[i]) != DFM_SUCCESS)
            FAIL(w, "rank %d cuda dispatch: %s", rank, dfm_ctx_last_error(gpu));
    }
    CK(cudaStreamSynchronize(s));
    for (int i = 0; i < 2; i++) {
        CK(cudaMemcpy(hg[i].recv_x, d_rx[i], rows * H * cb, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(hg[i].scale, d_rs[i], rows * 4, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(hg[i].count, d_rc[i], G * 4, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(hg[i].range, d_lr[i], G * R * 8, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(hg[i].src_info, d_si[i], rows * 4, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(hg[i].ep, d_ep[i], G * R * 4, cudaMemcpyDeviceToHost));
        compare_dispatch(w, rank, i ? "dispatch B" : "dispatch A", &hg[i], &hc[i], cb);
    }
    /* combine inputs: y rows are a function of the received row */
    uint16_t *y = th_alloc(rows * H * 2), *oc = th_alloc((size_t)(M + 1) * H * 2),
             *og = th_alloc((size_t)(M + 1) * H * 2);
    void *d_y = NULL, *d_out = NULL;
    CK(cudaMalloc(&d_y, rows * H * 2));
    CK(cudaMalloc(&d_out, (size_t)(M + 1) * H * 2));
    for (int i = 0; i < 2; i++) {
        for (size_t r = 0; r < rows; r++)
            for (int h = 0; h < H; h++)
                y[r * H + h] = dfm_f32_to_bf16((float)(((r * 131 + h * 7 + i * 17 + rank) % 97) - 48) / 16.0f);
        CK(cudaMemcpy(d_y, y, rows * H * 2, cudaMemcpyHostToDevice));
        const int Ti = i ? T2 : T;
        dfm_combine_args_t a = {0};
        a.y = y;
        a.topk_idx = i ? w->idx2[rank] : w->idx[rank];
        a.topk_weights = i ? w->wt2[rank] : w->wt[rank];
        a.handle = &hcpu[i];
        a.out = oc;
        if (dfm_combine(cpu, &a) != DFM_SUCCESS)
            FAIL(w, "rank %d cpu combine: %s", rank, dfm_ctx_last_error(cpu));
        a.y = d_y;
        a.topk_idx = i ? d_idx2 : d_idx;
        a.topk_weights = i ? d_wt2 : d_wt;
        a.handle = &hgpu[i];
        a.out = d_out;
        a.stream = s;
        CK(cudaMemsetAsync(d_out, 0xff, (size_t)(M + 1) * H * 2, s));
        if (dfm_combine(gpu, &a) != DFM_SUCCESS)
            FAIL(w, "rank %d cuda combine: %s", rank, dfm_ctx_last_error(gpu));
        CK(cudaStreamSynchronize(s));
        CK(cudaMemcpy(og, d_out, (size_t)Ti * H * 2, cudaMemcpyDeviceToHost));
        size_t diff = 0;
        for (size_t e = 0; e < (size_t)Ti * H; e++) diff += og[e] != oc[e];
        if (diff) FAIL(w, "rank %d combine %c: %zu of %zu values differ from cpu", rank, 'A' + i, diff, (size_t)Ti * H);
        else if (rank == 0) printf("    combine %c: bit-exact vs cpu (T=%d)\n", 'A' + i, Ti);
    }

    /* ---- 3+4: fused, then varying T ---- */
    double *ref = th_alloc((size_t)(M + 1) * H * 8);
    for (int it = 0; it < w->iters; it++) {
        const int last = it == w->iters - 1;
        const int Ti = last ? T : (it * 7 + rank * 3) % (T + 1);
        dfm_moe_args_t a = {0};
        a.x = w->x[rank];
        a.topk_idx = w->idx[rank];
        a.topk_weights = w->wt[rank];
        a.num_tokens = Ti;
        a.num_topk = K;
        a.quant = q;
        a.w1 = w->w1q[rank];
        a.w1_scale = w->s1[rank];
        a.w2 = w->w2q[rank];
        a.w2_scale = w->s2[rank];
        a.out = oc;
        if (last || it % 4 == 0) /* the CPU reference is slow: check some */
            if (dfm_fused_moe(cpu, &a) != DFM_SUCCESS)
                FAIL(w, "rank %d cpu fused: %s", rank, dfm_ctx_last_error(cpu));
        a.x = d_x;
        a.topk_idx = d_idx;
        a.topk_weights = d_wt;
        a.w1 = d_w1;
        a.w1_scale = d_s1;
        a.w2 = d_w2;
        a.w2_scale = d_s2;
        a.out = d_out;
        a.stream = s;
        CK(cudaMemsetAsync(d_out, 0xff, (size_t)(M + 1) * H * 2, s));
        if (w->timeout_test && rank == R - 1 && last) {
            /* skip the call: the others must time out */
        } else if (dfm_fused_moe(gpu, &a) != DFM_SUCCESS)
            FAIL(w, "rank %d cuda fused: %s", rank, dfm_ctx_last_error(gpu));
        if (!(last || it % 4 == 0)) continue;
        CK(cudaStreamSynchronize(s));
        if (w->timeout_test && last) break;
        CK(cudaMemcpy(og, d_out, (size_t)Ti * H * 2, cudaMemcpyDeviceToHost));
        const double tol = q == DFM_QUANT_BF16 ? 5e-3 : 1e-2;
        double e_cpu = rel_l2(og, oc, (size_t)Ti * H);
        size_t zeros_bad = 0;
        for (int t = 0; t < Ti; t++) {
            int any = 0;
            for (int k = 0; k < K; k++) {
                int64_t e = w->idx[rank][t * K + k];
                any |= e >= 0 && e < w->E;
            }
            if (!any)
                for (int h = 0; h < H; h++) zeros_bad += og[(size_t)t * H + h] != 0;
        }
        if (!(e_cpu <= tol) || zeros_bad) FAIL(w, "rank %d fused it %d (T=%d): rel L2 vs cpu %.3e (tol %.0e), %zu non-zero in empty tokens", rank, it, Ti, e_cpu, tol, zeros_bad);
        if (last) {
            oracle_moe(&w->ow, w->x[rank], w->idx[rank], w->wt[rank], Ti, K, ref, NULL, NULL);
            double e_or = th_rel_l2_bf16(og, ref, (size_t)Ti * H);
            double e_cpu_or = th_rel_l2_bf16(oc, ref, (size_t)Ti * H);
            if (!(e_or <= tol)) FAIL(w, "rank %d fused vs oracle %.3e", rank, e_or);
            printf("    rank %d fused T=%d: rel L2 cuda-vs-cpu %.2e, cuda-vs-oracle %.2e, cpu-vs-oracle %.2e\n",
                   rank, Ti, e_cpu, e_or, e_cpu_or);
        }
    }
    if (w->timeout_test) {
        dfm_status_t ae = DFM_SUCCESS;
        dfm_get_async_error(gpu, &ae);
        printf("    rank %d async error after the skipped call: %s (%s)\n", rank, dfm_status_string(ae),
               dfm_ctx_last_error(gpu));
        if (rank != R - 1 && ae != DFM_ERROR_TIMEOUT) FAIL(w, "rank %d expected a timeout", rank);
    } else {
        dfm_status_t ae = DFM_SUCCESS;
        dfm_get_async_error(gpu, &ae);
        const int want = w->c->routing == 3;
        if (want != (ae == DFM_ERROR_INVALID_EXPERT))
            FAIL(w, "rank %d async error %s, expected %s", rank, dfm_status_string(ae),
                 want ? "invalid expert" : "success");
        else if (want && rank == 0)
            printf("    invalid expert reported: %s\n", dfm_ctx_last_error(gpu));
    }
    pthread_barrier_wait(&w->bar);
    cudaStreamDestroy(s);
    dfm_ctx_destroy(gpu);
    dfm_ctx_destroy(cpu);
    return NULL;
}

int main(int argc, char **argv) {
    int R = 1, opt, timeout_test = 0, iters = 9;
    double timeout_s = 10.0;
    const char *filter = NULL;
    uint64_t seed = th_fresh_seed();
    while ((opt = getopt(argc, argv, "r:c:ts:n:T:")) != -1) {
        if (opt == 'r') R = atoi(optarg);
        else if (opt == 'c') filter = optarg;
        else if (opt == 't') timeout_test = 1;
        else if (opt == 's') seed = strtoull(optarg, NULL, 0);
        else if (opt == 'n') iters = atoi(optarg);
        else if (opt == 'T') timeout_s = atof(optarg);
    }
    th_seed = seed;
    printf("cuda_check: %d rank(s), seed %llu\n", R, (unsigned long long)seed);
    int total_fails = 0;
    for (int i = 0; i < NUM_CASES; i++) {
        if (filter && !strstr(cases[i].name, filter)) continue;
        if (timeout_test && i > 0) break;
        world_t *w = calloc(1, sizeof *w);
        w->timeout_test = timeout_test;
        w->iters = timeout_test ? 1 : iters;
        w->timeout_s = timeout_s;
        world_init(w, &cases[i], R, seed + (uint64_t)i);
        printf("== %s R=%d H=%d I=%d E=%d K=%d M=%d\n", cases[i].name, R, cases[i].H, cases[i].I,
               w->E, cases[i].K, cases[i].M);
        pthread_t th[DFM_MAX_RANKS];
        rank_arg_t ra[DFM_MAX_RANKS];
        for (int r = 0; r < R; r++) {
            ra[r].w = w;
            ra[r].rank = r;
            pthread_create(&th[r], NULL, rank_main, &ra[r]);
        }
        for (int r = 0; r < R; r++) pthread_join(th[r], NULL);
        printf("   %s: %s\n", cases[i].name, w->fails ? "FAILED" : "ok");
        total_fails += w->fails;
        oracle_weights_free(&w->ow);
    }
    printf("cuda_check: %s (%d failure(s))\n", total_fails ? "FAILED" : "PASSED", total_fails);
    return total_fails ? 1 : 0;
}
