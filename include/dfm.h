/*
 * dfm.h - DeepFusedMoE public C API.
 *
 * One Mixture-of-Experts layer of an expert-parallel model as one collective
 * operator: dispatch tokens to the ranks that hold their experts, run the
 * experts' quantized grouped GEMMs with SwiGLU, combine the results back with
 * their top-k weights. The exact semantics are ../shared/SPEC.md section 3.
 *
 * Model of use (NCCL's): one context per rank. Rank 0 makes a unique id with
 * dfm_get_unique_id(), hands it to every rank by any means (a file, a socket,
 * torch.distributed), and every rank calls dfm_ctx_create() with the same
 * config, the id and its own rank. Ranks may be threads of one process or
 * separate processes. Every operator call is collective: all ranks of the world
 * call it with the same quantization mode; the token count T may differ.
 *
 * Layouts (row-major, element types in brackets):
 *   x             [T][H]       bf16 (uint16_t bit patterns)
 *   topk_idx      [T][K]       int64, -1 = unused slot
 *   topk_weights  [T][K]       float
 *   w1            [G][2I][H]   codes (fp8 e4m3 / int8 / bf16), each of the 2I
 *                              output channels K-contiguous, channels in the
 *                              permuted gate/up order of SPEC section 4; as the
 *                              seed's logical [G][H][2I] this is strides
 *                              (2I*H, 1, H)
 *   w1_scale      [G][2I]      float, permuted like w1 (ones in bf16 mode)
 *   w2            [G][H][I]    codes, out x in (K-contiguous)
 *   w2_scale      [G][H]       float
 *   out           [T][H]       bf16
 * G = E / R local experts; local expert g of rank r is global expert r*G + g.
 *
 * Streams (CUDA): a context keeps its sequence numbers and queue of pending
 * dispatches in device memory, so all calls on one context must be ordered
 * on the device: issue them on one stream, or order the streams yourself.
 *
 * Errors: every call returns a dfm_status_t. dfm_ctx_last_error() gives the
 * message of the last failure on that context, naming the argument, the rule
 * and the value. Invalid arguments are rejected before any work starts and
 * leave outputs untouched. Faults seen while the operation runs (an expert id
 * outside [-1, E), a peer that never arrives) become the context's
 * asynchronous error, read with dfm_get_async_error(). The library never
 * calls exit() or abort().
 */
#ifndef DFM_H
#define DFM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DFM_VERSION_MAJOR 0
#define DFM_VERSION_MINOR 2
#define DFM_VERSION_PATCH 0
#define DFM_VERSION (DFM_VERSION_MAJOR * 10000 + DFM_VERSION_MINOR * 100 + DFM_VERSION_PATCH)

/* Limits of SPEC section 6. */
#define DFM_MAX_TOKENS 1024
#define DFM_MIN_HIDDEN 256
#define DFM_MAX_HIDDEN 16384
#define DFM_MAX_INTER 8192 /* 2*I <= 16384 */
#define DFM_MAX_TOPK 16
#define DFM_MAX_EXPERTS 1024
#define DFM_MAX_RANKS 8

typedef enum {
    DFM_SUCCESS = 0,
    DFM_ERROR_INVALID_ARGUMENT = 1, /* a host-checkable argument is wrong */
    DFM_ERROR_INVALID_USAGE = 2,    /* wrong order of calls, context failed */
    DFM_ERROR_OUT_OF_MEMORY = 3,    /* a buffer could not be allocated */
    DFM_ERROR_TIMEOUT = 4,          /* a peer did not arrive in time */
    DFM_ERROR_MISMATCH = 5,         /* ranks disagree: config, id, mode */
    DFM_ERROR_INVALID_EXPERT = 6,   /* async: expert id outside [-1, E) */
    DFM_ERROR_UNSUPPORTED = 7,      /* backend not built, device too old */
    DFM_ERROR_SYSTEM = 8,           /* OS, CUDA or NCCL call failed */
    DFM_ERROR_INTERNAL = 9,
    DFM_NUM_STATUS
} dfm_status_t;

