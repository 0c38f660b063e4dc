/*
 * test_layout.cu - the packed column layout of the expert GEMMs
 * (src/cuda/gemm_wgmma.cuh), checked on the CPU: no GPU, no CUDA call.
 *
 * An expert's token rows, source after source, are its columns; a pass takes
 * 128 of them (WG_PASS_COLS in the pipeline's kernels off the f16 path), and the producer loads each source's run in the pass as at
 * most two TMA boxes of 2^b rows (wg_pack_boxes; the second overlaps the
 * first, writing the same rows to the same place). A wrong box would put a
 * token row under another token's column: the GPU tests see that only as
 * an error in the outputs, and only for the counts they happen to draw.
 * Here every pass of random counts (1..16 sources, runs of 0..300 rows,
 * both buffer halves) is checked directly against wg_col_src:
 *   - every box has 1..128 rows, lies inside the pass and inside one
 *     source's run, and each of its rows lands on the column of that row;
 *   - the boxes cover every column of the pass, none past it;
 *   - at most 32 boxes (one per producer lane), tx_rows = their rows;
 *   - wg_expert_cols<true> is the row total, wg_col_src says -1 past it;
 * and the chunked layout's boxes (wg_chunk_boxes) against wg_chunk; and the
 * balanced schedule (wg_balanced_step): every item on exactly one CTA of the
 * grid, no more rounds than the whole grid needs, and no CTA more than those
 * rounds need.
 * Usage: test_layout [-s SEED] [-n ROUNDS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <vector>

#include "cuda/gemm_wgmma.cuh"

static int failures;
#define EXPECT(cond, ...)                                    \
    do {                                                     \
        if (!(cond) && failures++ < 20) {                    \
            fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);  \
            fprintf(stderr, __VA_ARGS__);                    \
            fputc('\n', stderr);                             \
        }                                                    \
    } while (0)

static unsigned long long rng_state;
static unsigned long long rng_u64(void) { /* splitmix64 */
    unsigned long long z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static int rng_int(int n) { return (int)(rng_u64() % (unsigned long long)n); }

/* One expert g of a launch with counts cnt[G][R]: every pass of pw columns
 * (128, or WG_PASS_COLS: the pipeline's kernels off the f16 path), every lane. */
static void check_expert(const wg_gemm_args_t &p, int g, long long hbase, int pw) {
    int rows = 0;
    for (int s = 0; s < p.R; s++) rows += p.row_count[g * p.R + s];
    EXPECT(wg_expert_cols<true>(p.row_count, p.R, g) == rows, "expert %d: columns %d, rows %d", g,
           wg_expert_cols<true>(p.row_count, p.R, g), rows);
    int src, j;
    wg_col_src(p, g, rows, src, j);
    EXPECT(src == -1, "expert %d: column %d (past its %d rows) maps to source %d", g, rows, rows, src);
    const int passes = (rows + pw - 1) / pw;
    for (int pass = 0; pass < passes; pass++) {
        const int c_lo = pass * pw, width = rows - c_lo < pw ? rows - c_lo : pw;
        std::vector<int> covered(pw, 0);
        int nbox0 = -1, tx0 = -1, tx_sum = 0;
        for (int lane = 0; lane < 32; lane++) {
            int arow, boff, bsel, nbox, tx_rows;
            wg_pack_boxes(p, g, pass, hbase, lane, arow, boff, bsel, nbox, tx_rows, pw);
            if (lane == 0) {
                nbox0 = nbox;
                tx0 = tx_rows;
                EXPECT(nbox >= 1 && nbox <= 32 && nbox <= 2 * p.R, "expert %d pass %d: %d boxes (R = %d)", g,
                       pass, nbox, p.R);
            }
            EXPECT(nbox == nbox0 && tx_rows == tx0, "expert %d pass %d: lanes disagree on the boxes", g, pass);
            if (lane >= nbox) continue;
            const int n = 1 << bsel;
            tx_sum += n;
            EXPECT(bsel >= 0 && bsel < WG_A_MAPS && n <= WG_MAXCOLS, "box of 2^%d rows: no such map", bsel);
            EXPECT(boff >= 0 && boff + n <= width, "expert %d pass %d lane %d: box [%d, %d) past the pass's %d",
                   g, pass, lane, boff, boff + n, width);
            for (int r = 0; r < n && boff + r < pw && boff + r >= 0; r++) {
                covered[boff + r]++;
                wg_col_src(p, g, c_lo + boff + r, src, j);
                const long long want = src < 0 ? -1 : hbase + (long long)(g * p.R + src) * p.M + j;
                EXPECT(arow + r == want, "expert %d pass %d lane %d: column %d gets A row %d, wants %lld", g,
                       pass, lane, c_lo + boff + r, arow + r, want);
            }
        }
        EXPECT(tx_sum == tx0, "expert %d pass %d: tx_rows %d, boxes write %d", g, pass, tx0, tx_sum);
        for (int c = 0; c < pw; c++)
            EXPECT((covered[c] > 0) == (c < width), "expert %d pass %d: column %d written %d times (width %d)",
                   g, pass, c, covered[c], width);
    }
}

