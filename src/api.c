/*
 * api.c - the public entry points of dfm.h: argument validation, error
 * messages, the context's life cycle, dispatch/combine pairing, and the
 * hand-off to a backend. Numerics and transport live in the backends.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"

static const char *const status_strings[DFM_NUM_STATUS] = {
    "success",
    "invalid argument",
    "invalid usage",
    "out of memory",
    "timeout waiting for a peer",
    "ranks disagree (configuration, id or mode)",
    "expert id out of range (asynchronous)",
    "unsupported",
    "system call failed",
    "internal error",
};

const char *dfm_status_string(dfm_status_t status) {
    if ((int)status < 0 || status >= DFM_NUM_STATUS) return "unknown status";
    return status_strings[status];
}

int dfm_get_version(void) { return DFM_VERSION; }

static const dfm_backend_ops_t *backend_ops(dfm_backend_t b) {
    if (b == DFM_BACKEND_CPU) return &dfm_cpu_backend;
#ifdef DFM_WITH_CUDA
    if (b == DFM_BACKEND_CUDA) return &dfm_cuda_backend;
#endif
    return NULL;
}

int dfm_backend_available(dfm_backend_t backend) { return backend_ops(backend) != NULL; }

dfm_status_t dfm_set_error(dfm_ctx_t *ctx, dfm_status_t status, const char *fmt, ...) {
    if (ctx == NULL) return status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->last_error, sizeof ctx->last_error, fmt, ap);
    va_end(ap);
    return status;
}

double dfm_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int dfm_random_bytes(void *buf, size_t n) {
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r <= 0) {
            if (r < 0 && errno == EINTR) continue;
            close(fd);
            return -1;
        }
        got += (size_t)r;
    }
    close(fd);
    return 0;
}

uint64_t dfm_config_hash(const dfm_config_t *c) {
    const int64_t fields[] = {c->version,     c->backend,  c->num_ranks,
                              c->hidden,      c->inter,    c->num_experts,
                              c->max_topk,    c->num_max_dispatch_tokens_per_rank,
                              c->quant_modes, (int64_t)(c->timeout_s * 1000.0),
                              c->path};
    uint64_t h = 1469598103934665603ull;
    const unsigned char *p = (const unsigned char *)fields;
    for (size_t i = 0; i < sizeof fields; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* ---- configuration ---------------------------------------------------------- */

#define REJECT(...) (snprintf(err, err_bytes, __VA_ARGS__), DFM_ERROR_INVALID_ARGUMENT)

static dfm_status_t check_config(const dfm_config_t *c, char *err, size_t err_bytes) {
    if (c == NULL) return REJECT("config: must not be NULL");
    if (c->size < sizeof(dfm_config_t))
        return REJECT("config.size: %zu is smaller than sizeof(dfm_config_t) = %zu; start from "
                      "DFM_CONFIG_INIT",
                      c->size, sizeof(dfm_config_t));
    if (c->version / 100 != DFM_VERSION / 100)
        return REJECT("config.version: %u does not match the library's %d", c->version,
                      DFM_VERSION);
    if ((int)c->backend < 0 || c->backend >= DFM_NUM_BACKEND)
        return REJECT("config.backend: %d is not a dfm_backend_t", (int)c->backend);
    if (c->num_ranks < 1 || c->num_ranks > DFM_MAX_RANKS)
        return REJECT("config.num_ranks: %d is outside 1..%d", c->num_ranks, DFM_MAX_RANKS);
    if (c->hidden < DFM_MIN_HIDDEN || c->hidden > DFM_MAX_HIDDEN || c->hidden % 128 != 0)
        return REJECT("config.hidden: %d must be in %d..%d and a multiple of 128", c->hidden,
                      DFM_MIN_HIDDEN, DFM_MAX_HIDDEN);
    if (c->inter < 64 || c->inter > DFM_MAX_INTER || c->inter % 64 != 0)
        return REJECT("config.inter: %d must be in 64..%d and a multiple of 64", c->inter,
                      DFM_MAX_INTER);
    if (c->num_experts < 1 || c->num_experts > DFM_MAX_EXPERTS)
        return REJECT("config.num_experts: %d is outside 1..%d", c->num_experts,
                      DFM_MAX_EXPERTS);
    if (c->num_experts % c->num_ranks != 0)
        return REJECT("config.num_experts: %d is not a multiple of num_ranks = %d",
                      c->num_experts, c->num_ranks);
    if (c->max_topk < 1 || c->max_topk > DFM_MAX_TOPK)
        return REJECT("config.max_topk: %d is outside 1..%d", c->max_topk, DFM_MAX_TOPK);
    if (c->num_max_dispatch_tokens_per_rank < 1 ||
        c->num_max_dispatch_tokens_per_rank > DFM_MAX_TOKENS)
        return REJECT("config.num_max_dispatch_tokens_per_rank: %d is outside 1..%d",
                      c->num_max_dispatch_tokens_per_rank, DFM_MAX_TOKENS);
    if (c->quant_modes == 0 || (c->quant_modes & ~DFM_QUANT_MASK_ALL) != 0)
        return REJECT("config.quant_modes: 0x%x must be a non-empty mask of DFM_QUANT_MASK() "
                      "bits (0x%x)",
                      c->quant_modes, DFM_QUANT_MASK_ALL);
    if (!(c->timeout_s > 0.0) || c->timeout_s > 86400.0)
        return REJECT("config.timeout_s: %g must be > 0 and <= 86400", c->timeout_s);
    if ((int)c->path < 0 || (int)c->path >= DFM_NUM_PATH)
        return REJECT("config.path: %d is not a dfm_path_t (DFM_PATH_DEFAULT, DFM_PATH_FUSED_KERNEL, "
                      "DFM_PATH_PIPELINE)",
                      (int)c->path);
    return DFM_SUCCESS;
}

