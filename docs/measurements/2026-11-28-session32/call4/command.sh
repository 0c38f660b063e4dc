#!/bin/bash
# Session 32 call 4, 4 x H100 (~220 s; guards keep it under 260): call 3 again with DFM_CUDA_FUSED=1 in
# every knob variant (call 3 left it out: dfm_bench takes the pipeline unless DFM_CUDA_FUSED=1, so
# its knob variants all ran the pipeline), fewer knobs, the best one only at decode sizes, one round. Carry build-c32/bins25.tar.xz
# (r/ = main a12a036's fused.cu: libdfm.so, test_moe, dfm_bench).
# Call 2 found the kernel slower than the pipeline at large T in three rounds (dsv3-e32 T = 1024
# +2.4 %, dsv3-e32-int8 T = 1024 +17 %, dsv3-e256 T = 128 +2.7 %, qwen3-235b T = 128 +1.2 %).
# 1. Which of the kernel's run-time knobs moves those rows: d (defaults) against EAGER_RQ 0 / 1,
#    RQ_WARPS 4 / 0, G2_SCATTER 0 / 1, RQ_AHEAD 0 / 2, DYNAMIC 0, SPEC_PF 0, and p (the
#    pipeline), two rounds rotated, at dsv3-e32(-int8) T = 1024, dsv3-e256 T = 128, qwen3-235b
#    T = 128.
# 2. The two variants with the best mean ratio to d there, against d, two rounds, at T = 1, 32,
#    128 of qwen3-235b, dsv3-e32(-int8), qwen3-30b-bf16: what they cost at decode sizes.
source scripts/gpu_env.sh
L=$OUT/n; mkdir -p $L
t0=$(date +%s); st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> $L/steps.txt; }
ok() { [ $(( $(date +%s) - t0 )) -lt $1 ]; }
nvidia-smi -L > $L/smi.txt
mkdir -p /tmp/b && tar -C /tmp/b -xJf build-c32/bins25.tar.xz; st untar $?
envof() {
  case $1 in
    d) echo "DFM_CUDA_FUSED=1" ;; p) echo "DFM_CUDA_FUSED=0" ;;
    e0) echo "DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_EAGER_RQ=0" ;; e1) echo "DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_EAGER_RQ=1" ;;
    w4) echo "DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_RQ_WARPS=4" ;; w0) echo "DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_RQ_WARPS=0" ;;
    s0) echo "DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_G2_SCATTER=0" ;; s1) echo "DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_G2_SCATTER=1" ;;
    a0) echo "DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_RQ_AHEAD=0" ;; a2) echo "DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_RQ_AHEAD=2" ;;
    y0) echo "DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_DYNAMIC=0" ;; f0) echo "DFM_CUDA_FUSED=1 DFM_CUDA_FUSED_SPEC_PF=0" ;;
  esac
}
V=(d e0 e1 w4 w0 s0 a0 y0 p); n=${#V[@]}
B=/tmp/b/r/dfm_bench
for i in 0 1; do for k in $(seq 0 $((n - 1))); do v=${V[$(( (k + i * 5) % n ))]}
  for ct in dsv3-e32:1024 dsv3-e256:128 qwen3-235b:128; do
    ok 190 && { timeout 20 env $(envof $v) $B -r 4 -c ${ct%%:*} -t ${ct##*:} -s 0 >> $L/ab_$v.txt 2>&1; st ${v}_${ct}_$i $?; }
  done
done; done
python3 scripts/ab_means.py -v $L ${V[@]} > $L/ab_table.txt 2>&1
# the two best knobs by mean ratio to d over the rows above
best=$(python3 - $L ${V[@]} <<'PY'
import sys, os
d = sys.argv[1]; names = [v for v in sys.argv[2:] if v not in ("d", "p")]
def means(v):
    r = {}
    for line in open(os.path.join(d, "ab_%s.txt" % v)):
        f = line.split()
        if len(f) >= 10 and f[1].isdigit() and f[2].isdigit():
            r.setdefault((f[0], f[2]), []).append(float(f[8]))
    return {k: sum(x) / len(x) for k, x in r.items()}
base = means("d"); score = []
for v in names:
    m = means(v); ks = [k for k in base if k in m]
    if ks: score.append((sum(m[k] / base[k] for k in ks) / len(ks), v))
score.sort(); print(score[0][1])
open(os.path.join(d, "scores.txt"), "w").write("\n".join("%.4f %s" % sv for sv in score) + "\n")
PY
)
echo "best: $best" >> $L/steps.txt
W=(d $best); n=${#W[@]}
for i in 0; do for k in $(seq 0 $((n - 1))); do v=${W[$(( (k + i) % n ))]}
  for c in qwen3-235b dsv3-e32 qwen3-30b-bf16; do
    ok 250 && { timeout 20 env $(envof $v) $B -r 4 -c $c -t 1,32,128 -s 0 >> $L/dec_$v.txt 2>&1; st dec_${v}_${c}_$i $?; }
  done
done; done
mkdir -p $L/dec && for v in ${W[@]}; do mv $L/dec_$v.txt $L/dec/ab_$v.txt; done
python3 scripts/ab_means.py -v $L/dec ${W[@]} > $L/dec_table.txt 2>&1
cd $OUT && tar czf n.tgz n && rm -rf n
