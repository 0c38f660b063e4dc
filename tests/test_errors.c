/*
 * test_errors.c - SPEC section 7 and the error contract of dfm.h: every
 * invalid argument gives its status and a last-error message naming the
 * argument, with nothing written; the order of dispatch/combine calls; expert
 * ids outside [-1, E) dropped and reported asynchronously; a peer that never
 * arrives (at creation and in each kind of call) gives a timeout within the
 * configured time, after which the context fails fast; a rank with another
 * configuration or mode is refused; the CPU backend's segment is 0600 and
 * never left behind. Usage: test_errors [-s SEED]
 */
#define _DEFAULT_SOURCE
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/dfm_common.h"
#include "dfm.h"
#include "harness.h"
#include "oracle.h"

#define SHORT_TIMEOUT_S 1.0
#define TIMEOUT_BOUND_S 3.0 /* a timed-out wait must end before this */

/* ---- a small world: R ranks, E = 2R experts, H = 256, I = 64 ------------------ */

typedef struct {
    dfm_config_t cfg;
    dfm_quant_t quant; /* of the prepared weights */
    int G, T, K;
    uint16_t *ck13, *ck2;
    unsigned char *w1, *w2; /* [E][2I][H], [E][H][I] codes, rank r at expert r*G */
    float *s1, *s2;
    uint16_t *x[2];
    int64_t *idx[2];
    float *wts[2];
} mini_t;

static void mini_init(mini_t *m, int R, dfm_quant_t q, unsigned modes, double timeout_s) {
    dfm_config_t cfg = DFM_CONFIG_INIT;
    cfg.num_ranks = R;
    cfg.hidden = 256;
    cfg.inter = 64;
    cfg.num_experts = 2 * R;
    cfg.max_topk = 4;
    cfg.num_max_dispatch_tokens_per_rank = 8;
    cfg.quant_modes = modes;
    cfg.timeout_s = timeout_s;
    memset(m, 0, sizeof *m);
    m->cfg = cfg;
    m->quant = q;
    m->G = 2;
    m->T = 6;
    m->K = 3;
    size_t E = (size_t)cfg.num_experts, H = 256, I = 64, cb = oracle_code_bytes(q);
    m->ck13 = th_alloc(E * 2 * I * H * 2);
    m->ck2 = th_alloc(E * H * I * 2);
    for (size_t i = 0; i < E * 2 * I * H; i++) m->ck13[i] = th_bf16(th_rng_normal(&th_rng) / 16.0);
    for (size_t i = 0; i < E * H * I; i++) m->ck2[i] = th_bf16(th_rng_normal(&th_rng) / 8.0);
    m->w1 = th_alloc(E * 2 * I * H * cb);
    m->w2 = th_alloc(E * H * I * cb);
    m->s1 = th_alloc(E * 2 * I * 4);
    m->s2 = th_alloc(E * H * 4);
    for (int r = 0; r < R; r++) {
        size_t e0 = (size_t)r * 2;
        dfm_weights_prepare_w13(m->ck13 + e0 * 2 * I * H, 2, 256, 64, q, m->w1 + e0 * 2 * I * H * cb,
                                m->s1 + e0 * 2 * I);
        dfm_weights_prepare_w2(m->ck2 + e0 * H * I, 2, 256, 64, q, m->w2 + e0 * H * I * cb,
                               m->s2 + e0 * H);
    }
    for (int r = 0; r < R; r++) {
        size_t T = (size_t)m->T, K = (size_t)m->K;
        m->x[r] = th_alloc(T * H * 2);
        m->idx[r] = th_alloc(T * K * sizeof(int64_t));
        m->wts[r] = th_alloc(T * K * sizeof(float));
        for (size_t i = 0; i < T * H; i++) m->x[r][i] = th_bf16(th_rng_normal(&th_rng));
        for (size_t i = 0; i < T * K; i++) {
            m->idx[r][i] = th_rng_int(&th_rng, (int)E);
            m->wts[r][i] = (float)(0.1 + th_rng_uniform(&th_rng));
        }
    }
}

static void mini_free(mini_t *m) {
    free(m->ck13);
    free(m->ck2);
    free(m->w1);
    free(m->w2);
    free(m->s1);
    free(m->s2);
    for (int r = 0; r < 2; r++) {
        free(m->x[r]);
        free(m->idx[r]);
        free(m->wts[r]);
    }
}

static dfm_moe_args_t mini_args(const mini_t *m, int rank, uint16_t *out, int32_t *ep) {
    size_t G = (size_t)m->G, H = 256, I = 64, cb = oracle_code_bytes(m->quant);
    dfm_moe_args_t a = {
        .x = m->x[rank],
        .topk_idx = m->idx[rank],
        .topk_weights = m->wts[rank],
        .num_tokens = m->T,
        .num_topk = m->K,
        .quant = m->quant,
        .w1 = m->w1 + (size_t)rank * G * 2 * I * H * cb,
        .w1_scale = m->s1 + (size_t)rank * G * 2 * I,
        .w2 = m->w2 + (size_t)rank * G * H * I * cb,
        .w2_scale = m->s2 + (size_t)rank * G * H,
        .out = out,
        .ep_recv_count = ep,
        .stream = NULL,
    };
    return a;
}

/* Receive buffers of a dispatch, poisoned. */
typedef struct {
    unsigned char *recv_x;
    float *recv_scale;
    int32_t *recv_count, *src_info, *ep;
    int64_t *layout;
    size_t n_x, n_rows, n_g, n_gr;
} recv_t;

static void recv_init(recv_t *b, const mini_t *m) {
    size_t R = (size_t)m->cfg.num_ranks, M = 8, G = (size_t)m->G;
    b->n_rows = G * R * M;
    b->n_x = b->n_rows * 256 * 2;
    b->n_g = G;
    b->n_gr = G * R;
    b->recv_x = th_alloc(b->n_x);
    b->recv_scale = th_alloc(b->n_rows * 4);
    b->src_info = th_alloc(b->n_rows * 4);
    b->recv_count = th_alloc(b->n_g * 4);
    b->ep = th_alloc(b->n_gr * 4);
    b->layout = th_alloc(b->n_gr * 8);
    memset(b->recv_x, TH_POISON_BYTE, b->n_x);
    memset(b->recv_scale, TH_POISON_BYTE, b->n_rows * 4);
    memset(b->src_info, TH_POISON_BYTE, b->n_rows * 4);
    memset(b->recv_count, TH_POISON_BYTE, b->n_g * 4);
    memset(b->ep, TH_POISON_BYTE, b->n_gr * 4);
    memset(b->layout, TH_POISON_BYTE, b->n_gr * 8);
}

static int recv_untouched(const recv_t *b) {
    return th_all_bytes(b->recv_x, b->n_x, TH_POISON_BYTE) &&
           th_all_bytes(b->recv_scale, b->n_rows * 4, TH_POISON_BYTE) &&
           th_all_bytes(b->src_info, b->n_rows * 4, TH_POISON_BYTE) &&
           th_all_bytes(b->recv_count, b->n_g * 4, TH_POISON_BYTE) &&
           th_all_bytes(b->ep, b->n_gr * 4, TH_POISON_BYTE) &&
           th_all_bytes(b->layout, b->n_gr * 8, TH_POISON_BYTE);
}

static void recv_free(recv_t *b) {
    free(b->recv_x);
    free(b->recv_scale);
    free(b->src_info);
    free(b->recv_count);
    free(b->ep);
    free(b->layout);
}

