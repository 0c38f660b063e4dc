/*
 * world.c - bootstrap of the CPU backend's world (SPEC section 9).
 *
 * The unique id names a shared-memory segment (random, unguessable) and
 * carries a random token and a hash of the configuration. Rank 0 creates the
 * segment (O_CREAT | O_EXCL, mode 0600), sizes it and publishes a header;
 * the other ranks open it with retries until the timeout, check the header
 * against their id and config, and count themselves in. The rank that
 * completes the count unlinks the name, so nothing outside the world can
 * open it afterwards. If a rank never arrives, every waiting rank fails with
 * a timeout and rank 0 unlinks the name.
 *
 * Segment: [header, 4 KiB][region of rank 0]...[region of rank R-1].
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cpu/cpu.h"

#define CPU_ID_MAGIC 0x43464d44u  /* "DMFC" */
#define CPU_SEG_MAGIC 0x47455344u /* "DSEG" */
#define CPU_HEADER_BYTES 4096u
#define CPU_TOKEN_BYTES 16

typedef struct {
    uint32_t magic;
    uint32_t backend;
    uint64_t config_hash;
    uint8_t token[CPU_TOKEN_BYTES];
    char shm_name[48];
} cpu_id_t;

typedef struct {
    _Atomic uint32_t ready; /* 1 once rank 0 has filled the header */
    uint32_t magic;
    uint64_t config_hash;
    uint64_t segment_bytes;
    uint8_t token[CPU_TOKEN_BYTES];
    _Atomic int32_t num_attached; /* CPU_WORLD_ABANDONED once a rank gave up */
    _Atomic int32_t joined[DFM_MAX_RANKS];
} cpu_header_t;

_Static_assert(sizeof(cpu_id_t) <= DFM_UNIQUE_ID_BYTES, "cpu id too large");
_Static_assert(sizeof(cpu_header_t) <= CPU_HEADER_BYTES, "cpu header too large");

dfm_status_t cpu_get_unique_id(const dfm_config_t *config, dfm_unique_id_t *id) {
    cpu_id_t cid;
    uint8_t rnd[16];
    memset(&cid, 0, sizeof cid);
    if (dfm_random_bytes(cid.token, sizeof cid.token) != 0 ||
        dfm_random_bytes(rnd, sizeof rnd) != 0)
        return DFM_ERROR_SYSTEM;
    cid.magic = CPU_ID_MAGIC;
    cid.backend = DFM_BACKEND_CPU;
    cid.config_hash = dfm_config_hash(config);
    char *p = cid.shm_name + snprintf(cid.shm_name, sizeof cid.shm_name, "/dfm-");
    for (size_t i = 0; i < sizeof rnd; i++) p += sprintf(p, "%02x", rnd[i]);
    memcpy(id->internal, &cid, sizeof cid);
    return DFM_SUCCESS;
}

static void nap(void) {
    struct timespec ts = {0, 200000}; /* 0.2 ms */
    nanosleep(&ts, NULL);
}

dfm_status_t cpu_wait_flag(dfm_ctx_t *ctx, _Atomic uint64_t *flag, uint64_t seq,
                           double deadline, const char *what, int peer) {
    for (unsigned spins = 0;; spins++) {
        if (atomic_load_explicit(flag, memory_order_acquire) == seq) return DFM_SUCCESS;
        /* Ranks may outnumber cores: give the peer the CPU. */
        if (spins < 64)
            sched_yield();
        else
            nap();
        if ((spins & 15u) == 0 && dfm_now_s() > deadline)
            return dfm_set_error(ctx, DFM_ERROR_TIMEOUT,
                                 "rank %d: timed out after %.3g s waiting for rank %d's %s "
                                 "(call %llu); the context is unusable, recreate it",
                                 ctx->rank, ctx->config.timeout_s, peer, what,
                                 (unsigned long long)seq);
    }
}

/* Map the header of an existing segment once rank 0 has sized it. */
static dfm_status_t open_segment(dfm_ctx_t *ctx, const cpu_id_t *cid, double deadline,
                                 int *fd_out) {
    for (;;) {
        int fd = shm_open(cid->shm_name, O_RDWR, 0);
        if (fd >= 0) {
            struct stat st;
            if (fstat(fd, &st) == 0 && (size_t)st.st_size >= CPU_HEADER_BYTES) {
                *fd_out = fd;
                return DFM_SUCCESS;
            }
            close(fd);
        } else if (errno != ENOENT) {
            return dfm_set_error(ctx, DFM_ERROR_SYSTEM, "rank %d: shm_open(%s): %s", ctx->rank,
                                 cid->shm_name, strerror(errno));
        }
        if (dfm_now_s() > deadline)
            return dfm_set_error(ctx, DFM_ERROR_TIMEOUT,
                                 "rank %d: the world's segment %s did not appear within %.3g s "
                                 "(rank 0 never arrived, or the id is stale)",
                                 ctx->rank, cid->shm_name, ctx->config.timeout_s);
        nap();
    }
}

