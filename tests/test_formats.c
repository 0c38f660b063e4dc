/*
 * test_formats.c - the number formats and weight helpers of SPEC 3.1 and 4,
 * checked bit for bit: every FP8 E4M3 code, the rounding ties of E4M3, bf16
 * and int8 (ties to even, subnormals, saturation, NaN), the permutation of
 * w1's channels, and dfm_weights_prepare_w13/w2 against the oracle's own
 * per-channel quantization; and the symmetric region's layout (dfm_layout_init):
 * its fields in order, aligned and apart, every slot's accessor inside its
 * field, and the tagged combine rows' ML. Usage: test_formats [-s SEED] [-o NAME-SUBSTRING]
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/dfm_common.h"
#include "dfm.h"
#include "harness.h"
#include "oracle.h"

/* E4M3 "fn" value of a code from the definition: bias 7, 3 mantissa bits. */
static double e4m3_value(int code) {
    int sign = code >> 7, e = (code >> 3) & 15, m = code & 7;
    double v = e == 0 ? ldexp(m, -9) : ldexp(8 + m, e - 10);
    return sign ? -v : v;
}

static int is_e4m3_nan(int code) { return (code & 0x7f) == 0x7f; }

static void test_e4m3_codes(void) {
    for (int c = 0; c < 256; c++) {
        float v = dfm_e4m3_to_f32((uint8_t)c);
        if (is_e4m3_nan(c)) {
            TH_EXPECT(isnan(v), "e4m3 code 0x%02x must decode to NaN, got %g", c, v);
            uint8_t back = dfm_f32_to_e4m3(v);
            TH_EXPECT(is_e4m3_nan(back), "e4m3 NaN re-encodes to 0x%02x", back);
            continue;
        }
        TH_EXPECT((double)v == e4m3_value(c), "e4m3 code 0x%02x decodes to %a, expected %a", c,
                  (double)v, e4m3_value(c));
        TH_EXPECT((signbit(v) != 0) == (c >= 0x80), "e4m3 code 0x%02x has the wrong sign", c);
        uint8_t back = dfm_f32_to_e4m3(v);
        TH_EXPECT(back == c, "e4m3 code 0x%02x (%g) re-encodes to 0x%02x", c, v, back);
    }
    TH_EXPECT(dfm_e4m3_to_f32(0x7e) == 448.0f, "largest e4m3 code must be 448");
    TH_EXPECT(dfm_e4m3_to_f32(0x01) == 0x1p-9f, "smallest e4m3 subnormal must be 2^-9");
    TH_EXPECT(dfm_e4m3_to_f32(0x08) == 0x1p-6f, "smallest e4m3 normal must be 2^-6");
}

static void test_e4m3_rounding(void) {
    for (int sign = 0; sign < 2; sign++) {
        for (int c = 0; c < 0x7e; c++) {
            int lo = c | (sign << 7), hi = (c + 1) | (sign << 7);
            float a = (float)e4m3_value(lo), b = (float)e4m3_value(hi);
            float mid = (a + b) * 0.5f; /* exact: 4 significant bits */
            int even = (lo & 1) == 0 ? lo : hi;
            uint8_t got = dfm_f32_to_e4m3(mid);
            TH_EXPECT(got == even, "e4m3 tie %a between 0x%02x and 0x%02x gave 0x%02x, want 0x%02x",
                      (double)mid, lo, hi, got, even);
            float toward_b = nextafterf(mid, b), toward_a = nextafterf(mid, a);
            got = dfm_f32_to_e4m3(toward_b);
            TH_EXPECT(got == hi, "e4m3 just past the tie %a gave 0x%02x, want 0x%02x",
                      (double)toward_b, got, hi);
            got = dfm_f32_to_e4m3(toward_a);
            TH_EXPECT(got == lo, "e4m3 just short of the tie %a gave 0x%02x, want 0x%02x",
                      (double)toward_a, got, lo);
        }
    }
    /* Below the smallest subnormal: 2^-10 is a tie between 0 and 2^-9. */
    TH_EXPECT(dfm_f32_to_e4m3(0x1p-10f) == 0x00, "e4m3(2^-10) must round to +0 (even)");
    TH_EXPECT(dfm_f32_to_e4m3(-0x1p-10f) == 0x80, "e4m3(-2^-10) must round to -0 (even)");
    TH_EXPECT(dfm_f32_to_e4m3(0x1.000002p-10f) == 0x01, "e4m3 just above 2^-10 must give 2^-9");
    TH_EXPECT(dfm_f32_to_e4m3(FLT_TRUE_MIN) == 0x00, "e4m3 of the smallest float must be 0");
}

