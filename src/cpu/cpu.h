/*
 * cpu.h - internal state of the CPU backend: ranks as threads of one process
 * or as processes, sharing one POSIX shared-memory segment that holds every
 * rank's region of the symmetric buffer (layout in common/dfm_common.h).
 * The protocol is the GPU's: peers write rows and counts into the owner's
 * region, then publish a flag with release ordering; the owner waits for the
 * flag with acquire ordering and a deadline.
 */
#ifndef DFM_CPU_H
#define DFM_CPU_H

#include <stdatomic.h>

#include "backend.h"

typedef struct {
    char *base;           /* the mapped segment */
    size_t segment_bytes; /* header + R regions */
    size_t region0;       /* offset of rank 0's region */

    /* Private scratch, allocated at creation. */
    uint8_t *x_codes;  /* [num_max][row_bytes]: this rank's tokens, quantized */
    float *x_scale;    /* [num_max] */
    int32_t *send_counts; /* [R][G] rows sent in the current dispatch */
    float *h;          /* [2I] GEMM1 output */
    float *act;        /* [I] SwiGLU output */
    uint8_t *act_codes; /* [I * 2] requantized act */
    uint16_t *y;       /* [H] expert output row */
    float *acc;        /* [H] combine accumulator */

    float e4m3_value[256]; /* decode table for FP8 codes */

    int dropped_pending; /* slots dropped in calls not yet reported */
    int mismatch_pending; /* a peer used another mode in some call */
} dfm_cpu_t;

static inline dfm_cpu_t *cpu_of(dfm_ctx_t *ctx) { return (dfm_cpu_t *)ctx->impl; }

/* Start of rank r's region of the symmetric buffer. */
static inline char *cpu_region(dfm_ctx_t *ctx, int r) {
    dfm_cpu_t *c = cpu_of(ctx);
    return c->base + c->region0 + (size_t)r * ctx->layout.region_bytes;
}

static inline _Atomic uint64_t *cpu_flag(char *region, size_t off) {
    return (_Atomic uint64_t *)(void *)(region + off);
}

/* world.c */
dfm_status_t cpu_get_unique_id(const dfm_config_t *config, dfm_unique_id_t *id);
dfm_status_t cpu_create(dfm_ctx_t *ctx, const dfm_unique_id_t *id);
void cpu_destroy(dfm_ctx_t *ctx);
/* Spin (yielding) until *flag == seq or the deadline passes. */
dfm_status_t cpu_wait_flag(dfm_ctx_t *ctx, _Atomic uint64_t *flag, uint64_t seq,
                           double deadline, const char *what, int peer);

/* dispatch.c */
dfm_status_t cpu_dispatch_send(dfm_ctx_t *ctx, const void *x, const int64_t *topk_idx,
                               int num_tokens, int num_topk, dfm_quant_t quant, uint64_t seq);
dfm_status_t cpu_dispatch_wait(dfm_ctx_t *ctx, dfm_quant_t quant, uint64_t seq,
                               int32_t *ep_recv_count);
void cpu_dispatch_pack(dfm_ctx_t *ctx, const dfm_dispatch_args_t *args, uint64_t seq);

/* experts.c */
void cpu_experts_run(dfm_ctx_t *ctx, const dfm_moe_args_t *args, uint64_t seq);

/* combine.c */
void cpu_combine_send_row(dfm_ctx_t *ctx, uint64_t seq, int src, int32_t meta,
                          const uint16_t *y);
void cpu_combine_publish(dfm_ctx_t *ctx, uint64_t seq);
dfm_status_t cpu_combine_reduce(dfm_ctx_t *ctx, const int64_t *topk_idx,
                                const float *topk_weights, int num_tokens, int num_topk,
                                void *out, uint64_t seq);

#endif /* DFM_CPU_H */
