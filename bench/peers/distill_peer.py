"""The PyTorch peer for behaviour distillation's meta-gradient.

It follows the structure of the authors' implementation: run the inner SGD loop storing the
student's weights at every step, then walk back through the steps computing, at each one, the
Hessian-vector and mixed products with torch.autograd.grad(create_graph=True) on a rebuilt graph.
Written by this project as an independent reference (gradients) and speed peer (timing).

  check mode:  python3 distill_peer.py check < input.json   -> JSON meta-gradients
  bench mode:  python3 distill_peer.py bench N T W D M B REPEATS THREADS -> JSON timing
"""
import json
import sys
import time

import torch


def forward(params, x, max_action):
    a = x
    for w, b in params[:-1]:
        a = torch.relu(a @ w + b)
    w, b = params[-1]
    return max_action * torch.tanh(a @ w + b)


def flat(params):
    return [t for layer in params for t in layer]


def unflat(tensors):
    return [(tensors[i], tensors[i + 1]) for i in range(0, len(tensors), 2)]


def meta_gradient(init, x, y, states, targets, weights, steps, lr, max_action):
    """dH/dX, dH/dY by storing weights per step, then per-step HVPs (the authors' structure)."""
    x = x.detach().requires_grad_(True)
    y = y.detach().requires_grad_(True)
    stored = []
    params = [t.detach() for t in flat(init)]
    for _ in range(steps):
        stored.append(params)
        p = [t.detach().requires_grad_(True) for t in params]
        loss = ((forward(unflat(p), x.detach(), max_action) - y.detach()) ** 2).mean()
        grads = torch.autograd.grad(loss, p)
        params = [(t - lr * g).detach() for t, g in zip(p, grads)]
    final = [t.detach().requires_grad_(True) for t in params]
    per_row = ((forward(unflat(final), states, max_action) - targets) ** 2).mean(1)
    outer = (weights * per_row).mean()
    v = list(torch.autograd.grad(outer, final))
    dx = torch.zeros_like(x)
    dy = torch.zeros_like(y)
    for t in reversed(range(steps)):
        p = [s.detach().requires_grad_(True) for s in stored[t]]
        loss = ((forward(unflat(p), x, max_action) - y) ** 2).mean()
        grads = torch.autograd.grad(loss, p, create_graph=True)
        dot = sum((g * vi).sum() for g, vi in zip(grads, v))
        hv = torch.autograd.grad(dot, p + [x, y])
        dx = dx - lr * hv[-2]
        dy = dy - lr * hv[-1]
        v = [vi - lr * h for vi, h in zip(v, hv[:-2])]
    return dx.detach(), dy.detach(), outer.detach()


def tensor(values, shape):
    return torch.tensor(values, dtype=torch.float32).reshape(shape)


def check():
    spec = json.load(sys.stdin)
    sizes = spec["sizes"]
    init = []
    for i in range(len(sizes) - 1):
        init.append((tensor(spec["weights"][i], (sizes[i], sizes[i + 1])), tensor(spec["biases"][i], (sizes[i + 1],))))
    n, d, m = spec["n"], sizes[0], sizes[-1]
    b = spec["b"]
    dx, dy, outer = meta_gradient(
        init, tensor(spec["x"], (n, d)), tensor(spec["y"], (n, m)), tensor(spec["states"], (b, d)),
        tensor(spec["targets"], (b, m)), tensor(spec["weightsOuter"], (b,)), spec["steps"], spec["lr"], spec["maxAction"])
    print(json.dumps({"dx": dx.flatten().tolist(), "dy": dy.flatten().tolist(), "outer": float(outer)}))


def bench():
    n, steps, width, depth, d, m, b, repeats, threads = (int(a) for a in sys.argv[2:11])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    sizes = [d] + [width] * depth + [m]
    init = []
    for i in range(len(sizes) - 1):
        bound = sizes[i] ** -0.5
        init.append(((torch.rand(sizes[i], sizes[i + 1]) * 2 - 1) * bound, (torch.rand(sizes[i + 1]) * 2 - 1) * bound))
    x, y = torch.randn(n, d), torch.rand(n, m) * 2 - 1
    states, targets, weights = torch.randn(b, d), torch.rand(b, m) * 2 - 1, torch.ones(b)
    meta_gradient(init, x, y, states, targets, weights, 2, 0.1, 1.0)  # warm-up
    times, cpu_times = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        meta_gradient(init, x, y, states, targets, weights, steps, 0.1, 1.0)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    print(json.dumps({"peer": "pytorch", "torch": torch.__version__, "threads": threads,
                      "s_per_outer_step": min(times), "times": times, "cpu_s_per_outer_step": min(cpu_times), "blas": torch.__config__.show().count("openblas") > 0}))


if __name__ == "__main__":
    {"check": check, "bench": bench}[sys.argv[1]]()
