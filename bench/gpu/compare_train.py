#!/usr/bin/env python3
"""LoRA training step with Hugging Face transformers + peft on one GPU: the
reference that `fedfm bench train` is compared with.

One step: forward with labels (mean next-token loss), backward, AdamW step
on the adapter parameters, zero_grad(set_to_none). peft's defaults otherwise
(adapters in float32 over a bf16 base, since peft upcasts adapter weights;
--adapter-dtype bf16 keeps them in the base dtype); with a bf16 base the step
runs under bf16 autocast, as `fedfm bench train` does on CUDA (--no-autocast
turns it off). Rank, targets, batch, length and steps default to those of
the fedfm JSON (rank 4 on all seven projections without one). Same timing and
memory measurement as `fedfm bench` (bench/gpu/common.py).

    compare_train.py --model DIR [--rank 4 --targets q_proj,v_proj,...]
                     [--batch 8 --seq-len 1024] [--fedfm-json F] [--out OUT.json]
"""
import contextlib
import argparse
import gc
import json
import sys
import traceback

import torch

import common


def bench(args, attn, batch, seq_len, iters):
    import peft

    model = common.load_hf_model(args.model, common.dtype_of(args.dtype), attn)
    model.requires_grad_(False)
    config = peft.LoraConfig(r=args.rank, lora_alpha=args.alpha or 2 * args.rank, lora_dropout=0.0,
                             target_modules=args.targets.split(","), bias="none", task_type="CAUSAL_LM")
    kwargs = {}
    if args.adapter_dtype == "bf16":
        kwargs["autocast_adapter_dtype"] = False
    model = peft.get_peft_model(model, config, **kwargs)
    model.train()  # lora_dropout is 0: train() only matters for modules with dropout
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr)
    tokens = common.random_tokens(model.config.vocab_size, batch, seq_len, args.seed)

    autocast = args.autocast and args.dtype == "bf16"

    def step():
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
        with amp:
            loss = model(input_ids=tokens, labels=tokens, use_cache=False).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    out = {
        "trainable_parameters": sum(p.numel() for p in params),
        "adapter_dtype": str(params[0].dtype) if params else None,
        "autocast_bf16": autocast,
    }
    out["step"] = common.measure(step, batch, seq_len, iters, args.warmup)
    del model, opt, params, tokens
    gc.collect()
    torch.cuda.empty_cache()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--fedfm-json")
    ap.add_argument("--attn", default="eager,sdpa")
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--rank", type=int, default=0, help="0: the fedfm JSON's, else 4")
    ap.add_argument("--alpha", type=float, default=0, help="0: twice the rank")
    ap.add_argument("--targets", default="", help="comma-separated; default: the fedfm JSON's, else all seven")
    ap.add_argument("--no-autocast", dest="autocast", action="store_false")
    ap.add_argument("--adapter-dtype", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--seq-len", type=int, default=0)
    ap.add_argument("--iters", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out")
    args = ap.parse_args()

    fedfm = common.read_json_objects(args.fedfm_json)
    batch = args.batch or common.find_key(fedfm, "batch") or 8
    seq_len = args.seq_len or common.find_key(fedfm, "seq_len") or 1024
    iters = args.iters or common.find_key(fedfm, "steps") or common.find_key(fedfm, "iters") or 10
    args.rank = args.rank or common.find_key(fedfm, "rank") or 4
    if not args.targets:
        targets = (fedfm or {}).get("targets")
        args.targets = ",".join(targets) if isinstance(targets, list) else \
            "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
    result = {
        "benchmark": "lora_vs_peft",
        "environment": common.environment(),
        "model": args.model,
        "dtype": args.dtype,
        "rank": args.rank,
        "alpha": args.alpha,
        "targets": args.targets,
        "adapter_dtype": args.adapter_dtype,
        "batch": batch,
        "seq_len": seq_len,
        "iters": iters,
        "fedfm": fedfm,
        "peft": {},
        "ratio_fedfm_over_peft": {},
    }
    for attn in [a for a in args.attn.split(",") if a]:
        common.log(f"peft LoRA r={args.rank} {args.targets} attn={attn}: batch {batch} x {seq_len}, {iters} iters")
        try:
            r = bench(args, attn, batch, seq_len, iters)
        except Exception as e:
            traceback.print_exc()
            r = {"error": f"{type(e).__name__}: {e}"}
            gc.collect()
            torch.cuda.empty_cache()
        result["peft"][attn] = r
        if "step" in r:
            s = r["step"]
            common.log(f"  step {s['ms_per_iter']:8.2f} ms  {s['tokens_per_s']:10.0f} tok/s  "
                       f"peak {s['peak_memory_bytes'] / 2**30:6.2f} GiB above weights, "
                       f"{s['peak_total_bytes'] / 2**30:6.2f} GiB in all")
            if fedfm:
                fedfm_peak = common.find_key(fedfm, "peak_memory_bytes")
                result["ratio_fedfm_over_peft"][attn] = {
                    "tokens_per_s": common.ratio(common.find_key(fedfm, "tokens_per_s"), s["tokens_per_s"]),
                    "peak_memory_vs_above_weights": common.ratio(fedfm_peak, s["peak_memory_bytes"]),
                    "peak_memory_vs_total": common.ratio(fedfm_peak, s["peak_total_bytes"]),
                }
    print(json.dumps(result))
    if args.out:
        with open(args.out, "w") as f:
            f.write(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
