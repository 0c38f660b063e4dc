/*
 * dfm_demo.c - the main job: one expert-parallel MoE layer across R ranks.
 *
 * Builds a random checkpoint (w13 [E][2I][H], w2 [E][H][I], bf16, ~N(0, 1/fan_in)),
 * quantizes it with the library's weight helpers, routes each rank's tokens to the
 * top-k of random scores, runs dfm_fused_moe() on every rank (one thread per rank;
 * on the CUDA backend one thread per GPU), and checks every rank's output against a
 * float64 reference computed here from SPEC section 3: the quantization of SPEC 3.1
 * in fp32 as written, everything else in float64. It also checks ep_recv_count
 * exactly and the output against the unquantized float64 math (the sanity bound of
 * SPEC 3.3). Prints a table and exits non-zero when a check fails.
 *
 * It leaves out what the tests cover: invalid arguments, timeouts, the separate
 * dispatch/combine, processes as ranks.
 *
 *   build/dfm_demo                  CPU backend, 4 thread-ranks, a small model
 *   build/dfm_demo -m int8 -r 2     ...other modes and rank counts
 *   build/dfm_demo -b cuda          one rank per GPU (CUDA=1 builds)
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/dfm_common.h"
#include "dfm.h"

#ifdef DFM_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

/* ---- options -------------------------------------------------------------------- */

typedef struct {
    int hidden, inter, num_experts, topk, num_tokens, num_ranks; /* H I E K T R */
    int iters, warmup;
    double unused_frac; /* fraction of slots set to -1 */
    double timeout_s;
    dfm_quant_t quant;
    dfm_backend_t backend;
    uint64_t seed;
} opts_t;

static const char *const quant_names[DFM_NUM_QUANT] = {"fp8", "int8", "bf16"};
static const char *const backend_names[DFM_NUM_BACKEND] = {"cpu", "cuda"};

/* SPEC 3.3: output against the quantized reference, and against unquantized math. */
static double tol_ref(dfm_quant_t q) { return q == DFM_QUANT_BF16 ? 5e-3 : 1e-2; }
static double tol_fp64(dfm_quant_t q) { return q == DFM_QUANT_BF16 ? 1e-2 : 0.1; }

static void usage(FILE *f) {
    fprintf(f, "usage: dfm_demo [-H hidden] [-I inter] [-E experts] [-K topk] [-T tokens]\n"
               "                [-m fp8|int8|bf16] [-r ranks] [-b cpu|cuda] [-n iters]\n"
               "                [-w warmup] [-u unused_frac] [-t timeout_s] [-s seed]\n"
               "  -H  hidden size H (multiple of 128, 256..16384)        default 512\n"
               "  -I  expert inter size I (multiple of 64)               default 256\n"
               "  -E  experts E (multiple of the ranks)                  default 4 per rank\n"
               "  -K  top-k slots per token                              default 4\n"
               "  -T  tokens per rank                                    default 32\n"
               "  -m  quantization mode                                  default fp8\n"
               "  -r  ranks (threads on cpu, GPUs on cuda)               default 4 / all GPUs\n"
               "  -b  backend                                  default cuda if GPUs, else cpu\n"
               "  -n  timed iterations (median reported)                 default 5\n"
               "  -w  warm-up iterations                                 default 1\n"
               "  -u  fraction of slots set to -1 (unused)               default 0\n"
               "  -t  timeout of every wait on a peer, seconds           default 10\n"
               "  -s  random seed (printed; default: from the clock)\n");
}

static int parse_int(const char *s, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 0);
    if (errno != 0 || *end != '\0' || v < -1000000000L || v > 1000000000L) return -1;
    *out = (int)v;
    return 0;
}

static int parse_double(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || *end != '\0') return -1;
    *out = v;
    return 0;
}

static int parse_name(const char *s, const char *const *names, int n) {
    for (int i = 0; i < n; i++)
        if (strcmp(s, names[i]) == 0) return i;
    return -1;
}

/* Number of GPUs this process can use (0 without CUDA or without a driver). */
static int cuda_device_count(void) {
#ifdef DFM_WITH_CUDA
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
#else
    return 0;
#endif
}