static dfm_status_t alloc_scratch(dfm_ctx_t *ctx) {
    dfm_cpu_t *c = cpu_of(ctx);
    const dfm_layout_t *L = &ctx->layout;
    size_t M = (size_t)L->num_max, I = (size_t)L->inter, H = (size_t)L->hidden;
    c->x_codes = malloc(M * L->row_bytes);
    c->x_scale = malloc(M * sizeof(float));
    c->send_counts = malloc((size_t)L->num_ranks * (size_t)L->num_local_experts * sizeof(int32_t));
    c->h = malloc(2 * I * sizeof(float));
    c->act = malloc(I * sizeof(float));
    c->act_codes = malloc(I * 2);
    c->y = malloc(H * sizeof(uint16_t));
    c->acc = malloc(H * sizeof(float));
    for (int i = 0; i < 256; i++) c->e4m3_value[i] = dfm_e4m3_to_f32((uint8_t)i);
    if (!c->x_codes || !c->x_scale || !c->send_counts || !c->h || !c->act || !c->act_codes ||
        !c->y || !c->acc)
        return dfm_set_error(ctx, DFM_ERROR_OUT_OF_MEMORY, "rank %d: out of host memory for "
                             "scratch buffers", ctx->rank);
    return DFM_SUCCESS;
}

static void free_scratch(dfm_cpu_t *c) {
    free(c->x_codes);
    free(c->x_scale);
    free(c->send_counts);
    free(c->h);
    free(c->act);
    free(c->act_codes);
    free(c->y);
    free(c->acc);
}

#define CPU_WORLD_ABANDONED (-1)

/*
 * Count this rank in and wait for the others. The count and the decision to
 * give up are one atomic word: once it reaches R nobody can abandon the
 * world, and once a rank has abandoned it (after its timeout) nobody can
 * complete it, so a late rank is refused instead of joining a dead world.
 */
static dfm_status_t join_world(dfm_ctx_t *ctx, cpu_header_t *hdr, const char *name,
                               double deadline) {
    int R = ctx->config.num_ranks;
    int32_t cur = atomic_load(&hdr->num_attached);
    do {
        if (cur == CPU_WORLD_ABANDONED)
            return dfm_set_error(ctx, DFM_ERROR_TIMEOUT,
                                 "rank %d: the world of segment %s was abandoned by a rank that "
                                 "timed out; make a new id",
                                 ctx->rank, name);
    } while (!atomic_compare_exchange_weak(&hdr->num_attached, &cur, cur + 1));
    if (cur + 1 == R) shm_unlink(name);
    for (;;) {
        cur = atomic_load(&hdr->num_attached);
        if (cur == R) return DFM_SUCCESS;
        if (cur == CPU_WORLD_ABANDONED)
            return dfm_set_error(ctx, DFM_ERROR_TIMEOUT,
                                 "rank %d: another rank gave up waiting for the world", ctx->rank);
        if (dfm_now_s() > deadline &&
            atomic_compare_exchange_strong(&hdr->num_attached, &cur, CPU_WORLD_ABANDONED)) {
            shm_unlink(name); /* may be gone already */
            return dfm_set_error(ctx, DFM_ERROR_TIMEOUT,
                                 "rank %d: only %d of %d ranks joined within %.3g s", ctx->rank,
                                 (int)cur, R, ctx->config.timeout_s);
        }
        nap();
    }
}

