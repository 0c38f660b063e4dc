# Host cost of allocating fused_deep_moe's output [T, H] bf16 on CUDA, per call, by
# allocation form (each tensor dropped before the next, as a caller's previous output
# is): torch.empty with sizes as arguments (what buffer.py does), torch.empty_like(x),
# x.new_empty(T, H). Median of 15 bursts of 2000 calls, bursts interleaved.
import time, torch
dev = torch.device("cuda", 0)
T, H = 32, 7168
x = torch.randn(T, H, device=dev).to(torch.bfloat16)
bf16 = torch.bfloat16
forms = {
    "torch.empty(T, H, dtype, device)": lambda: torch.empty(T, H, dtype=bf16, device=dev),
    "torch.empty_like(x)": lambda: torch.empty_like(x),
    "x.new_empty(T, H)": lambda: x.new_empty(T, H),
    "torch.empty_like(x, memory_format=contiguous)": lambda: torch.empty_like(x, memory_format=torch.contiguous_format),
}
res = {k: [] for k in forms}
for _ in range(3):
    for f in forms.values():
        f()
for b in range(15):
    for k, f in forms.items():
        t0 = time.perf_counter()
        for _ in range(2000):
            y = f()
            del y
        res[k].append((time.perf_counter() - t0) / 2000 * 1e6)
print("torch", torch.__version__)
for k, v in res.items():
    v.sort()
    print("%-48s median %.2f us  min %.2f us" % (k, v[len(v) // 2], v[0]))
y = torch.empty_like(x)
print("empty_like: shape", tuple(y.shape), y.dtype, y.device, "contiguous", y.is_contiguous(), "strides", y.stride())
