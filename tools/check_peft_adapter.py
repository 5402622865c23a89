#!/usr/bin/env python3
"""Checks fedfm's LoRA adapters against Hugging Face PEFT, both ways, and
writes the reference outputs that peft/peft_compat_test.cc compares with.

    python3 tools/check_peft_adapter.py --base tests/fixtures/hf_llama \
        --ours tests/fixtures/peft_llama/ours --out OUT_DIR

Needs torch, transformers and peft (run from the repository root).

1. fedfm -> PEFT: loads the base model and the adapter fedfm trained and
   saved (--ours) with PeftModel.from_pretrained, and records its logits.
2. PEFT -> fedfm: builds a PEFT LoRA adapter with random non-zero A and B
   (init_lora_weights=False) on other targets, another rank and rsLoRA
   scaling, saves it with save_pretrained into OUT_DIR/peft_made, and
   records its logits.

OUT_DIR/reference.safetensors:
  input_ids    [2, 16] int64 (fixed, seeded)
  logits_base  [2, 16, V] float32, no adapter
  logits_ours  [2, 16, V] float32, base + fedfm's adapter (PEFT forward)
  logits_peft  [2, 16, V] float32, base + PEFT's adapter
OUT_DIR/reference.json: versions and settings. Everything runs on the CPU in
float32 with eager attention, so fedfm's float32 forward must agree to
rounding.
"""
import argparse
import json
import os
import sys

import torch


def load_base(path):
    import transformers

    kwargs = {"attn_implementation": "eager"}
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kwargs)
    except TypeError:  # transformers < 4.56 spells it torch_dtype
        model = transformers.AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32, **kwargs)
    return model.eval()


def logits_of(model, input_ids):
    with torch.no_grad():
        return model(input_ids=input_ids).logits.float().contiguous()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--ours", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    import peft
    import transformers
    from safetensors.torch import save_file

    torch.set_num_threads(max(1, min(8, os.cpu_count() or 1)))
    os.makedirs(args.out, exist_ok=True)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}", flush=True)

    base = load_base(args.base)
    vocab = base.config.vocab_size
    gen = torch.Generator().manual_seed(20240607)
    input_ids = torch.randint(0, vocab, (2, 16), generator=gen, dtype=torch.int64)
    logits_base = logits_of(base, input_ids)

    # 1. fedfm's adapter, loaded by PEFT.
    ours = peft.PeftModel.from_pretrained(load_base(args.base), args.ours).eval()
    loaded = sum(p.numel() for n, p in ours.named_parameters() if "lora_" in n)
    nonzero_b = sum(int(p.abs().sum() > 0) for n, p in ours.named_parameters() if "lora_B" in n)
    print(f"fedfm adapter: {loaded} LoRA parameters in PEFT, {nonzero_b} non-zero lora_B", flush=True)
    if nonzero_b == 0:
        sys.exit("fedfm adapter has only zero lora_B: it would not test anything")
    logits_ours = logits_of(ours, input_ids)
    print(f"fedfm adapter changes the logits by max {float((logits_ours - logits_base).abs().max()):.4g}", flush=True)

    # 2. An adapter made by PEFT: random non-zero A and B, rsLoRA, other targets and rank.
    config = peft.LoraConfig(r=6, lora_alpha=9, lora_dropout=0.0, use_rslora=True, init_lora_weights=False,
                             target_modules=["q_proj", "v_proj", "down_proj", "up_proj"], task_type="CAUSAL_LM")
    torch.manual_seed(1234)
    made = peft.get_peft_model(load_base(args.base), config).eval()
    with torch.no_grad():  # init_lora_weights=False gives kaiming A and B; make B larger so it matters
        for n, p in made.named_parameters():
            if "lora_B" in n:
                p.mul_(4.0)
    logits_peft = logits_of(made, input_ids)
    made_dir = os.path.join(args.out, "peft_made")
    made.save_pretrained(made_dir)
    print(f"PEFT adapter saved to {made_dir}: {sorted(os.listdir(made_dir))}", flush=True)
    print(f"PEFT adapter changes the logits by max {float((logits_peft - logits_base).abs().max()):.4g}", flush=True)

    save_file({"input_ids": input_ids, "logits_base": logits_base, "logits_ours": logits_ours,
               "logits_peft": logits_peft}, os.path.join(args.out, "reference.safetensors"))
    with open(os.path.join(args.out, "reference.json"), "w") as f:
        json.dump({"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
                   "base": args.base, "ours": args.ours, "dtype": "float32", "device": "cpu",
                   "attn_implementation": "eager", "input_ids_seed": 20240607,
                   "peft_made": {"r": 6, "lora_alpha": 9, "use_rslora": True,
                                 "target_modules": ["q_proj", "v_proj", "down_proj", "up_proj"],
                                 "init_lora_weights": False, "lora_B_scaled_by": 4.0, "torch_seed": 1234}},
                  f, indent=2)
    print("done", flush=True)


if __name__ == "__main__":
    main()
