/*
 * nvlink_bench - how fast the GPUs of this host move bytes into each other's
 * memory, each of the ways dispatch and combine could do it, as an all-to-all
 * (every GPU sends to every other at once, like a layer's dispatch) and for
 * one pair (GPU 0 -> GPU 1):
 *
 *   st16    threads read 16-byte chunks of local memory and store each to every
 *           peer (what the dispatch kernel does with its FP8 codes: plain
 *           stores through the peer mapping, one thread per chunk);
 *   bulk    one thread per CTA copies tiles into shared memory and out to every
 *           peer with cp.async.bulk (the TMA's bulk copies, shared -> peer
 *           global), NB tiles in flight per CTA;
 *   pull16  threads load 16-byte chunks from each peer's memory and store them
 *           locally (a receiver that pulls);
 *   memcpy  cudaMemcpyPeerAsync to each peer (the copy engines).
 *
 * The question it answers (docs/PERF_NOTES.md, twelfth session): at T = 1024
 * dispatch (~44 MB a rank) takes ~3 x what the bytes would need at the
 * datasheet's NVLink rate; is that the 16-byte stores, or the link?
 *
 *   nvlink_bench [-g GPUs] [-s MB per peer] [-n iterations] [-w warm-up]
 *
 * Prints, per pattern, the median over iterations of the slowest GPU's time
 * and the bytes each GPU sent (or pulled) per second, GB/s; and checks that
 * every destination holds its source's bytes (poisoned before each pattern).
 * Needs >= 2 GPUs with peer access; no NVLink multicast.
 */
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "cuda_check.h" /* CK */

enum { MAX_GPUS = 8, THREADS = 256, TILE = 16384, NB = 4 };

struct peers_t {
    uint4 *dst[MAX_GPUS - 1]; /* where this GPU's bytes go (st16, bulk) or come from (pull16) */
    int n;
};

/* st16: chunk c of the source to every peer, one thread per chunk */
static __global__ void __launch_bounds__(THREADS) st16_kernel(const uint4 *src, peers_t p, size_t chunks) {
    for (size_t c = blockIdx.x * (size_t)THREADS + threadIdx.x; c < chunks; c += (size_t)gridDim.x * THREADS) {
        const uint4 v = src[c];
        for (int d = 0; d < p.n; d++) p.dst[d][c] = v;
    }
}

/* pull16: peer d's chunks into local slot d */
static __global__ void __launch_bounds__(THREADS) pull16_kernel(uint4 *dst, peers_t p, size_t chunks) {
    for (int d = 0; d < p.n; d++)
        for (size_t c = blockIdx.x * (size_t)THREADS + threadIdx.x; c < chunks; c += (size_t)gridDim.x * THREADS)
            dst[(size_t)d * chunks + c] = p.dst[d][c];
}

static __device__ __forceinline__ uint32_t smem_u32(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* bulk: thread 0 of each CTA walks its tiles; tile k goes into buffer k % NB
 * (global -> shared, completion on that buffer's mbarrier), then out to every
 * peer (shared -> global, one bulk group per tile). Before a buffer is
 * refilled, at most NB - 1 newer groups may still be reading shared memory. */
static __global__ void __launch_bounds__(32) bulk_kernel(const char *src, peers_t p, size_t bytes) {
    extern __shared__ __align__(128) unsigned char sbuf[];
    __shared__ __align__(8) uint64_t bar[NB];
    if (threadIdx.x != 0) return;
    for (int b = 0; b < NB; b++)
        asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_u32(&bar[b])));
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    const size_t tiles = (bytes + TILE - 1) / TILE;
    int k = 0;
    for (size_t t = blockIdx.x; t < tiles; t += gridDim.x, k++) {
        const int b = k % NB;
        const size_t left = bytes - t * TILE;
        const uint32_t n = (uint32_t)(left < (size_t)TILE ? left : (size_t)TILE);
        const uint32_t s = smem_u32(sbuf + (size_t)b * TILE), mb = smem_u32(&bar[b]);
        if (k >= NB) asm volatile("cp.async.bulk.wait_group.read %0;" ::"n"(NB - 1) : "memory");
        asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(mb), "r"(n) : "memory");
        asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(s),
                     "l"(src + t * TILE), "r"(n), "r"(mb)
                     : "memory");
        const uint32_t parity = (uint32_t)(k / NB) & 1u;
        uint32_t done = 0;
        while (!done)
            asm volatile(
                "{\n .reg .pred q;\n mbarrier.try_wait.parity.shared::cta.b64 q, [%1], %2;\n selp.u32 %0, 1, 0, q;\n}\n"
                : "=r"(done)
                : "r"(mb), "r"(parity)
                : "memory");
        for (int d = 0; d < p.n; d++)
            asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;" ::"l"((char *)p.dst[d] + t * TILE),
                         "r"(s), "r"(n)
                         : "memory");
        asm volatile("cp.async.bulk.commit_group;" ::: "memory");
    }
    asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");
}

