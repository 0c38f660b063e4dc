#!/usr/bin/env bash
# sass_check.sh - what the compiled kernels really contain (issues 4 and 5 ask
# for the SASS to be checked): per kernel of a CUDA binary, the warpgroup MMA
# instructions (HGMMA = f16/bf16, QGMMA = fp8, IGMMA = int8) and the local-
# memory traffic (STL/LDL: spills or stack arrays; want 0). Needs cuobjdump
# (the CUDA toolkit on the GPU machine; not on the CI machine).
#
#   scripts/sass_check.sh build/libdfm.so
set -uo pipefail
lib=${1:-build/libdfm.so}
CUOBJDUMP=${CUOBJDUMP:-$(command -v cuobjdump || echo /usr/local/cuda/bin/cuobjdump)}
demangle=cat
command -v c++filt >/dev/null && demangle=c++filt
"$CUOBJDUMP" -sass "$lib" | awk '
    /Function : / { fn = $3; names[fn] = 1 }
    /HGMMA/ { h[fn]++ } /QGMMA/ { q[fn]++ } /IGMMA/ { i[fn]++ }
    /[^A-Z](STL|LDL)[. ]/ { l[fn]++ }
    END {
        printf "%6s %6s %6s %8s  %s\n", "HGMMA", "QGMMA", "IGMMA", "STL/LDL", "kernel"
        for (f in names)
            if (h[f] + q[f] + i[f] + l[f] > 0 || f ~ /fused|wg_gemm|dispatch|combine|requant/)
                printf "%6d %6d %6d %8d  %s\n", h[f], q[f], i[f], l[f], f
    }' | $demangle | cut -c1-200