static void test_e4m3_saturation(void) {
    const float big[] = {448.0f, 448.5f, 464.0f, 479.9f, 480.0f, 1000.0f, 1e30f, FLT_MAX, INFINITY};
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        uint8_t p = dfm_f32_to_e4m3(big[i]), n = dfm_f32_to_e4m3(-big[i]);
        TH_EXPECT(p == 0x7e, "e4m3(%g) gave 0x%02x, want 0x7e (448, satfinite)", big[i], p);
        TH_EXPECT(n == 0xfe, "e4m3(-%g) gave 0x%02x, want 0xfe (-448, satfinite)", big[i], n);
    }
    TH_EXPECT(dfm_f32_to_e4m3(447.99f) == 0x7e, "e4m3(447.99) must round to 448");
    TH_EXPECT(dfm_f32_to_e4m3(432.0f) == 0x7e, "e4m3(432), a tie of 416 and 448, must go to 448");
    TH_EXPECT(is_e4m3_nan(dfm_f32_to_e4m3(NAN)), "e4m3(NaN) must be NaN");
    TH_EXPECT(is_e4m3_nan(dfm_f32_to_e4m3(-NAN)), "e4m3(-NaN) must be NaN");
}

/* bf16 from the definition: the two neighbours in double, nearest, ties to even. */
static uint16_t bf16_reference(float f) {
    uint32_t u = dfm_f32_bits(f);
    if (isnan(f)) return 0x7fc0;
    uint32_t mag = u & 0x7fffffffu, sign = u & 0x80000000u;
    if (mag == 0x7f800000u) return (uint16_t)(u >> 16);
    uint32_t t = mag & 0xffff0000u;
    double a = (double)dfm_bits_f32(t), x = (double)dfm_bits_f32(mag);
    int e = (int)(t >> 23);
    double b = a + ldexp(1.0, (e > 0 ? e : 1) - 127 - 7);
    uint16_t code = (uint16_t)(t >> 16);
    if (x - a > b - x || (x - a == b - x && (code & 1))) code++;
    return (uint16_t)(code | (sign >> 16));
}

static void test_bf16(void) {
    th_rng_t *rng = &th_rng;
    struct {
        uint32_t in;
        uint16_t out;
    } cases[] = {
        {0x3f808000u, 0x3f80}, /* tie, even below */
        {0x3f818000u, 0x3f82}, /* tie, even above */
        {0x3f808001u, 0x3f81}, {0x3f807fffu, 0x3f80}, {0xbf808000u, 0xbf80},
        {0x00008000u, 0x0000}, /* subnormal tie */
        {0x00018000u, 0x0002}, {0x7f7fffffu, 0x7f80}, /* FLT_MAX rounds to inf */
        {0x7f7f7fffu, 0x7f7f}, {0x7f800000u, 0x7f80}, {0xff800000u, 0xff80},
        {0x80000000u, 0x8000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t got = dfm_f32_to_bf16(dfm_bits_f32(cases[i].in));
        TH_EXPECT(got == cases[i].out, "bf16(0x%08x) gave 0x%04x, want 0x%04x", cases[i].in, got,
                  cases[i].out);
    }
    const uint32_t nans[] = {0x7fc00000u, 0x7f800001u, 0xffc00001u, 0x7fffffffu, 0x7f810000u};
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        uint16_t got = dfm_f32_to_bf16(dfm_bits_f32(nans[i]));
        TH_EXPECT((got & 0x7f80) == 0x7f80 && (got & 0x7f) != 0,
                  "bf16 of NaN 0x%08x gave 0x%04x, not a NaN", nans[i], got);
    }
    for (uint32_t c = 0; c < 0x10000u; c++) {
        float v = dfm_bf16_to_f32((uint16_t)c);
        TH_EXPECT(dfm_f32_bits(v) == c << 16, "bf16 code 0x%04x decodes wrongly", c);
        if (!isnan(v))
            TH_EXPECT(dfm_f32_to_bf16(v) == c, "bf16 code 0x%04x does not re-encode to itself", c);
    }
    for (int i = 0; i < 200000; i++) {
        uint32_t u = (uint32_t)th_rng_u64(rng);
        if (i % 4 == 0) u = (u & 0xffff0000u) | 0x8000u; /* many exact ties */
        float f = dfm_bits_f32(u);
        if (isnan(f)) continue;
        uint16_t got = dfm_f32_to_bf16(f), want = bf16_reference(f);
        if (!TH_EXPECT(got == want, "bf16(0x%08x) gave 0x%04x, want 0x%04x", u, got, want)) break;
    }
}

