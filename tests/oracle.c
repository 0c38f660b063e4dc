/*
 * oracle.c - the tests' float64 model of SPEC section 3 (see oracle.h).
 * Deliberately plain: one loop per formula of the spec, no shared code with
 * the library beyond the five format conversions.
 */
#include "oracle.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/dfm_common.h"
#include "harness.h"

size_t oracle_code_bytes(dfm_quant_t q) { return q == DFM_QUANT_BF16 ? 2 : 1; }

float oracle_quantize(const float *v, size_t n, dfm_quant_t q, void *codes) {
    if (q == DFM_QUANT_BF16) {
        for (size_t i = 0; i < n; i++) ((uint16_t *)codes)[i] = dfm_f32_to_bf16(v[i]);
        return 1.0f;
    }
    float amax = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float a = fabsf(v[i]);
        if (a > amax) amax = a;
    }
    float s = q == DFM_QUANT_FP8 ? amax / 448.0f : amax / 127.0f;
    for (size_t i = 0; i < n; i++) {
        if (q == DFM_QUANT_FP8)
            ((uint8_t *)codes)[i] = s == 0.0f ? 0 : dfm_f32_to_e4m3(v[i] / s);
        else
            ((int8_t *)codes)[i] = s == 0.0f ? 0 : dfm_f32_to_int8(v[i] / s);
    }
    return s;
}

double oracle_code_value(const void *codes, size_t i, dfm_quant_t q) {
    if (q == DFM_QUANT_FP8) return dfm_e4m3_to_f32(((const uint8_t *)codes)[i]);
    if (q == DFM_QUANT_INT8) return ((const int8_t *)codes)[i];
    return dfm_bf16_to_f32(((const uint16_t *)codes)[i]);
}

int oracle_perm_source(int p, int inter) {
    /* "Permuted column t*128 + h*64 + c holds original column h*I + t*64 + c." */
    int tile = p / 128, half = (p - tile * 128) / 64, col = p - tile * 128 - half * 64;
    return half * inter + tile * 64 + col;
}

int oracle_slot_sends(const int64_t *idx_row, int k, int num_experts) {
    int64_t e = idx_row[k];
    if (e < 0 || e >= num_experts) return 0;
    for (int j = 0; j < k; j++)
        if (idx_row[j] == e) return 0;
    return 1;
}

/* Quantize `rows` channels of n checkpoint values each. */
static void quantize_channels(const uint16_t *ck, size_t rows, size_t n, dfm_quant_t q,
                              unsigned char *codes, float *scale, float *values, float *ckv) {
    size_t cb = oracle_code_bytes(q);
    float *row = th_alloc(n * sizeof *row);
    for (size_t r = 0; r < rows; r++) {
        for (size_t i = 0; i < n; i++) row[i] = dfm_bf16_to_f32(ck[r * n + i]);
        unsigned char *c = codes + r * n * cb;
        scale[r] = oracle_quantize(row, n, q, c);
        for (size_t i = 0; i < n; i++) {
            values[r * n + i] = (float)oracle_code_value(c, i, q);
            ckv[r * n + i] = row[i];
        }
    }
    free(row);
}

void oracle_weights_init(oracle_weights_t *w, const uint16_t *w13, const uint16_t *w2,
                         int num_experts, int hidden, int inter, dfm_quant_t quant) {
    size_t E = (size_t)num_experts, H = (size_t)hidden, I = (size_t)inter;
    size_t cb = oracle_code_bytes(quant);
    w->num_experts = num_experts;
    w->hidden = hidden;
    w->inter = inter;
    w->quant = quant;
    w->w13 = th_alloc(E * 2 * I * H * cb);
    w->s13 = th_alloc(E * 2 * I * sizeof(float));
    w->v13 = th_alloc(E * 2 * I * H * sizeof(float));
    w->c13 = th_alloc(E * 2 * I * H * sizeof(float));
    w->w2 = th_alloc(E * H * I * cb);
    w->s2 = th_alloc(E * H * sizeof(float));
    w->v2 = th_alloc(E * H * I * sizeof(float));
    w->c2 = th_alloc(E * H * I * sizeof(float));
    quantize_channels(w13, E * 2 * I, H, quant, w->w13, w->s13, w->v13, w->c13);
    quantize_channels(w2, E * H, I, quant, w->w2, w->s2, w->v2, w->c2);
}

