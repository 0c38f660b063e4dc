# call_env.sh - sourced first by a device call's script (docs/measurements/*/callN/command.sh),
# in the repository root on the GPU machine: scripts/gpu_env.sh, then
#   L      the call's log folder, $OUT/n (the script packs it into n.tgz at its end);
#   st NAME RC   appends "NAME <seconds since the start> s rc=RC" to $L/steps.txt;
#   ok SECONDS   true while the call is younger than SECONDS (each step's guard);
#   ab_rounds N GUARD V1 V2 .. -- CFG:T,T .. : an A/B of /tmp/b/<V>/dfm_bench builds, N rounds
#                rotated (round i starts at variant i), each config of each variant in turn
#                (DFM_CUDA_FUSED=1, -r = the GPU count, then $AB_ARGS if set, e.g. -G), output
#                appended to $L/ab_<V>.txt, no run started after GUARD seconds;
#                then $L/ab_table.txt (scripts/ab_means.py -v);
#   fused_suite V GUARD  : /tmp/b/<V>/test_moe's fused C suite (threads) -> $L/<V>_fused.txt;
#   fused_seq V GUARD    : its 1000-call sequence -> $L/<V>_seq1000.txt;
#   fused_memcheck V FILTER TAG GUARD : memcheck of the cases matching FILTER -> $L/<V>_<TAG>.txt;
#   suite_all V GUARD    : its whole C suite (threads) -> $L/<V>_all.txt;
#   v5_suite V GUARD     : its fused suite with every FP8 call on version 5 (DFM_CUDA_TOK16_ROWS=0)
#                          -> $L/<V>_fused_tok16.txt;
#   seq_mixed V GUARD    : its 1000-call sequence with the version 5 line at 4 rows (ranks with
#                          random T choose differently) -> $L/<V>_seq_mixed.txt;
#   (an env prefix reaches a helper's commands: DFM_CUDA_TOK16_ROWS=0 fused_memcheck ...)
#   bench_table V GUARD  : bench/run_bench.sh with /tmp/b/<V>'s dfm_bench -> $L/bench/ (the table);
#                (no step started after GUARD seconds)
# and writes nvidia-smi -L to $L/smi.txt.
source scripts/gpu_env.sh
L=$OUT/n
mkdir -p "$L"
t0=$(date +%s)
st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> "$L/steps.txt"; }
ok() { [ $(( $(date +%s) - t0 )) -lt "$1" ]; }
nvidia-smi -L > "$L/smi.txt"
ab_rounds() {
    local n=$1 guard=$2 v=() c=() i k x r
    shift 2
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do v+=("$1"); shift; done
    shift
    c=("$@")
    r=$(nvidia-smi -L | wc -l)
    for ((i = 0; i < n; i++)); do for ((k = 0; k < ${#v[@]}; k++)); do
        x=${v[$(( (k + i) % ${#v[@]} ))]}
        for ct in "${c[@]}"; do
            ok "$guard" && { timeout 40 env DFM_CUDA_FUSED=1 /tmp/b/$x/dfm_bench -r $r -c ${ct%%:*} -t ${ct##*:} -s 0 ${AB_ARGS:-} \
                >> $L/ab_$x.txt 2>&1; st ${x}_${ct%%:*}_$i $?; }
        done
    done; done
    python3 scripts/ab_means.py -v $L "${v[@]}" > $L/ab_table.txt 2>&1
}
fused_suite() {
    ok "$2" && { timeout 70 /tmp/b/$1/test_moe -b cuda -p threads -o "fused(" > $L/$1_fused.txt 2>&1; st $1_fused $?; }
}
fused_seq() {
    ok "$2" && { timeout 25 /tmp/b/$1/test_moe -b cuda -p threads -o sequence -c 1000 > $L/$1_seq1000.txt 2>&1
        st $1_seq1000 $?; }
}
fused_memcheck() {
    ok "$4" && { DFM_TEST_TIMEOUT_S=60 timeout 75 compute-sanitizer --tool memcheck --report-api-errors no \
        --error-exitcode 9 /tmp/b/$1/test_moe -b cuda -p threads -o "$2" > $L/$1_$3.txt 2>&1; st $1_$3 $?; }
}
suite_all() {
    ok "$2" && { timeout 120 /tmp/b/$1/test_moe -b cuda -p threads > $L/$1_all.txt 2>&1; st $1_all $?; }
}
v5_suite() {
    ok "$2" && { DFM_CUDA_TOK16_ROWS=0 timeout 70 /tmp/b/$1/test_moe -b cuda -p threads -o "fused(" \
        > $L/$1_fused_tok16.txt 2>&1; st $1_fused_tok16 $?; }
}
seq_mixed() {
    ok "$2" && { DFM_CUDA_FUSED=1 DFM_CUDA_TOK16_ROWS=4 timeout 40 /tmp/b/$1/test_moe -b cuda -p threads -o sequence \
        -c 1000 > $L/$1_seq_mixed.txt 2>&1; st $1_seq_mixed $?; }
}
bench_table() {
    mkdir -p /tmp/b/$1/bench && ln -sf /tmp/b/$1/dfm_bench /tmp/b/$1/bench/dfm_bench
    ok "$2" && { OUT=$L/bench BUILD=/tmp/b/$1 PYTHON=python3 BENCH_TIMEOUT=60 TORCH_TIMEOUT=60 timeout 60 \
        bash bench/run_bench.sh > $L/run_bench.out 2>&1; st bench $?; }
}