static void usage(const char *a0) {
    fprintf(stderr, "usage: %s [-g GPUs] [-s MB per peer] [-n iterations] [-w warm-up]\n", a0);
    exit(2);
}

int main(int argc, char **argv) {
    int ng = 0, iters = 20, warm = 3;
    double mb = 32;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) usage(argv[0]);
        if (!strcmp(argv[i], "-g")) ng = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-s")) mb = atof(argv[++i]);
        else if (!strcmp(argv[i], "-n")) iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-w")) warm = atoi(argv[++i]);
        else usage(argv[0]);
    }
    int have = 0;
    CK(cudaGetDeviceCount(&have));
    if (ng <= 0) ng = have;
    if (ng < 2 || ng > have || ng > MAX_GPUS || iters < 1 || warm < 0 || mb <= 0) {
        fprintf(stderr, "nvlink_bench: need 2..%d GPUs (have %d), iterations >= 1, size > 0\n", MAX_GPUS, have);
        return 2;
    }
    const size_t S = ((size_t)(mb * 1048576.0) + TILE - 1) / TILE * TILE; /* bytes per peer */
    const size_t chunks = S / 16;
    std::vector<char *> src(ng), dst(ng);
    std::vector<cudaStream_t> st(ng);
    std::vector<cudaEvent_t> e0(ng), e1(ng);
    int sms = 0;
    for (int i = 0; i < ng; i++) {
        CK(cudaSetDevice(i));
        for (int j = 0; j < ng; j++) {
            if (j == i) continue;
            int ok = 0;
            CK(cudaDeviceCanAccessPeer(&ok, i, j));
            if (!ok) {
                fprintf(stderr, "nvlink_bench: GPU %d cannot access GPU %d\n", i, j);
                return 2;
            }
            cudaError_t e = cudaDeviceEnablePeerAccess(j, 0);
            if (e == cudaErrorPeerAccessAlreadyEnabled) (void)cudaGetLastError();
            else CK(e);
        }
        CK(cudaMalloc(&src[i], S));
        CK(cudaMalloc(&dst[i], S * (ng - 1))); /* slot of source j: j < i ? j : j - 1 */
        CK(cudaStreamCreateWithFlags(&st[i], cudaStreamNonBlocking));
        CK(cudaEventCreate(&e0[i]));
        CK(cudaEventCreate(&e1[i]));
        std::vector<uint32_t> h(S / 4);
        for (size_t w = 0; w < h.size(); w++) h[w] = (uint32_t)(w * 2654435761u) ^ (uint32_t)(i + 1) * 0x9E3779B9u;
        CK(cudaMemcpy(src[i], h.data(), S, cudaMemcpyHostToDevice));
        CK(cudaFuncSetAttribute(bulk_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, NB * TILE));
        if (i == 0) CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    }
    auto slot = [&](int to, int from) { return dst[to] + (size_t)(from < to ? from : from - 1) * S; };
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("# nvlink_bench: %d x %s, %.1f MB per peer, median of %d after %d warm-up; GB/s = bytes one GPU "
           "sends (pull16: pulls) / the slowest GPU's time\n",
           ng, prop.name, S / 1048576.0, iters, warm);
    printf("%-8s %-10s %10s %10s  %s\n", "pattern", "peers", "us", "GB/s", "check");

    const char *pats[] = {"st16", "bulk", "pull16", "memcpy"};
    for (int pat = 0; pat < 4; pat++)
        for (int pair = 0; pair < 2; pair++) { /* pair 0: all-to-all; 1: GPU 0 -> GPU 1 alone */
            const int senders = pair ? 1 : ng;
            for (int i = 0; i < ng; i++) {
                CK(cudaSetDevice(i));
                CK(cudaMemset(dst[i], 0xA5, S * (ng - 1)));
                CK(cudaDeviceSynchronize());
            }
            std::vector<float> worst;
            for (int it = 0; it < warm + iters; it++) {
                for (int i = 0; i < senders; i++) {
                    CK(cudaSetDevice(i));
                    peers_t p;
                    memset(&p, 0, sizeof p);
                    for (int j = 0; j < ng; j++) {
                        if (j == i || (pair && j != 1)) continue;
                        /* st16 / bulk / memcpy: i writes into j's slot for i; pull16: i reads j's source */
                        p.dst[p.n++] = pat == 2 ? (uint4 *)src[j] : (uint4 *)slot(j, i);
                    }
                    CK(cudaEventRecord(e0[i], st[i]));
                    if (pat == 0) st16_kernel<<<sms * 4, THREADS, 0, st[i]>>>((const uint4 *)src[i], p, chunks);
                    else if (pat == 1) bulk_kernel<<<sms, 32, NB * TILE, st[i]>>>(src[i], p, S);
                    else if (pat == 2) pull16_kernel<<<sms * 4, THREADS, 0, st[i]>>>((uint4 *)dst[i], p, chunks);
                    else
                        for (int j = 0; j < ng; j++)
                            if (j != i && (!pair || j == 1)) CK(cudaMemcpyPeerAsync(slot(j, i), j, src[i], i, S, st[i]));
                    CK(cudaEventRecord(e1[i], st[i]));
                }
                float w = 0.0f;
                for (int i = 0; i < senders; i++) {
                    CK(cudaSetDevice(i));
                    CK(cudaEventSynchronize(e1[i]));
                    float ms = 0.0f;
                    CK(cudaEventElapsedTime(&ms, e0[i], e1[i]));
                    w = std::max(w, ms);
                }
                if (it >= warm) worst.push_back(w);
            }
            std::sort(worst.begin(), worst.end());
            const float med_us = worst[worst.size() / 2] * 1e3f;
            const int npeers = pair ? 1 : ng - 1;
            /* check: every written slot (pull16: GPU i's slot of each peer) equals its source */
            int bad = 0;
            std::vector<char> a(S), b(S);
            for (int i = 0; i < senders && !bad; i++)
                for (int j = 0; j < ng && !bad; j++) {
                    if (j == i || (pair && j != 1)) continue;
                    const char *got = pat == 2 ? dst[i] + (size_t)(pair ? 0 : (j < i ? j : j - 1)) * S : slot(j, i);
                    const char *want = pat == 2 ? src[j] : src[i];
                    CK(cudaMemcpy(a.data(), got, S, cudaMemcpyDefault));
                    CK(cudaMemcpy(b.data(), want, S, cudaMemcpyDefault));
                    bad = memcmp(a.data(), b.data(), S) != 0;
                }
            printf("%-8s %-10s %10.1f %10.1f  %s\n", pats[pat], pair ? (pat == 2 ? "0<-1" : "0->1") : "all-to-all", med_us,
                   (double)S * npeers / (med_us * 1e-6) * 1e-9, bad ? "WRONG" : "ok");
            fflush(stdout);
            if (bad) return 1;
        }
    for (int i = 0; i < ng; i++) {
        CK(cudaSetDevice(i));
        CK(cudaFree(src[i]));
        CK(cudaFree(dst[i]));
        CK(cudaStreamDestroy(st[i]));
        CK(cudaEventDestroy(e0[i]));
        CK(cudaEventDestroy(e1[i]));
    }
    return 0;
}
