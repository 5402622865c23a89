#!/usr/bin/python3
"""Plain PyTorch reference for `fedfm bench train`: one LoRA training step on CPU.

The same work as `fedfm bench train` with its defaults: the llama2.c checkpoint
stories260K, LoRA rank 4 / alpha 8 on all seven projections (q, k, v, o, gate,
up, down), base weights frozen, AdamW (lr 1e-3, betas 0.9 / 0.999, eps 1e-8,
no weight decay) over the adapter only, gradient clipping at global norm 1.0,
next-token cross-entropy on random tokens, batch 16 x 128.

The model is written the idiomatic way (nn.Module, llama2.c's model.py
layout): RMSNorm, rotary embeddings on interleaved pairs (the checkpoint's own
convention), grouped-query attention with repeated key/value heads and an
explicit causal mask + softmax (torch 1.13 has no scaled_dot_product_attention),
SwiGLU MLP, tied or separate classifier. LoRA is PEFT's: y = W x + B(A(x)) *
alpha / r, A Kaiming-uniform, B zero.

Timing: `--warmup` untimed steps, then `--steps` timed steps, each step from
batch selection to the end of the optimizer update (loss.item() included).
Prints one JSON object on stdout.

Needs a Python with torch (Debian: /usr/bin/python3 with python3-torch).
"""

import argparse
import json
import math
import os
import platform
import statistics
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class ModelArgs:
    def __init__(self, dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, max_seq_len, shared_classifier):
        self.dim = dim
        self.hidden_dim = hidden_dim
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads
        self.vocab_size = vocab_size
        self.max_seq_len = max_seq_len
        self.shared_classifier = shared_classifier
        self.norm_eps = 1e-5
        self.rope_theta = 10000.0


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def precompute_freqs_cis(head_dim, end, theta):
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2)[: head_dim // 2].float() / head_dim))
    t = torch.arange(end, dtype=torch.float32)
    freqs = torch.outer(t, freqs)
    return torch.cos(freqs), torch.sin(freqs)


def apply_rotary_emb(xq, xk, cos, sin):
    # xq: [B, T, H, hd]; rotate interleaved pairs (x0, x1), (x2, x3), ...
    def rotate(x):
        xr, xi = x.float().reshape(x.shape[:-1] + (-1, 2)).unbind(-1)
        c = cos.view(1, cos.shape[0], 1, cos.shape[1])
        s = sin.view(1, sin.shape[0], 1, sin.shape[1])
        out_r = xr * c - xi * s
        out_i = xr * s + xi * c
        return torch.stack([out_r, out_i], dim=-1).flatten(3).type_as(x)

    return rotate(xq), rotate(xk)


def repeat_kv(x, n_rep):
    # [B, T, n_kv, hd] -> [B, T, n_kv * n_rep, hd], each key/value head repeated n_rep times.
    if n_rep == 1:
        return x
    b, t, n_kv, hd = x.shape
    return x[:, :, :, None, :].expand(b, t, n_kv, n_rep, hd).reshape(b, t, n_kv * n_rep, hd)


class LoraLinear(nn.Module):
    """A frozen nn.Linear plus a trainable low-rank update (PEFT's lora.Linear)."""

    def __init__(self, base, rank, alpha):
        super().__init__()
        self.base = base
        self.lora_A = nn.Linear(base.in_features, rank, bias=False)
        self.lora_B = nn.Linear(rank, base.out_features, bias=False)
        self.scaling = alpha / rank
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    def forward(self, x):
        return self.base(x) + self.lora_B(self.lora_A(x)) * self.scaling


class Attention(nn.Module):
    def __init__(self, args):
        super().__init__()
        self.n_heads = args.n_heads
        self.n_kv_heads = args.n_kv_heads
        self.n_rep = args.n_heads // args.n_kv_heads
        self.head_dim = args.dim // args.n_heads
        self.wq = nn.Linear(args.dim, args.n_heads * self.head_dim, bias=False)
        self.wk = nn.Linear(args.dim, args.n_kv_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(args.dim, args.n_kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(args.n_heads * self.head_dim, args.dim, bias=False)

    def forward(self, x, cos, sin, mask):
        b, t, _ = x.shape
        xq = self.wq(x).view(b, t, self.n_heads, self.head_dim)
        xk = self.wk(x).view(b, t, self.n_kv_heads, self.head_dim)
        xv = self.wv(x).view(b, t, self.n_kv_heads, self.head_dim)
        xq, xk = apply_rotary_emb(xq, xk, cos, sin)
        xk = repeat_kv(xk, self.n_rep)
        xv = repeat_kv(xv, self.n_rep)
        xq, xk, xv = xq.transpose(1, 2), xk.transpose(1, 2), xv.transpose(1, 2)  # [B, H, T, hd]
        scores = torch.matmul(xq, xk.transpose(2, 3)) / math.sqrt(self.head_dim)
        scores = scores + mask[:, :, :t, :t]
        scores = F.softmax(scores.float(), dim=-1).type_as(xq)
        out = torch.matmul(scores, xv)
        out = out.transpose(1, 2).contiguous().view(b, t, -1)
        return self.wo(out)


class FeedForward(nn.Module):
    def __init__(self, dim, hidden_dim):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)  # gate_proj
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)  # down_proj
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)  # up_proj

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    def __init__(self, args):
        super().__init__()
        self.attention = Attention(args)
        self.feed_forward = FeedForward(args.dim, args.hidden_dim)
        self.attention_norm = RMSNorm(args.dim, args.norm_eps)
        self.ffn_norm = RMSNorm(args.dim, args.norm_eps)

    def forward(self, x, cos, sin, mask):
        h = x + self.attention(self.attention_norm(x), cos, sin, mask)
        return h + self.feed_forward(self.ffn_norm(h))


