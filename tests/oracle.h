/*
 * oracle.h - the tests' independent model of SPEC section 3.
 *
 * Shares only the number-format conversions with the library
 * (dfm_f32_to_e4m3, dfm_e4m3_to_f32, dfm_f32_to_bf16, dfm_bf16_to_f32,
 * dfm_f32_to_int8). Everything else is written here again from the spec:
 * quantization exactly as SPEC 3.1 writes it (fp32 divisions, exact amax),
 * routing with the dedupe of repeated experts, the per-channel weight
 * quantization in checkpoint (logical) channel order, the permutation of
 * SPEC 4, and the expert FFN and the weighted sum in float64 (SPEC 3.3).
 * A second path does the same layer with no quantization at all, straight
 * from the checkpoint bf16 weights, for the sanity check against scale bugs.
 */
#ifndef DFM_TESTS_ORACLE_H
#define DFM_TESTS_ORACLE_H

#include <stddef.h>
#include <stdint.h>

#include "dfm.h"

/* Bytes of one code of mode q. */
size_t oracle_code_bytes(dfm_quant_t q);

/*
 * Quantize n fp32 values (SPEC 3.1): writes n codes, returns the scale
 * (1 in bf16 mode; 0, with all codes 0, for a row of zeros).
 */
float oracle_quantize(const float *v, size_t n, dfm_quant_t q, void *codes);

/* Value of code i of a row of codes (not multiplied by the scale). */
double oracle_code_value(const void *codes, size_t i, dfm_quant_t q);

/* Original w13 channel that permuted channel p holds (SPEC 4), from the text. */
int oracle_perm_source(int p, int inter);

/*
 * Whether slot k of a token's routing row is the one that sends the token to
 * its expert: a valid id in [0, E) not named by an earlier slot.
 */
int oracle_slot_sends(const int64_t *idx_row, int k, int num_experts);

/*
 * Experts' weights in checkpoint (logical) channel order, quantized per
 * output channel by the oracle itself, plus the code values (exact in fp32)
 * and the checkpoint values for the unquantized path.
 */
typedef struct {
    int num_experts, hidden, inter;
    dfm_quant_t quant;
    unsigned char *w13; /* [E][2I][H] codes, gate rows then up rows */
    float *s13;         /* [E][2I] */
    unsigned char *w2;  /* [E][H][I] codes */
    float *s2;          /* [E][H] */
    float *v13, *v2;    /* code values, same shapes */
    float *c13, *c2;    /* checkpoint values, same shapes */
} oracle_weights_t;

/* From checkpoint w13 [E][2I][H] and w2 [E][H][I] (bf16 bits). */
void oracle_weights_init(oracle_weights_t *w, const uint16_t *w13, const uint16_t *w2,
                         int num_experts, int hidden, int inter, dfm_quant_t quant);
void oracle_weights_free(oracle_weights_t *w);

/*
 * Relative distance from a rounding boundary within which the act value of
 * step 5, divided by its scale, counts as ambiguous: an fp32 evaluation that
 * sums in another order (or takes silu a few ulp differently) may round it to
 * the neighbouring code (SPEC 3.3 allows that flip). 2^-16: some 100 x the
 * fp32 error of these sums; act values with more cancellation are small, and
 * so is what their flip changes.
 */
#define ORACLE_FLIP_EPS (1.0 / 65536.0)

/* SPEC 3.2 for expert e and one token: y [H] as bf16 bits. amb [H] (or NULL):
 * for every ambiguous act value, what a flip to its neighbouring code would
 * change in y, |code difference| * s_b * |w2 value| * s2, summed. */
void oracle_ffn(const oracle_weights_t *w, int e, const uint16_t *x_row, uint16_t *y, double *amb);

/* The same FFN with no quantization or rounding at all, in float64. */
void oracle_ffn_exact(const oracle_weights_t *w, int e, const uint16_t *x_row, double *y);

/*
 * The layer for one rank's T tokens (SPEC 3): out_q [T][H] follows the
 * quantized semantics (sum of w * float(y) in float64, not cast to bf16),
 * out_exact [T][H] the unquantized math, out_amb [T][H] the sum of |w| * amb
 * of oracle_ffn (the most that legitimate code flips can move out_q). Any
 * may be NULL (out_amb needs out_q).
 */
void oracle_moe(const oracle_weights_t *w, const uint16_t *x, const int64_t *topk_idx,
                const float *topk_weights, int num_tokens, int num_topk, double *out_q,
                double *out_exact, double *out_amb);

/* The tolerance check of SPEC 3.3 with the flips it allows: ||out - ref|| <=
 * tol * ||ref|| + ||amb|| (amb from oracle_moe, NULL: none). Returns the
 * relative error; *allowed (if not NULL) the bound it was held to. */
double oracle_check(const uint16_t *out, const double *ref, const double *amb, size_t n, double tol,
                    double *allowed);

#endif /* DFM_TESTS_ORACLE_H */