dfm_status_t cpu_create(dfm_ctx_t *ctx, const dfm_unique_id_t *id) {
    cpu_id_t cid;
    memcpy(&cid, id->internal, sizeof cid);
    const dfm_config_t *cfg = &ctx->config;
    int R = cfg->num_ranks, rank = ctx->rank, fd = -1;
    double deadline = dfm_now_s() + cfg->timeout_s;
    dfm_status_t st = DFM_SUCCESS;

    if (cid.magic != CPU_ID_MAGIC || cid.backend != DFM_BACKEND_CPU)
        return dfm_set_error(ctx, DFM_ERROR_INVALID_ARGUMENT,
                             "id: not a cpu-backend id from dfm_get_unique_id()");
    cid.shm_name[sizeof cid.shm_name - 1] = '\0';
    if (cid.config_hash != dfm_config_hash(cfg))
        return dfm_set_error(ctx, DFM_ERROR_MISMATCH,
                             "rank %d: config differs from the one the id was made for "
                             "(hash %016llx, id has %016llx)",
                             rank, (unsigned long long)dfm_config_hash(cfg),
                             (unsigned long long)cid.config_hash);

    dfm_cpu_t *c = calloc(1, sizeof *c);
    if (c == NULL) return dfm_set_error(ctx, DFM_ERROR_OUT_OF_MEMORY, "out of host memory");
    ctx->impl = c;
    c->region0 = CPU_HEADER_BYTES;
    c->segment_bytes = CPU_HEADER_BYTES + (size_t)R * ctx->layout.region_bytes;
    DFM_CHECK_GOTO(alloc_scratch(ctx), st, fail);

    if (rank == 0) {
        fd = shm_open(cid.shm_name, O_RDWR | O_CREAT | O_EXCL, 0600);
        if (fd < 0) {
            st = dfm_set_error(ctx, errno == EEXIST ? DFM_ERROR_INVALID_USAGE : DFM_ERROR_SYSTEM,
                               "rank 0: shm_open(%s, O_CREAT|O_EXCL): %s%s", cid.shm_name,
                               strerror(errno),
                               errno == EEXIST ? " (the id was used already: make a new one)"
                                               : "");
            goto fail;
        }
        /* Reserve the pages now: a full /dev/shm must fail here with the
         * figure, not raise SIGBUS at the first store of a later call. */
        int rc = ftruncate(fd, (off_t)c->segment_bytes) != 0 ? errno
                 : posix_fallocate(fd, 0, (off_t)c->segment_bytes);
        if (rc != 0) {
            st = dfm_set_error(ctx, DFM_ERROR_OUT_OF_MEMORY,
                               "rank 0: cannot reserve the %zu-byte shared segment (%d ranks x "
                               "%zu bytes, see dfm_buffer_size_hint): %s",
                               c->segment_bytes, R, ctx->layout.region_bytes, strerror(rc));
            shm_unlink(cid.shm_name);
            goto fail;
        }
    } else {
        DFM_CHECK_GOTO(open_segment(ctx, &cid, deadline, &fd), st, fail);
    }

    c->base = mmap(NULL, c->segment_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (c->base == MAP_FAILED) {
        c->base = NULL;
        st = dfm_set_error(ctx, DFM_ERROR_OUT_OF_MEMORY, "rank %d: mmap of %zu bytes: %s", rank,
                           c->segment_bytes, strerror(errno));
        if (rank == 0) shm_unlink(cid.shm_name);
        goto fail;
    }
    close(fd);
    fd = -1;

    cpu_header_t *hdr = (cpu_header_t *)(void *)c->base;
    if (rank == 0) {
        /* Fresh pages are zero: every flag starts at 0, which no call uses. */
        hdr->magic = CPU_SEG_MAGIC;
        hdr->config_hash = cid.config_hash;
        hdr->segment_bytes = c->segment_bytes;
        memcpy(hdr->token, cid.token, sizeof cid.token);
        atomic_store_explicit(&hdr->ready, 1u, memory_order_release);
    } else {
        while (atomic_load_explicit(&hdr->ready, memory_order_acquire) != 1u) {
            if (dfm_now_s() > deadline) {
                st = dfm_set_error(ctx, DFM_ERROR_TIMEOUT,
                                   "rank %d: segment %s never became ready", rank,
                                   cid.shm_name);
                goto fail;
            }
            nap();
        }
        if (hdr->magic != CPU_SEG_MAGIC || memcmp(hdr->token, cid.token, sizeof cid.token) ||
            hdr->config_hash != cid.config_hash || hdr->segment_bytes != c->segment_bytes) {
            st = dfm_set_error(ctx, DFM_ERROR_MISMATCH,
                               "rank %d: segment %s belongs to another world or config", rank,
                               cid.shm_name);
            goto fail;
        }
    }
    if (atomic_exchange(&hdr->joined[rank], 1) != 0) {
        st = dfm_set_error(ctx, DFM_ERROR_INVALID_ARGUMENT,
                           "rank: %d joined this world twice", rank);
        goto fail;
    }
    DFM_CHECK_GOTO(join_world(ctx, hdr, cid.shm_name, deadline), st, fail);
    return DFM_SUCCESS;

fail:
    if (fd >= 0) close(fd);
    cpu_destroy(ctx);
    return st;
}

void cpu_destroy(dfm_ctx_t *ctx) {
    dfm_cpu_t *c = cpu_of(ctx);
    if (c == NULL) return;
    if (c->base) munmap(c->base, c->segment_bytes);
    free_scratch(c);
    free(c);
    ctx->impl = NULL;
}
