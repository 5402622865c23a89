#!/usr/bin/env python3
"""MeZO (Malladi et al., 2023) as published, on a Hugging Face causal LM on
one GPU: the reference that `fedfm bench zo` is compared with.

One step, exactly as the paper's trainer (zo_step + zo_update):
  seed <- random; perturb(+1); loss1 = forward; perturb(-2); loss2 = forward;
  perturb(+1); g = (loss1 - loss2) / (2 eps); update: z regenerated from
  seed, theta <- theta - lr (g z + wd theta)
where each of the four passes re-seeds the global generator and draws, per
trainable tensor in order, z = torch.normal(0, 1, size, dtype=param dtype)
and writes `param.data = param.data + scale * eps * z` (out of place, as
published). Forwards run under torch.inference_mode(). The "inplace"
variant does the same arithmetic with in-place adds (param.add_), which is
what a careful implementation does; it is timed too for reference.

Trainable: every parameter (MeZO's full-parameter setting) or only the
blocks' weights (--trainable blocks). Reports ms per step, tokens per
second (batch x seq_len per step), the step / forward time ratio and peak
memory above the weights, measured as `fedfm bench` measures
(bench/gpu/common.py), and with --fedfm-json the ratios fedfm / reference.

    mezo_reference.py --model DIR [--batch 8 --seq-len 1024] [--fedfm-json F] [--out OUT.json]
"""
import argparse
import gc
import json
import sys
import traceback

import numpy as np
import torch

import common


class MeZO:
    def __init__(self, model, params, eps, lr, weight_decay, inplace):
        self.model = model
        self.params = params  # [(name, param)], in model order
        self.eps = eps
        self.lr = lr
        self.weight_decay = weight_decay
        self.inplace = inplace
        self.rng = np.random.default_rng(0)
        self.seed = 0
        self.projected_grad = 0.0

    def perturb(self, scaling_factor):
        torch.manual_seed(self.seed)
        for _, param in self.params:
            z = torch.normal(mean=0, std=1, size=param.data.size(), device=param.data.device, dtype=param.data.dtype)
            if self.inplace:
                param.data.add_(z, alpha=scaling_factor * self.eps)
            else:
                param.data = param.data + scaling_factor * z * self.eps

    def forward(self, tokens):
        with torch.inference_mode():
            return self.model(input_ids=tokens, labels=tokens, use_cache=False).loss.detach()

    def step(self, tokens):
        self.seed = int(self.rng.integers(1000000000))
        self.perturb(1)
        loss1 = self.forward(tokens)
        self.perturb(-2)
        loss2 = self.forward(tokens)
        self.projected_grad = ((loss1 - loss2) / (2 * self.eps)).item()
        self.perturb(1)
        self.update()
        return loss1

    def update(self):
        torch.manual_seed(self.seed)
        for name, param in self.params:
            z = torch.normal(mean=0, std=1, size=param.data.size(), device=param.data.device, dtype=param.data.dtype)
            decay = "bias" not in name and "layer_norm" not in name and "layernorm" not in name
            if self.inplace:
                if decay and self.weight_decay:
                    param.data.mul_(1 - self.lr * self.weight_decay)
                param.data.add_(z, alpha=-self.lr * self.projected_grad)
            elif decay:
                param.data = param.data - self.lr * (self.projected_grad * z + self.weight_decay * param.data)
            else:
                param.data = param.data - self.lr * (self.projected_grad * z)


def bench(args, variant, batch, seq_len, iters):
    model = common.load_hf_model(args.model, common.dtype_of(args.dtype), args.attn)
    model.eval()
    model.requires_grad_(False)
    if args.trainable == "all":
        model.requires_grad_(True)
    else:
        model.model.layers.requires_grad_(True)
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    tokens = common.random_tokens(model.config.vocab_size, batch, seq_len, args.seed)
    mezo = MeZO(model, params, args.eps, args.lr, args.weight_decay, inplace=(variant == "inplace"))
    out = {
        "trainable_parameters": sum(p.numel() for _, p in params),
        "trainable_tensors": len(params),
    }
    out["forward_loss"] = common.measure(lambda: mezo.forward(tokens), batch, seq_len, iters, args.warmup)
    out["step"] = common.measure(lambda: mezo.step(tokens), batch, seq_len, iters, args.warmup)
    out["step_over_forward_time"] = out["step"]["ms_per_iter"] / out["forward_loss"]["ms_per_iter"]
    out["loss"] = float(mezo.forward(tokens))
    del model, params, tokens, mezo
    gc.collect()
    torch.cuda.empty_cache()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--fedfm-json")
    ap.add_argument("--variants", default="published,inplace")
    ap.add_argument("--trainable", choices=["all", "blocks"], default="all")
    ap.add_argument("--attn", default="sdpa")
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--seq-len", type=int, default=0)
    ap.add_argument("--iters", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--eps", type=float, default=1e-3)
    ap.add_argument("--lr", type=float, default=1e-6)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out")
    args = ap.parse_args()

    fedfm = common.read_json_objects(args.fedfm_json)
    batch = args.batch or common.find_key(fedfm, "batch") or 8
    seq_len = args.seq_len or common.find_key(fedfm, "seq_len") or 1024
    iters = args.iters or common.find_key(fedfm, "iters") or 10
    result = {
        "benchmark": "zo_vs_mezo_reference",
        "environment": common.environment(),
        "model": args.model,
        "dtype": args.dtype,
        "attn": args.attn,
        "trainable": args.trainable,
        "batch": batch,
        "seq_len": seq_len,
        "iters": iters,
        "eps": args.eps,
        "lr": args.lr,
        "fedfm": fedfm,
        "mezo": {},
        "ratio_fedfm_over_mezo": {},
    }
    for variant in [v for v in args.variants.split(",") if v]:
        common.log(f"MeZO {variant}: batch {batch} x {seq_len}, {iters} iters, trainable {args.trainable}")
        try:
            r = bench(args, variant, batch, seq_len, iters)
        except Exception as e:
            traceback.print_exc()
            r = {"error": f"{type(e).__name__}: {e}"}
            gc.collect()
            torch.cuda.empty_cache()
        result["mezo"][variant] = r
        if "step" in r:
            s = r["step"]
            common.log(f"  step {s['ms_per_iter']:8.2f} ms  {s['tokens_per_s']:10.0f} tok/s  "
                       f"peak {s['peak_memory_bytes'] / 2**30:6.2f} GiB  step/forward {r['step_over_forward_time']:.2f}")
            if fedfm:
                result["ratio_fedfm_over_mezo"][variant] = {
                    "tokens_per_s": common.ratio(common.find_key(fedfm, "tokens_per_s"), s["tokens_per_s"]),
                    "peak_memory": common.ratio(common.find_key(fedfm, "peak_memory_bytes"), s["peak_memory_bytes"]),
                }
    print(json.dumps(result))
    if args.out:
        with open(args.out, "w") as f:
            f.write(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
