/*
 * weights.c - checkpoint tensors to the operator's weight operands (SPEC
 * section 4): per-output-channel quantization with the formulas of SPEC 3.1
 * and the permuted gate/up channel order of w1. Host code, run once at load.
 */
#include "backend.h"

int dfm_permuted_channel_source(int p, int inter) { return dfm_perm_source(p, inter); }

/* Quantize one channel of n bf16 values into codes (element offset 0). */
static float quantize_channel(const uint16_t *src, size_t n, dfm_quant_t q, void *codes) {
    float amax = 0.0f;
    for (size_t i = 0; i < n; i++) amax = fmaxf(amax, fabsf(dfm_bf16_to_f32(src[i])));
    float s = dfm_quant_scale(amax, q);
    for (size_t i = 0; i < n; i++) dfm_code_store(codes, i, dfm_bf16_to_f32(src[i]), s, q);
    return s;
}

static dfm_status_t check_shape(int g, int h, int i, dfm_quant_t q) {
    if (g < 1 || h < 1 || i < 64 || i % 64 != 0 || h % 128 != 0) return DFM_ERROR_INVALID_ARGUMENT;
    if ((int)q < 0 || q >= DFM_NUM_QUANT) return DFM_ERROR_INVALID_ARGUMENT;
    return DFM_SUCCESS;
}

dfm_status_t dfm_weights_prepare_w13(const uint16_t *w13, int num_local_experts, int hidden,
                                     int inter, dfm_quant_t quant, void *w1, float *w1_scale) {
    if (w13 == NULL || w1 == NULL || w1_scale == NULL) return DFM_ERROR_INVALID_ARGUMENT;
    DFM_CHECK(check_shape(num_local_experts, hidden, inter, quant));
    size_t H = (size_t)hidden, N = 2 * (size_t)inter, cb = dfm_code_bytes(quant);
    for (size_t g = 0; g < (size_t)num_local_experts; g++) {
        for (size_t p = 0; p < N; p++) {
            size_t src = (size_t)dfm_perm_source((int)p, inter);
            const uint16_t *row = w13 + (g * N + src) * H;
            char *dst = (char *)w1 + (g * N + p) * H * cb;
            w1_scale[g * N + p] = quantize_channel(row, H, quant, dst);
        }
    }
    return DFM_SUCCESS;
}

dfm_status_t dfm_weights_prepare_w2(const uint16_t *w2, int num_local_experts, int hidden,
                                    int inter, dfm_quant_t quant, void *w2_out,
                                    float *w2_scale) {
    if (w2 == NULL || w2_out == NULL || w2_scale == NULL) return DFM_ERROR_INVALID_ARGUMENT;
    DFM_CHECK(check_shape(num_local_experts, hidden, inter, quant));
    size_t rows = (size_t)num_local_experts * (size_t)hidden, K = (size_t)inter;
    size_t cb = dfm_code_bytes(quant);
    for (size_t r = 0; r < rows; r++)
        w2_scale[r] = quantize_channel(w2 + r * K, K, quant, (char *)w2_out + r * K * cb);
    return DFM_SUCCESS;
}