typedef enum {
    DFM_QUANT_FP8 = 0,  /* OCP E4M3 (fn), per-token / per-channel fp32 scales */
    DFM_QUANT_INT8 = 1, /* symmetric int8, clamp to [-127, 127] */
    DFM_QUANT_BF16 = 2, /* no quantization, bf16 operands */
    DFM_NUM_QUANT
} dfm_quant_t;

/* Bit mask of modes a context must size its buffers for. */
#define DFM_QUANT_MASK(q) (1u << (unsigned)(q))
#define DFM_QUANT_MASK_ALL 7u

typedef enum {
    DFM_BACKEND_CPU = 0,  /* ranks as threads or processes over POSIX shm */
    DFM_BACKEND_CUDA = 1, /* ranks as GPUs over NCCL's device API */
    DFM_NUM_BACKEND
} dfm_backend_t;

/*
 * How dfm_fused_moe runs on the CUDA backend (the CPU backend has one way).
 * Part of the configuration, so every rank of a context takes the same one.
 * The persistent kernel is the faster at decode sizes; the pipeline of
 * launches can be a few percent faster on prefill-sized calls (hundreds of
 * rows per expert; BENCHMARKS.md), so a context sized for those may ask for it.
 */
typedef enum {
    DFM_PATH_DEFAULT = 0,      /* the fused kernel, unless DFM_CUDA_FUSED=0 in the environment */
    DFM_PATH_FUSED_KERNEL = 1, /* one persistent kernel per call (DFM_CUDA_FUSED ignored) */
    DFM_PATH_PIPELINE = 2,     /* dispatch, GEMM and combine launches (DFM_CUDA_FUSED ignored) */
    DFM_NUM_PATH
} dfm_path_t;

/* Opaque world id, copied by value between ranks (NCCL style). */
#define DFM_UNIQUE_ID_BYTES 256
typedef struct {
    char internal[DFM_UNIQUE_ID_BYTES];
} dfm_unique_id_t;

/*
 * Configuration, fixed for the life of a context. Identical on every rank
 * (a hash of it travels in the unique id; a rank that differs is refused).
 * Start from DFM_CONFIG_INIT and set the fields: the size and version let
 * later releases append fields without breaking callers.
 */
typedef struct {
    size_t size;          /* sizeof(dfm_config_t) */
    unsigned int version; /* DFM_VERSION */
    dfm_backend_t backend;
    int num_ranks;                        /* R, 1..8 */
    int hidden;                           /* H, 256..16384, H % 128 == 0 */
    int inter;                            /* I, I % 64 == 0, 2I <= 16384 */
    int num_experts;                      /* E, <= 1024, E % R == 0 */
    int max_topk;                         /* largest K of any call, 1..16 */
    int num_max_dispatch_tokens_per_rank; /* largest T of any call, 1..1024 */
    unsigned int quant_modes;             /* DFM_QUANT_MASK(...) bits */
    double timeout_s;                     /* bound on every wait on a peer */
    int device;                           /* CUDA device ordinal; -1: current */
    dfm_path_t path;                      /* dfm_fused_moe on CUDA (since 0.2) */
} dfm_config_t;

#define DFM_CONFIG_INIT                                                                   \
    {                                                                                     \
        sizeof(dfm_config_t), DFM_VERSION, DFM_BACKEND_CPU, 1, 0, 0, 0, 8, 0,             \
            DFM_QUANT_MASK_ALL, 30.0, -1, DFM_PATH_DEFAULT                                \
    }

typedef struct dfm_ctx dfm_ctx_t;

/* Arguments of the fused operator; see the layouts above. */
typedef struct {
    const void *x;                /* [T][H] bf16 */
    const int64_t *topk_idx;      /* [T][K] */
    const float *topk_weights;    /* [T][K] */
    int num_tokens;               /* T, 0..num_max */
    int num_topk;                 /* K, 1..max_topk */
    dfm_quant_t quant;            /* must be in the config's quant_modes */
    const void *w1;               /* [G][2I][H] codes, permuted */
    const float *w1_scale;        /* [G][2I]; NULL allowed in bf16 mode */
    const void *w2;               /* [G][H][I] codes */
    const float *w2_scale;        /* [G][H]; NULL allowed in bf16 mode */
    void *out;                    /* [T][H] bf16 */
    int32_t *ep_recv_count;       /* optional [G*R]: g*R+src = tokens from src */
    void *stream;                 /* cudaStream_t (CUDA), ignored on CPU */
} dfm_moe_args_t;