/* The chunked layout (WG_PACK=0, FUSED_PACK=0, version 2's columns): each
 * source's rows padded to chunks of 8, 16 chunks a pass, loaded as boxes of
 * 8..128 rows (wg_chunk_boxes) that must put chunk c's 8 rows (wg_chunk) at
 * columns 8c .. 8c + 7 of its pass, each column once. */
static void check_expert_chunked(const wg_gemm_args_t &p, int g, long long hbase) {
    int src, j0, valid;
    const int nch = wg_chunk(p, g, 0, src, j0, valid);
    EXPECT(wg_expert_cols<false>(p.row_count, p.R, g) == 8 * nch, "expert %d: chunked columns %d, chunks %d", g,
           wg_expert_cols<false>(p.row_count, p.R, g), nch);
    for (int pass = 0; pass < (nch + 15) / 16; pass++) {
        const int width = 8 * (nch - 16 * pass < 16 ? nch - 16 * pass : 16);
        std::vector<int> covered(WG_MAXCOLS, 0);
        for (int lane = 0; lane < 32; lane++) {
            int arow, boff, bsel, nbox, tx_rows;
            wg_chunk_boxes(p, g, pass, hbase, lane, arow, boff, bsel, nbox, tx_rows);
            EXPECT(nbox >= 1 && nbox <= 16 && tx_rows == width, "expert %d pass %d: %d boxes, tx_rows %d (width %d)",
                   g, pass, nbox, tx_rows, width);
            if (lane >= nbox) continue;
            const int n = 1 << bsel;
            EXPECT(bsel >= 3 && bsel < WG_A_MAPS && boff % 8 == 0 && boff >= 0 && boff + n <= width,
                   "expert %d pass %d lane %d: box [%d, %d) of 2^%d rows (width %d)", g, pass, lane, boff, boff + n,
                   bsel, width);
            for (int r = 0; r < n && boff + r < WG_MAXCOLS && boff + r >= 0; r++) {
                covered[boff + r]++;
                wg_chunk(p, g, pass * 16 + (boff + r) / 8, src, j0, valid);
                const long long want = src < 0 ? -1 : hbase + (long long)(g * p.R + src) * p.M + j0 + (boff + r) % 8;
                EXPECT(arow + r == want, "expert %d pass %d lane %d: column %d gets A row %d, wants %lld (chunked)",
                       g, pass, lane, boff + r, arow + r, want);
            }
        }
        for (int c = 0; c < WG_MAXCOLS; c++)
            EXPECT(covered[c] == (c < width ? 1 : 0), "expert %d pass %d: column %d written %d times (chunked)",
                   g, pass, c, covered[c]);
    }
}

/* wg_balanced_step for every item count up to 3000 on grids of 1..160 CTAs:
 * CTA b < step takes items b, b + step, ...; the step is at most the grid,
 * the busiest CTA has as many items as with the whole grid, the others at
 * most one fewer, one CTA fewer would need another round, and every item is
 * taken once. */
static void check_balanced(void) {
    for (int grid = 1; grid <= 160 && failures == 0; grid++)
        for (int total = 0; total <= 3000; total++) {
            const int step = wg_balanced_step(total, grid);
            EXPECT(step >= 1 && step <= grid, "total %d grid %d: step %d", total, grid, step);
            if (step < 1 || step > grid) return;
            const int rounds = (total + grid - 1) / grid;
            int most = 0, least = total + 1;
            long long taken = 0;
            for (int b = 0; b < step; b++) {
                const int mine = total > b ? (total - b + step - 1) / step : 0; /* items b, b + step, ... */
                most = mine > most ? mine : most;
                least = mine < least ? mine : least;
                taken += mine;
            }
            EXPECT(taken == total, "total %d grid %d step %d: %lld items taken", total, grid, step, taken);
            EXPECT(most == rounds, "total %d grid %d step %d: busiest CTA %d items, %d rounds", total, grid,
                   step, most, rounds);
            EXPECT(total == 0 || most - least <= 1, "total %d grid %d step %d: %d to %d items a CTA", total,
                   grid, step, least, most);
            EXPECT(total == 0 || (long long)(step - 1) * rounds < total,
                   "total %d grid %d: step %d, but %d CTAs would do in %d rounds", total, grid, step, step - 1, rounds);
        }
}

