/*
 * fused.cuh - the host interface of the one-kernel fused operator
 * (src/cuda/fused.cu), for backend.cu. Nothing of the kernel's device code is
 * here.
 *
 * Selected per context at creation: the default, unless the environment
 * variable DFM_CUDA_FUSED=0 selects the 5-launch pipeline (every rank of the
 * world must agree: a rank running the pipeline and a rank running the fused
 * kernel speak different flag protocols and the call ends in a timeout). Off
 * by default until the thirty-first session (BENCHMARKS.md v31: faster than
 * the pipeline in most rows, at most 5 % slower in the others).
 */
#ifndef DFM_CUDA_FUSED_CUH
#define DFM_CUDA_FUSED_CUH

#include "cuda_internal.h"

typedef struct dfm_cuda_fused dfm_cuda_fused_t;

/* At context creation, after the world is complete (peer[], scratch,
 * num_sms). *out = NULL (and cudaSuccess) when `path` (the config's
 * dfm_path_t) is DFM_PATH_PIPELINE, or DFM_PATH_DEFAULT with DFM_CUDA_FUSED
 * "0"; otherwise allocates the kernel's device counters, sets its
 * shared-memory limit and checks that a grid of num_sms CTAs can be co-resident. */
cudaError_t dfm_cuda_fused_create(const dfm_cuda_world_t *w, int path, dfm_cuda_fused_t **out);
void dfm_cuda_fused_destroy(dfm_cuda_fused_t *f);

/* One fused call as one cooperative launch on `stream` (no allocation, no
 * synchronization; capturable). With `ev` (dfm_cuda_time_phases) records
 * ev[0] before and ev[1..3] after the kernel. Returns cudaErrorNotSupported,
 * having launched nothing, when the wgmma path cannot take the call (weights
 * not 16-byte aligned, a tensor map cannot be built): the caller then runs
 * the 5-launch pipeline. */
cudaError_t dfm_cuda_fused(dfm_cuda_fused_t *f, const dfm_cuda_world_t *w, const dfm_cuda_op_t *op,
                           cudaStream_t stream, const cudaEvent_t *ev);

/* With DFM_CUDA_FUSED_TRACE=1 at creation the kernel stamps %globaltimer at
 * FUSED_TRACE_N points per CTA (fused.cu). Copies the last call's stamps
 * ([grid][9], synchronous) into buf; returns the grid, or -1 (no trace, cap
 * too small, copy failed). */
int dfm_cuda_fused_trace(dfm_cuda_fused_t *f, unsigned long long *buf, int cap);

#endif /* DFM_CUDA_FUSED_CUH */