static int parse_opts(int argc, char **argv, opts_t *o) {
    int backend = -1, ranks = -1, experts = -1, seeded = 0, opt;
    unsigned long long seed = 0;
    memset(o, 0, sizeof *o);
    o->hidden = 512;
    o->inter = 256;
    o->topk = 4;
    o->num_tokens = 32;
    o->iters = 5;
    o->warmup = 1;
    o->timeout_s = 10.0;
    o->quant = DFM_QUANT_FP8;
    while ((opt = getopt(argc, argv, "H:I:E:K:T:m:r:b:n:w:u:t:s:h")) != -1) {
        int bad = 0, q;
        switch (opt) {
        case 'H': bad = parse_int(optarg, &o->hidden); break;
        case 'I': bad = parse_int(optarg, &o->inter); break;
        case 'E': bad = parse_int(optarg, &experts); break;
        case 'K': bad = parse_int(optarg, &o->topk); break;
        case 'T': bad = parse_int(optarg, &o->num_tokens); break;
        case 'r': bad = parse_int(optarg, &ranks); break;
        case 'n': bad = parse_int(optarg, &o->iters); break;
        case 'w': bad = parse_int(optarg, &o->warmup); break;
        case 'u': bad = parse_double(optarg, &o->unused_frac); break;
        case 't': bad = parse_double(optarg, &o->timeout_s); break;
        case 's':
            errno = 0;
            seed = strtoull(optarg, NULL, 0);
            bad = errno != 0;
            seeded = 1;
            break;
        case 'm':
            q = parse_name(optarg, quant_names, DFM_NUM_QUANT);
            bad = q < 0;
            o->quant = (dfm_quant_t)q;
            break;
        case 'b':
            backend = parse_name(optarg, backend_names, DFM_NUM_BACKEND);
            bad = backend < 0;
            break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
        if (bad) {
            fprintf(stderr, "dfm_demo: bad value for -%c: '%s'\n", opt, optarg);
            return -1;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "dfm_demo: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return -1;
    }
    int num_gpus = cuda_device_count();
    if (backend < 0)
        backend = dfm_backend_available(DFM_BACKEND_CUDA) && num_gpus > 0 ? DFM_BACKEND_CUDA
                                                                          : DFM_BACKEND_CPU;
    o->backend = (dfm_backend_t)backend;
    if (!dfm_backend_available(o->backend)) {
        fprintf(stderr,
                "dfm_demo: backend %s was not built into this library (build with "
                "CUDA=1)\n",
                backend_names[backend]);
        return -1;
    }
    if (ranks < 0) {
        ranks = 4;
        if (o->backend == DFM_BACKEND_CUDA)
            ranks = num_gpus < DFM_MAX_RANKS ? num_gpus : DFM_MAX_RANKS;
    }
    if (o->backend == DFM_BACKEND_CUDA && num_gpus == 0) {
        fprintf(stderr, "dfm_demo: backend cuda: no GPU found\n");
        return -1;
    }
    if (ranks < 1) {
        fprintf(stderr, "dfm_demo: need -r >= 1\n");
        return -1;
    }
    if (o->backend == DFM_BACKEND_CUDA && ranks > num_gpus) {
        fprintf(stderr, "dfm_demo: %d ranks need %d GPUs, %d found\n", ranks, ranks, num_gpus);
        return -1;
    }
    o->num_ranks = ranks;
    o->num_experts = experts >= 0 ? experts : 4 * ranks;
    o->seed =
        seeded ? (uint64_t)seed : (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
    /* The rest (shapes, limits) is checked by the library, which names the rule. */
    if (o->iters < 1 || o->warmup < 0 || o->num_tokens < 0 || o->topk < 1 ||
        o->topk > o->num_experts || !(o->unused_frac >= 0.0 && o->unused_frac <= 1.0)) {
        fprintf(stderr, "dfm_demo: need -n >= 1, -w >= 0, -T >= 0, 1 <= -K <= E, "
                        "0 <= -u <= 1\n");
        return -1;
    }
    return 0;
}

/* ---- random numbers (splitmix64; Box-Muller) -------------------------------------- */

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_uniform(uint64_t *s) { return (double)(rng_next(s) >> 11) * 0x1p-53; }

static double rng_normal(uint64_t *s) {
    double u1 = rng_uniform(s), u2 = rng_uniform(s);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static void fill_normal_bf16(uint16_t *p, size_t n, double sigma, uint64_t *s) {
    for (size_t i = 0; i < n; i++) p[i] = dfm_f32_to_bf16((float)(sigma * rng_normal(s)));
}

/* ---- the problem ------------------------------------------------------------------ */

typedef struct {
    opts_t o;
    int G;            /* local experts */
    size_t cb;        /* code bytes of the mode */
    dfm_config_t cfg; /* every rank's (device set per rank on CUDA) */
    dfm_unique_id_t id;
    pthread_barrier_t barrier;

    /* Host data, all ranks; rank r's part starts at r * (per-rank size). */
    uint16_t *x;         /* [R][T][H] bf16 */
    int64_t *topk_idx;   /* [R][T][K] */
    float *topk_weights; /* [R][T][K] */
    uint16_t *w13;       /* checkpoint [E][2I][H] bf16 */
    uint16_t *w2ck;      /* checkpoint [E][H][I] bf16 */
    void *w1;            /* operator [E][2I][H] codes (permuted) */
    float *w1_scale;     /* [E][2I] */
    void *w2;            /* operator [E][H][I] codes */
    float *w2_scale;     /* [E][H] */
    uint16_t *out;       /* [R][T][H] bf16 */
    int32_t *recv;       /* [R][G*R] ep_recv_count as returned */
    int32_t *recv_want;  /* [R][G*R] from the routing */

    double *times;    /* [iters][R] seconds per call */
    double *err_ref;  /* [R] relative L2 against the reference */
    double *err_fp64; /* [R] relative L2 against unquantized math */
    int *failed;      /* [R] the rank's calls failed */
} demo_t;

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (p == NULL) {
        fprintf(stderr, "dfm_demo: out of host memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

/* Top-k of random scores (distinct experts), softmax weights; -u slots become -1. */
static void make_routing(demo_t *d, uint64_t *s) {
    const opts_t *o = &d->o;
    int E = o->num_experts, K = o->topk, R = o->num_ranks, G = d->G;
    double *score = xmalloc((size_t)E * sizeof *score);
    memset(d->recv_want, 0, (size_t)R * (size_t)G * (size_t)R * sizeof *d->recv_want);
    for (int r = 0; r < R; r++) {
        for (int t = 0; t < o->num_tokens; t++) {
            size_t row = ((size_t)r * (size_t)o->num_tokens + (size_t)t) * (size_t)K;
            int64_t *idx = d->topk_idx + row;
            float *w = d->topk_weights + row;
            double top[DFM_MAX_TOPK], sum = 0.0;
            for (int e = 0; e < E; e++) score[e] = rng_uniform(s);
            for (int k = 0; k < K; k++) {
                int best = 0;
                for (int e = 1; e < E; e++)
                    if (score[e] > score[best]) best = e;
                idx[k] = best;
                top[k] = score[best];
                score[best] = -1.0;
                sum += exp(top[k]);
            }
            for (int k = 0; k < K; k++) {
                w[k] = (float)(exp(top[k]) / sum);
                if (rng_uniform(s) < o->unused_frac) idx[k] = -1;
            }
            for (int k = 0; k < K; k++) {
                if (!dfm_slot_is_first(idx, k, E)) continue;
                int dst = (int)(idx[k] / G), g = (int)(idx[k] % G);
                d->recv_want[(size_t)dst * (size_t)G * (size_t)R + (size_t)g * (size_t)R +
                             (size_t)r]++;
            }
        }
    }
    free(score);
}

static int demo_init(demo_t *d) {
    const opts_t *o = &d->o;
    size_t H = (size_t)o->hidden, I = (size_t)o->inter, E = (size_t)o->num_experts;
    size_t R = (size_t)o->num_ranks, T = (size_t)o->num_tokens, K = (size_t)o->topk;
    d->G = o->num_experts / o->num_ranks;
    d->cb = dfm_code_bytes(o->quant);
    uint64_t s = o->seed;

    d->x = xmalloc(R * T * H * sizeof *d->x);
    d->topk_idx = xmalloc(R * T * K * sizeof *d->topk_idx);
    d->topk_weights = xmalloc(R * T * K * sizeof *d->topk_weights);
    d->w13 = xmalloc(E * 2 * I * H * sizeof *d->w13);
    d->w2ck = xmalloc(E * H * I * sizeof *d->w2ck);
    d->w1 = xmalloc(E * 2 * I * H * d->cb);
    d->w1_scale = xmalloc(E * 2 * I * sizeof *d->w1_scale);
    d->w2 = xmalloc(E * H * I * d->cb);
    d->w2_scale = xmalloc(E * H * sizeof *d->w2_scale);
    d->out = xmalloc(R * T * H * sizeof *d->out);
    d->recv = xmalloc(R * E * sizeof *d->recv);
    d->recv_want = xmalloc(R * E * sizeof *d->recv_want);
    d->times = xmalloc((size_t)o->iters * R * sizeof *d->times);
    d->err_ref = xmalloc(R * sizeof *d->err_ref);
    d->err_fp64 = xmalloc(R * sizeof *d->err_fp64);
    d->failed = calloc(R, sizeof *d->failed);
    if (d->failed == NULL) return -1;

    fill_normal_bf16(d->x, R * T * H, 1.0, &s);
    fill_normal_bf16(d->w13, E * 2 * I * H, 1.0 / sqrt((double)H), &s);
    fill_normal_bf16(d->w2ck, E * H * I, 1.0 / sqrt((double)I), &s);
    make_routing(d, &s);

    /* All E experts in one call: rank r's G experts are a contiguous slice. */
    dfm_status_t st =
        dfm_weights_prepare_w13(d->w13, (int)E, (int)H, (int)I, o->quant, d->w1, d->w1_scale);
    if (st == DFM_SUCCESS)
        st = dfm_weights_prepare_w2(d->w2ck, (int)E, (int)H, (int)I, o->quant, d->w2, d->w2_scale);
    if (st != DFM_SUCCESS) {
        fprintf(stderr, "dfm_demo: preparing the weights failed: %s\n", dfm_status_string(st));
        return -1;
    }
    return 0;
}

static void demo_free(demo_t *d) {
    free(d->x);
    free(d->topk_idx);
    free(d->topk_weights);
    free(d->w13);
    free(d->w2ck);
    free(d->w1);
    free(d->w1_scale);
    free(d->w2);
    free(d->w2_scale);
    free(d->out);
    free(d->recv);
    free(d->recv_want);
    free(d->times);
    free(d->err_ref);
    free(d->err_fp64);
    free(d->failed);
}

/* ---- the float64 reference (SPEC section 3) ---------------------------------------- */

/*
 * Quantize n fp32 values per SPEC 3.1 and return the values of the codes in val
 * (the scale is returned; 1 in bf16 mode, where the codes are the bf16 values).
 */
static float quantize_row(const float *v, size_t n, dfm_quant_t q, float *val) {
    float amax = 0.0f, s;
    uint8_t code[2];
    for (size_t i = 0; i < n; i++) amax = fmaxf(amax, fabsf(v[i]));
    s = dfm_quant_scale(amax, q);
    for (size_t i = 0; i < n; i++) {
        dfm_code_store(code, 0, v[i], s, q);
        val[i] = dfm_code_value(code, 0, q);
    }
    return s;
}

typedef struct {
    float *w1v, *w2v;  /* values of expert e's codes: [2I][H] permuted, [H][I] */
    float *w13f, *w2f; /* the checkpoint as float: [2I][H] logical, [H][I] */
    float *xf, *xq, *actf, *actq;
    double *h, *y, *yf; /* [2I], [H] quantized path, [H] unquantized */
} ref_scratch_t;

/* y = FFN_e(x) both ways: per SPEC 3.2 (yq, bf16-rounded) and unquantized (yf). */
static void ref_ffn(const demo_t *d, ref_scratch_t *w, int e, const uint16_t *x, double *yq,
                    double *yf) {
    const opts_t *o = &d->o;
    dfm_quant_t q = o->quant;
    size_t H = (size_t)o->hidden, I = (size_t)o->inter;
    const float *s1 = d->w1_scale + (size_t)e * 2 * I, *s2 = d->w2_scale + (size_t)e * H;

    /* 1. per-token quantization of x */
    for (size_t j = 0; j < H; j++) w->xf[j] = dfm_bf16_to_f32(x[j]);
    float sa = quantize_row(w->xf, H, q, w->xq);
    /* 2. h in logical channel order */
    for (size_t p = 0; p < 2 * I; p++) {
        const float *wr = w->w1v + p * H;
        double acc = 0.0;
        for (size_t j = 0; j < H; j++) acc += (double)w->xq[j] * (double)wr[j];
        size_t n = (size_t)dfm_perm_source((int)p, (int)I);
        w->h[n] = acc * (double)sa * (double)(q == DFM_QUANT_BF16 ? 1.0f : s1[p]);
    }
    /* 3-4. SwiGLU; act is fp32 (bf16 in bf16 mode) when it is quantized */
    for (size_t i = 0; i < I; i++) {
        double g = w->h[i], u = w->h[I + i];
        w->actf[i] = (float)(g / (1.0 + exp(-g)) * u);
    }
    /* 5. per-token quantization of act */
    float sb = quantize_row(w->actf, I, q, w->actq);
    /* 6. down projection, rounded to bf16 */
    for (size_t m = 0; m < H; m++) {
        const float *wr = w->w2v + m * I;
        double acc = 0.0;
        for (size_t i = 0; i < I; i++) acc += (double)w->actq[i] * (double)wr[i];
        double v = acc * (double)sb * (double)(q == DFM_QUANT_BF16 ? 1.0f : s2[m]);
        yq[m] = (double)dfm_bf16_to_f32(dfm_f32_to_bf16((float)v));
    }

    /* The unquantized float64 math on the bf16 checkpoint, for the sanity bound. */
    for (size_t n = 0; n < 2 * I; n++) {
        const float *wr = w->w13f + n * H;
        double acc = 0.0;
        for (size_t j = 0; j < H; j++) acc += (double)w->xf[j] * (double)wr[j];
        w->h[n] = acc;
    }
    for (size_t i = 0; i < I; i++) {
        double g = w->h[i], u = w->h[I + i];
        w->h[i] = g / (1.0 + exp(-g)) * u;
    }
    for (size_t m = 0; m < H; m++) {
        const float *wr = w->w2f + m * I;
        double acc = 0.0;
        for (size_t i = 0; i < I; i++) acc += w->h[i] * (double)wr[i];
        yf[m] = acc;
    }
}

/*
 * Reference output of rank r: out[t] = sum_k w[t,k] * y[t,e], one expert at a time
 * (its weights turned into float values once), then the relative L2 errors.
 */
static int reference_check(demo_t *d, int r) {
    const opts_t *o = &d->o;
    size_t H = (size_t)o->hidden, I = (size_t)o->inter, T = (size_t)o->num_tokens;
    size_t K = (size_t)o->topk;
    const uint16_t *x = d->x + (size_t)r * T * H;
    const int64_t *idx = d->topk_idx + (size_t)r * T * K;
    const float *wt = d->topk_weights + (size_t)r * T * K;
    const uint16_t *out = d->out + (size_t)r * T * H;
    ref_scratch_t w;
    double *ref = calloc(2 * T * H + 1, sizeof *ref), *ref64 = NULL;
    float *fl = malloc((6 * I * H + 2 * H + 2 * I) * sizeof *fl);
    double *db = malloc((2 * I + 2 * H) * sizeof *db);
    int ok = ref != NULL && fl != NULL && db != NULL;
    if (ok) {
        ref64 = ref + T * H;
        w.w1v = fl;
        w.w13f = w.w1v + 2 * I * H;
        w.w2v = w.w13f + 2 * I * H;
        w.w2f = w.w2v + H * I;
        w.xf = w.w2f + H * I;
        w.xq = w.xf + H;
        w.actf = w.xq + H;
        w.actq = w.actf + I;
        w.h = db;
        w.y = w.h + 2 * I;
        w.yf = w.y + H;
    }
    for (int e = 0; ok && e < o->num_experts; e++) {
        int used = 0;
        for (size_t i = 0; i < T * K && !used; i++) used = idx[i] == e;
        if (!used) continue;
        const char *c1 = (const char *)d->w1 + (size_t)e * 2 * I * H * d->cb;
        const char *c2 = (const char *)d->w2 + (size_t)e * H * I * d->cb;
        const uint16_t *k13 = d->w13 + (size_t)e * 2 * I * H, *k2 = d->w2ck + (size_t)e * H * I;
        for (size_t i = 0; i < 2 * I * H; i++) {
            w.w1v[i] = dfm_code_value(c1, i, o->quant);
            w.w13f[i] = dfm_bf16_to_f32(k13[i]);
        }
        for (size_t i = 0; i < H * I; i++) {
            w.w2v[i] = dfm_code_value(c2, i, o->quant);
            w.w2f[i] = dfm_bf16_to_f32(k2[i]);
        }
        for (size_t t = 0; t < T; t++) {
            int first = 1;
            for (size_t k = 0; k < K; k++) {
                if (idx[t * K + k] != e) continue;
                if (first) ref_ffn(d, &w, e, x + t * H, w.y, w.yf);
                first = 0;
                for (size_t m = 0; m < H; m++) {
                    ref[t * H + m] += (double)wt[t * K + k] * w.y[m];
                    ref64[t * H + m] += (double)wt[t * K + k] * w.yf[m];
                }
            }
        }
    }
    if (ok) {
        double num = 0.0, num64 = 0.0, den = 0.0, den64 = 0.0;
        for (size_t i = 0; i < T * H; i++) {
            double v = (double)dfm_bf16_to_f32(out[i]);
            num += (v - ref[i]) * (v - ref[i]);
            den += ref[i] * ref[i];
            num64 += (v - ref64[i]) * (v - ref64[i]);
            den64 += ref64[i] * ref64[i];
        }
        /* An all-zero reference wants an exactly zero output. */
        d->err_ref[r] = den > 0.0 ? sqrt(num / den) : sqrt(num);
        d->err_fp64[r] = den64 > 0.0 ? sqrt(num64 / den64) : sqrt(num64);
    }
    free(ref);
    free(fl);
    free(db);
    return ok ? 0 : -1;
}

/* ---- one rank ---------------------------------------------------------------------- */

typedef struct {
    demo_t *d;
    int rank;
} rank_arg_t;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Operands of one rank's calls: host pointers on CPU, device pointers on CUDA. */
typedef struct {
    const void *x, *w1, *w2;
    const int64_t *idx;
    const float *wt, *w1s, *w2s;
    void *out;
    int32_t *recv;
    void *stream;
} operands_t;

static void host_operands(demo_t *d, int r, operands_t *p) {
    const opts_t *o = &d->o;
    size_t H = (size_t)o->hidden, I = (size_t)o->inter, T = (size_t)o->num_tokens;
    size_t K = (size_t)o->topk, G = (size_t)d->G, R = (size_t)o->num_ranks;
    p->x = d->x + (size_t)r * T * H;
    p->idx = d->topk_idx + (size_t)r * T * K;
    p->wt = d->topk_weights + (size_t)r * T * K;
    p->w1 = (const char *)d->w1 + (size_t)r * G * 2 * I * H * d->cb;
    p->w1s = d->w1_scale + (size_t)r * G * 2 * I;
    p->w2 = (const char *)d->w2 + (size_t)r * G * H * I * d->cb;
    p->w2s = d->w2_scale + (size_t)r * G * H;
    p->out = d->out + (size_t)r * T * H;
    p->recv = d->recv + (size_t)r * G * R;
    p->stream = NULL;
}

#ifdef DFM_WITH_CUDA
#define CUDA_TRY(call)                                                                             \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "rank %d: %s: %s\n", r, #call, cudaGetErrorString(e_));                \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

/* Copy rank r's operands to its GPU (device r); dev receives device pointers. */
static int cuda_operands(demo_t *d, int r, const operands_t *h, operands_t *dev) {
    const opts_t *o = &d->o;
    size_t H = (size_t)o->hidden, I = (size_t)o->inter, T = (size_t)o->num_tokens;
    size_t K = (size_t)o->topk, G = (size_t)d->G, R = (size_t)o->num_ranks;
    const struct {
        const void *src;
        size_t bytes;
        void **dst;
    } bufs[] = {
        {h->x, T * H * 2, (void **)&dev->x},
        {h->idx, T * K * sizeof(int64_t), (void **)&dev->idx},
        {h->wt, T * K * sizeof(float), (void **)&dev->wt},
        {h->w1, G * 2 * I * H * d->cb, (void **)&dev->w1},
        {h->w1s, G * 2 * I * sizeof(float), (void **)&dev->w1s},
        {h->w2, G * H * I * d->cb, (void **)&dev->w2},
        {h->w2s, G * H * sizeof(float), (void **)&dev->w2s},
        {NULL, T * H * 2, &dev->out},
        {NULL, G * R * sizeof(int32_t), (void **)&dev->recv},
    };
    memset(dev, 0, sizeof *dev);
    CUDA_TRY(cudaSetDevice(r));
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        CUDA_TRY(cudaMalloc(bufs[i].dst, bufs[i].bytes ? bufs[i].bytes : 16));
        if (bufs[i].src != NULL && bufs[i].bytes > 0)
            CUDA_TRY(cudaMemcpy(*bufs[i].dst, bufs[i].src, bufs[i].bytes, cudaMemcpyHostToDevice));
    }
    cudaStream_t stream;
    CUDA_TRY(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    dev->stream = stream;
    return 0;
}

static int cuda_results(demo_t *d, int r, const operands_t *dev, operands_t *h) {
    size_t T = (size_t)d->o.num_tokens, H = (size_t)d->o.hidden;
    size_t GR = (size_t)d->G * (size_t)d->o.num_ranks;
    CUDA_TRY(cudaMemcpy(h->out, dev->out, T * H * 2, cudaMemcpyDeviceToHost));
    CUDA_TRY(cudaMemcpy(h->recv, dev->recv, GR * sizeof(int32_t), cudaMemcpyDeviceToHost));
    return 0;
}

static void cuda_free_operands(operands_t *dev) {
    const void *p[] = {dev->x,  dev->idx, dev->wt,  dev->w1,  dev->w1s,
                       dev->w2, dev->w2s, dev->out, dev->recv};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
        if (p[i] != NULL) cudaFree((void *)p[i]);
    if (dev->stream != NULL) cudaStreamDestroy((cudaStream_t)dev->stream);
}
#endif

/* Poison the output so that a row the call leaves unwritten shows (0xffff: NaN). */
static int poison_out(demo_t *d, int r, operands_t *p) {
    size_t bytes = (size_t)d->o.num_tokens * (size_t)d->o.hidden * 2;
#ifdef DFM_WITH_CUDA
    if (d->o.backend == DFM_BACKEND_CUDA) {
        CUDA_TRY(cudaMemsetAsync(p->out, 0xff, bytes, (cudaStream_t)p->stream));
        return 0;
    }
#endif
    memset(p->out, 0xff, bytes);
    (void)r;
    return 0;
}

static int wait_done(demo_t *d, int r, operands_t *p) {
#ifdef DFM_WITH_CUDA
    if (d->o.backend == DFM_BACKEND_CUDA) CUDA_TRY(cudaStreamSynchronize((cudaStream_t)p->stream));
#endif
    (void)d, (void)r, (void)p;
    return 0;
}

static void *rank_main(void *arg) {
    rank_arg_t *a = arg;
    demo_t *d = a->d;
    const opts_t *o = &d->o;
    int r = a->rank, fail = 0;
    char err[512] = "";
    dfm_ctx_t *ctx = NULL;
    operands_t host, p;

    host_operands(d, r, &host);
    p = host;
#ifdef DFM_WITH_CUDA
    if (o->backend == DFM_BACKEND_CUDA && cuda_operands(d, r, &host, &p) != 0) fail = 1;
#endif
    dfm_config_t cfg = d->cfg;
    cfg.device = o->backend == DFM_BACKEND_CUDA ? r : -1;
    if (!fail) {
        dfm_status_t st = dfm_ctx_create(&ctx, &cfg, &d->id, r, err, sizeof err);
        if (st != DFM_SUCCESS) {
            fprintf(stderr, "rank %d: dfm_ctx_create: %s: %s\n", r, dfm_status_string(st), err);
            fail = 1;
        }
    }
    dfm_moe_args_t args = {
        .x = p.x,
        .topk_idx = p.idx,
        .topk_weights = p.wt,
        .num_tokens = o->num_tokens,
        .num_topk = o->topk,
        .quant = o->quant,
        .w1 = p.w1,
        .w1_scale = p.w1s,
        .w2 = p.w2,
        .w2_scale = p.w2s,
        .out = p.out,
        .ep_recv_count = p.recv,
        .stream = p.stream,
    };
    /*
     * A rank that failed still meets the barriers (and makes no calls), so the
     * others end on their own timeout instead of waiting here for ever.
     */
    for (int it = 0; it < o->warmup + o->iters; it++) {
        if (!fail && poison_out(d, r, &p) != 0) fail = 1;
        if (!fail && wait_done(d, r, &p) != 0) fail = 1;
        pthread_barrier_wait(&d->barrier);
        double t0 = now_s();
        if (!fail) {
            dfm_status_t st = dfm_fused_moe(ctx, &args);
            if (st != DFM_SUCCESS) {
                fprintf(stderr, "rank %d: dfm_fused_moe (iteration %d): %s: %s\n", r, it,
                        dfm_status_string(st), dfm_ctx_last_error(ctx));
                fail = 1;
            }
        }
        if (!fail && wait_done(d, r, &p) != 0) fail = 1;
        if (it >= o->warmup)
            d->times[(size_t)(it - o->warmup) * (size_t)o->num_ranks + r] = now_s() - t0;
    }
    if (!fail) {
        dfm_status_t async = DFM_SUCCESS;
        if (dfm_get_async_error(ctx, &async) != DFM_SUCCESS || async != DFM_SUCCESS) {
            fprintf(stderr, "rank %d: asynchronous error: %s: %s\n", r, dfm_status_string(async),
                    dfm_ctx_last_error(ctx));
            fail = 1;
        }
    }
#ifdef DFM_WITH_CUDA
    if (o->backend == DFM_BACKEND_CUDA) {
        if (!fail && cuda_results(d, r, &p, &host) != 0) fail = 1;
        dfm_ctx_destroy(ctx);
        ctx = NULL;
        cuda_free_operands(&p);
    }
#endif
    dfm_ctx_destroy(ctx);
    if (!fail && reference_check(d, r) != 0) {
        fprintf(stderr, "rank %d: out of host memory for the reference\n", r);
        fail = 1;
    }
    d->failed[r] = fail;
    return NULL;
}

/* ---- main -------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    demo_t d;
    memset(&d, 0, sizeof d);
    if (parse_opts(argc, argv, &d.o) != 0) return 2;
    const opts_t *o = &d.o;
    int R = o->num_ranks;

    printf("DeepFusedMoE demo: backend %s, %d ranks, mode %s, H %d, I %d, E %d (G %d), "
           "K %d, T %d per rank, %d iterations (+%d warm-up), seed 0x%llx\n",
           backend_names[o->backend], R, quant_names[o->quant], o->hidden, o->inter, o->num_experts,
           o->num_ranks > 0 ? o->num_experts / o->num_ranks : 0, o->topk, o->num_tokens, o->iters,
           o->warmup, (unsigned long long)o->seed);
    fflush(stdout);

    /* The library checks the configuration (and names the rule) before anything. */
    dfm_config_t cfg = DFM_CONFIG_INIT;
    cfg.backend = o->backend;
    cfg.num_ranks = R;
    cfg.hidden = o->hidden;
    cfg.inter = o->inter;
    cfg.num_experts = o->num_experts;
    cfg.max_topk = o->topk;
    cfg.num_max_dispatch_tokens_per_rank = o->num_tokens > 0 ? o->num_tokens : 1;
    cfg.quant_modes = DFM_QUANT_MASK(o->quant);
    cfg.timeout_s = o->timeout_s;
    d.cfg = cfg;
    size_t bytes = 0;
    dfm_status_t st = dfm_buffer_size_hint(&cfg, &bytes);
    if (st == DFM_SUCCESS) st = dfm_get_unique_id(&cfg, &d.id);
    if (st != DFM_SUCCESS) {
        /* Say which rule: context creation checks the config first and names it. */
        char err[512] = "";
        dfm_ctx_t *ctx = NULL;
        if (st == DFM_ERROR_INVALID_ARGUMENT) dfm_ctx_create(&ctx, &cfg, &d.id, 0, err, sizeof err);
        dfm_ctx_destroy(ctx);
        fprintf(stderr, "dfm_demo: configuration refused: %s%s%s\n", dfm_status_string(st),
                err[0] ? ": " : "", err);
        return 2;
    }
    if (demo_init(&d) != 0) return 1;

    pthread_t *th = xmalloc((size_t)R * sizeof *th);
    rank_arg_t *args = xmalloc((size_t)R * sizeof *args);
    pthread_barrier_init(&d.barrier, NULL, (unsigned)R);
    double t_start = now_s();
    for (int r = 0; r < R; r++) {
        args[r].d = &d;
        args[r].rank = r;
        if (pthread_create(&th[r], NULL, rank_main, &args[r]) != 0) {
            fprintf(stderr, "dfm_demo: pthread_create failed\n");
            return 1;
        }
    }
    for (int r = 0; r < R; r++) pthread_join(th[r], NULL);
    double t_total = now_s() - t_start;
    pthread_barrier_destroy(&d.barrier);

    /* A layer ends when its slowest rank ends: max over ranks, median over iterations. */
    double *layer = xmalloc((size_t)o->iters * sizeof *layer);
    for (int it = 0; it < o->iters; it++) {
        layer[it] = 0.0;
        for (int r = 0; r < R; r++)
            layer[it] = fmax(layer[it], d.times[(size_t)it * (size_t)R + (size_t)r]);
    }
    qsort(layer, (size_t)o->iters, sizeof *layer, cmp_double);
    double med =
        o->iters % 2 ? layer[o->iters / 2] : 0.5 * (layer[o->iters / 2 - 1] + layer[o->iters / 2]);

    int bad = 0;
    size_t GR = (size_t)d.G * (size_t)R;
    printf("buffer per rank: %.1f MiB; time per layer: median %.3f ms (min %.3f, max %.3f) "
           "over %d iterations\n",
           (double)bytes / 1048576.0, 1e3 * med, 1e3 * layer[0], 1e3 * layer[o->iters - 1],
           o->iters);
    printf("%4s %7s %11s %10s %8s %10s %8s  %s\n", "rank", "tokens", "recv_tokens", "err_ref",
           "tol", "err_fp64", "tol", "result");
    for (int r = 0; r < R; r++) {
        long recv = 0;
        int counts_ok = 1;
        if (!d.failed[r]) {
            for (size_t i = 0; i < GR; i++) {
                recv += d.recv[(size_t)r * GR + i];
                counts_ok &= d.recv[(size_t)r * GR + i] == d.recv_want[(size_t)r * GR + i];
            }
        }
        const char *result = "ok";
        if (d.failed[r])
            result = "FAILED (call)";
        else if (!counts_ok)
            result = "FAILED (ep_recv_count differs from the routing)";
        else if (!(d.err_ref[r] <= tol_ref(o->quant)))
            result = "FAILED (error vs reference)";
        else if (!(d.err_fp64[r] <= tol_fp64(o->quant)))
            result = "FAILED (error vs fp64)";
        bad |= strcmp(result, "ok") != 0;
        if (d.failed[r])
            printf("%4d %7d %11s %10s %8.0e %10s %8.0e  %s\n", r, o->num_tokens, "-", "-",
                   tol_ref(o->quant), "-", tol_fp64(o->quant), result);
        else
            printf("%4d %7d %11ld %10.2e %8.0e %10.2e %8.0e  %s\n", r, o->num_tokens, recv,
                   d.err_ref[r], tol_ref(o->quant), d.err_fp64[r], tol_fp64(o->quant), result);
    }
    printf("%s (%.2f s in all; seed 0x%llx)\n", bad ? "FAIL" : "PASS", t_total,
           (unsigned long long)o->seed);
    free(layer);
    free(th);
    free(args);
    demo_free(&d);
    return bad ? 1 : 0;
}
