#!/usr/bin/env python3
"""Builds the tiny Hugging Face fixtures under tests/fixtures/hf_llama and
tests/fixtures/hf_qwen2: random-initialised LlamaForCausalLM and
Qwen2ForCausalLM models (grouped-query attention, untied heads), a byte-level
BPE tokenizer.json trained on bundled text, and reference outputs computed by
`transformers` for the C++ loader, transformer and tokenizer tests.

    python3 tools/make_hf_fixtures.py OUT_DIR

Needs torch, transformers, tokenizers and safetensors (run from the repository
root, which holds the bundled training text). Writes OUT_DIR/hf_llama,
OUT_DIR/hf_qwen2 and OUT_DIR/hf_fixtures.tar.gz (both folders). Each folder:
  config.json, model.safetensors       save_pretrained (float32)
  bf16/config.json, bf16/model.safetensors   the same weights rounded to bfloat16
  tokenizer.json, tokenizer_config.json
  reference.safetensors                input_ids.{i} [1, T] int64;
      logits.{i} [1, T, V] float32 (CPU, float32, eager attention);
      logits_bf16_weights.{i}: CPU float32 forward of the bf16-rounded weights;
      logits_bf16_cuda.{i}: bf16 forward on a GPU (when one is present), as float32;
      inv_freq [hd/2]; generate.prompt [1, P], generate.output [1, P + N] (greedy)
  reference.json                       texts, versions, settings
  tokenizer_cases.json                 [{text, ids, ids_no_special, decoded}]
"""
import json
import os
import shutil
import subprocess
import sys
import traceback

import torch
import transformers
from safetensors.torch import save_file
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                r"\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
               r"\s*[\r\n]+|\s+(?!\S)|\s+")

# Texts the models are run on (reference logits) and the tokenizer is tested on.
MODEL_TEXTS = [
    "Once upon a time, there was a little girl named Lily. She loved to play outside.",
    "ROMEO:\nBut soft! What light through yonder window breaks?",
    "Caf\u00e9 na\u00efve \u2014 \u65e5\u672c\u8a9e \U0001F642 1234567, it's 3.14!",
]
TOKENIZER_TEXTS = MODEL_TEXTS + [
    "",
    " ",
    "Hello world",
    "  leading spaces and trailing   ",
    "I'm sure they'll say it's OK, don't you THINK'S",
    "line one\nline two\r\n\r\nthree\n",
    "tabs\tand\t\tmore 1 12 123 1234 12345",
    "\u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440, \u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac, "
    "\ud55c\uad6d\uc5b4 \u0627\u0644\u0639\u0631\u0628\u064a\u0629",
    "emoji \U0001F44D\U0001F3FD and \u00bd \u2167 \u00b2",
    "special <|endoftext|> in the middle <|end_of_text|> and <|begin_of_text|> too",
    "The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX!",
]


def log(*args):
    print(*args, flush=True)


def training_text():
    texts = []
    with open("assets/tinystories_val/cs336_tinystories_sample.txt", encoding="utf-8") as f:
        texts.append(f.read())
    with open("assets/tinyshakespeare/input.txt", encoding="utf-8") as f:
        texts.append(f.read(40000))
    # A few non-ASCII lines so that multi-byte merges exist.
    texts.append("Caf\u00e9 na\u00efve \u65e5\u672c\u8a9e \u65e5\u672c \u041f\u0440\u0438\u0432\u0435\u0442 "
                 "\u043c\u0438\u0440 \U0001F642\U0001F642 \u2014 \u2014 \u00e9t\u00e9" * 20)
    return texts