static dfm_dispatch_args_t dispatch_args(const mini_t *m, int rank, recv_t *b) {
    dfm_dispatch_args_t a = {
        .x = m->x[rank],
        .topk_idx = m->idx[rank],
        .num_tokens = m->T,
        .num_topk = m->K,
        .quant = m->quant,
        .recv_x = b->recv_x,
        .recv_scale = b->recv_scale,
        .recv_count = b->recv_count,
        .layout_range = b->layout,
        .recv_src_info = b->src_info,
        .ep_recv_count = b->ep,
        .stream = NULL,
    };
    return a;
}

/* Create an R = 1 context for m; NULL on failure (reported). */
static dfm_ctx_t *create_single(const mini_t *m) {
    dfm_unique_id_t id;
    dfm_ctx_t *ctx = NULL;
    char err[512] = "";
    dfm_status_t st = dfm_get_unique_id(&m->cfg, &id);
    if (st == DFM_SUCCESS) st = dfm_ctx_create(&ctx, &m->cfg, &id, 0, err, sizeof err);
    TH_EXPECT(st == DFM_SUCCESS, "create R=1: %s: %s", dfm_status_string(st), err);
    return ctx;
}

/* Status and message of a rejected call: the message names `field`. */
static void expect_rejected(dfm_ctx_t *ctx, dfm_status_t st, dfm_status_t want, const char *call,
                            const char *field) {
    const char *msg = dfm_ctx_last_error(ctx);
    TH_EXPECT(st == want, "%s with bad %s: status %d (%s), want %d (%s); message \"%s\"", call,
              field, st, dfm_status_string(st), want, dfm_status_string(want), msg);
    TH_EXPECT(strstr(msg, field) != NULL, "%s with bad %s: message \"%s\" does not name it", call,
              field, msg);
}

/* ---- status strings, version ----------------------------------------------- */

static void test_status_strings(void) {
    for (int s = 0; s < DFM_NUM_STATUS; s++) {
        const char *str = dfm_status_string((dfm_status_t)s);
        TH_EXPECT(str != NULL && str[0] != '\0', "status %d has no string", s);
        for (int t = 0; t < s && str; t++)
            TH_EXPECT(strcmp(str, dfm_status_string((dfm_status_t)t)) != 0,
                      "statuses %d and %d share the string \"%s\"", t, s, str);
    }
    const char *unknown = dfm_status_string(DFM_NUM_STATUS);
    TH_EXPECT(unknown != NULL && unknown[0] != '\0', "dfm_status_string(DFM_NUM_STATUS) is empty");
    TH_EXPECT(dfm_status_string((dfm_status_t)-1) != NULL, "dfm_status_string(-1) is NULL");
    TH_EXPECT(strstr(dfm_status_string(DFM_ERROR_TIMEOUT), "timeout") != NULL,
              "the timeout status string does not say timeout");
    TH_EXPECT(dfm_get_version() == DFM_VERSION, "dfm_get_version %d != DFM_VERSION %d",
              dfm_get_version(), DFM_VERSION);
    TH_EXPECT(dfm_backend_available(DFM_BACKEND_CPU) == 1, "the cpu backend is not available");
    TH_EXPECT(dfm_backend_available((dfm_backend_t)7) == 0, "backend 7 is available");
    TH_EXPECT(dfm_ctx_last_error(NULL) != NULL, "dfm_ctx_last_error(NULL) is NULL");
}

/* ---- configuration ---------------------------------------------------------- */