dfm_status_t dfm_config_check(const dfm_config_t *config, char *err, size_t err_bytes) {
    char scratch[DFM_ERROR_BYTES];
    if (err == NULL || err_bytes == 0) {
        err = scratch;
        err_bytes = sizeof scratch;
    }
    err[0] = '\0';
    return check_config(config, err, err_bytes);
}

dfm_status_t dfm_buffer_size_hint(const dfm_config_t *config, size_t *bytes) {
    char err[256];
    if (bytes == NULL) return DFM_ERROR_INVALID_ARGUMENT;
    DFM_CHECK(check_config(config, err, sizeof err));
    dfm_layout_t L;
    dfm_layout_init(&L, config);
    size_t R = (size_t)config->num_ranks, M = (size_t)config->num_max_dispatch_tokens_per_rank;
    size_t I = (size_t)config->inter, rows = (size_t)L.num_local_experts * R * M;
    size_t code = L.row_bytes / (size_t)config->hidden;
    /* This rank's region of the symmetric heap, plus private scratch: the
     * CUDA backend keeps act (fp32), its codes and scales for every receive
     * row, and per-token routing; the CPU backend's scratch is smaller. */
    *bytes = L.region_bytes + rows * (I * (4 + code) + 4) +
             M * (size_t)config->max_topk * 4 + (size_t)config->num_experts * 4 + 4096;
    return DFM_SUCCESS;
}

/* ---- life cycle --------------------------------------------------------------- */

dfm_status_t dfm_get_unique_id(const dfm_config_t *config, dfm_unique_id_t *id) {
    char err[256];
    if (id == NULL) return DFM_ERROR_INVALID_ARGUMENT;
    DFM_CHECK(check_config(config, err, sizeof err));
    const dfm_backend_ops_t *ops = backend_ops(config->backend);
    if (ops == NULL) return DFM_ERROR_UNSUPPORTED;
    memset(id, 0, sizeof *id);
    return ops->get_unique_id(config, id);
}

static dfm_status_t ctx_begin(dfm_ctx_t **out, const dfm_config_t *config, int rank,
                              char *err, size_t err_bytes, dfm_ctx_t **ctx_out) {
    char scratch[DFM_ERROR_BYTES];
    if (err == NULL || err_bytes == 0) {
        err = scratch;
        err_bytes = sizeof scratch;
    }
    err[0] = '\0';
    if (out == NULL) return REJECT("ctx: must not be NULL");
    *out = NULL;
    DFM_CHECK(check_config(config, err, err_bytes));
    if (rank < 0 || rank >= config->num_ranks)
        return REJECT("rank: %d is outside 0..%d", rank, config->num_ranks - 1);
    const dfm_backend_ops_t *ops = backend_ops(config->backend);
    if (ops == NULL) {
        snprintf(err, err_bytes, "config.backend: %s was not built into this library",
                 config->backend == DFM_BACKEND_CUDA ? "cuda" : "cpu");
        return DFM_ERROR_UNSUPPORTED;
    }
    dfm_ctx_t *ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL) {
        snprintf(err, err_bytes, "out of host memory for the context");
        return DFM_ERROR_OUT_OF_MEMORY;
    }
    ctx->config = *config;
    ctx->config.size = sizeof(dfm_config_t);
    ctx->rank = rank;
    ctx->ops = ops;
    ctx->path = DFM_PATH_PIPELINE; /* a backend with one way; CUDA's create decides */
    dfm_layout_init(&ctx->layout, &ctx->config);
    *ctx_out = ctx;
    return DFM_SUCCESS;
}

