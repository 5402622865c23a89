#!/usr/bin/env python3
"""Copies the comparison JSONs that bench/gpu/run_all.sh wrote on the GPU
machine into bench/results/, named after the GPU, with where the fedfm side
came from.

    collect_results.py OUT_DIR --source "COMMIT (and what else was built)"
"""
import argparse
import json
import os
import re
import sys

NAMES = {
    "model_compare.json": "model_vs_transformers",
    "lora_compare.json": "lora_vs_peft",
    "zo_compare.json": "zo_vs_mezo",
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--source", required=True, help="the fedfm commit measured, and any uncommitted work in it")
    ap.add_argument("--dest", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "results"))
    args = ap.parse_args()
    os.makedirs(args.dest, exist_ok=True)
    for name, stem in NAMES.items():
        path = os.path.join(args.out_dir, name)
        if not os.path.exists(path):
            continue
        with open(path) as f:
            data = json.load(f)
        gpu = data.get("environment", {}).get("gpu", "gpu")
        tag = re.sub(r"[^a-z0-9]+", "_", gpu.lower().replace("nvidia", "")).strip("_")
        data["fedfm_source"] = args.source
        dest = os.path.join(args.dest, f"{tag}_{stem}.json")
        with open(dest, "w") as f:
            f.write(json.dumps(data, indent=1) + "\n")
        print(dest)
    # Variants run by the driver's extra stage: the JSON lines after its
    # "== extra:" header in bench.log, kept together in one file.
    log = os.path.join(args.out_dir, "bench.log")
    extra, commands = [], None
    if os.path.exists(log):
        with open(log) as f:
            for line in f:
                if line.startswith("== extra:"):
                    commands, extra = line[len("== extra:"):].strip(), []
                elif commands is not None and line.startswith("{"):
                    try:
                        extra.append(json.loads(line))
                    except json.JSONDecodeError:
                        pass
    if extra:
        gpu = next((e["environment"]["gpu"] for e in extra if "environment" in e), None)
        tag = re.sub(r"[^a-z0-9]+", "_", (gpu or "gpu").lower().replace("nvidia", "")).strip("_")
        dest = os.path.join(args.dest, f"{tag}_extra.json")
        with open(dest, "w") as f:
            f.write(json.dumps({"commands": commands, "fedfm_source": args.source, "results": extra}, indent=1) + "\n")
        print(dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