static void test_int8(void) {
    th_rng_t *rng = &th_rng;
    const struct {
        float in;
        int out;
    } cases[] = {
        {0.5f, 0},     {1.5f, 2},     {2.5f, 2},      {-0.5f, 0},     {-1.5f, -2},
        {-2.5f, -2},   {0.49999997f, 0}, {126.5f, 126}, {127.4f, 127}, {127.5f, 127},
        {128.0f, 127}, {1000.0f, 127}, {-127.5f, -127}, {-128.0f, -127}, {-1e30f, -127},
        {INFINITY, 127}, {-INFINITY, -127}, {0.0f, 0},  {-0.0f, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got = dfm_f32_to_int8(cases[i].in);
        TH_EXPECT(got == cases[i].out, "int8(%a) gave %d, want %d", (double)cases[i].in, got,
                  cases[i].out);
    }
    for (int i = 0; i < 100000; i++) {
        float f = (float)((th_rng_uniform(rng) - 0.5) * 300.0);
        if (i % 3 == 0) f = (float)(th_rng_int(rng, 300) - 150) + 0.5f;
        double fl = floor((double)f), frac = (double)f - fl;
        double r = frac > 0.5 ? fl + 1 : frac < 0.5 ? fl : (fmod(fl, 2.0) == 0.0 ? fl : fl + 1);
        if (r > 127) r = 127;
        if (r < -127) r = -127;
        int got = dfm_f32_to_int8(f);
        if (!TH_EXPECT(got == (int)r, "int8(%a) gave %d, want %d", (double)f, got, (int)r)) break;
    }
}

static void test_permutation(void) {
    for (int inter = 64; inter <= 1024; inter += 64) {
        int n = 2 * inter, *seen = calloc((size_t)n, sizeof *seen);
        for (int p = 0; p < n; p++) {
            /* Direct formula of SPEC 4. */
            int want = ((p % 128) / 64) * inter + (p / 128) * 64 + p % 64;
            int got = dfm_permuted_channel_source(p, inter);
            TH_EXPECT(got == want, "permuted channel %d (I=%d) holds %d, want %d", p, inter, got,
                      want);
            TH_EXPECT(oracle_perm_source(p, inter) == want, "oracle permutation disagrees");
            if (got >= 0 && got < n) seen[got]++;
        }
        for (int c = 0; c < n; c++)
            TH_EXPECT(seen[c] == 1, "I=%d: original channel %d appears %d times", inter, c,
                      seen[c]);
        free(seen);
    }
    /* Tile 0 = gate 0..63 then up 0..63; tile 1 starts with gate 64. */
    TH_EXPECT(dfm_permuted_channel_source(64, 128) == 128, "channel 64 must be up channel 0");
    TH_EXPECT(dfm_permuted_channel_source(128, 128) == 64, "channel 128 must be gate channel 64");
}

static const char *quant_name(dfm_quant_t q) {
    return q == DFM_QUANT_FP8 ? "fp8" : q == DFM_QUANT_INT8 ? "int8" : "bf16";
}

/* Checkpoint rows: N(0, 1/fan_in), some all zero, some tiny, some with an outlier. */
static void make_checkpoint(th_rng_t *rng, uint16_t *w, size_t rows, size_t n) {
    for (size_t r = 0; r < rows; r++) {
        int kind = th_rng_int(rng, 8);
        for (size_t i = 0; i < n; i++) {
            double v = th_rng_normal(rng) / sqrt((double)n);
            if (kind == 0) v = 0.0;
            if (kind == 1) v *= 1e-6;
            w[r * n + i] = th_bf16(v);
        }
        if (kind == 2) w[r * n + (size_t)th_rng_int(rng, (int)n)] = th_bf16(50.0);
        if (kind == 3) w[r * n] = 0x8000; /* -0 and zeros: amax 0 */
        if (kind == 3)
            for (size_t i = 1; i < n; i++) w[r * n + i] = 0;
    }
}

static void test_weight_helpers(void) {
    th_rng_t *rng = &th_rng;
    const int shapes[][3] = {{2, 256, 64}, {3, 384, 192}, {1, 512, 128}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int G = shapes[s][0], H = shapes[s][1], I = shapes[s][2];
        size_t n13 = (size_t)G * 2 * I * H, n2 = (size_t)G * H * I;
        uint16_t *ck13 = th_alloc(n13 * 2), *ck2 = th_alloc(n2 * 2);
        make_checkpoint(rng, ck13, (size_t)G * 2 * I, (size_t)H);
        make_checkpoint(rng, ck2, (size_t)G * H, (size_t)I);
        for (int qi = 0; qi < DFM_NUM_QUANT; qi++) {
            dfm_quant_t q = (dfm_quant_t)qi;
            size_t cb = oracle_code_bytes(q);
            oracle_weights_t ow;
            oracle_weights_init(&ow, ck13, ck2, G, H, I, q);
            unsigned char *w1 = th_alloc(n13 * cb), *w2 = th_alloc(n2 * cb);
            float *s1 = th_alloc((size_t)G * 2 * I * 4), *s2 = th_alloc((size_t)G * H * 4);
            memset(w1, TH_POISON_BYTE, n13 * cb);
            memset(w2, TH_POISON_BYTE, n2 * cb);
            memset(s1, TH_POISON_BYTE, (size_t)G * 2 * I * 4);
            memset(s2, TH_POISON_BYTE, (size_t)G * H * 4);
            dfm_status_t st = dfm_weights_prepare_w13(ck13, G, H, I, q, w1, s1);
            TH_EXPECT(st == DFM_SUCCESS, "prepare_w13 %s: status %d", quant_name(q), st);
            st = dfm_weights_prepare_w2(ck2, G, H, I, q, w2, s2);
            TH_EXPECT(st == DFM_SUCCESS, "prepare_w2 %s: status %d", quant_name(q), st);
            int bad = 0;
            for (int g = 0; g < G && bad < 5; g++) {
                for (int p = 0; p < 2 * I && bad < 5; p++) {
                    size_t lib = (size_t)g * 2 * I + (size_t)p;
                    size_t ref = (size_t)g * 2 * I + (size_t)oracle_perm_source(p, I);
                    if (!TH_EXPECT(dfm_f32_bits(s1[lib]) == dfm_f32_bits(ow.s13[ref]),
                                   "w13 %s G=%d H=%d I=%d: scale of expert %d channel %d is %a, "
                                   "oracle %a",
                                   quant_name(q), G, H, I, g, p, (double)s1[lib],
                                   (double)ow.s13[ref]))
                        bad++;
                    if (!TH_EXPECT(memcmp(w1 + lib * H * cb, ow.w13 + ref * H * cb, H * cb) == 0,
                                   "w13 %s G=%d H=%d I=%d: codes of expert %d channel %d differ "
                                   "from the oracle's",
                                   quant_name(q), G, H, I, g, p))
                        bad++;
                }
            }
            for (size_t r = 0; r < (size_t)G * H && bad < 10; r++) {
                if (!TH_EXPECT(dfm_f32_bits(s2[r]) == dfm_f32_bits(ow.s2[r]),
                               "w2 %s: scale of row %zu is %a, oracle %a", quant_name(q), r,
                               (double)s2[r], (double)ow.s2[r]))
                    bad++;
                if (!TH_EXPECT(memcmp(w2 + r * I * cb, ow.w2 + r * I * cb, I * cb) == 0,
                               "w2 %s: codes of row %zu differ from the oracle's", quant_name(q),
                               r))
                    bad++;
            }
            /* All-zero channels: scale 0 (1 in bf16) and codes 0. */
            for (size_t r = 0; r < (size_t)G * H; r++) {
                int zero = 1;
                for (size_t i = 0; i < (size_t)I; i++) zero &= (ck2[r * I + i] & 0x7fff) == 0;
                if (!zero) continue;
                float want = q == DFM_QUANT_BF16 ? 1.0f : 0.0f;
                TH_EXPECT(s2[r] == want, "w2 %s: all-zero row %zu has scale %g", quant_name(q), r,
                          s2[r]);
                for (size_t i = 0; i < (size_t)I; i++) {
                    double v = oracle_code_value(w2 + r * I * cb, i, q);
                    if (!TH_EXPECT(v == 0.0, "w2 %s: all-zero row %zu has a non-zero code",
                                   quant_name(q), r))
                        break;
                }
            }
            free(w1);
            free(w2);
            free(s1);
            free(s2);
            oracle_weights_free(&ow);
        }
        free(ck13);
        free(ck2);
    }
}

/* The shared header's row quantization (what the backends use) against the oracle. */
static void test_row_quantization(void) {
    th_rng_t *rng = &th_rng;
    enum { N = 512 };
    float v[N];
    unsigned char lib[2 * N], ref[2 * N];
    for (int it = 0; it < 300; it++) {
        dfm_quant_t q = (dfm_quant_t)(it % DFM_NUM_QUANT);
        int kind = (it / 3) % 5;
        for (int i = 0; i < N; i++) {
            double x = th_rng_normal(rng);
            if (kind == 1) x *= 1e-30; /* tiny scales, subnormal fp32 quotients */
            if (kind == 2 && i % 97 == 0) x *= 50.0;
            if (kind == 3) x = 0.0;
            if (kind == 4) x = (double)th_rng_int(rng, 9) - 4.0; /* many equal |v| */
            v[i] = dfm_bf16_to_f32(th_bf16(x));
        }
        float s_ref = oracle_quantize(v, N, q, ref);
        float amax = 0.0f;
        for (int i = 0; i < N; i++) amax = fmaxf(amax, fabsf(v[i]));
        float s_lib = dfm_quant_scale(amax, q);
        for (int i = 0; i < N; i++) dfm_code_store(lib, (size_t)i, v[i], s_lib, q);
        TH_EXPECT(dfm_f32_bits(s_lib) == dfm_f32_bits(s_ref), "%s row kind %d: scale %a, oracle %a",
                  quant_name(q), kind, (double)s_lib, (double)s_ref);
        TH_EXPECT(memcmp(lib, ref, N * oracle_code_bytes(q)) == 0,
                  "%s row kind %d: codes differ from the oracle's", quant_name(q), kind);
        if (q != DFM_QUANT_BF16 && kind != 3) {
            /* The largest |v| maps to the largest code (448 or 127). */
            double top = 0.0;
            for (int i = 0; i < N; i++) top = fmax(top, fabs(oracle_code_value(ref, (size_t)i, q)));
            TH_EXPECT(top == (q == DFM_QUANT_FP8 ? 448.0 : 127.0), "%s: largest code value %g",
                      quant_name(q), top);
        }
    }
}

/* A config of the layout test: R ranks, E experts, H, I, K, M, the modes' mask. */
static dfm_config_t layout_config(dfm_backend_t b, int R, int E, int H, int I, int K, int M, unsigned modes) {
    dfm_config_t c = DFM_CONFIG_INIT;
    c.backend = b;
    c.num_ranks = R;
    c.num_experts = E;
    c.hidden = H;
    c.inter = I;
    c.max_topk = K;
    c.num_max_dispatch_tokens_per_rank = M;
    c.quant_modes = modes;
    return c;
}

/* ML from its definition (dfm_common.h): min(M, DFM_COMBINE_LL_TOKENS,
 * DFM_COMBINE_LL_ELEMS / (Kmax * H)) on the CUDA backend, 0 on the CPU one. */
static int want_ll_tokens(const dfm_config_t *c) {
    if (c->backend != DFM_BACKEND_CUDA) return 0;
    long long ml = c->num_max_dispatch_tokens_per_rank, cap = DFM_COMBINE_LL_TOKENS;
    long long by_values = (long long)DFM_COMBINE_LL_ELEMS / ((long long)c->max_topk * c->hidden);
    if (ml > cap) ml = cap;
    if (ml > by_values) ml = by_values;
    return (int)ml;
}

/* One layout: the fields (two halves each) in order, DFM_ALIGN-aligned, none
 * overlapping the next, and the last slot of each accessor inside its field. */
static void check_layout(const dfm_config_t *c) {
    dfm_layout_t L;
    dfm_layout_init(&L, c);
    const int R = c->num_ranks, G = c->num_experts / c->num_ranks, H = c->hidden;
    const int K = c->max_topk, M = c->num_max_dispatch_tokens_per_rank;
    const char *tag = c->backend == DFM_BACKEND_CUDA ? "cuda" : "cpu";
    TH_EXPECT(L.ll_tokens == want_ll_tokens(c), "%s R=%d E=%d H=%d K=%d M=%d: ll_tokens %d, want %d", tag, R,
              c->num_experts, H, K, M, L.ll_tokens, want_ll_tokens(c));
    TH_EXPECT(L.ll_tokens >= 0 && L.ll_tokens <= M, "ll_tokens %d outside [0, M = %d]", L.ll_tokens, M);
    TH_EXPECT((size_t)L.ll_tokens * K * H <= DFM_COMBINE_LL_ELEMS, "combine_ll holds %zu values a half",
              (size_t)L.ll_tokens * K * H);
    size_t code = (c->quant_modes & DFM_QUANT_MASK(DFM_QUANT_BF16)) ? 2u : 1u;
    TH_EXPECT(L.row_bytes >= (size_t)H * code && L.row_bytes % 16 == 0, "row_bytes %zu for H=%d", L.row_bytes, H);
    const size_t rows = dfm_rows_per_half(&L);
    /* {offset of the field, end of its last slot of half 1}, in layout order */
    const size_t f[][2] = {
        {L.off_dispatch_flag, dfm_off_dispatch_flag(&L, 1, R - 1) + sizeof(uint64_t)},
        {L.off_combine_flag, dfm_off_combine_flag(&L, 1, R - 1) + sizeof(uint64_t)},
        {L.off_src_info, dfm_off_src_info(&L, 1, R - 1) + DFM_SRC_INFO_WORDS * sizeof(int32_t)},
        {L.off_recv_counts, dfm_off_recv_counts(&L, 1, R - 1) + (size_t)G * sizeof(int32_t)},
        {L.off_recv_meta, dfm_off_recv_meta(&L, 1, rows - 1) + sizeof(int32_t)},
        {L.off_recv_scale, dfm_off_recv_scale(&L, 1, rows - 1) + sizeof(float)},
        {L.off_recv_rows, dfm_off_recv_rows(&L, 1, rows - 1) + L.row_bytes},
        {L.off_combine_rows, dfm_off_combine_row(&L, 1, M - 1, K - 1) + (size_t)H * sizeof(uint16_t)},
        {L.off_combine_ll, L.ll_tokens ? dfm_off_combine_ll(&L, 1, L.ll_tokens - 1, K - 1) + (size_t)H * 4u
                                       : L.off_combine_ll},
    };
    const size_t n = sizeof f / sizeof f[0];
    for (size_t i = 0; i < n; i++) {
        const size_t next = i + 1 < n ? f[i + 1][0] : L.region_bytes;
        TH_EXPECT(f[i][0] % DFM_ALIGN == 0, "%s field %zu at %zu: not %u-aligned", tag, i, f[i][0], DFM_ALIGN);
        TH_EXPECT(f[i][0] <= f[i][1] && f[i][1] <= next, "%s R=%d G=%d H=%d K=%d M=%d: field %zu [%zu, %zu) past %zu",
                  tag, R, G, H, K, M, i, f[i][0], f[i][1], next);
    }
    if (L.ll_tokens) /* half 1's rows start where half 0's end */
        TH_EXPECT(dfm_off_combine_ll(&L, 1, 0, 0) == dfm_off_combine_ll(&L, 0, L.ll_tokens - 1, K - 1) + (size_t)H * 4u,
                  "combine_ll halves not adjacent");
}

static void test_region_layout(void) {
    th_rng_t *rng = &th_rng;
    const unsigned all = DFM_QUANT_MASK_ALL, fp8 = DFM_QUANT_MASK(DFM_QUANT_FP8);
    /* PERF.md's configs on 4 ranks: ML 18 (dsv3-e32, dsv3-e256), 32 (qwen3-235b),
     * 64 (qwen3-30b-bf16); M below the caps: ML = M */
    const struct {
        int E, H, I, K, M, ml;
        unsigned modes;
    } named[] = {
        {32, 7168, 2048, 8, 128, 18, fp8},
        {128, 4096, 1536, 8, 128, 32, fp8},
        {128, 2048, 768, 8, 128, 64, DFM_QUANT_MASK(DFM_QUANT_BF16)},
        {256, 7168, 2048, 8, 1024, 18, all},
        {32, 7168, 2048, 8, 8, 8, fp8},
    };
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++) {
        for (int b = 0; b < 2; b++) {
            dfm_config_t c = layout_config(b ? DFM_BACKEND_CUDA : DFM_BACKEND_CPU, 4, named[i].E, named[i].H,
                                           named[i].I, named[i].K, named[i].M, named[i].modes);
            dfm_layout_t L;
            dfm_layout_init(&L, &c);
            TH_EXPECT(L.ll_tokens == (b ? named[i].ml : 0), "E=%d H=%d M=%d %s: ll_tokens %d, want %d", named[i].E,
                      named[i].H, named[i].M, b ? "cuda" : "cpu", L.ll_tokens, b ? named[i].ml : 0);
            check_layout(&c);
        }
    }
    /* random configs inside dfm.h's limits */
    for (int it = 0; it < 4000; it++) {
        const int R = 1 + th_rng_int(rng, 8), G = 1 + th_rng_int(rng, 1024 / R < 64 ? 1024 / R : 64);
        const int H = 128 * (2 + th_rng_int(rng, 127)), I = 64 * (1 + th_rng_int(rng, 128));
        const int K = 1 + th_rng_int(rng, 16);
        const int M = th_rng_int(rng, 4) ? 1 + th_rng_int(rng, 160) : 1 + th_rng_int(rng, 1024);
        const unsigned modes = 1u + (unsigned)th_rng_int(rng, (int)all);
        dfm_config_t c = layout_config(th_rng_int(rng, 2) ? DFM_BACKEND_CUDA : DFM_BACKEND_CPU, R, R * G, H, I, K,
                                       M, modes);
        check_layout(&c);
    }
}

int main(int argc, char **argv) {
    static const th_test_t tests[] = {
        {"e4m3_codes", test_e4m3_codes},
        {"e4m3_rounding", test_e4m3_rounding},
        {"e4m3_saturation", test_e4m3_saturation},
        {"bf16", test_bf16},
        {"int8", test_int8},
        {"permutation", test_permutation},
        {"row_quantization", test_row_quantization},
        {"weight_helpers", test_weight_helpers},
        {"region_layout", test_region_layout},
    };
    return th_main("test_formats", argc, argv, tests, sizeof tests / sizeof tests[0]);
}
