#!/usr/bin/env python3
"""PyTorch reference of the switch-transformer language model (SPEC section 4), used only to check
ours, outside `npm test` (the way llm.c keeps train_gpt2.py beside train_gpt2.c).

  fidelity:  python3 model_torch.py train CHECKPOINT_DIR BATCHES.json [--steps N]
             loads the initial weights exported by ours, trains on the same batches with the same
             optimizer settings, prints one JSON object {"losses": [...]} on stdout; when
             BATCHES.json has "validation" batches, also "validationLoss" after training (the
             mean cross-entropy per token with the evaluation capacity factor).
  speed:     python3 model_torch.py bench [--vocab V] [--experts E] [--steps N] [--threads N]
             tokens/s of a training step (forward, backward, AdamW) on random batches.

Model: tied token embedding + learned positions, pre-norm RMSNorm blocks (causal multi-head
self-attention, then a feed-forward layer: Switch in the configured blocks, dense elsewhere), final
RMSNorm, cross-entropy + every Switch layer's aux loss (alpha * load-balancing loss). No biases.
Supports what the fidelity check needs: top-1 routing, relu, groups, no dropout, no jitter.
"""
import argparse
import json
import math
import re
import struct
import sys
import time

import torch
import torch.nn.functional as F


def read_safetensors(path):
    with open(path, 'rb') as f:
        data = f.read()
    (n,) = struct.unpack('<Q', data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, entry in header.items():
        if name == '__metadata__':
            continue
        assert entry['dtype'] == 'F32', entry
        begin, end = entry['data_offsets']
        buf = bytearray(data[8 + n + begin:8 + n + end])
        out[name] = torch.frombuffer(buf, dtype=torch.float32).reshape(entry['shape']).clone()
    return out


def is_switch_block(cfg, i):
    if cfg['numExperts'] == 0:
        return False
    sl = cfg['switchLayers']
    if sl == 'odd':
        return i % 2 == 1
    if sl == 'all':
        return True
    return i in sl


def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def attention(x, w_qkv, w_o, B, S, H):
    T, D = x.shape
    Dh = D // H
    qkv = (x @ w_qkv).view(B, S, 3, H, Dh).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(Dh)
    mask = torch.ones(S, S, dtype=torch.bool).tril()
    scores = scores.masked_fill(~mask, float('-inf'))
    ctx = torch.softmax(scores, -1) @ v
    return ctx.permute(0, 2, 1, 3).reshape(T, D) @ w_o


def switch_feed_forward(x, router, w_in, w_out, cfg, training):
    """SPEC section 1, top-1: capacity per group, slots in token order, dropped tokens give 0."""
    T, D = x.shape
    E = router.shape[1]
    G = cfg['groupSize'] or T
    cf = cfg['capacityFactor'] if training else cfg['evalCapacityFactor']
    C = max(cfg['minCapacity'], min(G, math.floor(G * cf / E)))
    y = torch.zeros_like(x)
    lb_total = 0.0
    for g0 in range(0, T, G):
        xg = x[g0:g0 + G]
        probs = torch.softmax(xg @ router, -1)
        gate, idx = probs.max(-1)
        onehot = F.one_hot(idx, E)
        position = ((torch.cumsum(onehot, 0) - onehot) * onehot).sum(-1)
        kept = position < C
        yg = torch.zeros_like(xg)
        for e in range(E):
            sel = (idx == e) & kept
            if sel.any():
                h = torch.relu(xg[sel] @ w_in[e]) @ w_out[e]
                yg[sel] = gate[sel].unsqueeze(-1) * h
        y[g0:g0 + G] = yg
        f = onehot.float().mean(0)  # constant for the gradient (§2.2 Eq. 4)
        P = probs.mean(0)
        lb_total = lb_total + E * (f * P).sum()
    lb = lb_total / (T // G)
    return y, cfg['loadBalanceCoef'] * lb


def forward(params, cfg, tokens, targets, B, S, training=True):
    D, H = cfg['dModel'], cfg['numHeads']
    eps = cfg['normEps']
    T = B * S
    x = (params['wte'][tokens.view(-1)].view(B, S, D) + params['wpe'][:S]).view(T, D)
    aux = 0.0
    for i in range(cfg['numLayers']):
        p = lambda n: params[f'blocks.{i}.{n}']
        x = x + attention(rmsnorm(x, p('norm1'), eps), p('attention.wQkv'), p('attention.wO'), B, S, H)
        h = rmsnorm(x, p('norm2'), eps)
        if is_switch_block(cfg, i):
            y, a = switch_feed_forward(h, p('ffn.router'), p('ffn.wIn'), p('ffn.wOut'), cfg, training)
            aux = aux + a
        else:
            y = torch.relu(h @ p('ffn.wIn')) @ p('ffn.wOut')
        x = x + y
    logits = rmsnorm(x, params['normFinal'], eps) @ params['wte'].t()
    ce = F.cross_entropy(logits, targets.view(-1))
    return ce + aux, ce


def make_optimizer(params, opts):
    # The routers ('blocks.N.ffn.router') train at routerLrScale times the learning rate of the rest.
    routers = [t for n, t in params.items() if re.fullmatch(r'blocks\.\d+\.ffn\.router', n)]
    rest = [t for n, t in params.items() if not re.fullmatch(r'blocks\.\d+\.ffn\.router', n)]
    groups = [{'params': rest}]
    if routers:
        groups.append({'params': routers, 'lr': opts['lr'] * opts.get('routerLrScale', 1.0)})
    opt = torch.optim.AdamW(groups, lr=opts['lr'], betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    warmup = opts.get('warmupSteps', 0)
    schedule = lambda step: (step + 1) / warmup if warmup > 0 and step < warmup else 1.0
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, schedule)


def train(args):
    with open(f'{args.checkpoint}/config.json') as f:
        cfg = json.load(f)['model']
    with open(args.batches) as f:
        spec = json.load(f)
    params = read_safetensors(f'{args.checkpoint}/model.safetensors')
    for t in params.values():
        t.requires_grad_(True)
    opt, sched = make_optimizer(params, spec['trainer'])
    B, S = spec['batchSize'], spec['seqLen']
    losses = []
    for step, batch in enumerate(spec['batches'][:args.steps]):
        tokens = torch.tensor(batch['tokens'], dtype=torch.long).view(B, S)
        targets = torch.tensor(batch['targets'], dtype=torch.long).view(B, S)
        loss, ce = forward(params, cfg, tokens, targets, B, S, training=True)
        opt.zero_grad()
        loss.backward()
        if spec['trainer'].get('clipNorm', 1.0) > 0:
            torch.nn.utils.clip_grad_norm_(params.values(), spec['trainer'].get('clipNorm', 1.0))
        opt.step()
        sched.step()
        losses.append(loss.item())
    out = {'losses': losses}
    if spec.get('validation'):
        with torch.no_grad():
            total, tokens = 0.0, 0
            for batch in spec['validation']:
                b = batch['batchSize']
                tok = torch.tensor(batch['tokens'], dtype=torch.long).view(b, S)
                tgt = torch.tensor(batch['targets'], dtype=torch.long).view(b, S)
                _, ce = forward(params, cfg, tok, tgt, b, S, training=False)
                total += ce.item() * b * S
                tokens += b * S
            out['validationLoss'] = total / tokens
    print(json.dumps(out))


def bench(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = {'vocabSize': args.vocab, 'dModel': 256, 'numHeads': 4, 'numLayers': 4, 'dFF': 1024, 'maxSeqLen': args.seq,
           'numExperts': args.experts, 'switchLayers': 'odd', 'capacityFactor': 1.25, 'evalCapacityFactor': 2.0,
           'minCapacity': 4, 'groupSize': 0, 'loadBalanceCoef': 0.01, 'normEps': 1e-6}
    D, Fd, E, V = 256, 1024, args.experts, args.vocab
    def tn(*shape, fan_in):
        return (torch.fmod(torch.randn(*shape), 2) * math.sqrt(0.1 / fan_in)).requires_grad_(True)
    params = {'wte': tn(V, D, fan_in=D), 'wpe': tn(args.seq, D, fan_in=D), 'normFinal': torch.ones(D, requires_grad=True)}
    for i in range(4):
        params[f'blocks.{i}.norm1'] = torch.ones(D, requires_grad=True)
        params[f'blocks.{i}.norm2'] = torch.ones(D, requires_grad=True)
        params[f'blocks.{i}.attention.wQkv'] = tn(D, 3 * D, fan_in=D)
        params[f'blocks.{i}.attention.wO'] = tn(D, D, fan_in=D)
        if is_switch_block(cfg, i):
            params[f'blocks.{i}.ffn.router'] = tn(D, E, fan_in=D)
            params[f'blocks.{i}.ffn.wIn'] = tn(E, D, Fd, fan_in=D)
            params[f'blocks.{i}.ffn.wOut'] = tn(E, Fd, D, fan_in=Fd)
        else:
            params[f'blocks.{i}.ffn.wIn'] = tn(D, Fd, fan_in=D)
            params[f'blocks.{i}.ffn.wOut'] = tn(Fd, D, fan_in=Fd)
    opt, _ = make_optimizer(params, {'lr': 2e-3})
    B, S = args.batch, args.seq
    times = []
    for step in range(args.steps + 1):
        tokens = torch.randint(0, V, (B, S))
        targets = torch.randint(0, V, (B, S))
        t0 = time.perf_counter()
        loss, _ = forward(params, cfg, tokens, targets, B, S)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params.values(), 1.0)
        opt.step()
        if step > 0:
            times.append(time.perf_counter() - t0)
    times.sort()
    median = times[len(times) // 2]
    print(json.dumps({'engine': 'pytorch ' + torch.__version__, 'threads': args.threads, 'vocab': V, 'experts': E,
                      'batch': B, 'seq': S, 'secondsPerStep': median, 'tokensPerSecond': B * S / median}))


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest='mode', required=True)
    t = sub.add_parser('train')
    t.add_argument('checkpoint')
    t.add_argument('batches')
    t.add_argument('--steps', type=int, default=10)
    b = sub.add_parser('bench')
    b.add_argument('--vocab', type=int, default=8193)
    b.add_argument('--experts', type=int, default=8)
    b.add_argument('--batch', type=int, default=16)
    b.add_argument('--seq', type=int, default=128)
    b.add_argument('--steps', type=int, default=5)
    b.add_argument('--threads', type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(getattr(args, 'threads', None) or torch.get_num_threads())
    train(args) if args.mode == 'train' else bench(args)


if __name__ == '__main__':
    sys.exit(main())