class Transformer(nn.Module):
    def __init__(self, args):
        super().__init__()
        self.args = args
        self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim)
        self.layers = nn.ModuleList([TransformerBlock(args) for _ in range(args.n_layers)])
        self.norm = RMSNorm(args.dim, args.norm_eps)
        self.output = nn.Linear(args.dim, args.vocab_size, bias=False)
        if args.shared_classifier:
            self.output.weight = self.tok_embeddings.weight
        cos, sin = precompute_freqs_cis(args.dim // args.n_heads, args.max_seq_len, args.rope_theta)
        self.register_buffer("freqs_cos", cos, persistent=False)
        self.register_buffer("freqs_sin", sin, persistent=False)
        mask = torch.full((1, 1, args.max_seq_len, args.max_seq_len), float("-inf")).triu(1)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, tokens, targets):
        _, t = tokens.shape
        h = self.tok_embeddings(tokens)
        cos, sin = self.freqs_cos[:t], self.freqs_sin[:t]
        for layer in self.layers:
            h = layer(h, cos, sin, self.mask)
        logits = self.output(self.norm(h))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


def load_llama2c(path):
    """A Transformer with the weights of a legacy (version 0) llama2.c .bin."""
    with open(path, "rb") as f:
        header = struct.unpack("7i", f.read(28))
        dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, max_seq_len = header
        shared = vocab_size > 0
        args = ModelArgs(dim, hidden_dim, n_layers, n_heads, n_kv_heads, abs(vocab_size), max_seq_len, shared)
        data = np.frombuffer(f.read(), dtype=np.float32)
    model = Transformer(args)
    head_dim = dim // n_heads
    offset = 0

    def take(*shape):
        nonlocal offset
        n = int(np.prod(shape))
        if offset + n > data.size:
            raise ValueError(f"{path}: truncated at float offset {offset} (need {n} more)")
        t = torch.from_numpy(data[offset : offset + n].copy()).view(*shape)
        offset += n
        return t

    L = n_layers
    with torch.no_grad():
        model.tok_embeddings.weight.copy_(take(args.vocab_size, dim))
        for i in range(L):
            model.layers[i].attention_norm.weight.copy_(take(dim))
        for i in range(L):
            model.layers[i].attention.wq.weight.copy_(take(n_heads * head_dim, dim))
        for i in range(L):
            model.layers[i].attention.wk.weight.copy_(take(n_kv_heads * head_dim, dim))
        for i in range(L):
            model.layers[i].attention.wv.weight.copy_(take(n_kv_heads * head_dim, dim))
        for i in range(L):
            model.layers[i].attention.wo.weight.copy_(take(dim, n_heads * head_dim))
        for i in range(L):
            model.layers[i].ffn_norm.weight.copy_(take(dim))
        for i in range(L):
            model.layers[i].feed_forward.w1.weight.copy_(take(hidden_dim, dim))
        for i in range(L):
            model.layers[i].feed_forward.w2.weight.copy_(take(dim, hidden_dim))
        for i in range(L):
            model.layers[i].feed_forward.w3.weight.copy_(take(hidden_dim, dim))
        model.norm.weight.copy_(take(dim))
        offset += 2 * max_seq_len * (head_dim // 2)  # freq_cis_real, freq_cis_imag: recomputed
        if not shared:
            model.output.weight.copy_(take(args.vocab_size, dim))
    if offset != data.size:
        raise ValueError(f"{path}: {4 * (data.size - offset)} unexpected bytes after the last tensor")
    return model


TARGETS = {
    "q_proj": ("attention", "wq"),
    "k_proj": ("attention", "wk"),
    "v_proj": ("attention", "wv"),
    "o_proj": ("attention", "wo"),
    "gate_proj": ("feed_forward", "w1"),
    "up_proj": ("feed_forward", "w3"),
    "down_proj": ("feed_forward", "w2"),
}


def add_lora(model, targets, rank, alpha):
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in model.layers:
        for name in targets:
            parent_name, attr = TARGETS[name]
            parent = getattr(layer, parent_name)
            setattr(parent, attr, LoraLinear(getattr(parent, attr), rank, alpha))
    return [p for p in model.parameters() if p.requires_grad]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="assets/stories260K/stories260K.bin")
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--alpha", type=float, default=None, help="default 2 * rank (as fedfm bench train)")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--grad-clip", type=float, default=1.0, help="max global L2 norm; 0 = off")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args()
    alpha = a.alpha if a.alpha is not None else 2.0 * a.rank
    targets = [t for t in a.targets.split(",") if t]
    for t in targets:
        if t not in TARGETS:
            sys.exit(f"unknown target {t!r}; known: {', '.join(TARGETS)}")

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = load_llama2c(a.model)
    args = model.args
    if a.seq_len > args.max_seq_len:
        sys.exit(f"seq_len {a.seq_len} exceeds the model's {args.max_seq_len} positions")
    model_parameters = sum(p.numel() for p in model.parameters())
    params = add_lora(model, targets, a.rank, alpha)
    trainable = sum(p.numel() for p in params)
    model.train()
    optimizer = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)

    total = a.batch * (a.warmup + a.steps)
    g = torch.Generator().manual_seed(a.seed)
    windows = torch.randint(0, args.vocab_size, (total, a.seq_len + 1), generator=g)

    wall, cpu, losses = [], [], []
    for step in range(a.warmup + a.steps):
        w0, c0 = time.perf_counter(), time.process_time()
        batch = windows[step * a.batch : (step + 1) * a.batch]
        x, y = batch[:, :-1], batch[:, 1:]
        loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if a.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, a.grad_clip)
        optimizer.step()
        losses.append(loss.item())
        w1, c1 = time.perf_counter(), time.process_time()
        if step >= a.warmup:
            wall.append(w1 - w0)
            cpu.append(c1 - c0)

    mean = statistics.mean(wall)
    out = {
        "benchmark": "lora_step_reference",
        "implementation": "python pytorch (nn.Module, eager)",
        "model": a.model,
        "dim": args.dim,
        "hidden_dim": args.hidden_dim,
        "n_layers": args.n_layers,
        "n_heads": args.n_heads,
        "n_kv_heads": args.n_kv_heads,
        "vocab_size": args.vocab_size,
        "model_parameters": model_parameters,
        "trainable_parameters": trainable,
        "rank": a.rank,
        "alpha": alpha,
        "targets": targets,
        "batch": a.batch,
        "seq_len": a.seq_len,
        "steps": a.steps,
        "warmup": a.warmup,
        "optimizer": "adamw",
        "lr": a.lr,
        "grad_clip": a.grad_clip,
        "threads": torch.get_num_threads(),
        "cores": os.cpu_count(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "s_per_step_median": statistics.median(wall),
        "s_per_step_mean": mean,
        "s_per_step_min": min(wall),
        "cpu_s_per_step_mean": statistics.mean(cpu),
        "tokens_per_s": a.batch * a.seq_len / mean,
        "first_loss": losses[0],
        "final_loss": losses[-1],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
