/*
 * harness.c - helpers shared by the C tests (see harness.h). No knowledge of
 * the operator lives here.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/dfm_common.h"

atomic_int th_num_failures;
uint64_t th_seed;
th_rng_t th_rng;
static atomic_int th_num_printed;

#define TH_MAX_PRINTED 25

void th_rng_seed(th_rng_t *rng, uint64_t seed) { rng->state = seed; }

uint64_t th_rng_u64(th_rng_t *rng) {
    uint64_t z = (rng->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double th_rng_uniform(th_rng_t *rng) { return (double)(th_rng_u64(rng) >> 11) * 0x1.0p-53; }

double th_rng_normal(th_rng_t *rng) {
    double u1 = th_rng_uniform(rng), u2 = th_rng_uniform(rng);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * 3.14159265358979323846 * u2);
}

int th_rng_int(th_rng_t *rng, int n) { return (int)(th_rng_u64(rng) % (uint64_t)n); }

uint64_t th_fresh_seed(void) {
    uint64_t seed = 0;
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd >= 0) {
        if (read(fd, &seed, sizeof seed) != (ssize_t)sizeof seed) seed = 0;
        close(fd);
    }
    if (seed == 0) seed = (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)getpid();
    return seed;
}

void th_quiet_reset(void) { atomic_store(&th_num_printed, 0); }

int th_fail_at(const char *file, int line, const char *fmt, ...) {
    atomic_fetch_add(&th_num_failures, 1);
    int n = atomic_fetch_add(&th_num_printed, 1);
    if (n > TH_MAX_PRINTED) return 0;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n == TH_MAX_PRINTED)
        fprintf(stderr, "    (more failures of this case not shown)\n");
    else
        fprintf(stderr, "    FAIL %s:%d: %s (seed %llu)\n", file, line, msg,
                (unsigned long long)th_seed);
    return 0;
}

int th_main(const char *program, int argc, char **argv, const th_test_t *tests, size_t num_tests) {
    const char *filter = NULL;
    setvbuf(stdout, NULL, _IOLBF, 0);
    th_seed = th_fresh_seed();
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-s") == 0 && i + 1 < argc) {
            th_seed = strtoull(argv[++i], NULL, 0);
        } else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
            filter = argv[++i];
        } else {
            fprintf(stderr, "usage: %s [-s SEED] [-o NAME-SUBSTRING]\n", program);
            return 2;
        }
    }
    printf("%s: seed %llu\n", program, (unsigned long long)th_seed);
    th_rng_seed(&th_rng, th_seed);
    int failed = 0;
    for (size_t i = 0; i < num_tests; i++) {
        if (filter && strstr(tests[i].name, filter) == NULL) continue;
        int before = atomic_load(&th_num_failures);
        th_quiet_reset();
        double t0 = th_now_s();
        tests[i].fn();
        int ok = atomic_load(&th_num_failures) == before;
        printf("  %-24s %s (%.2f s)\n", tests[i].name, ok ? "OK" : "FAIL", th_now_s() - t0);
        failed += !ok;
    }
    if (failed)
        printf("%s: %d test(s) FAILED (seed %llu)\n", program, failed, (unsigned long long)th_seed);
    else
        printf("%s: all passed\n", program);
    return failed ? 1 : 0;
}

void *th_alloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (p == NULL) {
        fprintf(stderr, "test: out of host memory (%zu bytes)\n", bytes);
        exit(2);
    }
    return p;
}

void th_fill_bf16(uint16_t *p, size_t n, uint16_t v) {
    for (size_t i = 0; i < n; i++) p[i] = v;
}

int th_all_bf16(const uint16_t *p, size_t n, uint16_t v) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != v) return 0;
    return 1;
}

int th_all_bytes(const void *p, size_t n, unsigned char v) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != v) return 0;
    return 1;
}

uint16_t th_bf16(double v) { return dfm_f32_to_bf16((float)v); }

double th_rel_l2_bf16(const uint16_t *out, const double *ref, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)dfm_bf16_to_f32(out[i]) - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    if (num != num) return num;
    if (den == 0.0) return num == 0.0 ? 0.0 : INFINITY;
    return sqrt(num / den);
}

double th_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void th_shm_snapshot(th_shm_list_t *list) {
    list->count = 0;
    DIR *d = opendir("/dev/shm");
    if (d == NULL) return;
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL && list->count < TH_SHM_MAX) {
        char path[512];
        struct stat st;
        snprintf(path, sizeof path, "/dev/shm/%s", ent->d_name);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != getuid()) continue;
        snprintf(list->names[list->count++], sizeof list->names[0], "%s", ent->d_name);
    }
    closedir(d);
}

int th_shm_new(const th_shm_list_t *before, const th_shm_list_t *now, th_shm_list_t *added) {
    added->count = 0;
    for (int i = 0; i < now->count; i++) {
        int seen = 0;
        for (int j = 0; j < before->count && !seen; j++)
            seen = strcmp(now->names[i], before->names[j]) == 0;
        if (!seen) snprintf(added->names[added->count++], sizeof added->names[0], "%s", now->names[i]);
    }
    return added->count;
}

int th_shm_of_id(const void *id, size_t id_bytes, char *name, size_t name_bytes) {
    static th_shm_list_t list; /* 64 KiB: not on a thread's stack */
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    int n = 0;
    pthread_mutex_lock(&lock);
    th_shm_snapshot(&list);
    for (int i = 0; i < list.count; i++) {
        size_t len = strlen(list.names[i]);
        if (len < 8 || memmem(id, id_bytes, list.names[i], len) == NULL) continue;
        if (n++ == 0 && name != NULL) snprintf(name, name_bytes, "%s", list.names[i]);
    }
    pthread_mutex_unlock(&lock);
    return n;
}
