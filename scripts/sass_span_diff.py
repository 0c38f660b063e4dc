#!/usr/bin/env python3
"""sass_span_diff.py - did a change move the GEMM loops of the kernels?

An A/B of a knob inside one build (on against off) measures the knob against
its own off path; whether that off path is the code main runs is a question
of the SASS: the fused kernel sits on a register knife edge, and code added
to its dispatch or combine phase can change how ptxas schedules and allocates
the GEMM loops. This compares two SASS dumps (`cuobjdump -sass`) kernel by
kernel, with register and predicate numbers, immediates and addresses made
anonymous, and counts the instructions that differ inside each kernel's span
of warpgroup MMAs (first to last HGMMA / QGMMA / IGMMA) and in all. 0 inside
the span: the GEMM loops are the same code, only their surroundings moved.

    cuobjdump -sass a.cubin > a.txt; cuobjdump -sass b.cubin > b.txt
    scripts/sass_span_diff.py a.txt b.txt [kernel-name-substring]

cuobjdump is in the CUDA toolkit of the GPU machine, not on the CI machine.
"""
import difflib
import re
import sys


def kernels(path):
    """{mangled name: [anonymized instruction]} of a `cuobjdump -sass` dump."""
    out, name = {}, None
    for line in open(path):
        m = re.search(r"Function : (\S+)", line)
        if m:
            name = m.group(1)
            out[name] = []
            continue
        m = re.match(r"\s*/\*[0-9a-f]+\*/\s+(.*?)\s*;", line)
        if m and name:
            ins = re.sub(r"0x[0-9a-f]+", "X", m.group(1))
            ins = re.sub(r"\bU?R\d+\b", "R", ins)
            ins = re.sub(r"\bU?P\d\b", "P", ins)
            out[name].append(ins)
    return out


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    a, b = kernels(sys.argv[1]), kernels(sys.argv[2])
    pick = sys.argv[3] if len(sys.argv) > 3 else ""
    print("%8s %8s %10s %8s  %s" % ("instr A", "instr B", "in MMAs", "all", "kernel"))
    for name in sorted(set(a) & set(b)):
        if pick not in name:
            continue
        x, y = a[name], b[name]
        mma = [i for i, s in enumerate(x) if "GMMA" in s]
        ops = [o for o in difflib.SequenceMatcher(None, x, y, autojunk=False).get_opcodes()
               if o[0] != "equal"]
        size = lambda o: max(o[2] - o[1], o[4] - o[3])  # noqa: E731
        total = sum(size(o) for o in ops)
        inside = sum(size(o) for o in ops if mma and o[2] > mma[0] and o[1] < mma[-1]) if mma else 0
        print("%8d %8d %10s %8d  %s" % (len(x), len(y), inside if mma else "-", total, name))
    for name in sorted(set(a) ^ set(b)):
        print("only in %s: %s" % ("A" if name in a else "B", name))


if __name__ == "__main__":
    main()
