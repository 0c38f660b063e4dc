# Host cost per call of fused_deep_moe's output [T, H] bf16 on CUDA, by form (each output
# dropped before the next, as a caller's previous output is): torch.empty (main), the
# spare-out branch's pop path (capture test + pop, a block of n outputs made by
# torch.empty(n, T, H).unbind(0) every n calls), and the pieces alone. Median of 15
# bursts of 2000 calls, bursts interleaved.
import sys, time, torch
sys.path.insert(0, "python")
from deepfusedmoe.utils import stream_is_capturing, current_raw_stream
dev = torch.device("cuda", 0)
T, H = 32, 7168
bf16 = torch.bfloat16
n = min(16, (4 << 20) // (T * H * 2))
spare = []

def pool():
    cur = current_raw_stream(0)
    if spare and not stream_is_capturing():
        return spare.pop()
    spare.extend(torch.empty(n, T, H, dtype=bf16, device=dev).unbind(0))
    return spare.pop()

def pool_nocheck():
    if spare:
        return spare.pop()
    spare.extend(torch.empty(n, T, H, dtype=bf16, device=dev).unbind(0))
    return spare.pop()

forms = {
    "torch.empty(T, H, dtype, device)": lambda: torch.empty(T, H, dtype=bf16, device=dev),
    "spare pop (stream, capture test), n=%d" % n: pool,
    "spare pop without the tests": pool_nocheck,
    "stream_is_capturing()": stream_is_capturing,
    "current_raw_stream(0)": lambda: current_raw_stream(0),
    "block of n + unbind, per output": lambda: torch.empty(n, T, H, dtype=bf16, device=dev).unbind(0),
}
res = {k: [] for k in forms}
for _ in range(3):
    for f in forms.values():
        f()
for b in range(15):
    for k, f in forms.items():
        spare.clear()
        t0 = time.perf_counter()
        for _ in range(2000):
            y = f()
            del y
        dt = (time.perf_counter() - t0) / 2000 * 1e6
        if k.startswith("block"):
            dt /= n
        res[k].append(dt)
print("torch", torch.__version__, "T", T, "H", H)
for k, v in res.items():
    v.sort()
    print("%-48s median %.2f us  min %.2f us" % (k, v[len(v) // 2], v[0]))