static dfm_status_t ctx_end(dfm_ctx_t **out, dfm_ctx_t *ctx, dfm_status_t st, char *err,
                            size_t err_bytes) {
    if (st != DFM_SUCCESS) {
        if (err != NULL && err_bytes > 0) snprintf(err, err_bytes, "%s", ctx->last_error);
        free(ctx);
        return st;
    }
    ctx->last_error[0] = '\0';
    *out = ctx;
    return DFM_SUCCESS;
}

dfm_status_t dfm_ctx_create(dfm_ctx_t **out, const dfm_config_t *config,
                            const dfm_unique_id_t *id, int rank, char *err, size_t err_bytes) {
    dfm_ctx_t *ctx = NULL;
    if (out != NULL) *out = NULL;
    if (id == NULL) {
        if (err != NULL && err_bytes > 0) snprintf(err, err_bytes, "id: must not be NULL");
        return DFM_ERROR_INVALID_ARGUMENT;
    }
    DFM_CHECK(ctx_begin(out, config, rank, err, err_bytes, &ctx));
    return ctx_end(out, ctx, ctx->ops->create(ctx, id), err, err_bytes);
}

dfm_status_t dfm_ctx_create_from_nccl(dfm_ctx_t **out, const dfm_config_t *config,
                                      void *nccl_comm, char *err, size_t err_bytes) {
    dfm_ctx_t *ctx = NULL;
    if (out != NULL) *out = NULL;
    if (config != NULL && config->backend != DFM_BACKEND_CUDA) {
        if (err != NULL && err_bytes > 0)
            snprintf(err, err_bytes, "config.backend: only the cuda backend joins an NCCL "
                                     "communicator");
        return DFM_ERROR_INVALID_ARGUMENT;
    }
    if (nccl_comm == NULL) {
        if (err != NULL && err_bytes > 0) snprintf(err, err_bytes, "nccl_comm: must not be NULL");
        return DFM_ERROR_INVALID_ARGUMENT;
    }
    /* The rank comes from the communicator; the backend sets it. */
    DFM_CHECK(ctx_begin(out, config, 0, err, err_bytes, &ctx));
    dfm_status_t st = ctx->ops->create_from_nccl
                          ? ctx->ops->create_from_nccl(ctx, nccl_comm)
                          : dfm_set_error(ctx, DFM_ERROR_UNSUPPORTED,
                                          "backend %s cannot join an NCCL communicator",
                                          ctx->ops->name);
    return ctx_end(out, ctx, st, err, err_bytes);
}

void dfm_ctx_destroy(dfm_ctx_t *ctx) {
    if (ctx == NULL) return;
    ctx->ops->destroy(ctx);
    free(ctx);
}

const char *dfm_ctx_last_error(const dfm_ctx_t *ctx) { return ctx ? ctx->last_error : ""; }
int dfm_ctx_rank(const dfm_ctx_t *ctx) { return ctx ? ctx->rank : -1; }
const dfm_config_t *dfm_ctx_config(const dfm_ctx_t *ctx) { return ctx ? &ctx->config : NULL; }

/* ---- asynchronous errors --------------------------------------------------------- */

/* Fold what the backend has seen into the context; returns it. */
static dfm_status_t poll_async(dfm_ctx_t *ctx) {
    if (ctx->fatal != DFM_SUCCESS) return ctx->fatal;
    dfm_status_t st = ctx->ops->poll_async_error(ctx);
    if (st == DFM_ERROR_TIMEOUT || st == DFM_ERROR_SYSTEM || st == DFM_ERROR_INTERNAL)
        ctx->fatal = st;
    return st;
}

dfm_status_t dfm_get_async_error(dfm_ctx_t *ctx, dfm_status_t *async_error) {
    if (ctx == NULL || async_error == NULL) return DFM_ERROR_INVALID_ARGUMENT;
    *async_error = poll_async(ctx);
    return DFM_SUCCESS;
}

dfm_status_t dfm_ctx_get_path(const dfm_ctx_t *ctx, dfm_path_t *path) {
    if (ctx == NULL || path == NULL) return DFM_ERROR_INVALID_ARGUMENT;
    *path = ctx->path;
    return DFM_SUCCESS;
}

/* A call on a failed context fails fast with the reason. The backend's
 * asynchronous state is read first (a non-blocking read), so a device-side
 * timeout stops the next call even when the caller never polled. */