static void test_config(void) {
    dfm_config_t good = DFM_CONFIG_INIT;
    good.hidden = 256;
    good.inter = 64;
    good.num_experts = 4;
    good.num_ranks = 2;
    good.num_max_dispatch_tokens_per_rank = 8;
    size_t bytes = 0;
    TH_EXPECT(dfm_buffer_size_hint(&good, &bytes) == DFM_SUCCESS && bytes > 0,
              "dfm_buffer_size_hint of a valid config failed");
    dfm_unique_id_t id;
    memset(&id, 0, sizeof id);
    TH_EXPECT(dfm_get_unique_id(&good, &id) == DFM_SUCCESS, "dfm_get_unique_id failed");

    for (int i = 0;; i++) {
        dfm_config_t c = good;
        const char *field = NULL;
        switch (i) {
        case 0: c.size = sizeof c - 1; field = "config.size"; break;
        case 1: c.size = 0; field = "config.size"; break;
        case 2: c.version = DFM_VERSION + 100; field = "config.version"; break;
        case 3: c.backend = (dfm_backend_t)-1; field = "config.backend"; break;
        case 4: c.backend = (dfm_backend_t)5; field = "config.backend"; break;
        case 5: c.num_ranks = 0; field = "config.num_ranks"; break;
        case 6: c.num_ranks = DFM_MAX_RANKS + 1; c.num_experts = 36; field = "config.num_ranks"; break;
        case 7: c.hidden = 128; field = "config.hidden"; break;
        case 8: c.hidden = 300; field = "config.hidden"; break;
        case 9: c.hidden = DFM_MAX_HIDDEN + 128; field = "config.hidden"; break;
        case 10: c.hidden = -256; field = "config.hidden"; break;
        case 11: c.inter = 0; field = "config.inter"; break;
        case 12: c.inter = 32; field = "config.inter"; break;
        case 13: c.inter = 96; field = "config.inter"; break;
        case 14: c.inter = DFM_MAX_INTER + 64; field = "config.inter"; break;
        case 15: c.num_experts = 0; field = "config.num_experts"; break;
        case 16: c.num_experts = 3; field = "config.num_experts"; break; /* not % R */
        case 17: c.num_experts = DFM_MAX_EXPERTS + 2; field = "config.num_experts"; break;
        case 18: c.max_topk = 0; field = "config.max_topk"; break;
        case 19: c.max_topk = DFM_MAX_TOPK + 1; field = "config.max_topk"; break;
        case 20: c.num_max_dispatch_tokens_per_rank = 0; field = "config.num_max_dispatch_tokens_per_rank"; break;
        case 21: c.num_max_dispatch_tokens_per_rank = DFM_MAX_TOKENS + 1; field = "config.num_max_dispatch_tokens_per_rank"; break;
        case 22: c.quant_modes = 0; field = "config.quant_modes"; break;
        case 23: c.quant_modes = 8; field = "config.quant_modes"; break;
        case 24: c.timeout_s = 0.0; field = "config.timeout_s"; break;
        case 25: c.timeout_s = -1.0; field = "config.timeout_s"; break;
        case 26: c.timeout_s = NAN; field = "config.timeout_s"; break;
        case 27: c.timeout_s = 1e9; field = "config.timeout_s"; break;
        case 28: c.path = (dfm_path_t)-1; field = "config.path"; break;
        case 29: c.path = DFM_NUM_PATH; field = "config.path"; break;
        default: break;
        }
        if (field == NULL) break;
        size_t hint = 12345;
        dfm_status_t st = dfm_buffer_size_hint(&c, &hint);
        TH_EXPECT(st == DFM_ERROR_INVALID_ARGUMENT, "size hint with bad %s (case %d): status %d",
                  field, i, st);
        TH_EXPECT(hint == 12345, "size hint with bad %s wrote its output", field);
        dfm_unique_id_t bad_id;
        st = dfm_get_unique_id(&c, &bad_id);
        TH_EXPECT(st == DFM_ERROR_INVALID_ARGUMENT, "get_unique_id with bad %s: status %d", field,
                  st);
        dfm_ctx_t *ctx = (dfm_ctx_t *)&good; /* not NULL: creation must clear it */
        char err[512] = "";
        st = dfm_ctx_create(&ctx, &c, &id, 0, err, sizeof err);
        TH_EXPECT(st == DFM_ERROR_INVALID_ARGUMENT, "ctx_create with bad %s: status %d (%s)",
                  field, st, err);
        TH_EXPECT(strstr(err, field) != NULL, "ctx_create with bad %s: message \"%s\"", field, err);
        TH_EXPECT(ctx == NULL, "ctx_create with bad %s: *ctx not NULL", field);
        if (ctx != NULL && ctx != (dfm_ctx_t *)&good) dfm_ctx_destroy(ctx);
    }

    /* Arguments of creation other than the config. */
    char err[512] = "";
    dfm_ctx_t *ctx = (dfm_ctx_t *)&good;
    dfm_status_t st = dfm_ctx_create(&ctx, NULL, &id, 0, err, sizeof err);
    TH_EXPECT(st == DFM_ERROR_INVALID_ARGUMENT && strstr(err, "config"),
              "ctx_create(config NULL): %d \"%s\"", st, err);
    TH_EXPECT(ctx == NULL, "ctx_create(config NULL): *ctx not NULL");
    ctx = (dfm_ctx_t *)&good;
    st = dfm_ctx_create(&ctx, &good, NULL, 0, err, sizeof err);
    TH_EXPECT(st == DFM_ERROR_INVALID_ARGUMENT && strstr(err, "id"), "ctx_create(id NULL): %d \"%s\"",
              st, err);
    TH_EXPECT(ctx == NULL, "ctx_create(id NULL): *ctx not NULL (dfm.h: on failure *ctx is NULL)");
    st = dfm_ctx_create(NULL, &good, &id, 0, err, sizeof err);
    TH_EXPECT(st == DFM_ERROR_INVALID_ARGUMENT && strstr(err, "ctx"), "ctx_create(NULL): %d \"%s\"",
              st, err);
    const int bad_ranks[] = {-1, 2, 1000};
    for (size_t i = 0; i < 3; i++) {
        ctx = (dfm_ctx_t *)&good;
        st = dfm_ctx_create(&ctx, &good, &id, bad_ranks[i], err, sizeof err);
        TH_EXPECT(st == DFM_ERROR_INVALID_ARGUMENT && strstr(err, "rank"),
                  "ctx_create(rank %d): %d \"%s\"", bad_ranks[i], st, err);
        TH_EXPECT(ctx == NULL, "ctx_create(rank %d): *ctx not NULL", bad_ranks[i]);
    }
    /* No error buffer at all must still be safe. */
    st = dfm_ctx_create(&ctx, &good, &id, -1, NULL, 0);
    TH_EXPECT(st == DFM_ERROR_INVALID_ARGUMENT, "ctx_create(rank -1, no err buffer): %d", st);
    /* An id that dfm_get_unique_id never made. */
    dfm_unique_id_t junk;
    memset(&junk, 0x5a, sizeof junk);
    ctx = (dfm_ctx_t *)&good;
    good.num_ranks = 1;
    st = dfm_ctx_create(&ctx, &good, &junk, 0, err, sizeof err);
    TH_EXPECT(st != DFM_SUCCESS && strstr(err, "id"), "ctx_create(junk id): %d \"%s\"", st, err);
    TH_EXPECT(ctx == NULL, "ctx_create(junk id): *ctx not NULL");
    if (st == DFM_SUCCESS && ctx) dfm_ctx_destroy(ctx);
    /* A backend that is not built in. */
    if (!dfm_backend_available(DFM_BACKEND_CUDA)) {
        dfm_config_t c = good;
        c.backend = DFM_BACKEND_CUDA;
        ctx = (dfm_ctx_t *)&good;
        st = dfm_ctx_create(&ctx, &c, &id, 0, err, sizeof err);
        TH_EXPECT(st == DFM_ERROR_UNSUPPORTED && strstr(err, "config.backend"),
                  "ctx_create(cuda, not built): %d \"%s\"", st, err);
        TH_EXPECT(ctx == NULL, "ctx_create(cuda, not built): *ctx not NULL");
        TH_EXPECT(dfm_get_unique_id(&c, &junk) == DFM_ERROR_UNSUPPORTED,
                  "get_unique_id(cuda, not built) is not DFM_ERROR_UNSUPPORTED");
    }
    TH_EXPECT(dfm_buffer_size_hint(&good, NULL) == DFM_ERROR_INVALID_ARGUMENT,
              "size hint with bytes NULL");
    TH_EXPECT(dfm_buffer_size_hint(NULL, &bytes) == DFM_ERROR_INVALID_ARGUMENT,
              "size hint with config NULL");
    TH_EXPECT(dfm_get_unique_id(&good, NULL) == DFM_ERROR_INVALID_ARGUMENT,
              "get_unique_id with id NULL");
    TH_EXPECT(dfm_get_unique_id(NULL, &junk) == DFM_ERROR_INVALID_ARGUMENT,
              "get_unique_id with config NULL");
}

/* ---- per-call arguments ------------------------------------------------------ */

