/*
 * transport.cu - the CUDA backend's one corner that speaks NCCL: the version
 * check, the unique id, joining the world (from an id or a caller's
 * communicator), the symmetric region (ncclMemAlloc +
 * ncclCommWindowRegister(NCCL_WIN_COLL_SYMMETRIC)), the device communicator
 * (ncclDevCommCreate) and the LSA pointers of every rank's region.
 *
 * Whatever C++ NCCL's device headers need stays in this file; the kernels of
 * the other files see plain char * peer bases. No NCCL barrier is used for
 * waits (they spin without bound): the library's own flags bound every wait.
 * Creation is bounded by config.timeout_s: the communicator is created
 * non-blocking and polled, and aborted when a rank never arrives.
 */
#include <nccl.h>
#include <nccl_device.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda_internal.h"

#define DFM_NCCL_MIN_VERSION 22807 /* 2.28.7: the device API with LSA windows */
#define DFM_CUDA_ID_MAGIC 0x31414455434d4644ull /* "DFMCUDA1" */

/* What dfm_unique_id_t carries for the CUDA backend. */
typedef struct {
    uint64_t magic;
    uint64_t config_hash;
    ncclUniqueId nccl;
} cuda_id_t;

struct dfm_cuda_transport {
    ncclComm_t comm;
    int owns_comm;
    void *mem; /* the symmetric region, ncclMemAlloc */
    ncclWindow_t win;
    ncclDevComm dev_comm;
    int has_dev_comm;
};

static_assert(sizeof(cuda_id_t) <= DFM_UNIQUE_ID_BYTES, "id does not fit dfm_unique_id_t");

#define NCCL_FAIL(ctx, call, r)                                                            \
    dfm_set_error(ctx, DFM_ERROR_SYSTEM, "%s failed: %s (%s)", call, ncclGetErrorString(r), \
                  ncclGetLastError(NULL))

static dfm_status_t check_nccl_version(dfm_ctx_t *ctx) {
    int v = 0;
    ncclResult_t r = ncclGetVersion(&v);
    if (r != ncclSuccess) return NCCL_FAIL(ctx, "ncclGetVersion", r);
    if (v < DFM_NCCL_MIN_VERSION)
        return dfm_set_error(ctx, DFM_ERROR_UNSUPPORTED,
                             "NCCL %d.%d.%d is loaded; the cuda backend needs NCCL >= 2.28.7 "
                             "(its device API). Put a newer libnccl.so.2 first (for example "
                             "torch's nvidia/nccl/lib) on LD_LIBRARY_PATH",
                             v / 10000, (v / 100) % 100, v % 100);
    /* The device API's structures (window and communicator layouts, the
     * requirements struct) are compiled in from nccl_device.h: a runtime of
     * another minor release may lay them out differently. */
    if (v / 100 != NCCL_VERSION_CODE / 100)
        return dfm_set_error(ctx, DFM_ERROR_UNSUPPORTED,
                             "NCCL %d.%d.%d is loaded, but the cuda backend was built against "
                             "NCCL %d.%d device headers, whose structures it compiles in; load "
                             "an NCCL %d.%d.x (>= 2.28.7) or rebuild against the loaded one",
                             v / 10000, (v / 100) % 100, v % 100, NCCL_VERSION_CODE / 10000,
                             (NCCL_VERSION_CODE / 100) % 100, NCCL_VERSION_CODE / 10000,
                             (NCCL_VERSION_CODE / 100) % 100);
    return DFM_SUCCESS;
}

dfm_status_t dfm_cuda_transport_unique_id(const dfm_config_t *config, dfm_unique_id_t *id) {
    cuda_id_t cid;
    memset(&cid, 0, sizeof cid);
    int v = 0;
    if (ncclGetVersion(&v) != ncclSuccess || v < DFM_NCCL_MIN_VERSION) return DFM_ERROR_UNSUPPORTED;
    if (ncclGetUniqueId(&cid.nccl) != ncclSuccess) return DFM_ERROR_SYSTEM;
    cid.magic = DFM_CUDA_ID_MAGIC;
    cid.config_hash = dfm_config_hash(config);
    memcpy(id->internal, &cid, sizeof cid);
    return DFM_SUCCESS;
}

/* Wait until the communicator's last operation is done, bounded by deadline.
 * A non-blocking communicator may still be busy after a call returned
 * ncclSuccess, so its state is polled in every case. */
static ncclResult_t nccl_settle(ncclComm_t comm, ncclResult_t r, double deadline) {
    if (r != ncclSuccess && r != ncclInProgress) return r;
    for (;;) {
        if (ncclCommGetAsyncError(comm, &r) != ncclSuccess) return ncclSystemError;
        if (r != ncclInProgress) return r;
        if (dfm_now_s() > deadline) return ncclInProgress;
        sched_yield();
    }
}

/* Fail with the right status: a call still in progress at the deadline is a
 * timeout (some rank never arrived); anything else is a system error. */
