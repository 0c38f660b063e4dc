/*
 * cpu.c - the CPU backend's table: the fused operator and the separate
 * dispatch/combine as compositions of the stages in dispatch.c, experts.c and
 * combine.c, and the asynchronous-error query. Every call completes before
 * it returns.
 */
#include "cpu/cpu.h"

static dfm_status_t cpu_fused_moe(dfm_ctx_t *ctx, const dfm_moe_args_t *a, uint64_t seq) {
    DFM_CHECK(cpu_dispatch_send(ctx, a->x, a->topk_idx, a->num_tokens, a->num_topk, a->quant,
                                seq));
    DFM_CHECK(cpu_dispatch_wait(ctx, a->quant, seq, a->ep_recv_count));
    cpu_experts_run(ctx, a, seq);
    return cpu_combine_reduce(ctx, a->topk_idx, a->topk_weights, a->num_tokens, a->num_topk,
                              a->out, seq);
}

static dfm_status_t cpu_dispatch(dfm_ctx_t *ctx, const dfm_dispatch_args_t *a, uint64_t seq) {
    DFM_CHECK(cpu_dispatch_send(ctx, a->x, a->topk_idx, a->num_tokens, a->num_topk, a->quant,
                                seq));
    DFM_CHECK(cpu_dispatch_wait(ctx, a->quant, seq, a->ep_recv_count));
    cpu_dispatch_pack(ctx, a, seq);
    return DFM_SUCCESS;
}

/* y holds one bf16 row per packed receive row: [G][R*num_max][H]. The rows
 * of half (seq & 1) still describe where each packed row came from. */
static dfm_status_t cpu_combine(dfm_ctx_t *ctx, const dfm_combine_args_t *a) {
    const dfm_layout_t *L = &ctx->layout;
    const dfm_handle_t *h = a->handle;
    int R = L->num_ranks, G = L->num_local_experts, half = dfm_seq_half(h->seq);
    size_t H = (size_t)L->hidden, rows_per_expert = (size_t)R * (size_t)L->num_max;
    const char *mine = cpu_region(ctx, ctx->rank);

    for (int g = 0; g < G; g++) {
        size_t p = (size_t)g * rows_per_expert;
        for (int src = 0; src < R; src++) {
            int32_t n = ((const int32_t *)(const void *)(mine + dfm_off_recv_counts(L, half, src)))[g];
            for (int j = 0; j < n; j++, p++) {
                size_t r = dfm_recv_row(L, g, src, j);
                int32_t meta = *(const int32_t *)(const void *)(mine + dfm_off_recv_meta(L, half, r));
                cpu_combine_send_row(ctx, h->seq, src, meta, (const uint16_t *)a->y + p * H);
            }
        }
    }
    cpu_combine_publish(ctx, h->seq);
    return cpu_combine_reduce(ctx, a->topk_idx, a->topk_weights, h->num_tokens, h->num_topk,
                              a->out, h->seq);
}

static dfm_status_t cpu_poll_async_error(dfm_ctx_t *ctx) {
    dfm_cpu_t *c = cpu_of(ctx);
    if (c->mismatch_pending) {
        c->mismatch_pending = 0;
        return dfm_set_error(ctx, DFM_ERROR_MISMATCH,
                             "rank %d: a peer called with another quantization mode", ctx->rank);
    }
    if (c->dropped_pending > 0) {
        int n = c->dropped_pending;
        c->dropped_pending = 0;
        return dfm_set_error(ctx, DFM_ERROR_INVALID_EXPERT,
                             "topk_idx: %d slot(s) named an expert outside [-1, %d) and were "
                             "dropped",
                             n, ctx->config.num_experts);
    }
    return DFM_SUCCESS;
}

const dfm_backend_ops_t dfm_cpu_backend = {
    .name = "cpu",
    .get_unique_id = cpu_get_unique_id,
    .create = cpu_create,
    .create_from_nccl = NULL,
    .destroy = cpu_destroy,
    .fused_moe = cpu_fused_moe,
    .dispatch = cpu_dispatch,
    .combine = cpu_combine,
    .poll_async_error = cpu_poll_async_error,
};
