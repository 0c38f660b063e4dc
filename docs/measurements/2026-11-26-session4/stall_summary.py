import csv, gzip, sys, collections
f = sys.argv[1]; topn = int(sys.argv[2]) if len(sys.argv) > 2 else 40
rows = list(csv.reader(gzip.open(f, 'rt')))
kernels = []  # (name, header, rows)
i = 0
while i < len(rows):
    r = rows[i]
    if r and r[0] == 'Kernel Name':
        name = r[1]; hdr = rows[i+1]; body = []
        i += 2
        while i < len(rows) and rows[i] and rows[i][0] != 'Kernel Name':
            body.append(rows[i]); i += 1
        kernels.append((name, hdr, body))
    else:
        i += 1
for name, hdr, body in kernels:
    ix = {h: k for k, h in enumerate(hdr)}
    S = ix['Warp Stall Sampling (All Samples)']
    stalls = [h for h in hdr if h.startswith('stall_') and 'Not Issued' not in h]
    tot = sum(int(b[S]) for b in body)
    print('=' * 100); print(name[:150]); print('total samples', tot, 'instructions', len(body))
    agg = collections.Counter()
    for b in body:
        for s in stalls: agg[s] += int(b[ix[s]])
    print('by reason:', ', '.join(f'{k[6:]} {v/tot*100:.1f}%' for k, v in agg.most_common(10)))
    order = sorted(range(len(body)), key=lambda k: -int(body[k][S]))
    for k in order[:topn]:
        b = body[k]
        top = sorted(((int(b[ix[s]]), s[6:]) for s in stalls), reverse=True)[:3]
        print(f'{k:6d} {int(b[S])/tot*100:5.1f}% exec {b[ix["Instructions Executed"]]:>9} {b[1].strip()[:60]:60s} ' + ' '.join(f'{n}:{c}' for c, n in top if c))
