// mkdir -p build-fuzz && clang-14 -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Iinclude -Isrc -pthread tests/fuzz_args.c src/api.c src/common/*.c src/cpu/*.c -o build-fuzz/fuzz_args -lm -lrt && build-fuzz/fuzz_args -max_total_time=10
/*
 * fuzz_args.c - libFuzzer target for the argument validation of dfm.h.
 *
 * The fuzz bytes become (1) a dfm_config_t, checked through
 * dfm_buffer_size_hint() and dfm_get_unique_id() (no context is created from
 * it), and (2) a short sequence of calls on one R = 1 CPU context made once:
 * fused, dispatch, combine (with a handle that may be altered), async-error
 * reads. A dispatch left outstanding is combined before the next input.
 * Every data pointer is either NULL or a buffer sized for the
 * context's limits (T <= num_max, K <= max_topk): if validation lets a bad
 * count through, the sanitizers see the overflow. Expert ids are raw fuzz
 * values (out-of-range ids must be dropped, not followed). The library must
 * never crash, hang or abort.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/dfm_common.h"
#include "dfm.h"

enum { H = 256, I = 64, E = 4, K_MAX = 4, M = 8 };

typedef struct {
    const uint8_t *p;
    size_t n;
} reader_t;

static uint64_t take(reader_t *r, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) {
        v = v << 8;
        if (r->n > 0) {
            v |= *r->p++;
            r->n--;
        }
    }
    return v;
}

/* Mostly values near the limits, sometimes any 32-bit value. */
static int take_int(reader_t *r) {
    static const int interesting[] = {0,    1,    -1,   2,     3,    4,       5,   7,
                                      8,    9,    16,   17,    63,   64,      96,  127,
                                      128,  256,  300,  1024,  1025, 8192,    8256, 16384,
                                      16512, -256, 1000, 65536, INT32_MAX, INT32_MIN, 512, 6};
    uint8_t sel = (uint8_t)take(r, 1);
    if (sel < 224) return interesting[sel % (sizeof interesting / sizeof interesting[0])];
    return (int)(int32_t)(uint32_t)take(r, 4);
}

static void fuzz_config(reader_t *r) {
    dfm_config_t c = DFM_CONFIG_INIT;
    uint8_t mask = (uint8_t)take(r, 1);
    if (mask & 1) c.size = (size_t)take_int(r);
    if (mask & 2) c.version = (unsigned)take_int(r);
    if (mask & 4) c.backend = (dfm_backend_t)take_int(r);
    c.num_ranks = take_int(r);
    c.hidden = take_int(r);
    c.inter = take_int(r);
    c.num_experts = take_int(r);
    c.max_topk = take_int(r);
    c.num_max_dispatch_tokens_per_rank = take_int(r);
    c.quant_modes = (unsigned)take(r, 1);
    if (mask & 8) {
        static const double t[] = {0.0, -1.0, 1e-9, 1.0, 30.0, 86400.0, 1e300, 0.0 / 0.0};
        c.timeout_s = t[take(r, 1) % 8];
    }
    size_t bytes = 0;
    dfm_buffer_size_hint(&c, &bytes);
    dfm_unique_id_t id;
    dfm_get_unique_id(&c, &id);
}

/* The context and buffers sized for its limits, made once. */
static dfm_ctx_t *ctx;
static uint16_t x[M * H], out[M * H], y[E * M * H];
static int64_t idx[M * K_MAX];
static float wts[M * K_MAX];
static uint16_t w1[E * 2 * I * H], w2[E * H * I]; /* big enough for bf16 codes */
static float s1[E * 2 * I], s2[E * H];
static uint16_t recv_x[E * M * H];
static float recv_scale[E * M];
static int32_t recv_count[E], src_info[E * M], ep[E];
static int64_t layout[E];

static int setup(void) {
    dfm_config_t c = DFM_CONFIG_INIT;
    c.hidden = H;
    c.inter = I;
    c.num_experts = E;
    c.max_topk = K_MAX;
    c.num_max_dispatch_tokens_per_rank = M;
    c.timeout_s = 5.0;
    dfm_unique_id_t id;
    if (dfm_get_unique_id(&c, &id) != DFM_SUCCESS) return 0;
    if (dfm_ctx_create(&ctx, &c, &id, 0, NULL, 0) != DFM_SUCCESS) return 0;
    for (size_t i = 0; i < sizeof w1 / sizeof w1[0]; i++) w1[i] = (uint16_t)(0x3c00u + i % 64);
    for (size_t i = 0; i < sizeof w2 / sizeof w2[0]; i++) w2[i] = (uint16_t)(0x3c00u + i % 32);
    for (size_t i = 0; i < E * 2 * I; i++) s1[i] = 0.01f;
    for (size_t i = 0; i < E * H; i++) s2[i] = 0.01f;
    for (size_t i = 0; i < M * H; i++) x[i] = (uint16_t)(0x3f80u + i % 128);
    return 1;
}