static dfm_status_t nccl_step(dfm_ctx_t *ctx, dfm_cuda_transport_t *t, const char *what,
                              ncclResult_t r, double deadline) {
    r = nccl_settle(t->comm, r, deadline);
    if (r == ncclSuccess) return DFM_SUCCESS;
    if (r == ncclInProgress)
        return dfm_set_error(ctx, DFM_ERROR_TIMEOUT,
                             "%s: not every rank arrived within timeout_s = %g s (rank %d of %d)",
                             what, ctx->config.timeout_s, ctx->rank, ctx->config.num_ranks);
    return NCCL_FAIL(ctx, what, r);
}

/* Every rank's region base, read on the device from the window. */
static __global__ void lsa_bases_kernel(ncclWindow_t win, int num_ranks, char **out) {
    const int r = threadIdx.x;
    if (r < num_ranks) out[r] = (char *)ncclGetPeerPointer(win, 0, r);
}

void dfm_cuda_transport_destroy(dfm_cuda_transport_t *t) {
    if (t == NULL) return;
    if (t->comm != NULL) {
        if (t->has_dev_comm) ncclDevCommDestroy(t->comm, &t->dev_comm);
        if (t->win != NULL) ncclCommWindowDeregister(t->comm, t->win);
    }
    if (t->mem != NULL) ncclMemFree(t->mem);
    if (t->comm != NULL && t->owns_comm) ncclCommDestroy(t->comm);
    free(t);
}

/* For a caller's communicator: all ranks must hold the same config. */
static dfm_status_t check_config_agrees(dfm_ctx_t *ctx, dfm_cuda_transport_t *t, double deadline) {
    const int R = ctx->config.num_ranks;
    uint64_t mine = dfm_config_hash(&ctx->config), all[DFM_MAX_RANKS];
    uint64_t *dbuf = NULL;
    cudaStream_t s = NULL;
    dfm_status_t st = DFM_SUCCESS;
    if (cudaMalloc(&dbuf, (size_t)(R + 1) * sizeof(uint64_t)) != cudaSuccess ||
        cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) != cudaSuccess) {
        st = dfm_set_error(ctx, DFM_ERROR_SYSTEM, "cudaMalloc/cudaStreamCreate for the config check failed");
        goto done;
    }
    if (cudaMemcpy(dbuf + R, &mine, sizeof mine, cudaMemcpyHostToDevice) != cudaSuccess) {
        st = dfm_set_error(ctx, DFM_ERROR_SYSTEM, "cudaMemcpy for the config check failed");
        goto done;
    }
    st = nccl_step(ctx, t, "ncclAllGather (config check)",
                   ncclAllGather(dbuf + R, dbuf, 1, ncclUint64, t->comm, s), deadline);
    if (st != DFM_SUCCESS) goto done;
    while (cudaStreamQuery(s) == cudaErrorNotReady) {
        if (dfm_now_s() > deadline) {
            st = dfm_set_error(ctx, DFM_ERROR_TIMEOUT,
                               "config check: not every rank arrived within timeout_s = %g s",
                               ctx->config.timeout_s);
            goto done;
        }
        sched_yield();
    }
    if (cudaMemcpy(all, dbuf, (size_t)R * sizeof(uint64_t), cudaMemcpyDeviceToHost) !=
        cudaSuccess) {
        st = dfm_set_error(ctx, DFM_ERROR_SYSTEM, "cudaMemcpy for the config check failed");
        goto done;
    }
    for (int r = 0; r < R; r++)
        if (all[r] != mine) {
            st = dfm_set_error(ctx, DFM_ERROR_MISMATCH,
                               "config: rank %d's configuration differs from rank %d's "
                               "(hash %016llx vs %016llx)",
                               r, ctx->rank, (unsigned long long)all[r], (unsigned long long)mine);
            break;
        }
done:
    if (s != NULL) cudaStreamDestroy(s);
    if (dbuf != NULL) cudaFree(dbuf);
    return st;
}

