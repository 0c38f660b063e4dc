/*
 * harness.h - small helpers shared by the C tests: a seeded random number
 * generator, failure reporting that works from rank threads and forked rank
 * processes, poison patterns, error norms, wall time, and a view of
 * /dev/shm for the tests of the CPU backend's segment hygiene.
 *
 * Nothing here knows the operator's semantics; that is tests/oracle.c.
 */
#ifndef DFM_TESTS_HARNESS_H
#define DFM_TESTS_HARNESS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Poison written into every output before a call: a NaN no backend makes. */
#define TH_POISON_BF16 ((uint16_t)0x7fc1u)
#define TH_POISON_BYTE 0xa5u /* codes, scales (0xa5a5a5a5 as float) and counts */

/* ---- random numbers (splitmix64; reproducible from the printed seed) ---- */

typedef struct {
    uint64_t state;
} th_rng_t;

void th_rng_seed(th_rng_t *rng, uint64_t seed);
uint64_t th_rng_u64(th_rng_t *rng);
double th_rng_uniform(th_rng_t *rng); /* [0, 1) */
double th_rng_normal(th_rng_t *rng);  /* N(0, 1) */
int th_rng_int(th_rng_t *rng, int n); /* 0 .. n-1 */

/* A fresh seed from /dev/urandom (time and pid if that fails). */
uint64_t th_fresh_seed(void);

/* The generator th_main() seeds with th_seed, for tests run by it. */
extern th_rng_t th_rng;

/* ---- failures -----------------------------------------------------------
 *
 * TH_EXPECT(cond, fmt, ...) counts and prints a failure (the first few per
 * case, then only counts) and is 0 when cond is false, 1 when true. The counter is per process: a forked rank exits
 * non-zero when its counter moved.
 */
extern atomic_int th_num_failures;
extern uint64_t th_seed; /* printed with every failure */

int th_fail_at(const char *file, int line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Reset the number of messages printed (called at the start of a case). */
void th_quiet_reset(void);

#define TH_EXPECT(cond, ...) ((cond) ? 1 : th_fail_at(__FILE__, __LINE__, __VA_ARGS__))

/*
 * A program of named tests: th_main() takes -s SEED (default: fresh) and
 * -o NAME-SUBSTRING, runs the tests in order, prints one line each and a
 * summary with the seed, and returns the exit status (1 if any failed).
 */
typedef struct {
    const char *name;
    void (*fn)(void);
} th_test_t;

int th_main(const char *program, int argc, char **argv, const th_test_t *tests, size_t num_tests);

/* ---- buffers -------------------------------------------------------------- */

/* malloc that never returns NULL (the tests stop on host OOM). */
void *th_alloc(size_t bytes);
void th_fill_bf16(uint16_t *p, size_t n, uint16_t v);
/* Whether n elements still hold the poison of th_fill_* / memset. */
int th_all_bf16(const uint16_t *p, size_t n, uint16_t v);
int th_all_bytes(const void *p, size_t n, unsigned char v);

/* bf16 of a double (through fp32). */
uint16_t th_bf16(double v);

/*
 * ||out - ref|| / ||ref|| over n values, out as bf16; 0 when both are all
 * zeros, +inf when ref is zero and out is not, NaN if out holds a NaN.
 */
double th_rel_l2_bf16(const uint16_t *out, const double *ref, size_t n);

/* ---- time ------------------------------------------------------------------ */

double th_now_s(void);

/* ---- /dev/shm -------------------------------------------------------------- */

#define TH_SHM_MAX 256
typedef struct {
    int count;
    char names[TH_SHM_MAX][256];
} th_shm_list_t;

/* Regular files in /dev/shm owned by this user. */
void th_shm_snapshot(th_shm_list_t *list);
/* Entries of now that were not in before; returns their count. */
int th_shm_new(const th_shm_list_t *before, const th_shm_list_t *now, th_shm_list_t *added);
/*
 * Entries of /dev/shm whose name appears in the bytes of a world id (SPEC 9:
 * the CPU id carries its segment's name), so that other processes' segments
 * never count. Returns their count; the first name goes to name if not NULL.
 */
int th_shm_of_id(const void *id, size_t id_bytes, char *name, size_t name_bytes);

#endif /* DFM_TESTS_HARNESS_H */