static void fill_routing(reader_t *r) {
    for (size_t i = 0; i < M * K_MAX; i++) {
        uint8_t sel = (uint8_t)take(r, 1);
        idx[i] = sel < 200 ? (int64_t)(sel % (E + 1)) - 1 : (int64_t)take(r, 8);
        wts[i] = (float)(sel % 7) * 0.25f;
    }
}

/* Dispatches not yet combined, oldest first, as the library counts them. */
static dfm_handle_t pending[2];
static int num_pending;

/* A combine that got past validation consumed the oldest dispatch. */
static void combined(dfm_status_t st) {
    if (st == DFM_ERROR_INVALID_ARGUMENT || st == DFM_ERROR_INVALID_USAGE || num_pending == 0)
        return;
    pending[0] = pending[1];
    num_pending--;
}

/* Combine whatever is outstanding so the next input starts clean. */
static void drain(void) {
    while (num_pending > 0) {
        dfm_combine_args_t a = {y, idx, wts, &pending[0], out, NULL};
        dfm_status_t st = dfm_combine(ctx, &a);
        if (st == DFM_ERROR_INVALID_ARGUMENT || st == DFM_ERROR_INVALID_USAGE) abort();
        combined(st);
    }
}

static void fuzz_call(reader_t *r) {
    uint8_t op = (uint8_t)take(r, 1), nulls = (uint8_t)take(r, 1);
    int T = take_int(r), K = take_int(r), q = take_int(r) % 4;
    fill_routing(r);
    dfm_status_t async;
    switch (op % 5) {
    case 0: {
        dfm_moe_args_t a = {
            .x = nulls & 1 ? NULL : x,          .topk_idx = nulls & 2 ? NULL : idx,
            .topk_weights = nulls & 4 ? NULL : wts, .num_tokens = T,
            .num_topk = K,                      .quant = (dfm_quant_t)q,
            .w1 = nulls & 8 ? NULL : w1,        .w1_scale = nulls & 16 ? NULL : s1,
            .w2 = nulls & 32 ? NULL : w2,       .w2_scale = nulls & 64 ? NULL : s2,
            .out = nulls & 128 ? NULL : out,    .ep_recv_count = op & 8 ? ep : NULL,
        };
        dfm_fused_moe(ctx, op & 16 ? NULL : &a);
        break;
    }
    case 1:
    case 2: {
        dfm_dispatch_args_t a = {
            .x = nulls & 1 ? NULL : x,
            .topk_idx = nulls & 2 ? NULL : idx,
            .num_tokens = T,
            .num_topk = K,
            .quant = (dfm_quant_t)q,
            .recv_x = nulls & 4 ? NULL : recv_x,
            .recv_scale = nulls & 8 ? NULL : recv_scale,
            .recv_count = nulls & 16 ? NULL : recv_count,
            .layout_range = nulls & 32 ? NULL : layout,
            .recv_src_info = nulls & 64 ? NULL : src_info,
            .ep_recv_count = nulls & 128 ? NULL : ep,
        };
        dfm_handle_t h;
        if (dfm_dispatch(ctx, &a, op & 8 ? NULL : &h) != DFM_SUCCESS) break;
        pending[num_pending++] = h;
        if (op % 5 == 1 || num_pending > 1) break;
        /* Combine it, maybe with an altered handle (same seq, other shape). */
        if (op & 16) {
            h.num_tokens = take_int(r);
            h.num_topk = take_int(r);
            h.quant = (dfm_quant_t)(take_int(r) % 4);
        }
        if (op & 32) h.seq += (uint64_t)take(r, 1);
        dfm_combine_args_t c = {op & 64 ? NULL : y, idx, wts, &h, out, NULL};
        combined(dfm_combine(ctx, &c));
        break;
    }
    case 3: {
        dfm_handle_t h = {(uint64_t)take(r, 8), T, K, (dfm_quant_t)q};
        dfm_combine_args_t c = {y, nulls & 1 ? NULL : idx, nulls & 2 ? NULL : wts,
                                nulls & 4 ? NULL : &h, nulls & 8 ? NULL : out, NULL};
        combined(dfm_combine(ctx, &c));
        break;
    }
    default:
        dfm_get_async_error(ctx, &async);
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready = -1;
    if (ready < 0) ready = setup();
    reader_t r = {data, size};
    fuzz_config(&r);
    if (!ready) return 0;
    for (int i = 0; i < 4 && r.n > 0; i++) fuzz_call(&r);
    drain();
    dfm_status_t async;
    dfm_get_async_error(ctx, &async);
    return 0;
}
