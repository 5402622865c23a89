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

Trainable (--trainable):
  lora    peft LoRA adapters (rank --rank on --targets, float32 over the bf16
          base, forwards under bf16 autocast): the paper's "MeZO (LoRA)"
          setting and what `fedfm bench zo` trains (the default)
  all     every parameter: the paper's full-parameter setting
  blocks  every block's weights
Reports ms per step, tokens per second (batch x seq_len per step), the step /
forward time ratio and peak memory (above the weights, and in all, weights
included), measured as `fedfm bench` measures (bench/gpu/common.py), and
with --fedfm-json (the output of `fedfm bench zo`) the ratios fedfm /
reference of step time and of peak memory in all.

    mezo_reference.py --model DIR [--batch 8 --seq-len 1024] [--fedfm-json F] [--out OUT.json]
"""
import argparse
import gc
import json
import sys
import traceback

import contextlib

import numpy as np
import torch

import common


class MeZO:
    def __init__(self, model, params, eps, lr, weight_decay, inplace, autocast):
        self.model = model
        self.autocast = autocast
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
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if self.autocast else contextlib.nullcontext()
        with torch.inference_mode(), amp:
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
    if args.trainable == "lora":
        import peft

        config = peft.LoraConfig(r=args.rank, lora_alpha=2 * args.rank, lora_dropout=0.0,
                                 target_modules=args.targets.split(","), bias="none", task_type="CAUSAL_LM")
        model = peft.get_peft_model(model, config)  # adapters float32 (peft's default upcast)
        model.eval()
        # B starts at zero in peft; random B, as after some training, so the
        # perturbations change the loss the way they do mid-run.
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.01)
    elif args.trainable == "all":
        model.requires_grad_(True)
    else:
        model.model.layers.requires_grad_(True)
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    tokens = common.random_tokens(model.config.vocab_size, batch, seq_len, args.seed)
    autocast = args.trainable == "lora" and args.dtype == "bf16"
    mezo = MeZO(model, params, args.eps, args.lr, args.weight_decay, inplace=(variant == "inplace"),
                autocast=autocast)
    out = {
        "trainable_parameters": sum(p.numel() for _, p in params),
        "trainable_tensors": len(params),
        "autocast_bf16": autocast,
        "weight_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
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
    ap.add_argument("--trainable", choices=["lora", "all", "blocks"], default="lora")
    ap.add_argument("--rank", type=int, default=0, help="LoRA rank (0: fedfm's lora_rank, else 4)")
    ap.add_argument("--targets", default="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj")
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
    iters = args.iters or common.find_key(fedfm, "steps") or common.find_key(fedfm, "iters") or 10
    args.rank = args.rank or common.find_key(fedfm, "lora_rank") or 4
    result = {
        "benchmark": "zo_vs_mezo_reference",
        "environment": common.environment(),
        "model": args.model,
        "dtype": args.dtype,
        "attn": args.attn,
        "trainable": args.trainable,
        "rank": args.rank if args.trainable == "lora" else None,
        "targets": args.targets if args.trainable == "lora" else None,
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
                       f"peak {s['peak_total_bytes'] / 2**30:6.2f} GiB in all  "
                       f"step/forward {r['step_over_forward_time']:.2f}")
            if fedfm:
                fedfm_ms = common.find_key(fedfm, "step_ms")
                result["ratio_fedfm_over_mezo"][variant] = {
                    "step_time": common.ratio(fedfm_ms, s["ms_per_iter"]),
                    "speedup": common.ratio(s["ms_per_iter"], fedfm_ms),
                    "peak_memory_total": common.ratio(common.find_key(fedfm, "step_peak_total_bytes") or
                                                      common.find_key(fedfm, "step_peak_bytes"),
                                                      s["peak_total_bytes"]),
                }
    print(json.dumps(result))
    if args.out:
        with open(args.out, "w") as f:
            f.write(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
