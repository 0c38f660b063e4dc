#!/usr/bin/env python3
"""plot.py - merge dfm_bench's CSV with torch_baseline.py's into one table
(CSV + markdown) and draw latency against T per configuration, floor included.

    plot.py --dfm dfm.csv [--torch torch.csv] [--csv bench.csv] [--md bench.md]
            [--png bench.png] [--title TEXT]

Rows are joined on (config, ranks, T, routing). speedup_vs_torch =
torch_layer_us / layer_us. Without matplotlib the PNG is skipped (said so).
"""
import argparse
import csv
import math
import sys

KEY = ("config", "ranks", "T", "routing")
TORCH_COLS = ["torch_layer_us", "torch_dispatch_us", "torch_gemms_us", "torch_combine_us",
              "torch_gemm_impl", "torch_check"]


def num(s):
    try:
        v = float(s)
        return v if math.isfinite(v) else None
    except (TypeError, ValueError):
        return None


def fmt(v, digits=1):
    return "" if v is None else f"{v:.{digits}f}"


def merge(dfm_rows, torch_rows, fused_rows=(), local_rows=()):
    """One row per case: dfm's unfused columns, the torch baseline's, the layer
    time of the one-kernel fused operator (a second dfm_bench pass with
    DFM_CUDA_FUSED=1 on the same routing) as fused_layer_us, and of the same
    kernel with communication disabled (dfm_bench -L) as fused_local_us, with
    comm_us = fused_layer_us - fused_local_us."""
    tmap = {tuple(r[k] for k in KEY): r for r in torch_rows}
    fmap = {tuple(r[k] for k in KEY): r for r in fused_rows}
    lmap = {tuple(r[k] for k in KEY): r for r in local_rows}
    out = []
    for r in dfm_rows:
        m = dict(r)
        t = tmap.get(tuple(r[k] for k in KEY), {})
        for c in TORCH_COLS:
            m[c] = t.get(c, "")
        fr = fmap.get(tuple(r[k] for k in KEY), {})
        fl = num(fr.get("layer_us")) if fr.get("ok", "1") != "0" else None
        m["fused_layer_us"] = fmt(fl) if fl else ""
        lr = lmap.get(tuple(r[k] for k in KEY), {})
        ll = num(lr.get("layer_us")) if lr.get("ok", "1") != "0" else None
        m["fused_local_us"] = fmt(ll) if ll else ""
        m["comm_us"] = fmt(fl - ll) if fl and ll else ""
        fl_floor = num(m.get("floor_us"))
        m["fused_over_floor"] = fmt(fl / fl_floor, 3) if fl and fl_floor else ""
        lay, tl = num(m["layer_us"]), num(m["torch_layer_us"])
        m["speedup_vs_torch"] = fmt(tl / lay, 2) if lay and tl else ""
        m["fused_speedup_vs_torch"] = fmt(tl / fl, 2) if fl and tl else ""
        out.append(m)
    return out


def markdown(rows):
    head = ["config", "R", "T", "routing", "floor", "dispatch", "gemms", "combine", "layer",
            "layer/floor", "fused layer", "fused/floor", "fused, no comm", "comm cost",
            "torch layer", "torch gemms", "speed-up vs torch", "fused speed-up vs torch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["config"], r["ranks"], r["T"], r["routing"], r["floor_us"], r["dispatch_us"],
                 r["gemms_us"], r["combine_us"], r["layer_us"], r["layer_over_floor"],
                 r["fused_layer_us"] or "-", r["fused_over_floor"] or "-",
                 r["fused_local_us"] or "-", r["comm_us"] or "-",
                 r["torch_layer_us"] or r["torch_gemm_impl"] or "-", r["torch_gemms_us"] or "-",
                 r["speedup_vs_torch"] or "-", r["fused_speedup_vs_torch"] or "-"]
        if r.get("ok") == "0":
            cells[8] += " (FAILED)"
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows, path, title):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot.py: no matplotlib, PNG skipped", file=sys.stderr)
        return
    configs = list(dict.fromkeys(r["config"] for r in rows))
    n = len(configs)
    cols = min(3, n)
    rws = (n + cols - 1) // cols
    fig, axes = plt.subplots(rws, cols, figsize=(5.2 * cols, 4.0 * rws), squeeze=False)
    for ax, name in zip(axes.flat, configs):
        uni = sorted((r for r in rows if r["config"] == name and r["routing"] == "uniform"),
                     key=lambda r: int(r["T"]))
        T = [int(r["T"]) for r in uni]
        series = [("layer (dfm_fused_moe, unfused launches)", "layer_us", "o-", "C0"),
                  ("layer (one fused kernel)", "fused_layer_us", "D-", "C1"),
                  ("fused kernel, no communication", "fused_local_us", "d:", "C4"),
                  ("dfm expert GEMMs", "gemms_us", "s--", "C2"),
                  ("torch baseline layer", "torch_layer_us", "^-", "C3"),
                  ("floor", "floor_us", "-", "k")]
        for label, col, style, color in series:
            pts = [(t, num(r[col])) for t, r in zip(T, uni) if num(r[col])]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, color=color, label=label,
                        linewidth=2.2 if col == "floor_us" else 1.4)
        for r in rows:
            if r["config"] == name and r["routing"] != "uniform" and num(r["layer_us"]):
                mk = "x" if r["routing"] == "skew" else "+"
                ax.plot([int(r["T"])], [num(r["layer_us"])], mk, color="C0", markersize=9,
                        label=f"layer, {r['routing']} routing")
                if num(r["torch_layer_us"]):
                    ax.plot([int(r["T"])], [num(r["torch_layer_us"])], mk, color="C3",
                            markersize=9, label=f"torch, {r['routing']} routing")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("T (tokens per rank)")
        ax.set_ylabel("latency per layer (us, median)")
        ranks = uni[0]["ranks"] if uni else "?"
        ax.set_title(f"{name}, {ranks} ranks")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6, loc="best")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot.py: wrote {path}")


def optional_rows(path, what):
    """The rows of an optional CSV; none (said on stderr) when it is missing."""
    if not path:
        return []
    try:
        with open(path) as f:
            return list(csv.DictReader(f))
    except OSError as e:
        print(f"plot.py: no {what} rows ({e})", file=sys.stderr)
        return []


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dfm", required=True)
    ap.add_argument("--torch")
    ap.add_argument("--fused", help="dfm_bench CSV of the DFM_CUDA_FUSED=1 pass")
    ap.add_argument("--fused-local", help="dfm_bench -L CSV of the DFM_CUDA_FUSED=1 pass")
    ap.add_argument("--csv")
    ap.add_argument("--md")
    ap.add_argument("--png")
    ap.add_argument("--title", default="")
    a = ap.parse_args()
    with open(a.dfm) as f:
        dfm_rows = list(csv.DictReader(f))
    rows = merge(dfm_rows, optional_rows(a.torch, "torch"), optional_rows(a.fused, "fused"),
                 optional_rows(a.fused_local, "fused, no communication"))
    if a.csv and rows:
        with open(a.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
            w.writeheader()
            w.writerows(rows)
    md = markdown(rows)
    if a.md:
        with open(a.md, "w") as f:
            f.write(md)
    print(md, end="")
    if a.png and rows:
        plot(rows, a.png, a.title)


if __name__ == "__main__":
    main()