/* Version 5's f16 token order (wg_tok16_k) against a model of what
 * wg_fp8_widen_tokens writes: for each token row n (its swizzle n & 7), FP8
 * chunk c (K 16c .. 16c + 15) goes to half c & 1, 16-byte chunk
 * ((2 b4 + e) ^ sw), bytes (c >> 1) * 4 .. + 3: K 16c + 4 b4 + 2e, + 1 as two
 * f16. Unswizzled, position p of half hh must hold K wg_tok16_k(hh * 64 + p). */
static void check_tok16(void) {
    for (int n = 0; n < 8; n++) {
        const int sw = n & 7;
        int k_at[2][64];
        for (int c = 0; c < 8; c++)
            for (int b4 = 0; b4 < 4; b4++)
                for (int e = 0; e < 2; e++) {
                    const int chunk = ((2 * b4 + e) ^ sw) ^ sw; /* written swizzled, read back unswizzled */
                    const int pos = chunk * 8 + (c >> 1) * 2;
                    k_at[c & 1][pos] = 16 * c + 4 * b4 + 2 * e;
                    k_at[c & 1][pos + 1] = 16 * c + 4 * b4 + 2 * e + 1;
                }
        for (int blk = 0; blk < 3; blk++)
            for (int hh = 0; hh < 2; hh++)
                for (int q = 0; q < 64; q++) {
                    const int o = blk * 128 + hh * 64 + q;
                    EXPECT(wg_tok16_k(o) == blk * 128 + k_at[hh][q], "wg_tok16_k(%d) = %d, widen order %d", o,
                           wg_tok16_k(o), blk * 128 + k_at[hh][q]);
                }
    }
    /* a permutation of each 128-element block */
    for (int blk = 0; blk < 2; blk++) {
        int seen[128] = {0};
        for (int o = blk * 128; o < blk * 128 + 128; o++) seen[wg_tok16_k(o) - blk * 128]++;
        for (int k = 0; k < 128; k++) EXPECT(seen[k] == 1, "K %d of block %d taken %d times", k, blk, seen[k]);
    }
    /* wg_tok16_o inverts it (the fused kernel's widening writes by it) */
    for (int k = 0; k < 3 * 128; k++)
        EXPECT(wg_tok16_k(wg_tok16_o(k)) == k, "wg_tok16_k(wg_tok16_o(%d)) = %d", k, wg_tok16_k(wg_tok16_o(k)));
    for (int k = 0; k < 128; k += 2)
        EXPECT(wg_tok16_o(k + 1) == wg_tok16_o(k) + 1 && (wg_tok16_o(k) & 1) == 0,
               "K %d, %d not one f16 pair: %d, %d", k, k + 1, wg_tok16_o(k), wg_tok16_o(k + 1));
}

int main(int argc, char **argv) {
    unsigned long long seed = (unsigned long long)time(NULL) * 0x2545F4914F6CDD1Dull;
    int rounds = 2000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-s") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "-n") && i + 1 < argc) rounds = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [-s SEED] [-n ROUNDS]\n", argv[0]);
            return 2;
        }
    }
    rng_state = seed;
    check_balanced();
    check_tok16();
    long long experts = 0;
    for (int round = 0; round < rounds && failures == 0; round++) {
        const int R = 1 + rng_int(WG_PACK_MAX_R), G = 1 + rng_int(4);
        /* runs of every kind: empty, 1..7, around powers of two, whole passes, > 128 */
        const int kind = rng_int(4), M = kind == 0 ? 8 : kind == 1 ? 40 : kind == 2 ? 130 : 300;
        std::vector<int> cnt((size_t)G * R);
        for (auto &c : cnt) c = rng_int(4) == 0 ? 0 : rng_int(M + 1);
        wg_gemm_args_t p;
        memset(&p, 0, sizeof p);
        p.G = G;
        p.R = R;
        p.M = M;
        p.row_count = cnt.data();
        const long long hbase = rng_int(2) ? (long long)G * R * M : 0; /* the buffer's second half */
        for (int g = 0; g < G; g++, experts++) {
            check_expert(p, g, hbase, WG_MAXCOLS);
            check_expert(p, g, hbase, WG_PASS_COLS);
            check_expert_chunked(p, g, hbase);
        }
    }
    printf("test_layout: %lld experts of %d rounds, %s (seed 0x%llx)\n", experts, rounds,
           failures ? "FAILED" : "ok", seed);
    return failures != 0;
}
