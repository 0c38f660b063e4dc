/*
 * dispatch.c - the CPU backend's dispatch: quantize each token once (SPEC
 * 3.1, step 1 of 3.2), write it into the receive slots of every rank that
 * holds one of its experts, publish counts and a flag; then wait for every
 * peer's flag. Optionally pack the received rows DeepEP-style (SPEC 5).
 */
#include "cpu/cpu.h"

/* Per-token quantization of x[t] into a row of codes; returns the scale. */
static float quantize_token(const uint16_t *x, int hidden, dfm_quant_t q, void *codes) {
    float amax = 0.0f;
    for (int i = 0; i < hidden; i++) amax = fmaxf(amax, fabsf(dfm_bf16_to_f32(x[i])));
    float s = dfm_quant_scale(amax, q);
    for (int i = 0; i < hidden; i++) dfm_code_store(codes, (size_t)i, dfm_bf16_to_f32(x[i]), s, q);
    return s;
}

dfm_status_t cpu_dispatch_send(dfm_ctx_t *ctx, const void *x, const int64_t *topk_idx,
                               int num_tokens, int num_topk, dfm_quant_t quant, uint64_t seq) {
    dfm_cpu_t *c = cpu_of(ctx);
    const dfm_layout_t *L = &ctx->layout;
    int R = L->num_ranks, G = L->num_local_experts, H = L->hidden, me = ctx->rank;
    int E = ctx->config.num_experts, half = dfm_seq_half(seq);
    size_t code_bytes = (size_t)H * dfm_code_bytes(quant);
    int dropped = 0;

    memset(c->send_counts, 0, (size_t)R * (size_t)G * sizeof(int32_t));
    for (int t = 0; t < num_tokens; t++) {
        const int64_t *row = topk_idx + (size_t)t * (size_t)num_topk;
        int quantized = 0;
        for (int k = 0; k < num_topk; k++) {
            if (row[k] < -1 || row[k] >= E) dropped++;
            if (!dfm_slot_is_first(row, k, E)) continue;
            if (!quantized) {
                c->x_scale[t] = quantize_token((const uint16_t *)x + (size_t)t * (size_t)H, H,
                                               quant, c->x_codes + (size_t)t * L->row_bytes);
                quantized = 1;
            }
            int dst = (int)(row[k] / G), g = (int)(row[k] % G);
            int j = c->send_counts[dst * G + g]++;
            char *region = cpu_region(ctx, dst);
            size_t r = dfm_recv_row(L, g, me, j);
            memcpy(region + dfm_off_recv_rows(L, half, r), c->x_codes + (size_t)t * L->row_bytes,
                   code_bytes);
            *(float *)(void *)(region + dfm_off_recv_scale(L, half, r)) = c->x_scale[t];
            *(int32_t *)(void *)(region + dfm_off_recv_meta(L, half, r)) =
                t * L->max_topk + k;
        }
    }
    for (int dst = 0; dst < R; dst++) {
        char *region = cpu_region(ctx, dst);
        memcpy(region + dfm_off_recv_counts(L, half, me), c->send_counts + (size_t)dst * (size_t)G,
               (size_t)G * sizeof(int32_t));
        int32_t *info = (int32_t *)(void *)(region + dfm_off_src_info(L, half, me));
        info[DFM_INFO_QUANT] = (int32_t)quant;
        info[DFM_INFO_TOPK] = num_topk;
        info[DFM_INFO_TOKENS] = num_tokens;
        info[DFM_INFO_DROPPED] = dropped;
        info[DFM_INFO_TOK16] = 0;
        atomic_store_explicit(cpu_flag(region, dfm_off_dispatch_flag(L, half, me)), seq,
                              memory_order_release);
    }
    return DFM_SUCCESS;
}

dfm_status_t cpu_dispatch_wait(dfm_ctx_t *ctx, dfm_quant_t quant, uint64_t seq,
                               int32_t *ep_recv_count) {
    dfm_cpu_t *c = cpu_of(ctx);
    const dfm_layout_t *L = &ctx->layout;
    int R = L->num_ranks, G = L->num_local_experts, half = dfm_seq_half(seq);
    char *mine = cpu_region(ctx, ctx->rank);
    double deadline = dfm_now_s() + ctx->config.timeout_s;

    for (int src = 0; src < R; src++) {
        DFM_CHECK(cpu_wait_flag(ctx, cpu_flag(mine, dfm_off_dispatch_flag(L, half, src)), seq,
                                deadline, "dispatch", src));
        const int32_t *info = (const int32_t *)(const void *)(mine + dfm_off_src_info(L, half, src));
        /* Every rank sees every rank's dropped count: the error is world-wide. */
        if (info[DFM_INFO_DROPPED] > 0) c->dropped_pending += info[DFM_INFO_DROPPED];
        if (info[DFM_INFO_QUANT] != (int32_t)quant) c->mismatch_pending = 1;
    }
    if (ep_recv_count != NULL) {
        for (int src = 0; src < R; src++) {
            const int32_t *cnt = (const int32_t *)(const void *)(mine + dfm_off_recv_counts(L, half, src));
            for (int g = 0; g < G; g++) ep_recv_count[g * R + src] = cnt[g];
        }
    }
    return DFM_SUCCESS;
}

void cpu_dispatch_pack(dfm_ctx_t *ctx, const dfm_dispatch_args_t *a, uint64_t seq) {
    const dfm_layout_t *L = &ctx->layout;
    int R = L->num_ranks, G = L->num_local_experts, M = L->num_max, half = dfm_seq_half(seq);
    size_t code_bytes = (size_t)L->hidden * dfm_code_bytes(a->quant);
    size_t rows_per_expert = (size_t)R * (size_t)M;
    const char *mine = cpu_region(ctx, ctx->rank);

    for (int g = 0; g < G; g++) {
        int32_t begin = 0;
        for (int src = 0; src < R; src++) {
            int32_t n = ((const int32_t *)(const void *)(mine + dfm_off_recv_counts(L, half, src)))[g];
            a->layout_range[g * R + src] = ((int64_t)begin << 32) | (int64_t)n;
            for (int j = 0; j < n; j++) {
                size_t r = dfm_recv_row(L, g, src, j), p = (size_t)g * rows_per_expert + (size_t)(begin + j);
                memcpy((char *)a->recv_x + p * code_bytes, mine + dfm_off_recv_rows(L, half, r),
                       code_bytes);
                a->recv_scale[p] = *(const float *)(const void *)(mine + dfm_off_recv_scale(L, half, r));
                if (a->recv_src_info != NULL) {
                    int32_t meta = *(const int32_t *)(const void *)(mine + dfm_off_recv_meta(L, half, r));
                    a->recv_src_info[p] = src * M + meta / L->max_topk;
                }
            }
            begin += n;
        }
        a->recv_count[g] = begin;
    }
}