static dfm_status_t check_usable(dfm_ctx_t *ctx) {
    if (ctx->fatal == DFM_SUCCESS) {
        dfm_status_t st = ctx->ops->peek_fatal ? ctx->ops->peek_fatal(ctx) : DFM_SUCCESS;
        if (st != DFM_SUCCESS) ctx->fatal = st;
    }
    if (ctx->fatal == DFM_SUCCESS) return DFM_SUCCESS;
    return dfm_set_error(ctx, DFM_ERROR_INVALID_USAGE,
                         "context failed earlier (%s); destroy and recreate it",
                         dfm_status_string(ctx->fatal));
}

/* A call that fails after its arguments were accepted leaves the world out
 * of step (peers wait for this rank, or its device queue moved on): the
 * context is unusable from then on. */
static dfm_status_t call_failed(dfm_ctx_t *ctx, dfm_status_t st) {
    if (st != DFM_SUCCESS && ctx->fatal == DFM_SUCCESS) ctx->fatal = st;
    return st;
}

/* ---- argument checks ---------------------------------------------------------- */

#define BAD(...) dfm_set_error(ctx, DFM_ERROR_INVALID_ARGUMENT, __VA_ARGS__)

static dfm_status_t check_tokens(dfm_ctx_t *ctx, const char *what, int num_tokens,
                                 int num_topk) {
    const dfm_config_t *c = &ctx->config;
    if (num_tokens < 0 || num_tokens > c->num_max_dispatch_tokens_per_rank)
        return BAD("%s.num_tokens: %d is outside 0..num_max_dispatch_tokens_per_rank = %d",
                   what, num_tokens, c->num_max_dispatch_tokens_per_rank);
    if (num_topk < 1 || num_topk > c->max_topk)
        return BAD("%s.num_topk: %d is outside 1..max_topk = %d", what, num_topk,
                   c->max_topk);
    return DFM_SUCCESS;
}

static dfm_status_t check_quant(dfm_ctx_t *ctx, const char *what, dfm_quant_t q) {
    if ((int)q < 0 || q >= DFM_NUM_QUANT)
        return BAD("%s.quant: %d is not a dfm_quant_t", what, (int)q);
    if (!(ctx->config.quant_modes & DFM_QUANT_MASK(q)))
        return BAD("%s.quant: mode %d was not in the context's quant_modes 0x%x", what, (int)q,
                   ctx->config.quant_modes);
    return DFM_SUCCESS;
}

