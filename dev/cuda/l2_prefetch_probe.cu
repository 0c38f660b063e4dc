/*
 * l2_prefetch_probe.cu - what an L2 bulk prefetch costs the kernel that
 * issues it, and what it saves the kernel that reads the bytes next.
 *
 * Why: in the sixth session (docs/PERF_NOTES.md) prefetching the next GEMM's
 * weights into L2 - from the dispatch kernel (GEMM1's first stages) or from
 * GEMM1's last items (GEMM2's first stages) - made the whole layer 10-15 us
 * slower although HBM was otherwise idle then. One guess: a CTA with
 * outstanding bulk prefetches does not retire until they have landed, which
 * would put the prefetch on the issuing kernel's critical path. This probe
 * separates that from the reader's side.
 *
 * Per size S (MB of a 1 GB buffer, in 16 KB boxes of 128 rows x 128 bytes,
 * the weight boxes of gemm_wgmma.cuh), each case after an L2 flush, CUDA
 * events, median of `iters`:
 *   empty          a grid of SMs CTAs that returns at once
 *   prefetch       the same grid issuing the S MB of tensor prefetches
 *                  (cp.async.bulk.prefetch.tensor.2d.L2), then returning
 *   read           a kernel reading the same S MB (16-byte loads)
 *   empty+read     the two back to back (the reader's cold time + a launch)
 *   prefetch+read  back to back: < empty+read means the prefetch saved the
 *                  reader time; prefetch >> empty means the issuer waited
 *   warm read      the reader alone after an untimed prefetch kernel and a
 *                  20 us spin kernel (the bytes have landed): its warm time
 *
 * Build (here, nvcc 13.0; not part of `make`):
 *   nvcc -std=c++17 -O3 -Isrc -Iinclude -gencode=arch=compute_90a,code=sm_90a \
 *        dev/cuda/l2_prefetch_probe.cu -o build/dev/l2_prefetch_probe
 * Run on one GPU: build/dev/l2_prefetch_probe [iters]
 */
#include <cuda.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "cuda/gemm_wgmma.cuh"

#include "../../bench/cuda_check.h" /* CK */

static const int ROW_BYTES = 8192; /* the buffer as [rows][8192] bytes: 64 boxes of 128 bytes per row */

static __global__ void empty_kernel(void) {}

/* Boxes 0..n-1, box b = (column block b % 64, row block b / 64), flat over the grid. */
static __global__ void prefetch_kernel(const __grid_constant__ CUtensorMap map, int n) {
    for (int b = blockIdx.x * blockDim.x + threadIdx.x; b < n; b += gridDim.x * blockDim.x)
        wg_prefetch_l2(&map, (b % (ROW_BYTES / WG_BK)) * WG_BK, b / (ROW_BYTES / WG_BK) * WG_BN);
}

/* Reads the bytes of boxes 0..n-1 (16 bytes per thread and step). */
static __global__ void read_kernel(const uint4 *p, int n_boxes, unsigned int *sink) {
    const long long n16 = (long long)n_boxes * WG_W_BYTES / 16;
    unsigned int x = 0;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n16;
         i += (long long)gridDim.x * blockDim.x) {
        /* element i of the boxes' bytes: box b = i / 1024, inside it row r, 16-byte chunk c */
        const long long b = i / (WG_W_BYTES / 16);
        const int r = (int)(i % (WG_W_BYTES / 16)) / 8, c = (int)(i % 8);
        const long long row = b / (ROW_BYTES / WG_BK) * WG_BN + r;
        const long long col = (b % (ROW_BYTES / WG_BK)) * WG_BK + c * 16;
        const uint4 v = p[(row * ROW_BYTES + col) / 16];
        x ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (x == 0x9e3779b9u) *sink = x; /* keeps the loads */
}

static __global__ void spin_kernel(long long ns) {
    unsigned long long t0, t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    do asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    while ((long long)(t - t0) < ns);
}

int main(int argc, char **argv) {
    const int iters = argc > 1 ? atoi(argv[1]) : 50;
    int sms = 0;
    CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    const size_t bytes = (size_t)1 << 30, flush_bytes = (size_t)256 << 20;
    unsigned char *buf, *flush;
    unsigned int *sink;
    CK(cudaMalloc(&buf, bytes));
    CK(cudaMalloc(&flush, flush_bytes));
    CK(cudaMalloc(&sink, 4));
    CK(cudaMemset(buf, 1, bytes));
    CUtensorMap map;
    if (wg_make_map(&map, buf, (long long)(bytes / ROW_BYTES), ROW_BYTES, ROW_BYTES, WG_BN)) {
        fprintf(stderr, "l2_prefetch_probe: cannot build the tensor map\n");
        return 1;
    }
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    printf("# l2_prefetch_probe: %d SMs, us, median of %d, each case after a 256 MB flush\n", sms, iters);
    printf("%8s %8s %9s %8s %11s %14s %10s\n", "MB", "empty", "prefetch", "read", "empty+read",
           "prefetch+read", "warm read");
    const int sizes_mb[] = {4, 16, 32};
    for (int mb : sizes_mb) {
        const int n = (int)(((size_t)mb << 20) / WG_W_BYTES);
        double med[6];
        for (int c = 0; c < 6; c++) {
            std::vector<float> t;
            for (int i = 0; i < iters + 2; i++) {
                CK(cudaMemsetAsync(flush, i & 0xff, flush_bytes)); /* L2 holds none of buf */
                if (c == 5) { /* untimed: the prefetch, then time for it to land */
                    prefetch_kernel<<<sms, 128>>>(map, n);
                    spin_kernel<<<1, 32>>>(20000);
                }
                CK(cudaEventRecord(e0));
                if (c == 0 || c == 3) empty_kernel<<<sms, 128>>>();
                if (c == 1 || c == 4) prefetch_kernel<<<sms, 128>>>(map, n);
                if (c >= 2) read_kernel<<<sms, 512>>>((const uint4 *)buf, n, sink);
                CK(cudaEventRecord(e1));
                CK(cudaEventSynchronize(e1));
                float ms;
                CK(cudaEventElapsedTime(&ms, e0, e1));
                if (i >= 2) t.push_back(ms * 1e3f);
            }
            std::sort(t.begin(), t.end());
            med[c] = t[t.size() / 2];
        }
        printf("%8d %8.1f %9.1f %8.1f %11.1f %14.1f %10.1f\n", mb, med[0], med[1], med[2], med[3], med[4],
               med[5]);
    }
    CK(cudaGetLastError());
    return 0;
}
