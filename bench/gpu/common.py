"""Shared pieces of the GPU comparison scripts in bench/gpu/: the random
Llama-3.2-1B-shaped checkpoint, seeded token batches, and a timing loop that
measures the same way as `fedfm bench` (model/tasks.cc): the first untimed
iteration measures peak memory above what was allocated before it, the other
warm-up iterations are untimed, then `iters` iterations are timed between two
device synchronisations with a host clock.
"""
import json
import os
import time

import torch

# The shape of meta-llama/Llama-3.2-1B (its config.json), with random weights:
# 1.24 B parameters, 16 blocks of dim 2048, 32 query / 8 key-value heads of 64,
# SwiGLU 8192, vocabulary 128256, tied embedding / head, llama3 RoPE scaling.
LLAMA_3_2_1B = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 128000,
    "eos_token_id": 128001,
    "head_dim": 64,
    "hidden_act": "silu",
    "hidden_size": 2048,
    "initializer_range": 0.02,
    "intermediate_size": 8192,
    "max_position_embeddings": 131072,
    "mlp_bias": False,
    "num_attention_heads": 32,
    "num_hidden_layers": 16,
    "num_key_value_heads": 8,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {
        "factor": 32.0,
        "high_freq_factor": 4.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "rope_theta": 500000.0,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "vocab_size": 128256,
}


def log(*args):
    print(*args, flush=True)


def dtype_of(name):
    return {"bf16": torch.bfloat16, "f32": torch.float32, "fp16": torch.float16}[name]


def make_random_model(directory, seed=0, layers=None):
    """Writes a random-initialised Llama-3.2-1B-shaped LlamaForCausalLM to
    `directory` (config.json + model.safetensors, bf16) unless it is there."""
    import transformers

    if os.path.exists(os.path.join(directory, "model.safetensors")):
        log(f"model: {directory} exists")
        return
    os.makedirs(directory, exist_ok=True)
    spec = dict(LLAMA_3_2_1B)
    if layers:
        spec["num_hidden_layers"] = layers
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(spec, f, indent=2)
    config = transformers.LlamaConfig.from_pretrained(directory)
    torch.manual_seed(seed)
    start = time.time()
    with torch.device("cuda"):
        model = transformers.LlamaForCausalLM(config)
    model = model.to(torch.bfloat16)
    model.save_pretrained(directory, safe_serialization=True)
    n = sum(p.numel() for p in model.parameters())
    log(f"model: wrote {directory} ({n / 1e9:.3f} B parameters) in {time.time() - start:.1f} s")
    del model
    torch.cuda.empty_cache()


def load_hf_model(directory, dtype, attn):
    import transformers

    kwargs = {"attn_implementation": attn}
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=dtype, **kwargs)
    except TypeError:  # transformers < 4.56 spells it torch_dtype
        model = transformers.AutoModelForCausalLM.from_pretrained(directory, torch_dtype=dtype, **kwargs)
    return model.to("cuda")


def random_tokens(vocab, batch, seq_len, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(vocab, (batch, seq_len), generator=gen, dtype=torch.long).to("cuda")


def measure(step, batch, seq_len, iters, warmup):
    """One phase, timed as in model/tasks.cc. Returns ms_per_iter,
    tokens_per_s, peak_memory_bytes (above the allocation before the first
    call) and peak_total_bytes (all of it)."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    step()
    torch.cuda.synchronize()
    peak_total = torch.cuda.max_memory_allocated()
    for _ in range(1, warmup):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {
        "ms_per_iter": 1000.0 * seconds / iters,
        "tokens_per_s": batch * seq_len * iters / seconds,
        "peak_memory_bytes": int(peak_total - before),
        # Everything allocated at the peak, the weights included.
        "peak_total_bytes": int(peak_total),
    }


def environment():
    import transformers

    props = torch.cuda.get_device_properties(0)
    env = {
        "gpu": props.name,
        "gpu_memory_bytes": props.total_memory,
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "transformers_version": transformers.__version__,
    }
    try:
        import peft

        env["peft_version"] = peft.__version__
    except ImportError:
        pass
    return env


def read_json_objects(path):
    """The last JSON object printed on a line of `path` (fedfm bench prints
    one object; logs may precede it), or None."""
    if not path or not os.path.exists(path):
        return None
    found = None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    found = json.loads(line)
                except json.JSONDecodeError:
                    pass
    return found


def ratio(a, b):
    return a / b if a and b else None


def find_key(obj, key):
    """The first value of `key` in a nested dict/list (depth first), or None:
    fedfm bench outputs nest their numbers differently per benchmark."""
    if isinstance(obj, dict):
        if key in obj and not isinstance(obj[key], (dict, list)):
            return obj[key]
        for value in obj.values():
            found = find_key(value, key)
            if found is not None:
                return found
    elif isinstance(obj, list):
        for value in obj:
            found = find_key(value, key)
            if found is not None:
                return found
    return None
