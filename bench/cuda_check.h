/*
 * bench/cuda_check.h - CK(call) for the benchmark and scratch programs
 * (bench/*.cu, dev/cuda/*.cu): a CUDA runtime call that must succeed; on an
 * error it names the call, the place and the reason on stderr and exits with
 * status 2 (1 stays a program's own "a check failed").
 */
#ifndef DFM_BENCH_CUDA_CHECK_H
#define DFM_BENCH_CUDA_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#include <cuda_runtime.h>

#define CK(call)                                                                                  \
    do {                                                                                          \
        cudaError_t e_ = (call);                                                                  \
        if (e_ != cudaSuccess) {                                                                  \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            exit(2);                                                                              \
        }                                                                                         \
    } while (0)

#endif /* DFM_BENCH_CUDA_CHECK_H */
