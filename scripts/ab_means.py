# scripts/ab_means.py - the table of an A/B call: files ab_<variant>.txt, each the dfm_bench
# output of that variant's rounds appended in turn (docs/measurements/*/callN/command.sh), ->
# per config and T, the mean layer time of each variant over its rounds (and the rounds' values
# with -v). Usage: python3 scripts/ab_means.py [-v] DIR [VARIANT ...] (default: every ab_*.txt,
# in name order).
#   -b BASE[:LIMIT]  instead of the table, the variant whose mean ratio to BASE's means over the
#                    rows both have is lowest, if below LIMIT (default 1), else BASE (for a call
#                    that picks what to test next); the ratios go to stderr
import glob, os, sys
verbose = "-v" in sys.argv[1:]
args = [a for a in sys.argv[1:] if a != "-v"]
best_of = None
if "-b" in args:
    i = args.index("-b")
    if i + 1 >= len(args):
        sys.exit("ab_means.py: -b needs BASE[:LIMIT]")
    best_of = args[i + 1]
    del args[i:i + 2]
if not args:
    sys.exit("usage: python3 scripts/ab_means.py [-v] [-b BASE[:LIMIT]] DIR [VARIANT ...]")
d = args[0]
names = args[1:] or sorted(os.path.basename(p)[3:-4] for p in glob.glob(os.path.join(d, "ab_*.txt")))
rows, order = {}, []
for v in names:
    for line in open(os.path.join(d, "ab_%s.txt" % v)):
        f = line.split()
        # config ranks T routing floor dispatch gemms combine layer lay/flr
        if len(f) < 10 or f[0].startswith("#") or not f[1].isdigit() or not f[2].isdigit():
            continue
        key = (f[0], int(f[2]), f[3])
        if key not in rows:
            rows[key] = {}
            order.append(key)
        rows[key].setdefault(v, []).append(float(f[8]))
if best_of is not None:
    base, _, limit = best_of.partition(":")
    limit = float(limit) if limit else 1.0
    mean = lambda x: sum(x) / len(x)
    pick = (limit, base)
    for n in names:
        if n == base:
            continue
        ratios = [mean(v[n]) / mean(v[base]) for v in rows.values() if v.get(n) and v.get(base)]
        if ratios:
            r = mean(ratios)
            print("%s %.4f" % (n, r), file=sys.stderr)
            pick = min(pick, (r, n))
    print(pick[1])
    sys.exit(0)
w = max([len(n) for n in names] + [7])
print("%-16s %5s %-8s " % ("config", "T", "routing") + " ".join("%*s" % (w, n) for n in names))
for key in sorted(order, key=lambda k: (k[0], k[2], k[1])):
    vals = rows[key]
    cells = []
    for n in names:
        x = vals.get(n)
        cells.append("%*s" % (w, "%.1f" % (sum(x) / len(x)) if x else "-"))
    print("%-16s %5d %-8s " % key + " ".join(cells))
    if verbose:
        for n in names:
            if vals.get(n):
                print("%32s %s: %s" % ("", n, " ".join("%.1f" % y for y in vals[n])))
