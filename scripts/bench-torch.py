#!/usr/bin/env python3
"""PyTorch baselines for tilekit's GPU benchmark (runtime/src/bench), at the same shapes and with
the same FLOP and byte counts, so that one GPU run prints both tables (scripts/gpu-check.sh stages
this script beside the checker; `run.sh --bench` runs it after the checker when torch imports).

Rows: a 1 GiB device-to-device copy (the bandwidth ceiling), SDPA forward and backward through the
cuDNN and flash backends (B*S = 16k tokens, model width 2048, head dims 64/128/256, S 512..16k,
causal and not), fused AdamW (one flat 2^28 tensor and the 1.24 G-parameter Llama-3.2-1B list),
a Muon step (torch.optim.Muon where this torch has it, else the usual bf16 Newton-Schulz
reference), cross-entropy forward + backward (bf16 logits, V = 32000 / 128256), the unfused linear
cross-entropy, and torch._grouped_mm at the DeepSeek-V3 / Qwen3-30B-A3B / Mixtral MoE shapes with
its ratio to torch.mm at M = T*k and the same N, K, plus torch's routing + sort.

Each row is the median of --runs timed runs after 3 warm-ups, timed with CUDA events. A row the
backend refuses prints the error and the run goes on. Usage: bench-torch.py [--runs N] [--only
attention,optim,moe]
"""
import argparse
import math
import sys

import torch
import torch.nn.functional as F

ROWS = []


