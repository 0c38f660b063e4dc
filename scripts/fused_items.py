# scripts/fused_items.py - the fused kernel's per-item trace (dfm_bench with DFM_CUDA_FUSED=1
# DFM_CUDA_FUSED_TRACE=1 DFM_CUDA_FUSED_TRACE_ITEMS=PREFIX writes PREFIX.<config>.T<T>.rank<r>.csv):
# per rank, GEMM1 / GEMM2 item durations and gate waits (first items apart from later ones),
# the time between a CTA's items, each expert's GEMM1 end and GEMM2 span, and the CTAs busy
# over time. Usage: python3 scripts/fused_items.py "PREFIX.qwen3-235b.T1.rank*.csv" [KSPLIT]
import csv, sys, statistics as st, glob, os
tiles = {"qwen3-235b": (24, 32), "dsv3-e32": (32, 56), "dsv3-e32-int8": (32, 56), "qwen3-30b-bf16": (12, 16)}
def load(path):
    rows = list(csv.DictReader(open(path)))
    for r in rows:
        for k in ("cta", "n", "u", "g"): r[k] = int(r[k])
        for k in ("taken", "open", "done"): r[k] = float(r[k])
    return rows
def q(v):
    v = sorted(v)
    return "med %.1f p90 %.1f max %.1f" % (st.median(v), v[int(0.9 * (len(v) - 1))], v[-1]) if v else "-"
for path in sorted(glob.glob(sys.argv[1])):
    name = os.path.basename(path)
    cfg = name.split(".")[1]
    if cfg not in tiles:
        sys.exit("%s: GEMM1 / GEMM2 tiles per expert (2I/128, H/128) of config %r unknown: add it to `tiles`" % (name, cfg))
    t1, t2 = tiles[cfg]
    t1 *= int(sys.argv[2]) if len(sys.argv) > 2 else 1  # K-split GEMM1 (DFM_CUDA_FUSED_KSPLIT): 2 items a tile
    rows = load(path)
    total = max(r["u"] for r in rows) + 1
    A = total // (t1 + t2)
    n1 = A * t1
    g1 = [r for r in rows if r["u"] < n1]
    g2 = [r for r in rows if r["u"] >= n1]
    print("%s: %d items (%d experts: %d GEMM1, %d GEMM2), CTAs %d" % (name, total, A, n1, total - n1, len({r['cta'] for r in rows})))
    print("  GEMM1 run (open->done) %s; wait (taken->open) %s; taken %s" % (q([r["done"] - r["open"] for r in g1]), q([r["open"] - r["taken"] for r in g1]), q([r["taken"] for r in g1])))
    print("  GEMM2 run (open->done) %s; wait (taken->open) %s; taken %s" % (q([r["done"] - r["open"] for r in g2]), q([r["open"] - r["taken"] for r in g2]), q([r["taken"] for r in g2])))
    # a CTA's first item against its later GEMM1 items (the second round streams with fewer
    # CTAs), and the time from one item's end to the CTA's next (count, claim, gate)
    print("  GEMM1 run: first items %s; later items %s" % (q([r["done"] - r["open"] for r in g1 if r["n"] == 0]), q([r["done"] - r["open"] for r in g1 if r["n"] > 0])))
    by = {}
    for r in rows: by.setdefault(r["cta"], []).append(r)
    gaps = [b["taken"] - a["done"] for l in by.values() for a, b in zip(sorted(l, key=lambda r: r["n"]), sorted(l, key=lambda r: r["n"])[1:])]
    print("  a CTA's item end -> its next item taken %s" % q(gaps))
    ex = {}
    for r in rows:
        e = ex.setdefault(r["g"], {"g1": [], "g2": []})
        e["g1" if r["u"] < n1 else "g2"].append(r)
    for g in sorted(ex):
        e = ex[g]
        if not e["g1"]: continue
        print("    expert %3d: GEMM1 items %2d taken %.1f-%.1f done %.1f-%.1f | GEMM2 items %2d open %.1f-%.1f done %.1f-%.1f" % (
            g, len(e["g1"]), min(r["taken"] for r in e["g1"]), max(r["taken"] for r in e["g1"]), min(r["done"] for r in e["g1"]), max(r["done"] for r in e["g1"]),
            len(e["g2"]), min((r["open"] for r in e["g2"]), default=-1), max((r["open"] for r in e["g2"]), default=-1),
            min((r["done"] for r in e["g2"]), default=-1), max((r["done"] for r in e["g2"]), default=-1)))
    end = max(r["done"] for r in rows)
    line = "  busy CTAs (taken..done) every 5 us:"
    t = 0.0
    while t < end + 5:
        line += " %d" % sum(1 for r in rows if r["taken"] <= t < r["done"])
        t += 5
    print(line)
