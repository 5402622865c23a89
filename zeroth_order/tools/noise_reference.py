#!/usr/bin/env python3
"""Independent reference for docs/zeroth_order_noise.md (no dependencies).

Emulates IEEE binary32 with Python floats: each +, -, *, / and sqrt of two
binary32 values is computed in binary64 and rounded once to binary32
(struct 'f'), which is correctly rounded because 53 >= 2*24 + 2. Prints the
known-answer vectors that zeroth_order/noise_test.cc asserts, so that a port
(another language, another accelerator) can check itself against the spec
without fedfm.

    python3 zeroth_order/tools/noise_reference.py
"""
import math
import struct

MASK = 0xFFFFFFFF


def philox4x32(counter, key, rounds=10):
    c, k = list(counter), list(key)
    for r in range(rounds):
        if r:
            k = [(k[0] + 0x9E3779B9) & MASK, (k[1] + 0xBB67AE85) & MASK]
        p0 = 0xD2511F53 * c[0]
        p1 = 0xCD9E8D57 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k[0], p1 & MASK, (p0 >> 32) ^ c[3] ^ k[1], p0 & MASK]
    return c


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def from_bits(b):
    return struct.unpack("<f", struct.pack("<I", b))[0]


def mul(a, b):
    return f32(a * b)


def add(a, b):
    return f32(a + b)


def sub(a, b):
    return f32(a - b)


def div(a, b):
    return f32(a / b)


H = float.fromhex


def log_unit(x):
    ix = (bits(x) + 0x3F800000 - 0x3F3504F3) & MASK
    k = (ix >> 23) - 0x7F
    ix = (ix & 0x7FFFFF) + 0x3F3504F3
    f = sub(from_bits(ix), 1.0)
    s = div(f, add(2.0, f))
    z = mul(s, s)
    w = mul(z, z)
    t1 = mul(w, add(H("0x1.999c26p-2"), mul(w, H("0x1.f13c4cp-3"))))
    t2 = mul(z, add(H("0x1.555554p-1"), mul(w, H("0x1.23d3dcp-2"))))
    r = add(t2, t1)
    hfsq = mul(mul(0.5, f), f)
    dk = float(k)
    acc = add(mul(s, add(hfsq, r)), mul(dk, H("0x1.2fefa2p-17")))
    acc = sub(acc, hfsq)
    acc = add(acc, f)
    return add(acc, mul(dk, H("0x1.62e3p-1")))


def sincos_turns24(q):
    j = (q + (1 << 21)) >> 22
    d = q - (j << 22)
    a = mul(float(d), H("0x1.921fb6p-22"))
    a2 = mul(a, a)
    ps = add(H("-0x1.a01a02p-13"), mul(a2, H("0x1.71de3ap-19")))
    ps = add(H("0x1.111112p-7"), mul(a2, ps))
    ps = add(H("-0x1.555556p-3"), mul(a2, ps))
    s = add(a, mul(mul(a, a2), ps))
    pc = add(H("0x1.a01a02p-16"), mul(a2, H("-0x1.27e4fcp-22")))
    pc = add(H("-0x1.6c16c2p-10"), mul(a2, pc))
    pc = add(H("0x1.555556p-5"), mul(a2, pc))
    pc = add(-0.5, mul(a2, pc))
    c = add(1.0, mul(a2, pc))
    return [(c, s), (-s, c), (-c, -s), (s, -c)][j & 3]


def box_muller(xa, xb):
    u1 = mul(float((xa >> 8) + 1), 2.0**-24)
    r = f32(math.sqrt(mul(-2.0, log_unit(u1))))
    c, s = sincos_turns24(xb >> 8)
    return mul(r, c), mul(r, s)


def block_bits(seed, tensor_index, kind, block):
    return philox4x32([block & MASK, block >> 32, tensor_index, kind], [seed & MASK, seed >> 32])


def gaussian(seed, tensor_index, e):
    x = block_bits(seed, tensor_index, 0, e // 4)
    z = box_muller(x[0], x[1]) + box_muller(x[2], x[3])
    return z[e % 4]


def rademacher(seed, tensor_index, e):
    x = block_bits(seed, tensor_index, 1, e // 128)
    i = e % 128
    return 1.0 if (x[i // 32] >> (i % 32)) & 1 else -1.0


def main():
    assert philox4x32([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], [0xA4093822, 0x299F31D0]) == [
        0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]
    for seed, tensor_index, offset, n in [(0, 0, 0, 8), (0x0123456789ABCDEF, 3, 1000003, 6),
                                          (42, 7, (1 << 40) + 1, 4)]:
        values = [gaussian(seed, tensor_index, offset + i) for i in range(n)]
        print(f"gaussian seed={seed:#x} tensor={tensor_index} offset={offset}:",
              " ".join(f"0x{bits(v):08x}" for v in values))
    signs = "".join("+" if rademacher(42, 0, i) > 0 else "-" for i in range(40))
    print("rademacher seed=42 tensor=0 offset=0:", signs)


if __name__ == "__main__":
    main()
