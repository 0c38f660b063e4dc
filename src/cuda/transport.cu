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
 * non-blocking and polled; the device work of creation runs on a private
 * non-blocking stream that is polled (no device-wide synchronization). On a
 * caller's communicator every step that can fail on one rank alone
 * (allocation, zeroing) comes before one all-gather in which each rank says
 * whether it is ready, so no rank enters a collective setup call that a
 * failed rank will never join (on a blocking communicator NCCL would wait
 * for it without bound; this library cannot bound NCCL's own host calls on
 * a caller's blocking communicator beyond that). On any failure
 * what was made is released, and a communicator this library created is
 * aborted (ncclCommAbort cancels a pending call; its proxy may still wait
 * for peers' connections to close, and ncclCommDestroy waits for the other
 * local ranks' teardown).
 *
 * Known limits (review of 2026-11-26, not yet seen on a GPU): a rank whose
 * creation fails after every collective step succeeded (a later local
 * allocation, or a deadline that ran out between two ranks' ends) aborts
 * while its peers hold complete contexts, and their later ncclCommDestroy
 * may wait for it until its process exits; and ncclCommDestroy itself has
 * no time bound when a peer never tears down. A final bounded "every rank
 * ready" agreement at the end of creation would remove the first.
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
    int pending; /* an NCCL call on comm was still in progress at the deadline */
    void *mem;   /* the symmetric region, ncclMemAlloc */
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
    if (r == ncclInProgress) {
        t->pending = 1;
        return dfm_set_error(ctx, DFM_ERROR_TIMEOUT,
                             "%s: not every rank arrived within timeout_s = %g s (rank %d of %d)%s",
                             what, ctx->config.timeout_s, ctx->rank, ctx->config.num_ranks,
                             t->owns_comm ? "" : "; the call is still pending on the caller's "
                                                 "communicator: abort it (ncclCommAbort)");
    }
    return NCCL_FAIL(ctx, what, r);
}

/* Wait for the private stream's work, bounded by deadline: cudaSuccess,
 * cudaErrorNotReady at the deadline, or the stream's error. */
static cudaError_t stream_settle(cudaStream_t s, double deadline) {
    for (;;) {
        cudaError_t e = cudaStreamQuery(s);
        if (e != cudaErrorNotReady) return e;
        if (dfm_now_s() > deadline) return e;
        sched_yield();
    }
}

/* Every rank's region base, read on the device from the window. */
static __global__ void lsa_bases_kernel(ncclWindow_t win, int num_ranks, char **out) {
    const int r = threadIdx.x;
    if (r < num_ranks) out[r] = (char *)ncclGetPeerPointer(win, 0, r);
}

/*
 * Release what t holds. The device communicator and the window are local
 * objects (their destruction waits for no peer); they are left alone while
 * an NCCL call on the communicator is still pending. A communicator this
 * library created is destroyed, or after a failed creation aborted
 * (ncclCommAbort stops a pending call; see the limits at the top). The region is freed
 * last, except while a call on the caller's communicator may still use it.
 */
static void transport_release(dfm_cuda_transport_t *t, int failed) {
    if (t->comm != NULL && !t->pending) {
        if (t->has_dev_comm) ncclDevCommDestroy(t->comm, &t->dev_comm);
        if (t->win != NULL) ncclCommWindowDeregister(t->comm, t->win);
    }
    /* the order of 2026-11-25's GPU runs on the normal path: the memory,
     * then the communicator */
    if (!failed && t->mem != NULL && !t->pending) {
        ncclMemFree(t->mem);
        t->mem = NULL;
    }
    if (t->comm != NULL && t->owns_comm) {
        if (failed)
            ncclCommAbort(t->comm);
        else
            ncclCommDestroy(t->comm);
    }
    if (t->mem != NULL && !(t->pending && !t->owns_comm)) ncclMemFree(t->mem);
    free(t);
}

void dfm_cuda_transport_destroy(dfm_cuda_transport_t *t) {
    if (t != NULL) transport_release(t, 0);
}

/*
 * For a caller's communicator: one all-gather of (configuration hash, ready)
 * on the private stream s, bounded by deadline (the kernel is polled). A
 * rank whose local setup failed takes part with ready = 0 (quiet: it keeps
 * its own message), so that no rank goes on into the collective window
 * registration, which on a blocking communicator would wait without bound
 * for the failed rank; and all ranks must hold the same configuration (an
 * id carries its hash instead). The staging buffer is freed in stream
 * order: after the all-gather, even one that never completes (no
 * cudaFree, which would wait for it).
 */
static dfm_status_t agree_ranks(dfm_ctx_t *ctx, dfm_cuda_transport_t *t, cudaStream_t s, int ready,
                                double deadline) {
    const int R = ctx->config.num_ranks, quiet = !ready;
    uint64_t mine[2] = {dfm_config_hash(&ctx->config), (uint64_t)(ready != 0)};
    uint64_t all[2 * DFM_MAX_RANKS];
    uint64_t *dbuf = NULL;
    dfm_status_t st = DFM_SUCCESS;
    cudaError_t ce = cudaMallocAsync((void **)&dbuf, (size_t)(R + 1) * sizeof mine, s);
    if (ce != cudaSuccess) dbuf = NULL;
    if (ce == cudaSuccess)
        ce = cudaMemcpyAsync(dbuf + 2 * R, mine, sizeof mine, cudaMemcpyHostToDevice, s);
    if (ce != cudaSuccess) {
        st = quiet ? DFM_ERROR_SYSTEM
                   : dfm_set_error(ctx, DFM_ERROR_SYSTEM, "rank agreement: staging buffer: %s",
                                   cudaGetErrorString(ce));
        goto done;
    }
    if (quiet) {
        ncclResult_t r = nccl_settle(t->comm, ncclAllGather(dbuf + 2 * R, dbuf, 2, ncclUint64, t->comm, s),
                                     deadline);
        t->pending |= r == ncclInProgress;
        st = r == ncclSuccess ? DFM_SUCCESS : DFM_ERROR_SYSTEM;
    } else {
        st = nccl_step(ctx, t, "ncclAllGather (rank agreement)",
                       ncclAllGather(dbuf + 2 * R, dbuf, 2, ncclUint64, t->comm, s), deadline);
    }
    if (st != DFM_SUCCESS) goto done;
    ce = stream_settle(s, deadline);
    if (ce == cudaErrorNotReady) {
        t->pending = 1; /* the all-gather's kernel still waits for a rank */
        st = quiet ? DFM_ERROR_TIMEOUT
                   : dfm_set_error(ctx, DFM_ERROR_TIMEOUT,
                                   "rank agreement: not every rank arrived within timeout_s = %g s "
                                   "(rank %d of %d)%s",
                                   ctx->config.timeout_s, ctx->rank, R,
                                   t->owns_comm ? "" : "; an all-gather is still pending on the "
                                                       "caller's communicator: abort it (ncclCommAbort)");
        goto done;
    }
    if (ce == cudaSuccess) ce = cudaMemcpyAsync(all, dbuf, (size_t)R * sizeof mine, cudaMemcpyDeviceToHost, s);
    if (ce == cudaSuccess) ce = cudaStreamSynchronize(s); /* only the copy is left on s */
    if (ce != cudaSuccess) {
        st = quiet ? DFM_ERROR_SYSTEM
                   : dfm_set_error(ctx, DFM_ERROR_SYSTEM, "rank agreement: %s", cudaGetErrorString(ce));
        goto done;
    }
    for (int r = 0; r < R && !quiet; r++) {
        if (all[2 * r + 1] == 0) {
            st = dfm_set_error(ctx, DFM_ERROR_SYSTEM,
                               "rank %d failed to set up its side of the world (its own error says "
                               "why); rank %d gives up too",
                               r, ctx->rank);
            break;
        }
        if (all[2 * r] != mine[0]) {
            st = dfm_set_error(ctx, DFM_ERROR_MISMATCH,
                               "config: rank %d's configuration differs from rank %d's "
                               "(hash %016llx vs %016llx)",
                               r, ctx->rank, (unsigned long long)all[2 * r],
                               (unsigned long long)mine[0]);
            break;
        }
    }
done:
    if (dbuf != NULL) cudaFreeAsync(dbuf, s);
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
    cudaStream_t s = NULL;
    char **dptr = NULL;
    cudaError_t ce;
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
    }
    if ((ce = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)) != cudaSuccess) {
        s = NULL;
        st = dfm_set_error(ctx, DFM_ERROR_SYSTEM, "cudaStreamCreate for context creation failed: %s",
                           cudaGetErrorString(ce));
        goto fail;
    }

    /* This rank's own setup, nothing collective: the symmetric region, its
     * flags at 0 (which no call uses) before any peer can see it. */
    r = ncclMemAlloc(&t->mem, bytes);
    if (r != ncclSuccess) {
        t->mem = NULL;
        st = dfm_set_error(ctx, DFM_ERROR_OUT_OF_MEMORY,
                           "ncclMemAlloc of the symmetric region (%zu bytes) failed: %s", bytes,
                           ncclGetErrorString(r));
    } else if ((ce = cudaMemsetAsync(t->mem, 0, bytes, s)) != cudaSuccess ||
               (ce = stream_settle(s, deadline)) != cudaSuccess) {
        if (ce == cudaErrorNotReady) t->mem = NULL; /* still being zeroed: leaked, not freed under it */
        st = ce == cudaErrorNotReady
                 ? dfm_set_error(ctx, DFM_ERROR_TIMEOUT,
                                 "zeroing the symmetric region did not finish within timeout_s = %g s",
                                 c->timeout_s)
                 : dfm_set_error(ctx, DFM_ERROR_SYSTEM, "zeroing the symmetric region failed: %s",
                                 cudaGetErrorString(ce));
    }
    /* On the caller's communicator (maybe blocking) every rank says whether
     * it is ready before any collective setup call. A communicator created
     * here is non-blocking: a rank that failed just stays away, and the
     * others' polled calls time out and abort. (No all-gather there: it
     * would make NCCL set up ring buffers this library never uses.) */
    if (st != DFM_SUCCESS) {
        if (!t->owns_comm) { /* tell the peers, keep this rank's own message */
            char why[sizeof ctx->last_error];
            memcpy(why, ctx->last_error, sizeof why);
            (void)agree_ranks(ctx, t, s, 0, deadline);
            memcpy(ctx->last_error, why, sizeof why);
        }
        goto fail;
    }
    if (!t->owns_comm) {
        st = agree_ranks(ctx, t, s, 1, deadline);
        if (st != DFM_SUCCESS) goto fail;
    }

    /* Collective from here on; every rank is known to be ready. */
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

    if ((ce = cudaMallocAsync((void **)&dptr, DFM_MAX_RANKS * sizeof(char *), s)) != cudaSuccess) {
        dptr = NULL;
        st = dfm_set_error(ctx, DFM_ERROR_OUT_OF_MEMORY, "cudaMallocAsync of %zu bytes failed: %s",
                           DFM_MAX_RANKS * sizeof(char *), cudaGetErrorString(ce));
        goto fail;
    }
    lsa_bases_kernel<<<1, DFM_MAX_RANKS, 0, s>>>(t->win, c->num_ranks, dptr);
    if ((ce = cudaGetLastError()) == cudaSuccess && (ce = stream_settle(s, deadline)) == cudaSuccess &&
        (ce = cudaMemcpyAsync(peer, dptr, (size_t)c->num_ranks * sizeof(char *),
                              cudaMemcpyDeviceToHost, s)) == cudaSuccess)
        ce = cudaStreamSynchronize(s); /* only the copy is left on s */
    if (ce != cudaSuccess) {
        st = dfm_set_error(ctx, DFM_ERROR_SYSTEM, "reading the LSA pointers of the window failed: %s",
                           ce == cudaErrorNotReady ? "timed out" : cudaGetErrorString(ce));
        goto fail;
    }
    cudaFreeAsync(dptr, s);
    cudaStreamDestroy(s);
    *out = t;
    return DFM_SUCCESS;

fail:
    /* Nothing here waits: stream-ordered frees and cudaStreamDestroy return
     * at once even with work pending; transport_release aborts. */
    if (dptr != NULL) cudaFreeAsync(dptr, s);
    if (s != NULL) cudaStreamDestroy(s);
    transport_release(t, 1);
    return st;
}

/* Release a transport whose world failed: context creation that fails after
 * the transport was made, or a context whose kernels timed out. Aborts a
 * communicator this library created instead of destroying it, so nothing
 * waits for peers that may be gone. (Declared in backend.cu for now; its
 * place is beside dfm_cuda_transport_destroy in cuda_internal.h.) */
void dfm_cuda_transport_abort(dfm_cuda_transport_t *t) {
    if (t != NULL) transport_release(t, 1);
}