def train_tokenizer(kind):
    """Byte-level BPE of 480 tokens plus special tokens appended after them."""
    tok = Tokenizer(models.BPE())
    regex = LLAMA3_REGEX if kind == "llama" else QWEN2_REGEX
    if kind == "qwen2":
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=480, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train_from_iterator(training_text(), trainer)
    if kind == "llama":
        specials = ["<|begin_of_text|>", "<|end_of_text|>"]
        tok.add_special_tokens(specials)
        bos = tok.token_to_id("<|begin_of_text|>")
        tok.post_processor = processors.TemplateProcessing(
            single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
            special_tokens=[("<|begin_of_text|>", bos)])
        config = {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>",
                  "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 128}
    else:
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        tok.add_special_tokens(specials)
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        config = {"bos_token": None, "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
                  "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 128}
    return tok, config


def randomize(model, seed):
    """Weights large enough that every part (norms, biases, rotary) matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("embed_tokens.weight"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / (p.shape[-1] ** 0.5))


def make_config(kind, vocab_size):
    v5 = int(transformers.__version__.split(".")[0]) >= 5
    common = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
                  vocab_size=vocab_size, max_position_embeddings=128, hidden_act="silu",
                  tie_word_embeddings=False, attn_implementation="eager")
    if kind == "llama":
        # Llama 3 style rotary scaling, so that every branch of it is exercised (hd = 16).
        rope = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64}
        theta = 500000.0
        kw = dict(common, num_hidden_layers=2, rms_norm_eps=1e-5, attention_bias=False, mlp_bias=False,
                  bos_token_id=None, eos_token_id=None)
        if v5:
            return transformers.LlamaConfig(**kw, rope_parameters=dict(rope, rope_theta=theta))
        return transformers.LlamaConfig(**kw, rope_theta=theta, rope_scaling=rope)
    kw = dict(common, num_hidden_layers=3, rms_norm_eps=1e-6, use_sliding_window=False)
    theta = 1000000.0
    if v5:
        return transformers.Qwen2Config(**kw, rope_parameters={"rope_type": "default", "rope_theta": theta})
    return transformers.Qwen2Config(**kw, rope_theta=theta)


def build(kind, out_root, seed):
    out = os.path.join(out_root, "hf_" + kind)
    os.makedirs(out, exist_ok=True)
    tok, tok_config = train_tokenizer(kind)
    tok.save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(tok_config, f, indent=1)
    n_tok = tok.get_vocab_size(with_added_tokens=True)
    # Qwen pads its embedding past the tokenizer's vocabulary; Llama does not.
    vocab = n_tok if kind == "llama" else (n_tok + 15) // 16 * 16
    log(kind, "tokenizer vocab", n_tok, "model vocab", vocab)

    cases = []
    for text in TOKENIZER_TEXTS:
        ids = tok.encode(text, add_special_tokens=True).ids
        plain = tok.encode(text, add_special_tokens=False).ids
        cases.append({"text": text, "ids": ids, "ids_no_special": plain,
                      "decoded": tok.decode(plain, skip_special_tokens=True)})
    with open(os.path.join(out, "tokenizer_cases.json"), "w", encoding="utf-8") as f:
        f.write("[\n" + ",\n".join(json.dumps(c, ensure_ascii=False) for c in cases) + "\n]\n")

    config = make_config(kind, vocab)
    torch.manual_seed(seed)
    cls = transformers.LlamaForCausalLM if kind == "llama" else transformers.Qwen2ForCausalLM
    try:
        config._attn_implementation = "eager"
    except Exception:
        traceback.print_exc()
    model = cls(config)
    log(kind, "attention implementation:", getattr(model.config, "_attn_implementation", "?"))
    randomize(model, seed)
    model.eval()
    model.save_pretrained(out)
    log(kind, "saved", sorted(os.listdir(out)))
    with open(os.path.join(out, "config.json")) as f:
        log(kind, "config.json:", f.read())

    ref = {}
    texts = []
    with torch.no_grad():
        try:
            ref["inv_freq"] = model.model.rotary_emb.inv_freq.detach().float().cpu().contiguous()
        except AttributeError:
            traceback.print_exc()
        for i, text in enumerate(MODEL_TEXTS):
            ids = tok.encode(text, add_special_tokens=True).ids
            texts.append({"text": text, "ids": ids})
            input_ids = torch.tensor([ids], dtype=torch.long)
            ref[f"input_ids.{i}"] = input_ids
            ref[f"logits.{i}"] = model(input_ids).logits.float().contiguous()
        prompt = torch.tensor([tok.encode(MODEL_TEXTS[0], add_special_tokens=True).ids[:6]], dtype=torch.long)
        gen = model.generate(prompt, max_new_tokens=12, do_sample=False, min_new_tokens=12,
                             attention_mask=torch.ones_like(prompt), pad_token_id=0)
        ref["generate.prompt"] = prompt
        ref["generate.output"] = gen.contiguous()

        # The same weights rounded to bf16, saved in bf16, evaluated in float32.
        bf16_dir = os.path.join(out, "bf16")
        model_bf16 = cls.from_pretrained(out, dtype=torch.bfloat16)
        model_bf16.save_pretrained(bf16_dir)
        for name in os.listdir(bf16_dir):
            if name not in ("config.json", "model.safetensors"):
                os.remove(os.path.join(bf16_dir, name))
        rounded = cls.from_pretrained(bf16_dir, dtype=torch.float32, attn_implementation="eager").eval()
        for i in range(len(MODEL_TEXTS)):
            ref[f"logits_bf16_weights.{i}"] = rounded(ref[f"input_ids.{i}"]).logits.float().contiguous()

        if torch.cuda.is_available():
            try:
                cuda = cls.from_pretrained(out, dtype=torch.bfloat16).to("cuda").eval()
                for i in range(len(MODEL_TEXTS)):
                    logits = cuda(ref[f"input_ids.{i}"].to("cuda")).logits
                    ref[f"logits_bf16_cuda.{i}"] = logits.float().cpu().contiguous()
                log(kind, "bf16 cuda vs fp32 max abs diff",
                    float((ref["logits_bf16_cuda.0"] - ref["logits.0"]).abs().max()))
            except Exception:
                traceback.print_exc()
    for name in os.listdir(out):  # keep only what the tests read
        if name not in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                        "tokenizer_cases.json", "bf16"):
            path = os.path.join(out, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    save_file(ref, os.path.join(out, "reference.safetensors"))
    meta = {"texts": texts, "transformers": transformers.__version__, "torch": torch.__version__,
            "tokenizers": __import__("tokenizers").__version__, "seed": seed,
            "tokenizer_vocab_size": n_tok, "model_vocab_size": vocab,
            "logits_abs_max": float(ref["logits.0"].abs().max())}
    with open(os.path.join(out, "reference.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1, ensure_ascii=False)
    log(kind, "reference", json.dumps({k: list(v.shape) for k, v in ref.items()}))
    log(kind, "meta", json.dumps(meta, ensure_ascii=False))


def main():
    out_root = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
    os.makedirs(out_root, exist_ok=True)
    log("versions: torch", torch.__version__, "transformers", transformers.__version__,
        "cuda", torch.cuda.is_available())
    failed = False
    for kind, seed in (("llama", 1234), ("qwen2", 5678)):
        try:
            build(kind, out_root, seed)
        except Exception:
            failed = True
            traceback.print_exc()
    dirs = [d for d in ("hf_llama", "hf_qwen2") if os.path.isdir(os.path.join(out_root, d))]
    if dirs:
        subprocess.run(["tar", "czf", "hf_fixtures.tar.gz"] + dirs, cwd=out_root, check=True)
        subprocess.run(["du", "-ab"] + dirs, cwd=out_root)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
