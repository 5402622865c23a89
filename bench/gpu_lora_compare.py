#!/usr/bin/env python3
"""The Python side of bench/gpu_lora_compare.sh: LoRA training throughput of
transformers + peft on a random-initialised Llama-3.2-1B-shaped model, the
same model fedfm loads, so the two run side by side in one GPU session.

    python3 bench/gpu_lora_compare.py make-model --out DIR
        Random-initialised LlamaForCausalLM of Llama-3.2-1B's shape (16
        layers, hidden 2048, MLP 8192, 32 query / 8 key-value heads, vocab
        128256, tied embeddings), saved in bf16 as an HF safetensors directory.
    python3 bench/gpu_lora_compare.py train --model DIR [--batch 8] [--seq-len 512]
            [--rank 16] [--steps 20] [--warmup 3]
        LoRA (rank r, alpha 2r, all seven projections, PEFT defaults: fp32
        adapters) on the bf16 model under bf16 autocast, AdamW, random
        tokens; prints one JSON object: ms per step, tokens/s, peak memory
        (torch.cuda.max_memory_allocated since the model was loaded).
    python3 bench/gpu_lora_compare.py compare PYTHON_JSON FEDFM_JSON
        Prints both and the ratios fedfm / Python.
"""
import argparse
import json
import sys
import time


def make_model(args):
    import torch
    import transformers

    config = transformers.LlamaConfig(
        vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
        num_attention_heads=32, num_key_value_heads=8, head_dim=64, max_position_embeddings=4096,
        rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=True, hidden_act="silu")
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(args.out, safe_serialization=True)
    print(json.dumps({"out": args.out, "parameters": sum(p.numel() for p in model.parameters())}))


def train(args):
    import torch
    import peft
    import transformers

    device = torch.device("cuda")
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.bfloat16,
                                                                  attn_implementation="sdpa")
    except TypeError:
        model = transformers.AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=torch.bfloat16,
                                                                  attn_implementation="sdpa")
    model.to(device)
    model.config.use_cache = False
    config = peft.LoraConfig(r=args.rank, lora_alpha=2 * args.rank, lora_dropout=0.0, task_type="CAUSAL_LM",
                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                             "down_proj"])
    model = peft.get_peft_model(model, config)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    vocab = model.config.vocab_size
    gen = torch.Generator(device="cpu").manual_seed(0)
    steps = args.warmup + args.steps
    batches = [torch.randint(0, vocab, (args.batch, args.seq_len + 1), generator=gen) for _ in range(steps)]
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    loss = None
    for i, batch in enumerate(batches):
        batch = batch.to(device)
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(input_ids=batch[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, vocab), batch[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    times.sort()
    mean = sum(times) / len(times)
    print(json.dumps({
        "implementation": "python transformers + peft",
        "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
        "gpu": torch.cuda.get_device_name(0),
        "batch": args.batch, "seq_len": args.seq_len, "rank": args.rank, "steps": args.steps, "warmup": args.warmup,
        "trainable_parameters": sum(p.numel() for p in params),
        "ms_per_step": 1000 * mean, "ms_per_step_median": 1000 * times[len(times) // 2],
        "tokens_per_s": args.batch * args.seq_len / mean,
        "peak_memory_bytes": torch.cuda.max_memory_allocated(),
        "final_loss": float(loss)}))


def compare(args):
    with open(args.python_json) as f:
        py = json.loads(f.read().strip().splitlines()[-1])
    with open(args.fedfm_json) as f:
        ff = json.loads(f.read().strip().splitlines()[-1])
    print(json.dumps({
        "python": py, "fedfm": ff,
        "tokens_per_s_ratio_fedfm_over_python": ff["tokens_per_s"] / py["tokens_per_s"],
        "peak_memory_ratio_fedfm_over_python": ff["peak_memory_bytes"] / py["peak_memory_bytes"],
        "goal_tokens_per_s_ratio": 1.3}, indent=2))


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make-model")
    m.add_argument("--out", required=True)
    t = sub.add_parser("train")
    t.add_argument("--model", required=True)
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--seq-len", type=int, default=512)
    t.add_argument("--rank", type=int, default=16)
    t.add_argument("--steps", type=int, default=20)
    t.add_argument("--warmup", type=int, default=3)
    c = sub.add_parser("compare")
    c.add_argument("python_json")
    c.add_argument("fedfm_json")
    args = parser.parse_args()
    {"make-model": make_model, "train": train, "compare": compare}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