static void test_fused_args(void) {
    mini_t m;
    mini_init(&m, 1, DFM_QUANT_FP8, DFM_QUANT_MASK_ALL, 10.0);
    dfm_ctx_t *ctx = create_single(&m);
    if (ctx == NULL) {
        mini_free(&m);
        return;
    }
    size_t n_out = (size_t)m.T * 256;
    uint16_t *out = th_alloc(n_out * 2);
    int32_t ep[2];
    for (int i = 0;; i++) {
        th_fill_bf16(out, n_out, TH_POISON_BF16);
        memset(ep, TH_POISON_BYTE, sizeof ep);
        dfm_moe_args_t a = mini_args(&m, 0, out, ep);
        const char *field = NULL;
        switch (i) {
        case 0: a.num_tokens = -1; field = "num_tokens"; break;
        case 1: a.num_tokens = 9; field = "num_tokens"; break; /* T > num_max */
        case 2: a.num_topk = 0; field = "num_topk"; break;
        case 3: a.num_topk = 5; field = "num_topk"; break; /* > max_topk */
        case 4: a.num_topk = -3; field = "num_topk"; break;
        case 5: a.quant = (dfm_quant_t)-1; field = "quant"; break;
        case 6: a.quant = DFM_NUM_QUANT; field = "quant"; break;
        case 7: a.x = NULL; field = "x"; break;
        case 8: a.topk_idx = NULL; field = "topk_idx"; break;
        case 9: a.topk_weights = NULL; field = "topk_weights"; break;
        case 10: a.out = NULL; field = "out"; break;
        case 11: a.w1 = NULL; field = "w1"; break;
        case 12: a.w2 = NULL; field = "w2"; break;
        case 13: a.w1_scale = NULL; field = "w1_scale"; break;
        case 14: a.w2_scale = NULL; field = "w2_scale"; break;
        case 15: a.w1 = NULL; a.num_tokens = 0; field = "w1"; break; /* needed even with T = 0 */
        default: break;
        }
        if (field == NULL) break;
        dfm_status_t st = dfm_fused_moe(ctx, &a);
        expect_rejected(ctx, st, DFM_ERROR_INVALID_ARGUMENT, "dfm_fused_moe", field);
        TH_EXPECT(th_all_bf16(out, n_out, TH_POISON_BF16) &&
                      th_all_bytes(ep, sizeof ep, TH_POISON_BYTE),
                  "dfm_fused_moe with bad %s wrote an output", field);
    }
    dfm_status_t st = dfm_fused_moe(ctx, NULL);
    expect_rejected(ctx, st, DFM_ERROR_INVALID_ARGUMENT, "dfm_fused_moe", "args");
    dfm_moe_args_t a = mini_args(&m, 0, out, ep);
    TH_EXPECT(dfm_fused_moe(NULL, &a) == DFM_ERROR_INVALID_ARGUMENT, "dfm_fused_moe(NULL ctx)");

    /* Still usable, and equal to the oracle. */
    th_fill_bf16(out, n_out, TH_POISON_BF16);
    st = dfm_fused_moe(ctx, &a);
    TH_EXPECT(st == DFM_SUCCESS, "valid call after rejected ones: %s", dfm_ctx_last_error(ctx));
    oracle_weights_t ow;
    oracle_weights_init(&ow, m.ck13, m.ck2, 2, 256, 64, DFM_QUANT_FP8);
    double *ref = th_alloc(2 * n_out * sizeof(double)), allowed;
    oracle_moe(&ow, m.x[0], m.idx[0], m.wts[0], m.T, m.K, ref, NULL, ref + n_out);
    double err = oracle_check(out, ref, ref + n_out, n_out, 1e-2, &allowed);
    TH_EXPECT(err <= allowed, "valid call after rejected ones: rel L2 %.3g vs oracle (allowed %.3g)", err, allowed);

    /* T = 0 may pass NULL data pointers; bf16 mode may pass NULL scales. */
    a.num_tokens = 0;
    a.x = NULL;
    a.topk_idx = NULL;
    a.topk_weights = NULL;
    a.out = NULL;
    st = dfm_fused_moe(ctx, &a);
    TH_EXPECT(st == DFM_SUCCESS, "T = 0 with NULL x/idx/weights/out: %s", dfm_ctx_last_error(ctx));
    dfm_status_t async = DFM_ERROR_INTERNAL;
    TH_EXPECT(dfm_get_async_error(ctx, &async) == DFM_SUCCESS && async == DFM_SUCCESS,
              "asynchronous error %d after valid calls", async);
    TH_EXPECT(dfm_get_async_error(ctx, NULL) == DFM_ERROR_INVALID_ARGUMENT,
              "dfm_get_async_error(ctx, NULL)");
    TH_EXPECT(dfm_get_async_error(NULL, &async) == DFM_ERROR_INVALID_ARGUMENT,
              "dfm_get_async_error(NULL, ...)");
    /* the CPU backend has one way, reported as the pipeline, whatever config.path asks */
    dfm_path_t path = DFM_PATH_DEFAULT;
    TH_EXPECT(dfm_ctx_get_path(ctx, &path) == DFM_SUCCESS && path == DFM_PATH_PIPELINE,
              "dfm_ctx_get_path on the CPU backend: %d, want DFM_PATH_PIPELINE", (int)path);
    TH_EXPECT(dfm_ctx_get_path(ctx, NULL) == DFM_ERROR_INVALID_ARGUMENT, "dfm_ctx_get_path(ctx, NULL)");
    TH_EXPECT(dfm_ctx_get_path(NULL, &path) == DFM_ERROR_INVALID_ARGUMENT, "dfm_ctx_get_path(NULL, ...)");
    dfm_ctx_destroy(ctx);
    mini_free(&m);

    /* A mode outside the context's quant_modes; bf16 without scales. */
    mini_init(&m, 1, DFM_QUANT_BF16, DFM_QUANT_MASK(DFM_QUANT_BF16), 10.0);
    ctx = create_single(&m);
    if (ctx != NULL) {
        a = mini_args(&m, 0, out, ep);
        th_fill_bf16(out, n_out, TH_POISON_BF16);
        a.quant = DFM_QUANT_FP8;
        st = dfm_fused_moe(ctx, &a);
        expect_rejected(ctx, st, DFM_ERROR_INVALID_ARGUMENT, "dfm_fused_moe (fp8 not in modes)",
                        "quant");
        TH_EXPECT(th_all_bf16(out, n_out, TH_POISON_BF16), "rejected mode wrote out");
        a.quant = DFM_QUANT_BF16;
        a.w1_scale = NULL;
        a.w2_scale = NULL;
        st = dfm_fused_moe(ctx, &a);
        TH_EXPECT(st == DFM_SUCCESS, "bf16 with NULL scales: %s", dfm_ctx_last_error(ctx));
        dfm_ctx_destroy(ctx);
    }
    mini_free(&m);
    oracle_weights_free(&ow);
    free(ref);
    free(out);
}

