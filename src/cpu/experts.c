/*
 * experts.c - the expert FFN of SPEC 3.2 on the CPU, one received row at a
 * time, in plain C: GEMM1 row with dequantization, SwiGLU on the permuted
 * 64/64 gate/up tiles, per-token requantization, GEMM2 row with
 * dequantization to bf16. Accumulation: fp32 (FP8, BF16), exact int32 (INT8).
 */
#include "cpu/cpu.h"

/* sum_j value(a[j]) * value(w[j]) over n elements of two code rows. */
static float dot_codes(const dfm_cpu_t *c, const void *a, const void *w, size_t n,
                       dfm_quant_t q) {
    if (q == DFM_QUANT_FP8) { /* the same values as dfm_e4m3_to_f32, from a table */
        const uint8_t *a8 = (const uint8_t *)a, *w8 = (const uint8_t *)w;
        float acc = 0.0f;
        for (size_t j = 0; j < n; j++) acc += c->e4m3_value[a8[j]] * c->e4m3_value[w8[j]];
        return acc;
    }
    if (q == DFM_QUANT_INT8) {
        const int8_t *ai = (const int8_t *)a, *wi = (const int8_t *)w;
        int32_t acc = 0;
        for (size_t j = 0; j < n; j++) acc += (int32_t)ai[j] * (int32_t)wi[j];
        return (float)acc;
    }
    float acc = 0.0f;
    for (size_t j = 0; j < n; j++) acc += dfm_code_value(a, j, q) * dfm_code_value(w, j, q);
    return acc;
}

static float silu(float z) { return z / (1.0f + expf(-z)); }

/*
 * y = FFN_g(row) for one row of codes with scale s_a.
 * w1: [2I][H] codes of expert g (permuted channels), s1: [2I] (NULL in bf16)
 * w2: [H][I] codes of expert g, s2: [H] (NULL in bf16)
 */
static void expert_row(dfm_cpu_t *c, const dfm_layout_t *L, dfm_quant_t q, const void *codes,
                       float s_a, const char *w1, const float *s1, const char *w2,
                       const float *s2, uint16_t *y) {
    size_t H = (size_t)L->hidden, I = (size_t)L->inter, cb = dfm_code_bytes(q);
    int bf16 = q == DFM_QUANT_BF16;

    for (size_t n = 0; n < 2 * I; n++) {
        float acc = dot_codes(c, codes, w1 + n * H * cb, H, q);
        c->h[n] = bf16 ? acc : acc * s_a * s1[n];
    }
    float amax = 0.0f;
    for (size_t i = 0; i < I; i++) {
        /* Permuted tile t: 64 gate channels, then the 64 matching up channels. */
        size_t t = i / 64, col = i % 64;
        float a = silu(c->h[t * 128 + col]) * c->h[t * 128 + 64 + col];
        if (bf16) a = dfm_bf16_to_f32(dfm_f32_to_bf16(a));
        c->act[i] = a;
        amax = fmaxf(amax, fabsf(a));
    }
    float s_b = dfm_quant_scale(amax, q);
    for (size_t i = 0; i < I; i++) dfm_code_store(c->act_codes, i, c->act[i], s_b, q);
    for (size_t m = 0; m < H; m++) {
        float acc = dot_codes(c, c->act_codes, w2 + m * I * cb, I, q);
        y[m] = dfm_f32_to_bf16(bf16 ? acc : acc * s_b * s2[m]);
    }
}

void cpu_experts_run(dfm_ctx_t *ctx, const dfm_moe_args_t *a, uint64_t seq) {
    dfm_cpu_t *c = cpu_of(ctx);
    const dfm_layout_t *L = &ctx->layout;
    int R = L->num_ranks, G = L->num_local_experts, half = dfm_seq_half(seq);
    size_t H = (size_t)L->hidden, I = (size_t)L->inter, cb = dfm_code_bytes(a->quant);
    const char *mine = cpu_region(ctx, ctx->rank);
    uint16_t *y = c->y;
    int bf16 = a->quant == DFM_QUANT_BF16;

    for (int g = 0; g < G; g++) {
        const char *w1 = (const char *)a->w1 + (size_t)g * 2 * I * H * cb;
        const char *w2 = (const char *)a->w2 + (size_t)g * H * I * cb;
        const float *s1 = bf16 ? NULL : a->w1_scale + (size_t)g * 2 * I;
        const float *s2 = bf16 ? NULL : a->w2_scale + (size_t)g * H;
        for (int src = 0; src < R; src++) {
            int32_t n = ((const int32_t *)(const void *)(mine + dfm_off_recv_counts(L, half, src)))[g];
            for (int j = 0; j < n; j++) {
                size_t r = dfm_recv_row(L, g, src, j);
                float s_a = *(const float *)(const void *)(mine + dfm_off_recv_scale(L, half, r));
                int32_t meta = *(const int32_t *)(const void *)(mine + dfm_off_recv_meta(L, half, r));
                expert_row(c, L, a->quant, mine + dfm_off_recv_rows(L, half, r), s_a, w1, s1, w2,
                           s2, y);
                cpu_combine_send_row(ctx, seq, src, meta, y);
            }
        }
    }
    cpu_combine_publish(ctx, seq);
}