void oracle_weights_free(oracle_weights_t *w) {
    free(w->w13);
    free(w->s13);
    free(w->v13);
    free(w->c13);
    free(w->w2);
    free(w->s2);
    free(w->v2);
    free(w->c2);
    memset(w, 0, sizeof *w);
}

static double silu(double z) { return z / (1.0 + exp(-z)); }

/* The value act rounds to at step 5 (BF16: the bf16 value; else the code's value), r = act / scale. */
static double step5_value(float r, dfm_quant_t q) {
    if (q == DFM_QUANT_FP8) return dfm_e4m3_to_f32(dfm_f32_to_e4m3(r));
    if (q == DFM_QUANT_INT8) return dfm_f32_to_int8(r);
    return dfm_bf16_to_f32(dfm_f32_to_bf16(r));
}

void oracle_ffn(const oracle_weights_t *w, int e, const uint16_t *x_row, uint16_t *y, double *amb) {
    size_t H = (size_t)w->hidden, I = (size_t)w->inter, cb = oracle_code_bytes(w->quant);
    dfm_quant_t q = w->quant;
    float *xf = th_alloc(H * sizeof *xf), *act = th_alloc(2 * I * sizeof *act); /* then unrounded (bf16) */
    double *xv = th_alloc(H * sizeof *xv), *h = th_alloc(2 * I * sizeof *h);
    double *av = th_alloc(2 * I * sizeof *av); /* the values, then each one's flip */
    unsigned char *codes = th_alloc(H * cb + I * cb);

    /* 1. per-token quantization of x */
    for (size_t j = 0; j < H; j++) xf[j] = dfm_bf16_to_f32(x_row[j]);
    double s_a = oracle_quantize(xf, H, q, codes);
    for (size_t j = 0; j < H; j++) xv[j] = oracle_code_value(codes, j, q);

    /* 2. h = acc * s_a * s1, logical channel order */
    const float *v13 = w->v13 + (size_t)e * 2 * I * H;
    for (size_t n = 0; n < 2 * I; n++) {
        double acc = 0.0;
        for (size_t j = 0; j < H; j++) acc += xv[j] * (double)v13[n * H + j];
        h[n] = acc * s_a * (double)w->s13[(size_t)e * 2 * I + n];
    }

    /* 3-4. SwiGLU, the result held in fp32 (bf16 in bf16 mode) */
    for (size_t i = 0; i < I; i++) {
        act[i] = act[I + i] = (float)(silu(h[i]) * h[I + i]);
        if (q == DFM_QUANT_BF16) act[i] = dfm_bf16_to_f32(dfm_f32_to_bf16(act[i]));
    }

    /* 5. per-token quantization of act */
    double s_b = oracle_quantize(act, I, q, codes);
    for (size_t i = 0; i < I; i++) av[i] = oracle_code_value(codes, i, q);
    /* ambiguous values: r * (1 -+ eps) rounds elsewhere; flip[i] = the largest move */
    double *flip = av + I;
    for (size_t i = 0; i < I; i++) {
        flip[i] = 0.0;
        if (!amb || s_b == 0.0) continue;
        /* BF16: the rounding that may flip is step 4's, of the fp32 value */
        const float r = q == DFM_QUANT_BF16 ? act[I + i] : (float)(act[i] / (float)s_b);
        const double lo = step5_value((float)(r * (1.0 - ORACLE_FLIP_EPS)), q);
        const double hi = step5_value((float)(r * (1.0 + ORACLE_FLIP_EPS)), q);
        flip[i] = fmax(fabs(lo - av[i]), fabs(hi - av[i]));
    }

    /* 6. y = bf16(acc2 * s_b * s2) */
    const float *v2 = w->v2 + (size_t)e * H * I;
    for (size_t m = 0; m < H; m++) {
        double acc = 0.0;
        for (size_t i = 0; i < I; i++) acc += av[i] * (double)v2[m * I + i];
        y[m] = dfm_f32_to_bf16((float)(acc * s_b * (double)w->s2[(size_t)e * H + m]));
        if (amb) {
            double a = 0.0;
            for (size_t i = 0; i < I; i++) a += flip[i] * fabs((double)v2[m * I + i]);
            amb[m] = a * s_b * fabs((double)w->s2[(size_t)e * H + m]);
        }
    }
    free(xf);
    free(act);
    free(xv);
    free(h);
    free(av);
    free(codes);
}

