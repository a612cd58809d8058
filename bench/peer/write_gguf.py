#!/usr/bin/env python3
"""Write a DeepSeek-V4 checkpoint in the official layout as a llama.cpp `deepseek4` GGUF.

    PYTHONPATH=$LLAMA_CPP_DIR/gguf-py python3 write_gguf.py CKPT_DIR OUT.gguf [--tokenizer DIR]

Input: a directory with config.json (HF keys), model.safetensors.index.json and shards, as
DeepSeek ships it or as `dsv4 tiny` writes it. Needs numpy and llama.cpp's own gguf-py (pure
Python) -- no torch, so it runs on Debian where torch has no float8.

The GGUF is laid out the way llama.cpp's converter (conversion/deepseek.py, DeepseekV4Model)
lays it out, tensor for tensor:
  * routed experts (FP4 e2m1 + 1x32 e8m0 scales) -> MXFP4, stacked [n_expert, rows, cols].
    Lossless: ggml's block_mxfp4 is the e8m0 byte followed by 16 bytes of e2m1 codes, values
    0..15 in the low nibbles and 16..31 in the high nibbles; ggml doubles the e2m1 table and
    halves the scale (GGML_E8M0_TO_FP32_HALF), so the stored e8m0 byte is copied unchanged.
    Only the nibble order within each 32-block changes (safetensors: element 2j low, 2j+1 high).
    The result is checked value-exact against gguf-py's MXFP4 dequantiser on sample rows.
  * FP8 e4m3 with 128x128 e8m0 scales -> Q8_0 (32 values, fp16 scale). Not lossless in general;
    per 32-block the fp16 scale is the one of absmax/k, k in Q8_DIVISORS (127 is what ggml's
    quantiser and llama.cpp's converter use), with the least squared error; the error against
    the exact FP8 values is reported, and what absmax/127 alone would have given.
  * BF16 matrices -> BF16 (bits copied); 1-D tensors and norms -> F32; F32 -> F32;
    tid2eid I64 -> I32. MTP/DSpark tensors (`mtp.*`) are skipped, as llama.cpp's converter does.
Tokenizer: llama.cpp needs one with exactly n_vocab tokens. The first n_vocab entries of the
checkpoint's tokenizer.json (byte-level BPE, pre-tokenizer "deepseek-v3") are written, with the
merges whose parts and result are all among them; BOS 0, EOS 1.
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np

try:
    import gguf
except ImportError:
    sys.exit("write_gguf.py: cannot import gguf: set PYTHONPATH=$LLAMA_CPP_DIR/gguf-py")

Q = gguf.GGMLQuantizationType
T = gguf.MODEL_TENSOR

# ---------------------------------------------------------------------------------------------
# safetensors (read-only, memory-mapped)


class Checkpoint:
    def __init__(self, d):
        self.dir = d
        with open(os.path.join(d, "model.safetensors.index.json")) as f:
            wm = json.load(f)["weight_map"]
        self.meta = {}  # name -> (file, dtype, shape, begin, end)
        self.maps = {}
        for fn in sorted(set(wm.values())):
            path = os.path.join(d, fn)
            with open(path, "rb") as f:
                n = struct.unpack("<Q", f.read(8))[0]
                hdr = json.loads(f.read(n))
            base = 8 + n
            for name, m in hdr.items():
                if name == "__metadata__":
                    continue
                b, e = m["data_offsets"]
                self.meta[name] = (path, m["dtype"], tuple(m["shape"]), base + b, base + e)
        missing = [k for k in wm if k not in self.meta]
        if missing:
            raise SystemExit(f"write_gguf.py: index names tensors missing from the shards: {missing[:5]}")

    def names(self):
        return list(self.meta)

    def dtype(self, name):
        return self.meta[name][1]

    def shape(self, name):
        return self.meta[name][2]

    def raw(self, name):
        path, dt, shape, b, e = self.meta[name]
        mm = self.maps.get(path)
        if mm is None:
            mm = self.maps[path] = np.memmap(path, dtype=np.uint8, mode="r")
        return mm[b:e]

    def array(self, name):
        dt = self.dtype(name)
        np_dt = {"F32": np.float32, "BF16": np.uint16, "I64": np.int64, "I32": np.int32,
                 "I8": np.uint8, "U8": np.uint8, "F8_E4M3": np.uint8, "F8_E8M0": np.uint8}[dt]
        return self.raw(name).view(np_dt).reshape(self.shape(name))


# ---------------------------------------------------------------------------------------------
# number formats


def e4m3_table():
    t = np.zeros(256, dtype=np.float64)
    for c in range(256):
        s = -1.0 if c & 0x80 else 1.0
        e = (c >> 3) & 0xF
        m = c & 7
        if e == 0xF and m == 7:
            t[c] = np.nan
        elif e == 0:
            t[c] = s * m * 2.0 ** -9
        else:
            t[c] = s * (1 + m / 8) * 2.0 ** (e - 7)
    return t


E4M3 = e4m3_table()
E4M3_F32 = E4M3.astype(np.float32)
E2M1 = np.array([0, .5, 1, 1.5, 2, 3, 4, 6, -0.0, -.5, -1, -1.5, -2, -3, -4, -6], dtype=np.float64)


def e8m0(b):
    return np.ldexp(1.0, b.astype(np.int32) - 127)


def bf16_to_f32(u16):
    return (u16.astype(np.uint32) << 16).view(np.float32)


# ---------------------------------------------------------------------------------------------
# FP8 (128x128 block scales) -> Q8_0

# Candidate Q8_0 scales per 32-block: absmax / k. k = 127 is ggml's own choice; the others put
# the block's largest FP8 value on a multiple of 8 (= 8 x a 4-bit e4m3 significand), which lets
# more of the block's values land exactly. On e4m3-rounded Gaussian data this set gives ~30% less
# RMS error than 127 alone (all of k = 64..127 would give ~38% less, at 13x the cost).
Q8_DIVISORS = (127, 120, 112, 104, 96)


class Q8Stats:
    def __init__(self):
        self.n = 0
        self.exact = 0
        self.sse = 0.0
        self.sse_std = 0.0
        self.ssq = 0.0
        self.max_rel = 0.0      # max |err| / absmax(32-block)
        self.max_rel_std = 0.0

    def line(self):
        rms = math.sqrt(self.sse / max(self.ssq, 1e-300))
        rms_std = math.sqrt(self.sse_std / max(self.ssq, 1e-300))
        return (f"{self.n / 1e6:.1f} M values, {100.0 * self.exact / max(self.n, 1):.1f}% exact; "
                f"max |err| / absmax(32-block) {self.max_rel:.2e}, relative RMS error {rms:.2e} "
                f"(with ggml's absmax/127 scales: {self.max_rel_std:.2e}, {rms_std:.2e})")


def q8_0_quantize(x, stats):
    """x: float32 [rows, cols] (exact FP8 values) -> uint8 [rows, cols/32*34] Q8_0 blocks."""
    rows, cols = x.shape
    b = x.reshape(rows, cols // 32, 32)
    amax = np.abs(b).max(axis=2, keepdims=True)
    best = None
    for k in Q8_DIVISORS:
        d16 = (amax / np.float32(k)).astype(np.float16)
        df = d16.astype(np.float32)
        safe = np.where(df > 0, df, np.float32(1))
        q = np.clip(np.rint(b / safe), -127, 127)
        err = q * df - b
        sse = np.einsum("ijk,ijk->ij", err, err)[..., None]
        if best is None:
            best = [d16, q, sse, err]
            stats.sse_std += float(sse.sum(dtype=np.float64))
            std_rel = float((np.abs(err) / np.where(amax > 0, amax, 1)).max())
            stats.max_rel_std = max(stats.max_rel_std, std_rel)
        else:
            m = sse < best[2]
            best[0] = np.where(m, d16, best[0])
            best[1] = np.where(m, q, best[1])
            best[2] = np.where(m, sse, best[2])
            best[3] = np.where(m, err, best[3])
    d16, q, sse, err = best
    stats.n += b.size
    stats.exact += int(np.count_nonzero(err == 0))
    stats.sse += float(sse.sum(dtype=np.float64))
    stats.ssq += float(np.einsum("ijk,ijk->", b, b, dtype=np.float64))
    stats.max_rel = max(stats.max_rel, float((np.abs(err) / np.where(amax > 0, amax, 1)).max()))
    out = np.empty((rows, cols // 32, 34), dtype=np.uint8)
    out[:, :, 0:2] = d16.view(np.uint8).reshape(rows, cols // 32, 2)
    out[:, :, 2:] = q.astype(np.int8).view(np.uint8)
    return out.reshape(rows, cols // 32 * 34)


def fp8_rows(ck, name, r0, r1):
    """Exact values (float32 holds them) of rows [r0, r1) of an FP8 weight (r0 a multiple of 128)."""
    w = ck.array(name)[r0:r1]
    s = ck.array(name[: -len(".weight")] + ".scale")
    sc = e8m0(s[r0 // 128: (r1 + 127) // 128])
    sc = np.repeat(np.repeat(sc, 128, axis=0)[: r1 - r0], 128, axis=1)[:, : w.shape[1]]
    return E4M3_F32[w] * sc.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# FP4 (1x32 e8m0 scales) -> MXFP4


def mxfp4_repack(packed, scale):
    """packed uint8 [rows, cols/2] (element 2j low nibble), scale uint8 [rows, cols/32]
    -> uint8 [rows, cols/32*17] of ggml block_mxfp4 {e, qs[16]}: qs[j] = v[j] | v[j+16] << 4."""
    rows, half = packed.shape
    nb = half // 16
    src = packed.reshape(rows, nb, 16)
    nib = np.stack((src & 0x0F, src >> 4), axis=-1).reshape(rows, nb, 32)
    out = np.empty((rows, nb, 17), dtype=np.uint8)
    out[:, :, 0] = scale
    out[:, :, 1:] = nib[:, :, :16] | (nib[:, :, 16:] << 4)
    return out.reshape(rows, nb * 17)


def fp4_dequant(packed, scale):
    rows, half = packed.shape
    nib = np.stack((packed & 0x0F, packed >> 4), axis=-1).reshape(rows, half * 2)
    return E2M1[nib] * np.repeat(e8m0(scale), 32, axis=1)


# ---------------------------------------------------------------------------------------------
# name map (official checkpoint names -> llama.cpp deepseek4 GGUF names)

ROOT = {
    "embed.weight": (T.TOKEN_EMBD, ".weight"),
    "norm.weight": (T.OUTPUT_NORM, ".weight"),
    "head.weight": (T.OUTPUT, ".weight"),
    "hc_head_fn": (T.HC_HEAD_FN, ".weight"),
    "hc_head_base": (T.HC_HEAD_BASE, ".weight"),
    "hc_head_scale": (T.HC_HEAD_SCALE, ".weight"),
}
LAYER = {
    "hc_attn_fn": T.HC_ATTN_FN, "hc_attn_base": T.HC_ATTN_BASE, "hc_attn_scale": T.HC_ATTN_SCALE,
    "hc_ffn_fn": T.HC_FFN_FN, "hc_ffn_base": T.HC_FFN_BASE, "hc_ffn_scale": T.HC_FFN_SCALE,
    "attn.attn_sink": T.ATTN_SINKS,
    "attn.wq_a.weight": T.ATTN_Q_A, "attn.wq_b.weight": T.ATTN_Q_B, "attn.q_norm.weight": T.ATTN_Q_A_NORM,
    "attn.wkv.weight": T.ATTN_KV, "attn.kv_norm.weight": T.ATTN_KV_NORM,
    "attn.wo_a.weight": T.ATTN_OUT_A, "attn.wo_b.weight": T.ATTN_OUT_B,
    "attn.compressor.ape": T.ATTN_COMPRESSOR_APE, "attn.compressor.wkv.weight": T.ATTN_COMPRESSOR_WKV,
    "attn.compressor.wgate.weight": T.ATTN_COMPRESSOR_WGATE, "attn.compressor.norm.weight": T.ATTN_COMPRESSOR_NORM,
    "attn.indexer.wq_b.weight": T.INDEXER_ATTN_Q_B, "attn.indexer.weights_proj.weight": T.INDEXER_PROJ,
    "attn.indexer.compressor.ape": T.INDEXER_COMPRESSOR_APE,
    "attn.indexer.compressor.wkv.weight": T.INDEXER_COMPRESSOR_WKV,
    "attn.indexer.compressor.wgate.weight": T.INDEXER_COMPRESSOR_WGATE,
    "attn.indexer.compressor.norm.weight": T.INDEXER_COMPRESSOR_NORM,
    "attn_norm.weight": T.ATTN_NORM, "ffn_norm.weight": T.FFN_NORM,
    "ffn.gate.weight": T.FFN_GATE_INP, "ffn.gate.tid2eid": T.FFN_GATE_TID2EID,
    "ffn.shared_experts.w1.weight": T.FFN_GATE_SHEXP, "ffn.shared_experts.w2.weight": T.FFN_DOWN_SHEXP,
    "ffn.shared_experts.w3.weight": T.FFN_UP_SHEXP,
}
EXPERTS = {"w1": T.FFN_GATE_EXP, "w2": T.FFN_DOWN_EXP, "w3": T.FFN_UP_EXP}


def gguf_name(key, bid, suffix=".weight"):
    return gguf.TENSOR_NAMES[key].format(bid=bid) + suffix


# ---------------------------------------------------------------------------------------------
# plan: one entry per GGUF tensor: (gguf name, element shape (numpy order), qtype, nbytes, producer)


def plan_tensors(ck, n_layers, n_experts):
    names = ck.names()
    have = set(names)
    plan = []
    fp8_names = []

    def nbytes(shape, qt):
        bs, ts = gguf.GGML_QUANT_SIZES[qt]
        n = 1
        for s in shape[:-1]:
            n *= s
        return n * (shape[-1] // bs) * ts

    for name in names:
        if name.startswith("mtp.") or name.endswith(".scale"):
            continue
        if ".ffn.experts." in name:
            continue
        dt, shape = ck.dtype(name), ck.shape(name)
        if name in ROOT:
            key, suffix = ROOT[name]
            gname = gguf_name(key, None, suffix)
        else:
            parts = name.split(".", 2)
            if parts[0] != "layers" or len(parts) < 3:
                raise SystemExit(f"write_gguf.py: unexpected tensor {name}")
            bid, rest = int(parts[1]), parts[2]
            if rest == "ffn.gate.bias":
                gname = gguf_name(T.FFN_EXP_PROBS_B, bid, ".bias")
            elif rest in LAYER:
                gname = gguf_name(LAYER[rest], bid)
            else:
                raise SystemExit(f"write_gguf.py: no GGUF name for {name}")
        if dt == "F8_E4M3":
            if name[: -len(".weight")] + ".scale" not in have:
                raise SystemExit(f"write_gguf.py: {name} has no .scale")
            qt = Q.Q8_0
            fp8_names.append(name)
            plan.append((gname, shape, qt, nbytes(shape, qt), ("fp8", name)))
        elif dt == "BF16":
            if len(shape) >= 2 and not gname.endswith("_norm.weight"):
                plan.append((gname, shape, Q.BF16, nbytes(shape, Q.BF16), ("bf16", name)))
            else:
                plan.append((gname, shape, Q.F32, nbytes(shape, Q.F32), ("bf16f32", name)))
        elif dt == "F32":
            plan.append((gname, shape, Q.F32, nbytes(shape, Q.F32), ("f32", name)))
        elif dt == "I64":
            plan.append((gname, shape, Q.I32, nbytes(shape, Q.I32), ("i64i32", name)))
        else:
            raise SystemExit(f"write_gguf.py: {name}: dtype {dt} not handled")

    for bid in range(n_layers):
        for proj, key in EXPERTS.items():
            w0 = f"layers.{bid}.ffn.experts.0.{proj}.weight"
            if w0 not in have:
                raise SystemExit(f"write_gguf.py: missing {w0}")
            if ck.dtype(w0) not in ("I8", "U8"):
                raise SystemExit(f"write_gguf.py: {w0}: expected packed FP4 (I8), got {ck.dtype(w0)}")
            rows, half = ck.shape(w0)
            shape = (n_experts, rows, half * 2)
            plan.append((gguf_name(key, bid), shape, Q.MXFP4, nbytes(shape, Q.MXFP4), ("fp4", bid, proj)))
    return plan


def produce(ck, what, n_experts, stats, check):
    kind = what[0]
    if kind == "fp8":
        name = what[1]
        rows = ck.shape(name)[0]
        parts = []
        for r0 in range(0, rows, 1024):
            r1 = min(rows, r0 + 1024)
            parts.append(q8_0_quantize(fp8_rows(ck, name, r0, r1), stats))
        return np.concatenate(parts, axis=0)
    if kind == "bf16":
        return np.ascontiguousarray(ck.array(what[1]))
    if kind == "bf16f32":
        return bf16_to_f32(np.ascontiguousarray(ck.array(what[1])))
    if kind == "f32":
        return np.ascontiguousarray(ck.array(what[1]))
    if kind == "i64i32":
        a = ck.array(what[1])
        if a.min() < 0 or a.max() >= 2 ** 31:
            raise SystemExit(f"write_gguf.py: {what[1]} out of int32 range")
        return a.astype(np.int32)
    if kind == "fp4":
        _, bid, proj = what
        out = None
        for e in range(n_experts):
            base = f"layers.{bid}.ffn.experts.{e}.{proj}"
            w = ck.array(base + ".weight")
            s = ck.array(base + ".scale")
            blk = mxfp4_repack(w, s)
            if out is None:
                out = np.empty((n_experts,) + blk.shape, dtype=np.uint8)
            out[e] = blk
            if check and e in (0, n_experts - 1):
                # exact against ggml's (gguf-py's) own MXFP4 dequantiser (values; e2m1 -0 reads as 0)
                rows = [0, w.shape[0] // 2, w.shape[0] - 1]
                ref = fp4_dequant(w[rows], s[rows]).astype(np.float32)
                got = gguf.quants.dequantize(blk[rows], Q.MXFP4).astype(np.float32)
                if not np.array_equal(ref, got):
                    raise SystemExit(f"write_gguf.py: MXFP4 repack of {base} is not exact")
        return out
    raise AssertionError(kind)


# ---------------------------------------------------------------------------------------------
# tokenizer


def tokenizer_from(tok_dir, n_vocab):
    with open(os.path.join(tok_dir, "tokenizer.json"), encoding="utf-8") as f:
        tj = json.load(f)
    vocab = tj["model"]["vocab"]
    by_id = {}
    for tok, i in vocab.items():
        by_id[i] = tok
    special = set()
    for a in tj.get("added_tokens", []):
        by_id[a["id"]] = a["content"]
        if a.get("special"):
            special.add(a["id"])
    tokens, types = [], []
    for i in range(n_vocab):
        t = by_id.get(i)
        if t is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        else:
            tokens.append(t)
            types.append(gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL)
    kept = set(tokens)
    merges = []
    for m in tj["model"].get("merges", []):
        a, b = (m.split(" ", 1) if isinstance(m, str) else m)
        if a in kept and b in kept and (a + b) in kept:
            merges.append(f"{a} {b}")
    return tokens, types, merges


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ckpt")
    ap.add_argument("out")
    ap.add_argument("--tokenizer", help="directory with tokenizer.json (default: the checkpoint's)")
    ap.add_argument("--no-check", action="store_true", help="skip the MXFP4 bit-exactness check")
    a = ap.parse_args()
    t0 = time.time()

    with open(os.path.join(a.ckpt, "config.json")) as f:
        hp = json.load(f)
    ck = Checkpoint(a.ckpt)
    n_layers = hp["num_hidden_layers"]
    n_experts = hp["n_routed_experts"]
    n_vocab = ck.shape("embed.weight")[0]
    if ck.shape("head.weight")[0] != n_vocab:
        raise SystemExit("write_gguf.py: embed and head disagree on the vocabulary size")

    arch = gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.DEEPSEEK4]
    w = gguf.GGUFWriter(a.out + ".tmp", arch)
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(os.path.basename(os.path.normpath(a.ckpt)))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_MXFP4_MOE)
    # the generic hyperparameters (TextModel.set_gguf_parameters)
    w.add_block_count(n_layers)
    w.add_context_length(hp["max_position_embeddings"])
    w.add_embedding_length(hp["hidden_size"])
    if "intermediate_size" in hp:
        w.add_feed_forward_length(hp["intermediate_size"])
    w.add_head_count(hp["num_attention_heads"])
    w.add_head_count_kv(hp.get("num_key_value_heads", 1))
    rs = hp.get("rope_scaling") or {}
    if (rs.get("type") or rs.get("rope_type")) == "yarn":
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(rs["factor"])
        w.add_rope_scaling_orig_ctx_len(rs["original_max_position_embeddings"])
        if "extrapolation_factor" in rs:
            w.add_rope_scaling_yarn_ext_factor(rs["extrapolation_factor"])
        if "attention_factor" in rs:
            w.add_rope_scaling_yarn_attn_factor(rs["attention_factor"])
        if "beta_fast" in rs:
            w.add_rope_scaling_yarn_beta_fast(rs["beta_fast"])
        if "beta_slow" in rs:
            w.add_rope_scaling_yarn_beta_slow(rs["beta_slow"])
    w.add_rope_freq_base(hp["rope_theta"])
    w.add_layer_norm_rms_eps(hp["rms_norm_eps"])
    w.add_expert_count(n_experts)
    w.add_expert_used_count(hp["num_experts_per_tok"])
    if hp.get("scoring_func", "sqrtsoftplus") != "sqrtsoftplus":
        raise SystemExit("write_gguf.py: llama.cpp's deepseek4 expects sqrtsoftplus scoring")
    w.add_expert_gating_func(gguf.ExpertGatingFuncType.SQRTSOFTPLUS)
    w.add_key_length(hp["head_dim"])
    w.add_value_length(hp["head_dim"])
    # the DeepSeek-V4 ones (DeepseekV4Model.set_gguf_parameters)
    w.add_rope_dimension_count(hp["qk_rope_head_dim"])
    w.add_q_lora_rank(hp["q_lora_rank"])
    w.add_sliding_window(hp["sliding_window"])
    w.add_expert_feed_forward_length(hp["moe_intermediate_size"])
    w.add_expert_shared_count(hp["n_shared_experts"])
    w.add_expert_weights_scale(hp["routed_scaling_factor"])
    w.add_expert_weights_norm(hp.get("norm_topk_prob", True))
    w.add_swiglu_clamp_exp([hp["swiglu_limit"]] * n_layers)
    w.add_swiglu_clamp_shexp([hp["swiglu_limit"]] * n_layers)
    w.add_indexer_head_count(hp["index_n_heads"])
    w.add_indexer_key_length(hp["index_head_dim"])
    w.add_indexer_top_k(hp["index_topk"])
    w.add_attention_output_group_count(hp["o_groups"])
    w.add_attention_output_lora_rank(hp["o_lora_rank"])
    w.add_attention_compress_ratios(hp["compress_ratios"])
    w.add_attention_compress_rope_freq_base(hp["compress_rope_theta"])
    w.add_hyper_connection_count(hp["hc_mult"])
    w.add_hyper_connection_sinkhorn_iterations(hp["hc_sinkhorn_iters"])
    w.add_hyper_connection_epsilon(hp["hc_eps"])
    w.add_hash_layer_count(hp["num_hash_layers"])

    tok_dir = a.tokenizer or a.ckpt
    tokens, types, merges = tokenizer_from(tok_dir, n_vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("deepseek-v3")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(hp.get("bos_token_id", 0))
    w.add_eos_token_id(hp.get("eos_token_id", 1))
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)

    plan = plan_tensors(ck, n_layers, n_experts)
    for gname, shape, qt, nb, _ in plan:
        w.add_tensor_info(gname, shape, np.dtype(np.float32), nb, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    stats = Q8Stats()
    total = 0
    for gname, shape, qt, nb, what in plan:
        data = produce(ck, what, n_experts, stats, not a.no_check)
        if data.nbytes != nb:
            raise SystemExit(f"write_gguf.py: {gname}: {data.nbytes} bytes, expected {nb}")
        w.write_tensor_data(data)
        total += nb
    w.close()
    os.replace(a.out + ".tmp", a.out)
    print(f"write_gguf: {a.out}: {len(plan)} tensors, {total / 1e9:.2f} GB, vocab {n_vocab} "
          f"({len(merges)} merges), {time.time() - t0:.0f} s")
    print(f"write_gguf: experts FP4 -> MXFP4: lossless (bytes repacked; values checked exact against gguf-py's "
          f"MXFP4 dequantiser)" if not a.no_check else "write_gguf: experts FP4 -> MXFP4: repacked (check skipped)")
    print(f"write_gguf: FP8 -> Q8_0: {stats.line()}")


if __name__ == "__main__":
    main()
