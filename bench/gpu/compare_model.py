#!/usr/bin/env python3
"""`fedfm bench model` against Hugging Face transformers on one GPU.

Runs the three phases of `fedfm bench model` (model/tasks.cc) with
transformers' LlamaForCausalLM on the same checkpoint, batch, sequence length
and dtype, timed and memory-measured the same way (bench/gpu/common.py), once
for each attention implementation asked for (eager, sdpa), and writes one
JSON object with both sides and the ratios fedfm / transformers:
  forward        logits under torch.inference_mode()
  forward_loss   forward + mean next-token loss, grad mode on, nothing trainable
  train_step     forward + loss + backward with every block's weights
                 trainable (embedding, final norm and head frozen), gradients
                 dropped after each step

    compare_model.py --make-model DIR            # random Llama-3.2-1B shape, bf16
    compare_model.py --model DIR --fedfm-json F --out OUT.json [--attn eager,sdpa]

F is the output of `fedfm bench model --model DIR --dtype bf16 --device cuda
--batch 8 --seq-len 1024`. Batch, length and iterations default to F's.
"""
import argparse
import gc
import json
import sys
import traceback

import torch

import common

PHASES = {"forward": "forward", "forward_loss": "forward_loss", "train_step": "train_step_all_blocks"}


def bench_hf(model_dir, attn, dtype, batch, seq_len, iters, warmup, seed):
    model = common.load_hf_model(model_dir, dtype, attn)
    model.eval()  # no dropout; autograd still works
    model.requires_grad_(False)
    vocab = model.config.vocab_size
    tokens = common.random_tokens(vocab, batch, seq_len, seed)
    out = {}

    def forward():
        with torch.inference_mode():
            model(input_ids=tokens, use_cache=False).logits

    def forward_loss():
        model(input_ids=tokens, labels=tokens, use_cache=False).loss

    out["forward"] = common.measure(forward, batch, seq_len, iters, warmup)
    out["forward_loss"] = common.measure(forward_loss, batch, seq_len, iters, warmup)

    blocks = model.model.layers
    blocks.requires_grad_(True)
    params = [p for p in blocks.parameters()]

    def train_step():
        model(input_ids=tokens, labels=tokens, use_cache=False).loss.backward()
        for p in params:
            p.grad = None

    out["train_step"] = common.measure(train_step, batch, seq_len, iters, warmup)
    out["trainable_parameters"] = sum(p.numel() for p in params)
    del model, params, tokens
    gc.collect()
    torch.cuda.empty_cache()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--make-model", metavar="DIR", help="write a random Llama-3.2-1B-shaped bf16 checkpoint and exit")
    ap.add_argument("--layers", type=int, default=0, help="with --make-model: blocks (0 = 16, the real count)")
    ap.add_argument("--model", metavar="DIR")
    ap.add_argument("--fedfm-json", help="output of fedfm bench model on the same model")
    ap.add_argument("--attn", default="eager,sdpa")
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--seq-len", type=int, default=0)
    ap.add_argument("--iters", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="write the JSON here too")
    args = ap.parse_args()

    if args.make_model:
        common.make_random_model(args.make_model, seed=args.seed, layers=args.layers)
        return 0
    if not args.model:
        ap.error("--model or --make-model")

    fedfm = common.read_json_objects(args.fedfm_json)
    batch = args.batch or (fedfm or {}).get("batch") or 8
    seq_len = args.seq_len or (fedfm or {}).get("seq_len") or 1024
    iters = args.iters or (fedfm or {}).get("iters") or 10
    result = {
        "benchmark": "model_vs_transformers",
        "environment": common.environment(),
        "model": args.model,
        "dtype": args.dtype,
        "batch": batch,
        "seq_len": seq_len,
        "iters": iters,
        "warmup": args.warmup,
        "fedfm": fedfm,
        "transformers": {},
        "ratio_fedfm_over_transformers": {},
    }
    for attn in [a for a in args.attn.split(",") if a]:
        common.log(f"transformers attn={attn}: batch {batch} x {seq_len}, {iters} iters")
        try:
            hf = bench_hf(args.model, attn, common.dtype_of(args.dtype), batch, seq_len, iters, args.warmup,
                          args.seed)
        except Exception as e:  # an OOM in one variant must not lose the others
            traceback.print_exc()
            hf = {"error": f"{type(e).__name__}: {e}"}
            gc.collect()
            torch.cuda.empty_cache()
        result["transformers"][attn] = hf
        if fedfm and "error" not in hf:
            ratios = {}
            for phase, fedfm_phase in PHASES.items():
                f, h = fedfm.get(fedfm_phase, {}), hf[phase]
                ratios[phase] = {
                    "tokens_per_s": common.ratio(f.get("tokens_per_s"), h["tokens_per_s"]),
                    "peak_memory": common.ratio(f.get("peak_memory_bytes"), h["peak_memory_bytes"]),
                }
            result["ratio_fedfm_over_transformers"][attn] = ratios
        for phase in PHASES:
            if phase in hf:
                p = hf[phase]
                common.log(f"  {phase:13s} {p['tokens_per_s']:>10.0f} tok/s  {p['ms_per_iter']:8.2f} ms  "
                           f"peak {p['peak_memory_bytes'] / 2**30:6.2f} GiB")
    if fedfm:
        for phase, fedfm_phase in PHASES.items():
            p = fedfm.get(fedfm_phase, {})
            if p:
                common.log(f"  fedfm {phase:13s} {p['tokens_per_s']:>10.0f} tok/s  {p['ms_per_iter']:8.2f} ms  "
                           f"peak {p['peak_memory_bytes'] / 2**30:6.2f} GiB")
    text = json.dumps(result)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