static void test_dispatch_combine_args(void) {
    mini_t m;
    mini_init(&m, 1, DFM_QUANT_INT8, DFM_QUANT_MASK(DFM_QUANT_INT8), 10.0);
    dfm_ctx_t *ctx = create_single(&m);
    if (ctx == NULL) {
        mini_free(&m);
        return;
    }
    recv_t b;
    recv_init(&b, &m);
    dfm_handle_t handle;
    for (int i = 0;; i++) {
        dfm_dispatch_args_t a = dispatch_args(&m, 0, &b);
        dfm_handle_t *hp = &handle;
        const char *field = NULL;
        switch (i) {
        case 0: a.num_tokens = 9; field = "num_tokens"; break;
        case 1: a.num_tokens = -1; field = "num_tokens"; break;
        case 2: a.num_topk = 0; field = "num_topk"; break;
        case 3: a.num_topk = 17; field = "num_topk"; break;
        case 4: a.quant = DFM_QUANT_FP8; field = "quant"; break; /* not in modes */
        case 5: a.quant = (dfm_quant_t)9; field = "quant"; break;
        case 6: a.x = NULL; field = "x"; break;
        case 7: a.topk_idx = NULL; field = "topk_idx"; break;
        case 8: a.recv_x = NULL; field = "recv_x"; break;
        case 9: a.recv_scale = NULL; field = "recv_scale"; break;
        case 10: a.recv_count = NULL; field = "recv_count"; break;
        case 11: a.layout_range = NULL; field = "layout_range"; break;
        case 12: hp = NULL; field = "handle"; break;
        default: break;
        }
        if (field == NULL) break;
        dfm_status_t st = dfm_dispatch(ctx, &a, hp);
        expect_rejected(ctx, st, DFM_ERROR_INVALID_ARGUMENT, "dfm_dispatch", field);
        TH_EXPECT(recv_untouched(&b), "dfm_dispatch with bad %s wrote an output", field);
    }
    dfm_status_t st = dfm_dispatch(ctx, NULL, &handle);
    expect_rejected(ctx, st, DFM_ERROR_INVALID_ARGUMENT, "dfm_dispatch", "args");

    size_t n_out = (size_t)m.T * 256, n_y = b.n_rows * 256;
    uint16_t *out = th_alloc(n_out * 2), *y = th_alloc(n_y * 2);
    for (size_t i = 0; i < n_y; i++) y[i] = th_bf16(0.5);
    th_fill_bf16(out, n_out, TH_POISON_BF16);
    dfm_combine_args_t ca = {y, m.idx[0], m.wts[0], &handle, out, NULL};

    /* Combine with no dispatch outstanding. */
    memset(&handle, 0, sizeof handle);
    st = dfm_combine(ctx, &ca);
    expect_rejected(ctx, st, DFM_ERROR_INVALID_USAGE, "dfm_combine (no dispatch)", "handle");
    TH_EXPECT(th_all_bf16(out, n_out, TH_POISON_BF16), "combine without dispatch wrote out");

    /* Dispatch A, then bad combines of A, then a good one. */
    dfm_dispatch_args_t da = dispatch_args(&m, 0, &b);
    dfm_handle_t ha, hb, hc;
    st = dfm_dispatch(ctx, &da, &ha);
    TH_EXPECT(st == DFM_SUCCESS, "dispatch A: %s", dfm_ctx_last_error(ctx));
    for (int i = 0;; i++) {
        dfm_combine_args_t c = {y, m.idx[0], m.wts[0], &ha, out, NULL};
        const char *field = NULL;
        switch (i) {
        case 0: c.handle = NULL; field = "handle"; break;
        case 1: c.y = NULL; field = "y"; break;
        case 2: c.topk_idx = NULL; field = "topk_idx"; break;
        case 3: c.topk_weights = NULL; field = "topk_weights"; break;
        case 4: c.out = NULL; field = "out"; break;
        default: break;
        }
        if (field == NULL) break;
        st = dfm_combine(ctx, &c);
        expect_rejected(ctx, st, DFM_ERROR_INVALID_ARGUMENT, "dfm_combine", field);
        TH_EXPECT(th_all_bf16(out, n_out, TH_POISON_BF16), "combine with bad %s wrote out", field);
    }
    st = dfm_combine(ctx, NULL);
    expect_rejected(ctx, st, DFM_ERROR_INVALID_ARGUMENT, "dfm_combine", "args");
    /* A fused call while a dispatch waits for its combine. */
    uint16_t *fout = th_alloc(n_out * 2);
    th_fill_bf16(fout, n_out, TH_POISON_BF16);
    dfm_moe_args_t fa = mini_args(&m, 0, fout, NULL);
    st = dfm_fused_moe(ctx, &fa);
    TH_EXPECT(st == DFM_ERROR_INVALID_USAGE, "fused with a dispatch outstanding: %d", st);
    TH_EXPECT(th_all_bf16(fout, n_out, TH_POISON_BF16), "refused fused call wrote out");

    /* Dispatch B: two outstanding. A third is refused, B cannot combine first. */
    recv_t b2, b3;
    recv_init(&b2, &m);
    recv_init(&b3, &m);
    dfm_dispatch_args_t db = dispatch_args(&m, 0, &b2), dc = dispatch_args(&m, 0, &b3);
    st = dfm_dispatch(ctx, &db, &hb);
    TH_EXPECT(st == DFM_SUCCESS, "dispatch B: %s", dfm_ctx_last_error(ctx));
    st = dfm_dispatch(ctx, &dc, &hc);
    TH_EXPECT(st == DFM_ERROR_INVALID_USAGE, "third dispatch: status %d, want invalid usage", st);
    TH_EXPECT(dfm_ctx_last_error(ctx)[0] != '\0', "third dispatch: no message");
    TH_EXPECT(recv_untouched(&b3), "refused third dispatch wrote its outputs");
    ca.handle = &hb;
    st = dfm_combine(ctx, &ca);
    expect_rejected(ctx, st, DFM_ERROR_INVALID_USAGE, "dfm_combine (B before A)", "handle");
    TH_EXPECT(th_all_bf16(out, n_out, TH_POISON_BF16), "out-of-order combine wrote out");
    ca.handle = &ha;
    st = dfm_combine(ctx, &ca);
    TH_EXPECT(st == DFM_SUCCESS, "combine A: %s", dfm_ctx_last_error(ctx));
    /* y = 0.5 everywhere: out = 0.5 * sum of the valid weights. */
    for (int t = 0; t < m.T; t++) {
        float acc = 0.0f;
        for (int k = 0; k < m.K; k++) acc += m.wts[0][t * m.K + k] * 0.5f;
        TH_EXPECT(out[(size_t)t * 256] == dfm_f32_to_bf16(acc), "combine A token %d: 0x%04x vs 0x%04x",
                  t, out[(size_t)t * 256], dfm_f32_to_bf16(acc));
    }
    ca.handle = &ha; /* A again: consumed */
    st = dfm_combine(ctx, &ca);
    expect_rejected(ctx, st, DFM_ERROR_INVALID_USAGE, "dfm_combine (A twice)", "handle");
    ca.handle = &hb;
    st = dfm_combine(ctx, &ca);
    TH_EXPECT(st == DFM_SUCCESS, "combine B: %s", dfm_ctx_last_error(ctx));
    th_fill_bf16(fout, n_out, TH_POISON_BF16);
    st = dfm_fused_moe(ctx, &fa);
    TH_EXPECT(st == DFM_SUCCESS, "fused after the pairs: %s", dfm_ctx_last_error(ctx));

    /* A handle altered after its dispatch (same seq, other shape) is refused:
     * the shape decides how much of topk_idx, topk_weights and out is touched. */
    st = dfm_dispatch(ctx, &da, &ha);
    TH_EXPECT(st == DFM_SUCCESS, "dispatch C: %s", dfm_ctx_last_error(ctx));
    for (int i = 0; i < 2; i++) {
        dfm_handle_t altered = ha;
        if (i == 0) altered.num_tokens = ha.num_tokens - 1;
        if (i == 1) altered.num_topk = ha.num_topk - 1;
        ca.handle = &altered;
        th_fill_bf16(out, n_out, TH_POISON_BF16);
        st = dfm_combine(ctx, &ca);
        TH_EXPECT(st == DFM_ERROR_INVALID_ARGUMENT || st == DFM_ERROR_INVALID_USAGE,
                  "combine with a handle whose %s was altered after dispatch: status %d, want "
                  "it refused",
                  i == 0 ? "num_tokens" : "num_topk", st);
        if (st == DFM_SUCCESS) {
            /* The library consumed the dispatch: make another one for the next case. */
            st = dfm_dispatch(ctx, &da, &ha);
            TH_EXPECT(st == DFM_SUCCESS, "dispatch C again: %s", dfm_ctx_last_error(ctx));
        } else {
            TH_EXPECT(strstr(dfm_ctx_last_error(ctx), "handle") != NULL,
                      "altered handle: message \"%s\" does not name handle",
                      dfm_ctx_last_error(ctx));
            TH_EXPECT(th_all_bf16(out, n_out, TH_POISON_BF16), "refused combine wrote out");
        }
    }
    ca.handle = &ha;
    st = dfm_combine(ctx, &ca);
    TH_EXPECT(st == DFM_SUCCESS, "combine C: %s", dfm_ctx_last_error(ctx));

    /* T = 0 dispatch/combine with NULL token pointers. */
    da.num_tokens = 0;
    da.x = NULL;
    da.topk_idx = NULL;
    st = dfm_dispatch(ctx, &da, &ha);
    TH_EXPECT(st == DFM_SUCCESS, "dispatch T = 0: %s", dfm_ctx_last_error(ctx));
    dfm_combine_args_t c0 = {y, NULL, NULL, &ha, NULL, NULL};
    st = dfm_combine(ctx, &c0);
    TH_EXPECT(st == DFM_SUCCESS, "combine T = 0 with NULL pointers: %s", dfm_ctx_last_error(ctx));

    TH_EXPECT(dfm_dispatch(NULL, &da, &ha) == DFM_ERROR_INVALID_ARGUMENT, "dispatch(NULL ctx)");
    TH_EXPECT(dfm_combine(NULL, &ca) == DFM_ERROR_INVALID_ARGUMENT, "combine(NULL ctx)");
    dfm_ctx_destroy(ctx);
    recv_free(&b);
    recv_free(&b2);
    recv_free(&b3);
    free(out);
    free(fout);
    free(y);
    mini_free(&m);
}

