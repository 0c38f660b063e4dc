#!/bin/bash
# session 21, call 6 (run as `R=2 bash command.sh` on 2 GPUs: no 4-GPU kind was lent then):
# branch tma-send (build-c-ts; its default FUSED_TMA_SEND 0 is main's send): the fused suite and
# memcheck of the fused R = 2 FP8 cases with DFM_CUDA_FUSED_TMA_SEND=1; TMA_SEND 0 / 1, two
# rounds, qwen3-235b and dsv3-e32 T = 1 / 32 / 128; traces of qwen3-235b T = 128 with 0 and 1.
source scripts/gpu_env.sh
L=$OUT/c6; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
nvidia-smi -L > $L/smi.txt
B=build-c-ts
timeout 90 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TMA_SEND=1 $B/test_moe -b cuda -p threads > $L/tm_fused_ts1.txt 2>&1; st tm_fused_ts1 $?
for i in 1 2; do
  for v in 0 1; do
    for c in qwen3-235b dsv3-e32; do
      timeout 25 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TMA_SEND=$v $B/dfm_bench -r ${R:-4} -c $c -t 1,32,128 -s 0 > $L/${c}_ts${v}_$i.txt 2>&1; st ${c}_ts${v}_$i $?
    done
  done
done
for v in 0 1; do
  timeout 25 env DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TRACE=1 DFM_CUDA_FUSED_TMA_SEND=$v $B/dfm_bench -r ${R:-4} -c qwen3-235b -t 128 -s 0 -w 5 -n 20 > $L/trace_qwen3-235b_T128_ts$v.txt 2>&1; st trace_ts$v $?
done
timeout 80 env DFM_TEST_TIMEOUT_S=70 DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_TMA_SEND=1 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 $B/test_moe -b cuda -p threads -o "fused(q=fp8,R=2," > $L/memcheck_fused_ts1.txt 2>&1; st memcheck_fused_ts1 $?
cd $OUT && tar czf c6.tgz c6 && rm -rf c6
