/*
 * backend.h - the context and the small interface every backend implements.
 *
 * src/api.c owns the public entry points: it validates every host-checkable
 * argument, keeps the last-error message and the sticky fatal error, pairs
 * dispatches with combines, and only then calls the backend through the
 * table below (as redis `ae` and ggml backends do). A backend sees arguments
 * that are already known to be valid.
 */
#ifndef DFM_BACKEND_H
#define DFM_BACKEND_H

#include <stdarg.h>

#include "common/dfm_common.h"

#define DFM_ERROR_BYTES 512

typedef struct dfm_backend_ops dfm_backend_ops_t;

struct dfm_ctx {
    dfm_config_t config;
    int rank;
    dfm_layout_t layout;
    const dfm_backend_ops_t *ops;
    void *impl; /* the backend's own state */
    dfm_path_t path; /* how dfm_fused_moe runs (the backend's create may change it) */

    /* Host-side count of operations, for pairing dispatch/combine (the
     * device keeps its own sequence numbers, see dfm_common.h). */
    uint64_t num_calls;
    dfm_handle_t pending[2]; /* dispatches not yet combined, oldest first */
    int num_pending;

    dfm_status_t fatal; /* sticky: once a timeout, every call fails fast */
    char last_error[DFM_ERROR_BYTES];
};

struct dfm_backend_ops {
    const char *name;
    dfm_status_t (*get_unique_id)(const dfm_config_t *config, dfm_unique_id_t *id);
    /* ctx->config, ->rank, ->layout are set; fill ctx->impl. On failure
     * release everything and set the message with dfm_set_error(). */
    dfm_status_t (*create)(dfm_ctx_t *ctx, const dfm_unique_id_t *id);
    dfm_status_t (*create_from_nccl)(dfm_ctx_t *ctx, void *nccl_comm); /* may be NULL */
    void (*destroy)(dfm_ctx_t *ctx);
    dfm_status_t (*fused_moe)(dfm_ctx_t *ctx, const dfm_moe_args_t *args, uint64_t seq);
    dfm_status_t (*dispatch)(dfm_ctx_t *ctx, const dfm_dispatch_args_t *args, uint64_t seq);
    dfm_status_t (*combine)(dfm_ctx_t *ctx, const dfm_combine_args_t *args);
    /* Report (and for DFM_ERROR_INVALID_EXPERT, clear) the asynchronous
     * error the backend has seen; DFM_SUCCESS if none. Must not block. */
    dfm_status_t (*poll_async_error)(dfm_ctx_t *ctx);
    /* A fatal asynchronous error (a timeout) if the backend has seen one,
     * else DFM_SUCCESS; reads only, clears nothing, never blocks. NULL when
     * the backend reports every fault synchronously. */
    dfm_status_t (*peek_fatal)(dfm_ctx_t *ctx);
};

extern const dfm_backend_ops_t dfm_cpu_backend;
#ifdef DFM_WITH_CUDA
extern const dfm_backend_ops_t dfm_cuda_backend;
#endif

/* Record a message in ctx->last_error (printf style) and return status. */
dfm_status_t dfm_set_error(dfm_ctx_t *ctx, dfm_status_t status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Seconds on a monotonic clock. */
double dfm_now_s(void);

/* Fill buf with n bytes from the OS's random source; 0 on success. */
int dfm_random_bytes(void *buf, size_t n);

/* 64-bit FNV-1a hash of the fields of a config that must agree. */
uint64_t dfm_config_hash(const dfm_config_t *config);

/* Propagate a failed status (NCCL checks.h style). */
#define DFM_CHECK(call)                                                                    \
    do {                                                                                   \
        dfm_status_t dfm_check_status_ = (call);                                           \
        if (dfm_check_status_ != DFM_SUCCESS) return dfm_check_status_;                    \
    } while (0)

/* Keep the first failure and jump to a cleanup label. */
#define DFM_CHECK_GOTO(call, status, label)                                                \
    do {                                                                                   \
        (status) = (call);                                                                 \
        if ((status) != DFM_SUCCESS) goto label;                                           \
    } while (0)

#endif /* DFM_BACKEND_H */