def timed(fn, runs, warmup=3):
    """Median milliseconds of `runs` calls of fn, each timed with CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    ms = []
    for _ in range(runs):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        ms.append(start.elapsed_time(end))
    ms.sort()
    return ms[len(ms) // 2]


class Bench:
    def __init__(self, runs):
        self.runs = runs
        self.copy_gbs = None
        self.mm_cache = {}

    def row(self, kernel, shape, ms, rate, unit, ceiling=None, vs=None):
        ROWS.append((kernel, shape, ms, rate, unit, ceiling, vs))

    def flops(self, kernel, shape, ms, flops, vs=None):
        tf = flops / (ms * 1e-3) / 1e12
        self.row(kernel, shape, ms, tf, "TFLOP/s", None, vs)
        return tf

    def bytes(self, kernel, shape, ms, nbytes):
        gbs = nbytes / (ms * 1e-3) / 1e9
        self.row(kernel, shape, ms, gbs, "GB/s", gbs / self.copy_gbs if self.copy_gbs else None)

    def failed(self, kernel, shape, err):
        msg = str(err).strip().splitlines()[0][:90] if str(err).strip() else type(err).__name__
        ROWS.append((kernel, shape, None, None, None, None, "FAILED: " + msg))

    def mm_tflops(self, m, n, k):
        """torch.mm (bf16, cuBLAS) TFLOP/s at m x n x k, measured once per shape."""
        key = (m, n, k)
        if key not in self.mm_cache:
            a = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            b = torch.randn(k, n, device="cuda", dtype=torch.bfloat16)
            ms = timed(lambda: torch.mm(a, b), self.runs)
            self.mm_cache[key] = 2.0 * m * n * k / (ms * 1e-3) / 1e12
            del a, b
        return self.mm_cache[key]


def copy_ceiling(b):
    n = 1 << 28
    src = torch.rand(n, device="cuda")
    dst = torch.empty_like(src)
    ms = timed(lambda: dst.copy_(src), b.runs)
    b.copy_gbs = 2.0 * n * 4 / (ms * 1e-3) / 1e9
    b.row("copy (ceiling)", "1 GiB d2d", ms, b.copy_gbs, "GB/s")


def attention(b):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backends = [("cuDNN", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION)]
    tokens, width = 16384, 2048
    for d in (64, 128, 256):
        for s in (512, 1024, 2048, 4096, 8192, 16384):
            batch, heads = tokens // s, width // d
            shape = f"B{batch} H{heads} S{s}"
            q, k, v, do = (torch.randn(batch, heads, s, d, device="cuda", dtype=torch.bfloat16)
                           for _ in range(4))
            for causal in (False, True):
                fwd_flops = 4.0 * batch * heads * s * s * d / (2.0 if causal else 1.0)
                tag = f"hd{d}" + (" causal" if causal else "")
                for name, backend in backends:
                    try:
                        with sdpa_kernel(backend):
                            ms = timed(lambda: F.scaled_dot_product_attention(
                                q, k, v, is_causal=causal), b.runs)
                        b.flops(f"SDPA {name} fwd {tag}", shape, ms, fwd_flops)
                    except Exception as e:  # the backend refuses the shape
                        b.failed(f"SDPA {name} fwd {tag}", shape, e)
                    if d > 128:
                        continue
                    try:
                        qg, kg, vg = (t.detach().requires_grad_() for t in (q, k, v))
                        with sdpa_kernel(backend):
                            out = F.scaled_dot_product_attention(qg, kg, vg, is_causal=causal)
                            ms = timed(lambda: torch.autograd.grad(
                                out, (qg, kg, vg), do, retain_graph=True), b.runs)
                        b.flops(f"SDPA {name} bwd {tag}", shape, ms, 2.5 * fwd_flops)
                        del out, qg, kg, vg
                    except Exception as e:
                        b.failed(f"SDPA {name} bwd {tag}", shape, e)
            del q, k, v, do


def llama_1b_shapes():
    h, kv, f, layers, vocab = 2048, 512, 8192, 16, 128256
    shapes = [(vocab, h)]
    for _ in range(layers):
        shapes += [(h,), (h, h), (kv, h), (kv, h), (h, h), (h,), (f, h), (f, h), (h, f)]
    shapes.append((h,))
    return shapes


def newton_schulz5(g, steps=5, eps=1e-7):
    """Muon's orthogonalization (Keller Jordan's reference): bf16, quintic (3.4445, -4.7750,
    2.0315), X / (||X||_F + eps), transposed when rows > cols; batched over the leading dim."""
    a, bb, c = (3.4445, -4.7750, 2.0315)
    x = g.bfloat16()
    trans = g.size(-2) > g.size(-1)
    if trans:
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + eps)
    for _ in range(steps):
        am = x @ x.mT
        bm = bb * am + c * am @ am
        x = a * x + bm @ x
    if trans:
        x = x.mT
    return x


def optim(b):
    # Fused AdamW: 28 bytes per parameter (p, g, m, v read; p, m, v written).
    for label, shapes in (("16384×16384", [(1 << 14, 1 << 14)]),
                          (None, llama_1b_shapes())):
        n = sum(math.prod(s) for s in shapes)
        if label is None:
            label = f"{len(shapes)} tensors, {n / 1e9:.3f} G"
        params = [torch.nn.Parameter(torch.rand(s, device="cuda") * 2 - 1) for s in shapes]
        for p in params:
            p.grad = torch.rand_like(p) * 2 - 1
        opt = torch.optim.AdamW(params, lr=1e-3, fused=True)
        ms = timed(opt.step, b.runs)
        b.bytes("torch AdamW fused", label, ms, 28.0 * n)
        del params, opt
        torch.cuda.empty_cache()

    # Muon: the same FLOP count as tilekit's row, 5 * (4 m^2 n + 2 m^3) per m x n matrix.
    for batch, r, c in ((4, 4096, 4096), (2, 14336, 4096)):
        m, n = min(r, c), max(r, c)
        flops = batch * 5 * (4.0 * m * m * n + 2.0 * m ** 3)
        g = torch.rand(batch, r, c, device="cuda") * 2 - 1
        muon_cls = getattr(torch.optim, "Muon", None)
        if muon_cls is not None:
            ps = [torch.nn.Parameter(torch.rand(r, c, device="cuda")) for _ in range(batch)]
            for i, p in enumerate(ps):
                p.grad = g[i].clone()
            opt = muon_cls(ps, lr=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True)
            ms = timed(opt.step, b.runs)
            name = "torch.optim.Muon step"
            del ps, opt
        else:
            ms = timed(lambda: newton_schulz5(g), b.runs)
            name = "torch NS5 reference (bf16)"
        tf = b.flops(name, f"{batch}×{r}×{c}", ms, flops)
        k = batch * 5 * (2 * n + m)
        ROWS[-1] = ROWS[-1][:6] + (f"{tf / b.mm_tflops(m, m, k):.2f}× torch.mm {m}×{m}×{k}",)
        del g
        torch.cuda.empty_cache()

    # Cross-entropy forward + backward over bf16 logits: 4 bytes per logit (read, gradient).
    t = 8192
    for vocab in (32000, 128256):
        x = (torch.rand(t, vocab, device="cuda", dtype=torch.bfloat16) * 2 - 1).requires_grad_()
        tg = torch.randint(0, vocab, (t,), device="cuda")
        tg[5::17] = -100

        def ce():
            loss = F.cross_entropy(x, tg, ignore_index=-100)
            torch.autograd.grad(loss, x)

        ms = timed(ce, b.runs)
        b.bytes("torch cross_entropy fwd+bwd <bf16>", f"T{t} V{vocab}", ms, 4.0 * t * vocab)
        del x, tg
        torch.cuda.empty_cache()

    # Linear cross-entropy, unfused (logits materialized): 6 T V H FLOPs.
    t, h, vocab = 8192, 4096, 128256
    hid = (torch.rand(t, h, device="cuda", dtype=torch.bfloat16) * 2 - 1).requires_grad_()
    w = (torch.rand(vocab, h, device="cuda", dtype=torch.bfloat16) * 0.02).requires_grad_()
    tg = torch.randint(0, vocab, (t,), device="cuda")
    tg[5::17] = -100

    def lce():
        loss = F.cross_entropy((hid @ w.T).float(), tg, ignore_index=-100)
        torch.autograd.grad(loss, (hid, w))

    try:
        ms = timed(lce, b.runs)
        b.flops("torch linear CE fwd+bwd (unfused)", f"T{t} H{h} V{vocab}", ms, 6.0 * t * h * vocab)
    except Exception as e:  # out of memory, say
        b.failed("torch linear CE fwd+bwd (unfused)", f"T{t} H{h} V{vocab}", e)
    del hid, w, tg
    torch.cuda.empty_cache()


def moe(b):
    models = (("DeepSeek-V3", 256, 8, 7168, 2048, True),
              ("Qwen3-30B-A3B", 128, 8, 2048, 768, False),
              ("Mixtral-8x7B", 8, 2, 4096, 14336, False))
    bf = torch.bfloat16
    for name, e, k, h, f, grouped in models:
        w_gu = torch.randn(e, 2 * f, h, device="cuda", dtype=bf)  # gate and up, K-major
        w_d = torch.randn(e, h, f, device="cuda", dtype=bf)
        for t in (4096, 16384):
            shape = f"{name} T{t}"
            logits = torch.randn(t, e, device="cuda")
            bias = torch.randn(e, device="cuda")

            def route():
                if grouped:
                    s = torch.sigmoid(logits)
                    sb = (s + bias).view(t, 8, e // 8)
                    gs = sb.topk(2, dim=-1).values.sum(-1)
                    keep = gs.topk(4, dim=-1).indices
                    mask = torch.zeros(t, 8, device="cuda", dtype=torch.bool)
                    mask.scatter_(1, keep, True)
                    sel = sb.masked_fill(~mask[..., None], float("-inf")).view(t, e)
                    idx = sel.topk(k, dim=-1).indices
                    gate = s.gather(1, idx)
                    gate = 2.5 * gate / gate.sum(-1, keepdim=True)
                else:
                    vals, idx = torch.softmax(logits, -1).topk(k, dim=-1)
                    gate = vals / vals.sum(-1, keepdim=True)
                flat = idx.flatten()
                order = flat.argsort(stable=True)
                counts = torch.bincount(flat, minlength=e)
                return gate, order, counts

            ms = timed(route, b.runs)
            b.row("torch routing + argsort permutation", shape, ms, ms * 1e3, "µs")
            _, order, counts = route()
            offs = counts.cumsum(0).to(torch.int32)
            x = torch.randn(t, h, device="cuda", dtype=bf)
            xp = x[order // k]
            rows = t * k
            for kernel, a, w, n_out, kk, flops in (
                    ("torch._grouped_mm gate/up", xp, w_gu, 2 * f, h, 2.0 * rows * h * 2 * f),
                    ("torch._grouped_mm down", torch.randn(rows, f, device="cuda", dtype=bf),
                     w_d, h, f, 2.0 * rows * f * h)):
                try:
                    ms = timed(lambda: torch._grouped_mm(a, w.transpose(-2, -1), offs=offs),
                               b.runs)
                    tf = b.flops(kernel, shape, ms, flops)
                    ROWS[-1] = ROWS[-1][:6] + (
                        f"{tf / b.mm_tflops(rows, n_out, kk):.2f}× torch.mm {rows}×{n_out}×{kk}",)
                except Exception as err:
                    b.failed(kernel, shape, err)
            del x, xp, logits, bias
            torch.cuda.empty_cache()
        del w_gu, w_d
        torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--only", default="attention,optim,moe")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("bench-torch: no CUDA device visible to torch", file=sys.stderr)
        return 1
    print(f"\ntorch {torch.version.__version__} (CUDA {torch.version.cuda}, cuDNN "
          f"{torch.backends.cudnn.version()}) on {torch.cuda.get_device_name()}")
    b = Bench(args.runs)
    copy_ceiling(b)
    sections = {"attention": attention, "optim": optim, "moe": moe}
    for name in args.only.split(","):
        try:
            sections[name](b)
        except Exception as e:  # keep the rows measured so far
            b.failed(name, "-", e)
        torch.cuda.empty_cache()
    print(f"\n{'kernel':<40} {'shape':>26} {'median ms':>10} {'rate':>16} {'% ceiling':>9} "
          f"{'vs baseline':>28}")
    for kernel, shape, ms, rate, unit, ceiling, vs in ROWS:
        if ms is None:
            print(f"{kernel:<40} {shape:>26} {vs}")
            continue
        cell = f"{100 * ceiling:.1f}%" if ceiling is not None else "-"
        print(f"{kernel:<40} {shape:>26} {ms:>10.3f} {rate:>9.1f} {unit:<7} {cell:>9} "
              f"{vs or '-':>28}")
    print(f"\n(median of {args.runs} runs after 3 warm-ups, CUDA events; copy ceiling "
          f"{b.copy_gbs:.0f} GB/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
