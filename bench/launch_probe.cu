/*
 * launch_probe.cu - what a launch like the fused kernel's costs on one GPU,
 * outside the kernel's own work (the fused layer's event-timed time runs
 * ~8 us past its CTAs' first entry to last exit at T = 1; see
 * docs/PERF_NOTES.md, twenty-sixth session).
 *
 * Each case: a previous kernel (grid CTAs x 256 threads, no shared memory)
 * spins SPIN us, then the test kernel (grid CTAs x 384 threads) spins SPIN us
 * from each CTA's entry. Times are medians of N event-timed repetitions:
 *   alone  event after the previous kernel, test kernel, event:  - SPIN
 *   pair   event, previous kernel, test kernel, event:           - 2 SPIN
 * so both columns are the overhead beyond the spins (launch, start, exit).
 * Cases: plain or cooperative launch; dynamic shared memory 0 or SMEM KB;
 * parameters 16 B or a PARAM-byte struct (the fused kernel's are ~3 KB of
 * tensor maps, world and op); and programmatic dependent launch (the test
 * kernel waits with griddepcontrol.wait at entry, the previous kernel lets
 * dependents launch at its own entry); and the kernel as a one-node graph
 * launched with cudaGraphLaunch (as the library launches the fused kernel).
 *
 *   nvcc -O3 -gencode=arch=compute_90a,code=sm_90a -o launch_probe bench/launch_probe.cu
 *   ./launch_probe [reps]
 */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_check.h"

#define SPIN_NS 20000ull
#define SMEM_BYTES (200 * 1024)
#define PARAM_BYTES 3072

typedef struct {
    unsigned long long ns;
    int pad[PARAM_BYTES / 4 - 2];
} big_param_t;

