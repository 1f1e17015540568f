#!/usr/bin/env python3
"""The PyTorch baseline of the `layer` and `experts` benchmark suites: the Switch feed-forward
layer (top-1, capacity, load-balancing loss) as a PyTorch user writes it, with index_select /
index_add over a loop of experts, and the dense T5 feed-forward layer. Prints one JSON object with
the median seconds of a forward and of a forward+backward.

With --serve it builds the layer once and then answers requests on stdin, one per line
(`forward-backward REPEATS` or `forward REPEATS`), each with one JSON line on stdout: the suite
alternates rounds of its own layer and this one in the same minutes, so a slow spell of the shared
machine lands on both sides of a ratio.

Run with the interpreter that has torch (Debian's python3-torch is in /usr/bin/python3) and
OMP_WAIT_POLICY=PASSIVE, e.g.
  OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/reference/switch_layer_torch.py --T 2048 --D 512 --F 2048 --E 8 --cf 1.25 --threads 2
"""
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn.functional as F


class SwitchFeedForward(torch.nn.Module):
    def __init__(self, d_model, d_ff, num_experts, capacity_factor, min_capacity=4):
        super().__init__()
        self.num_experts = num_experts
        self.capacity_factor = capacity_factor
        self.min_capacity = min_capacity
        self.router = torch.nn.Parameter(torch.randn(d_model, num_experts) * math.sqrt(0.1 / d_model))
        # One parameter per expert (as nn.ModuleList experts would be): slicing one (E, D, F) parameter
        # instead makes autograd materialise a full-size zero gradient per expert, which is slower.
        self.w_in = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.randn(d_model, d_ff) * math.sqrt(0.1 / d_model)) for _ in range(num_experts)])
        self.w_out = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.randn(d_ff, d_model) * math.sqrt(0.1 / d_ff)) for _ in range(num_experts)])

    def forward(self, x):
        tokens = x.shape[0]
        E = self.num_experts
        capacity = max(self.min_capacity, min(tokens, int(tokens * self.capacity_factor / E)))
        probs = torch.softmax(x @ self.router, dim=-1)
        gate, expert = probs.max(dim=-1)
        one_hot = F.one_hot(expert, E)
        position = ((torch.cumsum(one_hot, dim=0) - 1) * one_hot).sum(dim=-1)
        kept = position < capacity
        load_balance = E * (one_hot.float().mean(dim=0) * probs.mean(dim=0)).sum()
        self.kept_rows = int(kept.sum())
        y = torch.zeros_like(x)
        for e in range(E):
            rows = torch.nonzero((expert == e) & kept).squeeze(1)
            if rows.numel() == 0:
                continue
            h = torch.relu(x.index_select(0, rows) @ self.w_in[e])
            out = (h @ self.w_out[e]) * gate.index_select(0, rows).unsqueeze(1)
            y = y.index_add(0, rows, out)
        return y, load_balance


class DenseFeedForward(torch.nn.Module):
    def __init__(self, d_model, d_ff):
        super().__init__()
        self.w_in = torch.nn.Parameter(torch.randn(d_model, d_ff) * math.sqrt(0.1 / d_model))
        self.w_out = torch.nn.Parameter(torch.randn(d_ff, d_model) * math.sqrt(0.1 / d_ff))

    def forward(self, x):
        self.kept_rows = x.shape[0]
        return torch.relu(x @ self.w_in) @ self.w_out, torch.zeros(())


def median_time(fn, warmup, repeats):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--T", type=int, required=True)
    ap.add_argument("--D", type=int, required=True)
    ap.add_argument("--F", type=int, required=True)
    ap.add_argument("--E", type=int, default=8)
    ap.add_argument("--cf", type=float, default=1.25)
    ap.add_argument("--dense", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--serve", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    layer = DenseFeedForward(args.D, args.F) if args.dense else SwitchFeedForward(args.D, args.F, args.E, args.cf)
    x = torch.randn(args.T, args.D, requires_grad=True)
    dy = torch.randn(args.T, args.D)

    def forward():
        with torch.no_grad():
            layer(x)

    def forward_backward():
        for p in layer.parameters():
            p.grad = None  # fresh gradient buffers every step, as optimizer.zero_grad() does by default
        x.grad = None
        y, aux = layer(x)
        ((y * dy).sum() + 0.01 * aux).backward()

    if args.serve:
        import sys
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            fn = forward_backward if words[0] == "forward-backward" else forward
            repeats = int(words[1]) if len(words) > 1 else args.repeats
            seconds = median_time(fn, 0, repeats)
            print(json.dumps({"seconds": seconds, "rows": layer.kept_rows}), flush=True)
        return

    result = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "forward": median_time(forward, args.warmup, args.repeats),
        "forwardBackward": median_time(forward_backward, args.warmup, args.repeats),
        "rows": layer.kept_rows,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