dfm_status_t dfm_cuda_transport_create(dfm_ctx_t *ctx, const dfm_unique_id_t *id,
                                       void *nccl_comm, dfm_cuda_transport_t **out,
                                       char *peer[DFM_MAX_RANKS]) {
    const dfm_config_t *c = &ctx->config;
    const double deadline = dfm_now_s() + c->timeout_s;
    const size_t bytes = ctx->layout.region_bytes;
    dfm_status_t st = check_nccl_version(ctx);
    if (st != DFM_SUCCESS) return st;
    dfm_cuda_transport_t *t = (dfm_cuda_transport_t *)calloc(1, sizeof *t);
    if (t == NULL) return dfm_set_error(ctx, DFM_ERROR_OUT_OF_MEMORY, "out of host memory");
    char **dptr = NULL;
    ncclResult_t r;

    if (id != NULL) {
        cuda_id_t cid;
        memcpy(&cid, id->internal, sizeof cid);
        if (cid.magic != DFM_CUDA_ID_MAGIC) {
            st = dfm_set_error(ctx, DFM_ERROR_MISMATCH,
                               "id: not a cuda-backend id (made for another backend, or corrupt)");
            goto fail;
        }
        if (cid.config_hash != dfm_config_hash(c)) {
            st = dfm_set_error(ctx, DFM_ERROR_MISMATCH,
                               "config: differs from the configuration the id was made for "
                               "(rank %d)", ctx->rank);
            goto fail;
        }
        ncclConfig_t nc = NCCL_CONFIG_INITIALIZER;
        nc.blocking = 0;
        r = ncclCommInitRankConfig(&t->comm, c->num_ranks, cid.nccl, ctx->rank, &nc);
        if (r != ncclSuccess && r != ncclInProgress) {
            st = NCCL_FAIL(ctx, "ncclCommInitRankConfig", r);
            goto fail;
        }
        t->owns_comm = 1;
        st = nccl_step(ctx, t, "ncclCommInitRankConfig", r, deadline);
        if (st != DFM_SUCCESS) goto fail;
    } else {
        int n = 0, rank = 0, dev = 0;
        t->comm = (ncclComm_t)nccl_comm;
        if (ncclCommCount(t->comm, &n) != ncclSuccess || ncclCommUserRank(t->comm, &rank) != ncclSuccess ||
            ncclCommCuDevice(t->comm, &dev) != ncclSuccess) {
            st = dfm_set_error(ctx, DFM_ERROR_INVALID_ARGUMENT, "nccl_comm: not a usable communicator");
            goto fail;
        }
        if (n != c->num_ranks) {
            st = dfm_set_error(ctx, DFM_ERROR_INVALID_ARGUMENT,
                               "nccl_comm: has %d ranks, config.num_ranks is %d", n, c->num_ranks);
            goto fail;
        }
        ctx->rank = rank;
        if (cudaSetDevice(dev) != cudaSuccess) {
            st = dfm_set_error(ctx, DFM_ERROR_SYSTEM, "cudaSetDevice(%d) failed", dev);
            goto fail;
        }
        st = check_config_agrees(ctx, t, deadline);
        if (st != DFM_SUCCESS) goto fail;
    }

    r = ncclMemAlloc(&t->mem, bytes);
    if (r != ncclSuccess) {
        st = dfm_set_error(ctx, DFM_ERROR_OUT_OF_MEMORY,
                           "ncclMemAlloc of the symmetric region (%zu bytes) failed: %s", bytes,
                           ncclGetErrorString(r));
        goto fail;
    }
    /* Flags start at 0, which no call uses; zeroed before any peer can see it
     * (registration below is collective). */
    if (cudaMemset(t->mem, 0, bytes) != cudaSuccess || cudaDeviceSynchronize() != cudaSuccess) {
        st = dfm_set_error(ctx, DFM_ERROR_SYSTEM, "zeroing the symmetric region failed");
        goto fail;
    }
    st = nccl_step(ctx, t, "ncclCommWindowRegister",
                   ncclCommWindowRegister(t->comm, t->mem, bytes, &t->win, NCCL_WIN_COLL_SYMMETRIC),
                   deadline);
    if (st != DFM_SUCCESS) goto fail;

    {
        ncclDevCommRequirements reqs;
        memset(&reqs, 0, sizeof reqs);
        st = nccl_step(ctx, t, "ncclDevCommCreate", ncclDevCommCreate(t->comm, &reqs, &t->dev_comm),
                       deadline);
        if (st != DFM_SUCCESS) goto fail;
        t->has_dev_comm = 1;
    }
    if (t->dev_comm.lsaSize != c->num_ranks) {
        st = dfm_set_error(ctx, DFM_ERROR_UNSUPPORTED,
                           "the %d ranks are not one NVLink (LSA) domain (LSA team of %d); "
                           "multi-node transport (NCCL GIN) is not built yet",
                           c->num_ranks, t->dev_comm.lsaSize);
        goto fail;
    }

    if (cudaMalloc(&dptr, DFM_MAX_RANKS * sizeof(char *)) != cudaSuccess) {
        st = dfm_set_error(ctx, DFM_ERROR_OUT_OF_MEMORY, "cudaMalloc of %zu bytes failed",
                           DFM_MAX_RANKS * sizeof(char *));
        goto fail;
    }
    lsa_bases_kernel<<<1, DFM_MAX_RANKS>>>(t->win, c->num_ranks, dptr);
    if (cudaGetLastError() != cudaSuccess ||
        cudaMemcpy(peer, dptr, (size_t)c->num_ranks * sizeof(char *), cudaMemcpyDeviceToHost) !=
            cudaSuccess) {
        st = dfm_set_error(ctx, DFM_ERROR_SYSTEM, "reading the LSA pointers of the window failed");
        goto fail;
    }
    cudaFree(dptr);
    *out = t;
    return DFM_SUCCESS;

fail:
    if (dptr != NULL) cudaFree(dptr);
    if (st == DFM_ERROR_TIMEOUT && t->owns_comm && t->comm != NULL) {
        ncclCommAbort(t->comm); /* peers may never come: do not wait for them */
        t->comm = NULL;
        t->win = NULL;
        t->has_dev_comm = 0;
    }
    dfm_cuda_transport_destroy(t);
    return st;
}