static __device__ __forceinline__ unsigned long long now_ns(void) {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

static __device__ __forceinline__ void spin_from_entry(unsigned long long ns) {
    if (threadIdx.x == 0) {
        const unsigned long long t0 = now_ns();
        while (now_ns() - t0 < ns) {
        }
    }
    __syncthreads();
}

__global__ void prev_kernel(unsigned long long ns, int pdl_trigger) {
    if (pdl_trigger) asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    spin_from_entry(ns);
}

__global__ void test_small(unsigned long long ns, int pdl_wait) {
    if (pdl_wait) asm volatile("griddepcontrol.wait;" ::: "memory");
    spin_from_entry(ns);
}

__global__ void test_big(const __grid_constant__ big_param_t p, int pdl_wait) {
    if (pdl_wait) asm volatile("griddepcontrol.wait;" ::: "memory");
    spin_from_entry(p.ns + (unsigned long long)p.pad[PARAM_BYTES / 4 - 3]);
}

typedef struct {
    const char *name;
    int coop, smem, big, pdl, graph;
} probe_case_t;

static cudaError_t launch_test(const probe_case_t *c, int grid, cudaStream_t s, const big_param_t *bp) {
    cudaLaunchConfig_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.gridDim = dim3(grid);
    cfg.blockDim = dim3(384);
    cfg.dynamicSmemBytes = c->smem ? SMEM_BYTES : 0;
    cfg.stream = s;
    cudaLaunchAttribute attr[2];
    int n = 0;
    if (c->coop) {
        attr[n].id = cudaLaunchAttributeCooperative;
        attr[n++].val.cooperative = 1;
    }
    if (c->pdl) {
        attr[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr[n++].val.programmaticStreamSerializationAllowed = 1;
    }
    cfg.attrs = attr;
    cfg.numAttrs = n;
    const int w = c->pdl;
    if (c->big) return cudaLaunchKernelEx(&cfg, test_big, *bp, w);
    return cudaLaunchKernelEx(&cfg, test_small, SPIN_NS, w);
}

/* A one-node graph of the case's kernel (the library launches the fused
 * kernel so: backend.cu's launch graphs), instantiated once. */
static cudaGraphExec_t make_graph(const probe_case_t *c, int grid, big_param_t *bp, int *w) {
    cudaGraph_t g;
    CK(cudaGraphCreate(&g, 0));
    cudaKernelNodeParams kp;
    memset(&kp, 0, sizeof kp);
    void *args_big[] = {bp, w};
    static unsigned long long ns = SPIN_NS;
    void *args_small[] = {&ns, w};
    kp.func = c->big ? (void *)test_big : (void *)test_small;
    kp.gridDim = dim3(grid);
    kp.blockDim = dim3(384);
    kp.sharedMemBytes = c->smem ? SMEM_BYTES : 0;
    kp.kernelParams = c->big ? args_big : args_small;
    cudaGraphNode_t node;
    CK(cudaGraphAddKernelNode(&node, g, NULL, 0, &kp));
    if (c->coop) {
        cudaLaunchAttributeValue v;
        memset(&v, 0, sizeof v);
        v.cooperative = 1;
        CK(cudaGraphKernelNodeSetAttribute(node, cudaLaunchAttributeCooperative, &v));
    }
    cudaGraphExec_t ex;
    CK(cudaGraphInstantiate(&ex, g, 0));
    CK(cudaGraphDestroy(g));
    return ex;
}

static int cmp_f(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    const int reps = argc > 1 ? atoi(argv[1]) : 50;
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    const int grid = prop.multiProcessorCount;
    CK(cudaFuncSetAttribute(test_small, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM_BYTES));
    CK(cudaFuncSetAttribute(test_big, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM_BYTES));
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    big_param_t bp;
    memset(&bp, 0, sizeof bp);
    bp.ns = SPIN_NS;
    static const probe_case_t cases[] = {
        {"plain", 0, 0, 0, 0},         {"coop", 1, 0, 0, 0},          {"coop+smem", 1, 1, 0, 0},
        {"coop+smem+3KB", 1, 1, 1, 0}, {"plain+smem+3KB", 0, 1, 1, 0}, {"coop+smem+3KB+pdl", 1, 1, 1, 1},
        {"plain+smem+3KB+pdl", 0, 1, 1, 1}, {"coop+pdl", 1, 0, 0, 1},
        {"graph:coop+smem+3KB", 1, 1, 1, 0, 1}, {"graph:plain", 0, 0, 0, 0, 1},
    };
    float *t = (float *)malloc(sizeof(float) * (size_t)reps);
    printf("# launch_probe: %s, %d SMs, spins %.1f us, median of %d; overhead beyond the spins, us\n", prop.name,
           grid, SPIN_NS / 1e3, reps);
    printf("%-22s %8s %8s\n", "case", "alone", "pair");
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const probe_case_t *c = &cases[ci];
        float med[2];
        int failed = 0, w0 = 0;
        cudaGraphExec_t ex = c->graph ? make_graph(c, grid, &bp, &w0) : NULL;
        for (int mode = 0; mode < 2 && !failed; mode++) {
            for (int r = -5; r < reps; r++) {
                if (mode == 1) CK(cudaEventRecord(e0, s));
                prev_kernel<<<grid, 256, 0, s>>>(SPIN_NS, c->pdl);
                if (mode == 0) CK(cudaEventRecord(e0, s));
                cudaError_t err = ex ? cudaGraphLaunch(ex, s) : launch_test(c, grid, s, &bp);
                if (err != cudaSuccess) {
                    printf("%-22s launch failed: %s\n", c->name, cudaGetErrorString(err));
                    (void)cudaGetLastError();
                    failed = 1;
                    break;
                }
                CK(cudaEventRecord(e1, s));
                CK(cudaEventSynchronize(e1));
                float ms;
                CK(cudaEventElapsedTime(&ms, e0, e1));
                if (r >= 0) t[r] = ms * 1e3f - (mode + 1) * (float)(SPIN_NS / 1e3);
            }
            qsort(t, (size_t)reps, sizeof *t, cmp_f);
            med[mode] = t[reps / 2];
        }
        if (ex) CK(cudaGraphExecDestroy(ex));
        if (!failed) printf("%-22s %8.2f %8.2f\n", c->name, med[0], med[1]);
    }
    CK(cudaDeviceSynchronize());
    free(t);
    return 0;
}
