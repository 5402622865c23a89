#!/usr/bin/env python3
"""Summarises a Chrome trace written by `fedfm bench train|zo --trace FILE`:
GPU time per kernel name and per LibTorch operator that launched it, and how
busy the GPU was. Usage: trace_summary.py TRACE.json [--top N]"""
import argparse
import collections
import json


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    with open(args.trace) as f:
        events = json.load(f)["traceEvents"]
    ops = {}
    for e in events:
        if e.get("cat") == "cpu_op" and "External id" in e.get("args", {}):
            ops[e["args"]["External id"]] = e["name"]
    by_kernel = collections.Counter()
    by_op = collections.Counter()
    count_kernel = collections.Counter()
    count_op = collections.Counter()
    first, last, busy = None, None, 0.0
    for e in events:
        if e.get("cat") not in ("kernel", "gpu_memcpy", "gpu_memset"):
            continue
        dur = float(e.get("dur", 0))
        name = e["name"][:90]
        op = ops.get(e.get("args", {}).get("External id"), "?")
        by_kernel[name] += dur
        count_kernel[name] += 1
        by_op[op] += dur
        count_op[op] += 1
        busy += dur
        ts = float(e["ts"])
        first = ts if first is None else min(first, ts)
        last = ts + dur if last is None else max(last, ts + dur)
    span = (last - first) if first is not None else 0.0
    print(f"GPU busy {busy / 1e3:.1f} ms of a {span / 1e3:.1f} ms span ({100 * busy / max(span, 1):.1f} %), "
          f"{sum(count_kernel.values())} kernels")
    for title, totals, counts in (("by operator", by_op, count_op), ("by kernel", by_kernel, count_kernel)):
        print(f"== {title}: ms, share, launches")
        for name, dur in totals.most_common(args.top):
            print(f"{dur / 1e3:10.2f} {100 * dur / max(busy, 1):5.1f}% {counts[name]:7d}  {name}")


if __name__ == "__main__":
    main()