static void test_weight_helper_args(void) {
    uint16_t ck[2 * 64 * 256];
    memset(ck, 0, sizeof ck);
    unsigned char w[2 * 64 * 256 * 2];
    float s[2 * 64 + 256];
    memset(w, TH_POISON_BYTE, sizeof w);
    memset(s, TH_POISON_BYTE, sizeof s);
    struct {
        int g, h, i, q, null_arg;
    } bad[] = {
        {1, 256, 64, 0, 1}, {1, 256, 64, 0, 2}, {1, 256, 64, 0, 3}, {0, 256, 64, 0, 0},
        {-1, 256, 64, 0, 0}, {1, 100, 64, 0, 0}, {1, 0, 64, 0, 0},  {1, 256, 32, 0, 0},
        {1, 256, 96, 0, 0},  {1, 256, 0, 0, 0},  {1, 256, 64, 3, 0}, {1, 256, 64, -1, 0},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        const uint16_t *src = bad[k].null_arg == 1 ? NULL : ck;
        void *dst = bad[k].null_arg == 2 ? NULL : w;
        float *sc = bad[k].null_arg == 3 ? NULL : s;
        dfm_status_t a = dfm_weights_prepare_w13(src, bad[k].g, bad[k].h, bad[k].i,
                                                 (dfm_quant_t)bad[k].q, dst, sc);
        dfm_status_t b = dfm_weights_prepare_w2(src, bad[k].g, bad[k].h, bad[k].i,
                                                (dfm_quant_t)bad[k].q, dst, sc);
        TH_EXPECT(a == DFM_ERROR_INVALID_ARGUMENT && b == DFM_ERROR_INVALID_ARGUMENT,
                  "weight helpers with G=%d H=%d I=%d q=%d null=%d: %d %d", bad[k].g, bad[k].h,
                  bad[k].i, bad[k].q, bad[k].null_arg, a, b);
    }
    TH_EXPECT(th_all_bytes(w, sizeof w, TH_POISON_BYTE) && th_all_bytes(s, sizeof s, TH_POISON_BYTE),
              "rejected weight helper calls wrote an output");
}

/* ---- two ranks as threads ---------------------------------------------------- */

typedef struct duo duo_t;
struct duo {
    mini_t m;
    dfm_config_t cfg[2]; /* per rank, normally equal */
    dfm_unique_id_t id;
    pthread_barrier_t barrier;
    void (*body)(duo_t *d, int rank, dfm_ctx_t *ctx);
    int create[2];        /* whether the rank creates a context */
    dfm_status_t created[2];
    double create_s[2];
    char err[2][512];
    int variant;
};

typedef struct {
    duo_t *d;
    int rank;
} duo_arg_t;

static void *duo_thread(void *p) {
    duo_arg_t *a = p;
    duo_t *d = a->d;
    dfm_ctx_t *ctx = NULL;
    if (d->create[a->rank]) {
        double t0 = th_now_s();
        d->created[a->rank] =
            dfm_ctx_create(&ctx, &d->cfg[a->rank], &d->id, a->rank, d->err[a->rank], 512);
        d->create_s[a->rank] = th_now_s() - t0;
    }
    if (d->body && ctx) d->body(d, a->rank, ctx);
    dfm_ctx_destroy(ctx);
    return NULL;
}

static void duo_run(duo_t *d) {
    pthread_t th[2];
    duo_arg_t args[2] = {{d, 0}, {d, 1}};
    pthread_barrier_init(&d->barrier, NULL, 2);
    dfm_status_t st = dfm_get_unique_id(&d->cfg[0], &d->id);
    TH_EXPECT(st == DFM_SUCCESS, "get_unique_id: %d", st);
    for (int r = 0; r < 2; r++) pthread_create(&th[r], NULL, duo_thread, &args[r]);
    for (int r = 0; r < 2; r++) pthread_join(th[r], NULL);
    pthread_barrier_destroy(&d->barrier);
}

static void duo_init(duo_t *d, dfm_quant_t q, unsigned modes, double timeout_s) {
    memset(d, 0, sizeof *d);
    mini_init(&d->m, 2, q, modes, timeout_s);
    d->cfg[0] = d->cfg[1] = d->m.cfg;
    d->create[0] = d->create[1] = 1;
}

/* Watches /dev/shm while a creation runs: the world's segment must be 0600. */
typedef struct {
    const dfm_unique_id_t *id;
    atomic_int stop;
    int seen, bad_mode;
} shm_watch_t;