/*
 * What combine needs from its dispatch: the call's sequence number and the
 * shape. Plain data, returned by dfm_dispatch() and passed to dfm_combine().
 * The row -> (source rank, token) map itself stays inside the context, in
 * the half of the buffer the call used; at most two dispatches may be
 * outstanding (SPEC section 8).
 */
typedef struct {
    uint64_t seq;
    int num_tokens;
    int num_topk;
    dfm_quant_t quant;
} dfm_handle_t;

/* Arguments of the separate dispatch (SPEC section 5). */
typedef struct {
    const void *x;             /* [T][H] bf16 */
    const int64_t *topk_idx;   /* [T][K] */
    int num_tokens;
    int num_topk;
    dfm_quant_t quant;
    void *recv_x;              /* [G][R*num_max][H] codes, packed per expert */
    float *recv_scale;         /* [G][R*num_max]; 1.0 in bf16 mode */
    int32_t *recv_count;       /* [G] */
    int64_t *layout_range;     /* [G][R]: begin << 32 | count */
    int32_t *recv_src_info;    /* optional [G][R*num_max]: src*num_max + token */
    int32_t *ep_recv_count;    /* optional [G*R] */
    void *stream;
} dfm_dispatch_args_t;

/* Arguments of the separate combine. */
typedef struct {
    const void *y;              /* [G][R*num_max][H] bf16, recv_x's row order */
    const int64_t *topk_idx;    /* [T][K], the same as at dispatch */
    const float *topk_weights;  /* [T][K] */
    const dfm_handle_t *handle; /* from the matching dfm_dispatch() */
    void *out;                  /* [T][H] bf16 */
    void *stream;
} dfm_combine_args_t;

/* ---- status and version ------------------------------------------------ */

/* A constant string naming the status ("invalid argument", ...). */
const char *dfm_status_string(dfm_status_t status);

/* DFM_VERSION of the library that is loaded. */
int dfm_get_version(void);

/* Whether a backend was built into this library (1) or not (0). */
int dfm_backend_available(dfm_backend_t backend);

/* ---- world creation ---------------------------------------------------- */

/*
 * Check a config against the limits of SPEC section 6 without creating
 * anything: DFM_SUCCESS, or DFM_ERROR_INVALID_ARGUMENT with a message in
 * err (optional, err_bytes long) naming the field, the rule and the value.
 */
dfm_status_t dfm_config_check(const dfm_config_t *config, char *err, size_t err_bytes);

/*
 * Make a fresh world id for `config` on one rank; share it with all ranks.
 * CPU: names a new shared-memory segment (random, unguessable) and carries a
 * random token and a hash of the config. CUDA: wraps an NCCL unique id.
 */
dfm_status_t dfm_get_unique_id(const dfm_config_t *config, dfm_unique_id_t *id);

/*
 * Join the world as `rank` (0..R-1). Collective: returns when all R ranks
 * have joined, or DFM_ERROR_TIMEOUT after config->timeout_s if one never
 * does (no segment or buffer is left behind). A config that differs from
 * the one the id was made for gives DFM_ERROR_MISMATCH. Allocates every
 * buffer the context will ever use; DFM_ERROR_OUT_OF_MEMORY names the bytes.
 * On failure *ctx is NULL and `err` (optional, err_bytes long) holds the
 * message.
 */
dfm_status_t dfm_ctx_create(dfm_ctx_t **ctx, const dfm_config_t *config,
                            const dfm_unique_id_t *id, int rank, char *err,
                            size_t err_bytes);

/*
 * CUDA only: join the world of an existing NCCL communicator (a
 * ncclComm_t passed as void *). Collective over that communicator; its
 * size must equal config->num_ranks. The communicator must outlive the
 * context.
 */
dfm_status_t dfm_ctx_create_from_nccl(dfm_ctx_t **ctx, const dfm_config_t *config,
                                      void *nccl_comm, char *err, size_t err_bytes);

/* Free the context. Not collective; pending device work must be complete. */
void dfm_ctx_destroy(dfm_ctx_t *ctx);

/* The message of the last failed call on ctx ("" if none). */
const char *dfm_ctx_last_error(const dfm_ctx_t *ctx);