void oracle_ffn_exact(const oracle_weights_t *w, int e, const uint16_t *x_row, double *y) {
    size_t H = (size_t)w->hidden, I = (size_t)w->inter;
    double *xv = th_alloc(H * sizeof *xv), *h = th_alloc(2 * I * sizeof *h);
    double *act = th_alloc(I * sizeof *act);
    for (size_t j = 0; j < H; j++) xv[j] = dfm_bf16_to_f32(x_row[j]);
    const float *c13 = w->c13 + (size_t)e * 2 * I * H, *c2 = w->c2 + (size_t)e * H * I;
    for (size_t n = 0; n < 2 * I; n++) {
        double acc = 0.0;
        for (size_t j = 0; j < H; j++) acc += xv[j] * (double)c13[n * H + j];
        h[n] = acc;
    }
    for (size_t i = 0; i < I; i++) act[i] = silu(h[i]) * h[I + i];
    for (size_t m = 0; m < H; m++) {
        double acc = 0.0;
        for (size_t i = 0; i < I; i++) acc += act[i] * (double)c2[m * I + i];
        y[m] = acc;
    }
    free(xv);
    free(h);
    free(act);
}

void oracle_moe(const oracle_weights_t *w, const uint16_t *x, const int64_t *topk_idx,
                const float *topk_weights, int num_tokens, int num_topk, double *out_q,
                double *out_exact, double *out_amb) {
    size_t H = (size_t)w->hidden, K = (size_t)num_topk;
    uint16_t *y = th_alloc(K * H * sizeof *y);
    double *ye = th_alloc(K * H * sizeof *ye), *ya = th_alloc(K * H * sizeof *ya);
    if (!out_q) out_amb = NULL;
    for (size_t t = 0; t < (size_t)num_tokens; t++) {
        const int64_t *idx = topk_idx + t * K;
        const float *wt = topk_weights + t * K;
        const uint16_t *xr = x + t * H;
        double *oq = out_q ? out_q + t * H : NULL, *oe = out_exact ? out_exact + t * H : NULL;
        double *oa = out_amb ? out_amb + t * H : NULL;
        if (oq) memset(oq, 0, H * sizeof *oq);
        if (oe) memset(oe, 0, H * sizeof *oe);
        if (oa) memset(oa, 0, H * sizeof *oa);
        for (size_t k = 0; k < K; k++) {
            if (!oracle_slot_sends(idx, (int)k, w->num_experts)) continue;
            if (oq) oracle_ffn(w, (int)idx[k], xr, y + k * H, oa ? ya + k * H : NULL);
            if (oe) oracle_ffn_exact(w, (int)idx[k], xr, ye + k * H);
        }
        /* Every valid slot adds its weight times the result of the slot that sent it. */
        for (size_t k = 0; k < K; k++) {
            if (idx[k] < 0 || idx[k] >= w->num_experts) continue;
            size_t first = 0;
            while (idx[first] != idx[k]) first++;
            for (size_t m = 0; m < H; m++) {
                if (oq) oq[m] += (double)wt[k] * (double)dfm_bf16_to_f32(y[first * H + m]);
                if (oe) oe[m] += (double)wt[k] * ye[first * H + m];
                if (oa) oa[m] += fabs((double)wt[k]) * ya[first * H + m];
            }
        }
    }
    free(y);
    free(ye);
    free(ya);
}

double oracle_check(const uint16_t *out, const double *ref, const double *amb, size_t n, double tol,
                    double *allowed) {
    double den = 0.0, a2 = 0.0;
    for (size_t i = 0; i < n; i++) {
        den += ref[i] * ref[i];
        if (amb) a2 += amb[i] * amb[i];
    }
    /* an all-zero reference: th_rel_l2_bf16 is 0 only for an all-zero output (SPEC 3.3) */
    if (allowed) *allowed = den == 0.0 ? 0.0 : tol + sqrt(a2 / den);
    return th_rel_l2_bf16(out, ref, n);
}
