/*
 * combine.c - the CPU backend's combine: expert results go into the combine
 * slot (token, first slot naming the expert) of their home rank, a flag per
 * sending rank publishes them, and the home rank reduces
 * out[t] = sum_k w[t,k] * y(t, first slot of idx[t,k]) in fp32, increasing k.
 */
#include "cpu/cpu.h"

void cpu_combine_send_row(dfm_ctx_t *ctx, uint64_t seq, int home, int32_t meta,
                          const uint16_t *y) {
    const dfm_layout_t *L = &ctx->layout;
    int t = meta / L->max_topk, k = meta % L->max_topk;
    memcpy(cpu_region(ctx, home) + dfm_off_combine_row(L, dfm_seq_half(seq), t, k), y,
           (size_t)L->hidden * sizeof(uint16_t));
}

void cpu_combine_publish(dfm_ctx_t *ctx, uint64_t seq) {
    const dfm_layout_t *L = &ctx->layout;
    for (int home = 0; home < L->num_ranks; home++)
        atomic_store_explicit(cpu_flag(cpu_region(ctx, home),
                                       dfm_off_combine_flag(L, dfm_seq_half(seq), ctx->rank)),
                              seq, memory_order_release);
}

dfm_status_t cpu_combine_reduce(dfm_ctx_t *ctx, const int64_t *topk_idx,
                                const float *topk_weights, int num_tokens, int num_topk,
                                void *out, uint64_t seq) {
    dfm_cpu_t *c = cpu_of(ctx);
    const dfm_layout_t *L = &ctx->layout;
    int H = L->hidden, E = ctx->config.num_experts, half = dfm_seq_half(seq);
    const char *mine = cpu_region(ctx, ctx->rank);
    double deadline = dfm_now_s() + ctx->config.timeout_s;

    for (int src = 0; src < L->num_ranks; src++)
        DFM_CHECK(cpu_wait_flag(ctx, cpu_flag(cpu_region(ctx, ctx->rank),
                                              dfm_off_combine_flag(L, half, src)),
                                seq, deadline, "combine", src));
    for (int t = 0; t < num_tokens; t++) {
        const int64_t *row = topk_idx + (size_t)t * (size_t)num_topk;
        for (int i = 0; i < H; i++) c->acc[i] = 0.0f;
        for (int k = 0; k < num_topk; k++) {
            if (row[k] < 0 || row[k] >= E) continue;
            int first = dfm_first_slot(row, k);
            const uint16_t *y =
                (const uint16_t *)(const void *)(mine + dfm_off_combine_row(L, half, t, first));
            float w = topk_weights[(size_t)t * (size_t)num_topk + (size_t)k];
            for (int i = 0; i < H; i++) c->acc[i] += w * dfm_bf16_to_f32(y[i]);
        }
        uint16_t *o = (uint16_t *)out + (size_t)t * (size_t)H;
        for (int i = 0; i < H; i++) o[i] = dfm_f32_to_bf16(c->acc[i]);
    }
    return DFM_SUCCESS;
}