int dfm_ctx_rank(const dfm_ctx_t *ctx);
const dfm_config_t *dfm_ctx_config(const dfm_ctx_t *ctx);

/*
 * Bytes of buffer memory (per rank) a configuration needs: its region of
 * the symmetric heap (receive and combine slots, both halves, flags) plus
 * private scratch (an upper bound over the backends). On the CPU backend
 * the ranks of one world share one segment of R regions. Creation fails
 * with the figure when the memory cannot be had.
 */
dfm_status_t dfm_buffer_size_hint(const dfm_config_t *config, size_t *bytes);

/* ---- asynchronous errors ----------------------------------------------- */

/*
 * The context's asynchronous error: DFM_SUCCESS; DFM_ERROR_TIMEOUT (fatal:
 * every later call fails fast with DFM_ERROR_INVALID_USAGE until the
 * context is recreated; calls notice it without this poll);
 * DFM_ERROR_INVALID_EXPERT (some slot of some rank named an expert outside
 * [-1, E); the slot was dropped; every rank reports it; cleared by this
 * call); DFM_ERROR_MISMATCH (a peer called with another quantization mode;
 * CPU backend; cleared by this call). On CUDA it reflects device work that
 * has completed; it does not synchronize. Details in dfm_ctx_last_error().
 */
dfm_status_t dfm_get_async_error(dfm_ctx_t *ctx, dfm_status_t *async_error);

/*
 * How dfm_fused_moe runs on this context, as creation resolved config.path:
 * DFM_PATH_FUSED_KERNEL or DFM_PATH_PIPELINE (the CPU backend's one way).
 * Not collective, no synchronization.
 */
dfm_status_t dfm_ctx_get_path(const dfm_ctx_t *ctx, dfm_path_t *path);

/* ---- the operator ------------------------------------------------------ */

/*
 * The fused MoE layer: out[t] = sum_k w[t,k] * FFN_{idx[t,k]}(x[t]) per SPEC
 * section 3. Collective. Stream-ordered on CUDA (returns once enqueued,
 * capturable in a CUDA graph); on CPU returns when done. Allocates nothing.
 */
dfm_status_t dfm_fused_moe(dfm_ctx_t *ctx, const dfm_moe_args_t *args);

/*
 * Dispatch only: each rank receives, per local expert, the packed rows of
 * the tokens routed to it (ordered by source rank, then token). Fills
 * *handle for the matching dfm_combine(). Collective.
 */
dfm_status_t dfm_dispatch(dfm_ctx_t *ctx, const dfm_dispatch_args_t *args,
                          dfm_handle_t *handle);

/*
 * Combine only: sends y's rows back to their home ranks, where
 * out[t] = sum_k w[t,k] * y(row of (t, idx[t,k])) in fp32, cast to bf16.
 * Collective. Calls must pair with dispatches in order (at most two
 * outstanding).
 */
dfm_status_t dfm_combine(dfm_ctx_t *ctx, const dfm_combine_args_t *args);

/* ---- weights ----------------------------------------------------------- */

/*
 * Checkpoint w13 [G][2I][H] bf16 (gate rows 0..I-1, then up rows) to the
 * operator's w1 [G][2I][H] codes in the permuted channel order and
 * w1_scale [G][2I]: per output channel quantization over its H values
 * (SPEC 3.1). Permuted channel t*128 + h*64 + c holds original channel
 * h*I + t*64 + c. code_bytes of w1: 1 (fp8, int8) or 2 (bf16).
 */
dfm_status_t dfm_weights_prepare_w13(const uint16_t *w13, int num_local_experts, int hidden,
                                     int inter, dfm_quant_t quant, void *w1, float *w1_scale);

/* Checkpoint w2 [G][H][I] bf16 to codes [G][H][I] and scales [G][H]. */
dfm_status_t dfm_weights_prepare_w2(const uint16_t *w2, int num_local_experts, int hidden,
                                    int inter, dfm_quant_t quant, void *w2_out,
                                    float *w2_scale);

/* Original channel that permuted channel p of w1 holds (SPEC section 4). */
int dfm_permuted_channel_source(int p, int inter);

#ifdef __cplusplus
}
#endif

#endif /* DFM_H */