#define NEED(ptr, what, field)                                                             \
    do {                                                                                   \
        if ((ptr) == NULL) return BAD("%s." #field ": must not be NULL", what);            \
    } while (0)

/* The CUDA kernels move rows in 16-byte vectors (and TMA needs 16-byte
 * aligned bases): a misaligned pointer would fault on the device, which
 * kills the process's CUDA context, so it is refused here. */
#define ALIGNED(ptr, what, field)                                                          \
    do {                                                                                   \
        if (ctx->config.backend == DFM_BACKEND_CUDA && ((uintptr_t)(ptr) & 15u) != 0)      \
            return BAD("%s." #field ": %p is not 16-byte aligned (the cuda backend needs "  \
                       "it)",                                                              \
                       what, (const void *)(ptr));                                         \
    } while (0)

static dfm_status_t check_moe_args(dfm_ctx_t *ctx, const dfm_moe_args_t *a) {
    const char *w = "args";
    if (a == NULL) return BAD("args: must not be NULL");
    DFM_CHECK(check_tokens(ctx, w, a->num_tokens, a->num_topk));
    DFM_CHECK(check_quant(ctx, w, a->quant));
    if (a->num_tokens > 0) {
        NEED(a->x, w, x);
        NEED(a->topk_idx, w, topk_idx);
        NEED(a->topk_weights, w, topk_weights);
        NEED(a->out, w, out);
    }
    /* Weights are needed even with T = 0: peers' tokens may arrive. */
    NEED(a->w1, w, w1);
    NEED(a->w2, w, w2);
    ALIGNED(a->x, w, x);
    ALIGNED(a->out, w, out);
    ALIGNED(a->w1, w, w1);
    ALIGNED(a->w2, w, w2);
    if (a->quant != DFM_QUANT_BF16) {
        NEED(a->w1_scale, w, w1_scale);
        NEED(a->w2_scale, w, w2_scale);
    }
    return DFM_SUCCESS;
}

static dfm_status_t check_dispatch_args(dfm_ctx_t *ctx, const dfm_dispatch_args_t *a) {
    const char *w = "args";
    if (a == NULL) return BAD("args: must not be NULL");
    DFM_CHECK(check_tokens(ctx, w, a->num_tokens, a->num_topk));
    DFM_CHECK(check_quant(ctx, w, a->quant));
    if (a->num_tokens > 0) {
        NEED(a->x, w, x);
        NEED(a->topk_idx, w, topk_idx);
    }
    NEED(a->recv_x, w, recv_x);
    ALIGNED(a->x, w, x);
    ALIGNED(a->recv_x, w, recv_x);
    NEED(a->recv_scale, w, recv_scale);
    NEED(a->recv_count, w, recv_count);
    NEED(a->layout_range, w, layout_range);
    return DFM_SUCCESS;
}

static dfm_status_t check_combine_args(dfm_ctx_t *ctx, const dfm_combine_args_t *a) {
    const char *w = "args";
    if (a == NULL) return BAD("args: must not be NULL");
    NEED(a->handle, w, handle);
    NEED(a->y, w, y);
    ALIGNED(a->y, w, y);
    const dfm_handle_t *h = a->handle;
    if (ctx->num_pending == 0)
        return dfm_set_error(ctx, DFM_ERROR_INVALID_USAGE,
                             "args.handle: no dispatch is waiting for its combine");
    const dfm_handle_t *want = &ctx->pending[0];
    if (h->seq != want->seq)
        return dfm_set_error(ctx, DFM_ERROR_INVALID_USAGE,
                             "args.handle: seq %llu is not the oldest outstanding dispatch "
                             "(%llu); combines must follow their dispatches in order",
                             (unsigned long long)h->seq, (unsigned long long)want->seq);
    if (h->num_tokens != want->num_tokens || h->num_topk != want->num_topk ||
        h->quant != want->quant)
        return BAD("args.handle: was changed after its dispatch (num_tokens %d, num_topk %d, "
                   "quant %d; the dispatch had %d, %d, %d)",
                   h->num_tokens, h->num_topk, (int)h->quant, want->num_tokens, want->num_topk,
                   (int)want->quant);
    if (h->num_tokens > 0) {
        NEED(a->topk_idx, w, topk_idx);
        NEED(a->topk_weights, w, topk_weights);
        NEED(a->out, w, out);
    }
    ALIGNED(a->out, w, out);
    return DFM_SUCCESS;
}

/* ---- the operator ------------------------------------------------------------- */

dfm_status_t dfm_fused_moe(dfm_ctx_t *ctx, const dfm_moe_args_t *args) {
    if (ctx == NULL) return DFM_ERROR_INVALID_ARGUMENT;
    DFM_CHECK(check_usable(ctx));
    DFM_CHECK(check_moe_args(ctx, args));
    if (ctx->num_pending != 0)
        return dfm_set_error(ctx, DFM_ERROR_INVALID_USAGE,
                             "dfm_fused_moe: %d dispatch(es) still wait for their combine",
                             ctx->num_pending);
    uint64_t seq = ++ctx->num_calls;
    return call_failed(ctx, ctx->ops->fused_moe(ctx, args, seq));
}

dfm_status_t dfm_dispatch(dfm_ctx_t *ctx, const dfm_dispatch_args_t *args,
                          dfm_handle_t *handle) {
    if (ctx == NULL) return DFM_ERROR_INVALID_ARGUMENT;
    DFM_CHECK(check_usable(ctx));
    if (handle == NULL) return BAD("handle: must not be NULL");
    DFM_CHECK(check_dispatch_args(ctx, args));
    if (ctx->num_pending == 2)
        return dfm_set_error(ctx, DFM_ERROR_INVALID_USAGE,
                             "dfm_dispatch: two dispatches already wait for their combines "
                             "(at most two calls may be in flight)");
    uint64_t seq = ++ctx->num_calls;
    dfm_status_t st = ctx->ops->dispatch(ctx, args, seq);
    if (st != DFM_SUCCESS) return call_failed(ctx, st);
    handle->seq = seq;
    handle->num_tokens = args->num_tokens;
    handle->num_topk = args->num_topk;
    handle->quant = args->quant;
    ctx->pending[ctx->num_pending++] = *handle;
    return DFM_SUCCESS;
}

dfm_status_t dfm_combine(dfm_ctx_t *ctx, const dfm_combine_args_t *args) {
    if (ctx == NULL) return DFM_ERROR_INVALID_ARGUMENT;
    DFM_CHECK(check_usable(ctx));
    DFM_CHECK(check_combine_args(ctx, args));
    dfm_status_t st = call_failed(ctx, ctx->ops->combine(ctx, args));
    /* The dispatch is consumed whatever happened: its half is reused. */
    ctx->pending[0] = ctx->pending[1];
    ctx->num_pending--;
    return st;
}