static void *shm_watch_thread(void *p) {
    shm_watch_t *w = p;
    while (!atomic_load(&w->stop)) {
        char name[256], path[512];
        struct stat st;
        if (th_shm_of_id(w->id, sizeof *w->id, name, sizeof name) > 0) {
            snprintf(path, sizeof path, "/dev/shm/%s", name);
            if (stat(path, &st) == 0) {
                w->seen++;
                if ((st.st_mode & 0777) != 0600) w->bad_mode = (int)(st.st_mode & 0777);
            }
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void expect_segment_gone(const dfm_unique_id_t *id, const char *when) {
    char name[256] = "";
    int left = th_shm_of_id(id, sizeof *id, name, sizeof name);
    TH_EXPECT(left == 0, "%s: the world's segment /dev/shm/%s is still there", when, name);
}

static void test_create_timeout(void) {
    for (int absent = 1; absent >= 0; absent--) {
        /* absent = 1: rank 1 never comes; absent = 0: rank 0 never comes. */
        mini_t m;
        mini_init(&m, 2, DFM_QUANT_FP8, DFM_QUANT_MASK_ALL, SHORT_TIMEOUT_S);
        dfm_unique_id_t id;
        TH_EXPECT(dfm_get_unique_id(&m.cfg, &id) == DFM_SUCCESS, "get_unique_id");
        shm_watch_t watch = {.id = &id};
        pthread_t th;
        pthread_create(&th, NULL, shm_watch_thread, &watch);
        dfm_ctx_t *ctx = (dfm_ctx_t *)&m;
        char err[512] = "";
        int rank = absent == 1 ? 0 : 1;
        double t0 = th_now_s();
        dfm_status_t st = dfm_ctx_create(&ctx, &m.cfg, &id, rank, err, sizeof err);
        double dt = th_now_s() - t0;
        atomic_store(&watch.stop, 1);
        pthread_join(th, NULL);
        TH_EXPECT(st == DFM_ERROR_TIMEOUT, "create as rank %d alone: status %d (%s), want timeout",
                  rank, st, err);
        TH_EXPECT(dt >= 0.9 * SHORT_TIMEOUT_S && dt < TIMEOUT_BOUND_S,
                  "create as rank %d alone took %.2f s (timeout %.1f s)", rank, dt,
                  SHORT_TIMEOUT_S);
        TH_EXPECT(ctx == NULL, "timed-out create left *ctx non-NULL");
        TH_EXPECT(err[0] != '\0', "timed-out create gave no message");
        TH_EXPECT(watch.bad_mode == 0, "the shared segment had mode 0%o, want 0600",
                  watch.bad_mode);
        if (rank == 0)
            TH_EXPECT(watch.seen > 0, "never saw rank 0's segment in /dev/shm while it waited");
        expect_segment_gone(&id, "timed-out create");
        mini_free(&m);
    }
}

/* Variant 0: only rank 0 calls fused; 1: only rank 0 dispatches; 2: both
 * dispatch, only rank 0 combines. */
static void call_timeout_body(duo_t *d, int rank, dfm_ctx_t *ctx) {
    size_t n_out = (size_t)d->m.T * 256;
    uint16_t *out = th_alloc(n_out * 2);
    recv_t b;
    recv_init(&b, &d->m);
    dfm_handle_t h;
    dfm_dispatch_args_t da = dispatch_args(&d->m, rank, &b);
    dfm_moe_args_t fa = mini_args(&d->m, rank, out, NULL);
    uint16_t *y = th_alloc(b.n_rows * 256 * 2);
    memset(y, 0, b.n_rows * 256 * 2);
    dfm_combine_args_t ca = {y, d->m.idx[rank], d->m.wts[rank], &h, out, NULL};
    if (d->variant == 2) {
        dfm_status_t st = dfm_dispatch(ctx, &da, &h);
        TH_EXPECT(st == DFM_SUCCESS, "rank %d dispatch: %s", rank, dfm_ctx_last_error(ctx));
    }
    if (rank == 0) {
        double t0 = th_now_s();
        dfm_status_t st = d->variant == 0   ? dfm_fused_moe(ctx, &fa)
                          : d->variant == 1 ? dfm_dispatch(ctx, &da, &h)
                                            : dfm_combine(ctx, &ca);
        double dt = th_now_s() - t0;
        const char *what = d->variant == 0 ? "fused" : d->variant == 1 ? "dispatch" : "combine";
        TH_EXPECT(st == DFM_ERROR_TIMEOUT, "%s with the peer absent: status %d (%s): %s", what,
                  st, dfm_status_string(st), dfm_ctx_last_error(ctx));
        TH_EXPECT(dt >= 0.9 * SHORT_TIMEOUT_S && dt < TIMEOUT_BOUND_S,
                  "%s with the peer absent took %.2f s (timeout %.1f s)", what, dt,
                  SHORT_TIMEOUT_S);
        dfm_status_t async = DFM_SUCCESS;
        TH_EXPECT(dfm_get_async_error(ctx, &async) == DFM_SUCCESS && async == DFM_ERROR_TIMEOUT,
                  "%s timeout: asynchronous error %d, want timeout", what, async);
        /* Fatal: every later call fails fast, the error stays. */
        t0 = th_now_s();
        st = dfm_fused_moe(ctx, &fa);
        TH_EXPECT(st == DFM_ERROR_INVALID_USAGE, "fused after a %s timeout: status %d", what, st);
        TH_EXPECT(dfm_ctx_last_error(ctx)[0] != '\0', "fused after a timeout: no message");
        st = dfm_dispatch(ctx, &da, &h);
        TH_EXPECT(st == DFM_ERROR_INVALID_USAGE, "dispatch after a %s timeout: status %d", what,
                  st);
        TH_EXPECT(th_now_s() - t0 < 0.5, "calls after a timeout did not fail fast (%.2f s)",
                  th_now_s() - t0);
        TH_EXPECT(dfm_get_async_error(ctx, &async) == DFM_SUCCESS && async == DFM_ERROR_TIMEOUT,
                  "%s timeout: asynchronous error cleared (%d)", what, async);
    }
    pthread_barrier_wait(&d->barrier); /* rank 1 keeps its context until rank 0 is done */
    recv_free(&b);
    free(out);
    free(y);
}

static void test_call_timeout(void) {
    for (int v = 0; v < 3; v++) {
        static duo_t d;
        duo_init(&d, DFM_QUANT_BF16, DFM_QUANT_MASK_ALL, SHORT_TIMEOUT_S);
        d.body = call_timeout_body;
        d.variant = v;
        duo_run(&d);
        for (int r = 0; r < 2; r++)
            TH_EXPECT(d.created[r] == DFM_SUCCESS, "rank %d create: %s", r, d.err[r]);
        mini_free(&d.m);
    }
}

static void test_config_mismatch(void) {
    for (int v = 0; v < 4; v++) {
        static duo_t d;
        duo_init(&d, DFM_QUANT_FP8, DFM_QUANT_MASK_ALL, SHORT_TIMEOUT_S);
        if (v == 0) d.cfg[1].hidden = 512;
        if (v == 1) d.cfg[1].num_experts = 8;
        if (v == 2) d.cfg[1].quant_modes = DFM_QUANT_MASK(DFM_QUANT_FP8);
        if (v == 3) d.cfg[1].path = DFM_PATH_PIPELINE; /* the ranks would speak different protocols */
        duo_run(&d);
        TH_EXPECT(d.created[1] == DFM_ERROR_MISMATCH,
                  "rank 1 with another config (variant %d): status %d (%s), want mismatch", v,
                  d.created[1], d.err[1]);
        TH_EXPECT(strstr(d.err[1], "config") != NULL,
                  "rank 1 with another config: message \"%s\" does not say config", d.err[1]);
        TH_EXPECT(d.create_s[1] < TIMEOUT_BOUND_S, "refusing the config took %.2f s",
                  d.create_s[1]);
        TH_EXPECT(d.created[0] == DFM_ERROR_TIMEOUT || d.created[0] == DFM_ERROR_MISMATCH,
                  "rank 0 whose peer was refused: status %d (%s)", d.created[0], d.err[0]);
        TH_EXPECT(d.create_s[0] < TIMEOUT_BOUND_S, "rank 0 whose peer was refused took %.2f s",
                  d.create_s[0]);
        expect_segment_gone(&d.id, "refused config");
        mini_free(&d.m);
    }
}

/* Rank 0 calls in bf16 mode, rank 1 in fp8 mode, in the same call. */
static void mode_mismatch_body(duo_t *d, int rank, dfm_ctx_t *ctx) {
    size_t n_out = (size_t)d->m.T * 256;
    uint16_t *out = th_alloc(n_out * 2);
    /* The weights are bf16: rank 1's fp8 view of them is garbage, never out of bounds. */
    float *s1 = th_alloc(2 * 128 * 4), *s2 = th_alloc(2 * 256 * 4);
    for (int i = 0; i < 2 * 128; i++) s1[i] = 1.0f;
    for (int i = 0; i < 2 * 256; i++) s2[i] = 1.0f;
    dfm_moe_args_t a = mini_args(&d->m, rank, out, NULL);
    a.quant = rank == 0 ? DFM_QUANT_BF16 : DFM_QUANT_FP8;
    a.w1_scale = s1;
    a.w2_scale = s2;
    double t0 = th_now_s();
    dfm_status_t st = dfm_fused_moe(ctx, &a), async = DFM_SUCCESS;
    double dt = th_now_s() - t0;
    dfm_get_async_error(ctx, &async);
    TH_EXPECT(dt < TIMEOUT_BOUND_S, "rank %d: a call with mixed modes took %.2f s", rank, dt);
    d->created[rank] = st == DFM_ERROR_MISMATCH || async == DFM_ERROR_MISMATCH
                           ? DFM_ERROR_MISMATCH
                           : st;
    pthread_barrier_wait(&d->barrier);
    /* Agreeing again, the world works and reports nothing. */
    a = mini_args(&d->m, rank, out, NULL);
    st = dfm_fused_moe(ctx, &a);
    TH_EXPECT(st == DFM_SUCCESS, "rank %d: call after the mixed one: %s", rank,
              dfm_ctx_last_error(ctx));
    TH_EXPECT(dfm_get_async_error(ctx, &async) == DFM_SUCCESS && async == DFM_SUCCESS,
              "rank %d: asynchronous error %d after a good call", rank, async);
    free(out);
    free(s1);
    free(s2);
}

static void test_mode_mismatch(void) {
    static duo_t d;
    duo_init(&d, DFM_QUANT_BF16, DFM_QUANT_MASK_ALL, 5.0);
    d.body = mode_mismatch_body;
    duo_run(&d);
    expect_segment_gone(&d.id, "a world of two ranks");
    TH_EXPECT(d.created[0] == DFM_ERROR_MISMATCH || d.created[1] == DFM_ERROR_MISMATCH,
              "a call with mixed modes was not reported as a mismatch (ranks: %d, %d)",
              d.created[0], d.created[1]);
    mini_free(&d.m);
}

/* Rank 0's tokens name experts outside [-1, E); the result equals the same
 * call with those slots at -1, and the oracle. */
static void invalid_expert_body(duo_t *d, int rank, dfm_ctx_t *ctx) {
    mini_t *m = &d->m;
    size_t n_out = (size_t)m->T * 256, nk = (size_t)m->T * (size_t)m->K;
    int E = m->cfg.num_experts;
    const int64_t bad_ids[] = {E, 1000, -2, INT64_MAX, INT64_MIN, E + 1};
    int64_t *bad = th_alloc(nk * sizeof *bad), *clean = th_alloc(nk * sizeof *clean);
    memcpy(bad, m->idx[rank], nk * sizeof *bad);
    memcpy(clean, m->idx[rank], nk * sizeof *clean);
    if (rank == 0) {
        for (size_t i = 0; i < 6; i++) {
            size_t slot = (i * 7) % nk;
            bad[slot] = bad_ids[i];
            clean[slot] = -1;
        }
    }
    uint16_t *out_bad = th_alloc(n_out * 2), *out_clean = th_alloc(n_out * 2);
    int32_t ep_bad[4], ep_clean[4];
    th_fill_bf16(out_bad, n_out, TH_POISON_BF16);
    th_fill_bf16(out_clean, n_out, TH_POISON_BF16);
    dfm_moe_args_t a = mini_args(m, rank, out_bad, ep_bad);
    a.topk_idx = bad;
    dfm_status_t st = dfm_fused_moe(ctx, &a), async = DFM_SUCCESS;
    TH_EXPECT(st == DFM_SUCCESS, "rank %d: call with bad expert ids: %d: %s", rank, st,
              dfm_ctx_last_error(ctx));
    TH_EXPECT(dfm_get_async_error(ctx, &async) == DFM_SUCCESS, "get_async_error failed");
    if (rank == 0) {
        TH_EXPECT(async == DFM_ERROR_INVALID_EXPERT,
                  "rank 0 sent bad expert ids: asynchronous error %d, want invalid expert", async);
        TH_EXPECT(strstr(dfm_ctx_last_error(ctx), "topk_idx") != NULL,
                  "invalid-expert message \"%s\" does not name topk_idx", dfm_ctx_last_error(ctx));
    } else if (async != DFM_SUCCESS && async != DFM_ERROR_INVALID_EXPERT) {
        TH_EXPECT(0, "rank 1: asynchronous error %d", async);
    }
    TH_EXPECT(dfm_get_async_error(ctx, &async) == DFM_SUCCESS && async == DFM_SUCCESS,
              "rank %d: invalid-expert error not cleared by reading it (%d)", rank, async);

    a = mini_args(m, rank, out_clean, ep_clean);
    a.topk_idx = clean;
    st = dfm_fused_moe(ctx, &a);
    TH_EXPECT(st == DFM_SUCCESS, "rank %d: call with the slots at -1: %s", rank,
              dfm_ctx_last_error(ctx));
    TH_EXPECT(dfm_get_async_error(ctx, &async) == DFM_SUCCESS && async == DFM_SUCCESS,
              "rank %d: asynchronous error %d after a clean call", rank, async);
    TH_EXPECT(memcmp(out_bad, out_clean, n_out * 2) == 0,
              "rank %d: dropping bad ids differs from passing -1", rank);
    TH_EXPECT(memcmp(ep_bad, ep_clean, sizeof ep_bad) == 0,
              "rank %d: ep_recv_count counts dropped slots", rank);
    oracle_weights_t ow;
    oracle_weights_init(&ow, m->ck13, m->ck2, E, 256, 64, m->quant);
    double *ref = th_alloc(2 * n_out * sizeof(double)), allowed;
    oracle_moe(&ow, m->x[rank], bad, m->wts[rank], m->T, m->K, ref, NULL, ref + n_out);
    double err = oracle_check(out_bad, ref, ref + n_out, n_out, 1e-2, &allowed);
    TH_EXPECT(err <= allowed, "rank %d: bad ids: rel L2 %.3g vs the oracle without them (allowed %.3g)", rank,
              err, allowed);
    oracle_weights_free(&ow);

    /* Dispatch drops them too, and counts only real rows. */
    recv_t b;
    recv_init(&b, m);
    dfm_dispatch_args_t da = dispatch_args(m, rank, &b);
    da.topk_idx = bad;
    dfm_handle_t h;
    st = dfm_dispatch(ctx, &da, &h);
    TH_EXPECT(st == DFM_SUCCESS, "rank %d: dispatch with bad ids: %s", rank, dfm_ctx_last_error(ctx));
    TH_EXPECT(memcmp(b.ep, ep_clean, sizeof ep_clean) == 0,
              "rank %d: dispatch ep_recv_count counts dropped slots", rank);
    uint16_t *y = th_alloc(b.n_rows * 256 * 2);
    memset(y, 0, b.n_rows * 256 * 2);
    dfm_combine_args_t ca = {y, bad, m->wts[rank], &h, out_bad, NULL};
    st = dfm_combine(ctx, &ca);
    TH_EXPECT(st == DFM_SUCCESS, "rank %d: combine with bad ids: %s", rank, dfm_ctx_last_error(ctx));
    dfm_get_async_error(ctx, &async);
    if (rank == 0)
        TH_EXPECT(async == DFM_ERROR_INVALID_EXPERT, "dispatch with bad ids: asynchronous %d",
                  async);
    recv_free(&b);
    free(y);
    free(ref);
    free(bad);
    free(clean);
    free(out_bad);
    free(out_clean);
}

static void test_invalid_expert(void) {
    for (int q = 0; q < DFM_NUM_QUANT; q++) {
        static duo_t d;
        duo_init(&d, (dfm_quant_t)q, DFM_QUANT_MASK(q), 10.0);
        d.body = invalid_expert_body;
        duo_run(&d);
        for (int r = 0; r < 2; r++)
            TH_EXPECT(d.created[r] == DFM_SUCCESS, "rank %d create: %s", r, d.err[r]);
        mini_free(&d.m);
    }
}

int main(int argc, char **argv) {
    static const th_test_t tests[] = {
        {"status_strings", test_status_strings},
        {"config", test_config},
        {"fused_args", test_fused_args},
        {"dispatch_combine_args", test_dispatch_combine_args},
        {"weight_helper_args", test_weight_helper_args},
        {"invalid_expert", test_invalid_expert},
        {"create_timeout", test_create_timeout},
        {"call_timeout", test_call_timeout},
        {"config_mismatch", test_config_mismatch},
        {"mode_mismatch", test_mode_mismatch},
    };
    return th_main("test_errors", argc, argv, tests, sizeof tests / sizeof tests[0]);
}
