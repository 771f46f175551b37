#!/usr/bin/python3
"""Independent PyTorch reference of the Qwen3.5 text model (spec qwen35-reference.md §3, §4, §5.1) and of
the causal-LM loss and its LoRA gradients (§3.7, by autograd).

Written from the spec, not from the C++ engine. Every function takes plain tensors and a weights
dict (canonical names without the checkpoint's stack prefix: "embed_tokens.weight",
"layers.3.self_attn.q_proj.weight", "norm.weight", "lm_head.weight"), so autograd gradients work. A
PEFT LoRA adapter (spec §7) adds "<module>.lora_A" [r, in], "<module>.lora_B" [out, r] and
"<module>.lora_scaling" (0-d) entries to that dict, and `linear` computes y = x W^T + s (x A^T) B^T.

Computes in float64 by default (parity); `load_model(..., dtype=torch.float32)` is the fast mode used
by the benchmark. Runs under torch 1.13 without the safetensors package.

Command line:
  qwen35_reference.py logits --model DIR --tokens 1,2,3 --out FILE.safetensors [--recurrent] [--adapter DIR]
  qwen35_reference.py greedy --model DIR --tokens 1,2,3 --max-tokens 32 [--adapter DIR]
  qwen35_reference.py grad --model DIR --adapter DIR --data FILE.jsonl --out FILE.safetensors [--recurrent]
  qwen35_reference.py self-check
"""
import argparse
import json
import math
import os
import re
import struct
import sys

import torch
import torch.nn.functional as F

torch.set_num_threads(2)

CHUNK_SIZE = 64
L2NORM_EPS = 1e-6

# ---------------------------------------------------------------------------------------------
# safetensors (spec §8)

_SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "F64": torch.float64,
                       "I32": torch.int32, "I64": torch.int64, "I16": torch.int16, "U8": torch.uint8,
                       "I8": torch.int8, "BOOL": torch.bool}


def _bf16_bits_to_float32(raw):
    """BF16 bytes -> float32: the 16 bits become the high half of each little-endian f32 word."""
    bits = torch.frombuffer(raw, dtype=torch.int16) if len(raw) else torch.empty(0, dtype=torch.int16)
    words = torch.zeros(bits.numel(), 2, dtype=torch.int16)
    words[:, 1] = bits
    return words.view(torch.float32).reshape(-1)


def read_safetensors(path):
    """Returns {name: tensor} of one safetensors file (BF16 widened to float32) and its metadata."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: shorter than the 8-byte header length")
    (header_len,) = struct.unpack("<Q", data[:8])
    if 8 + header_len > len(data):
        raise ValueError(f"{path}: header length {header_len} exceeds the file size {len(data)}")
    header = json.loads(data[8:8 + header_len].decode("utf-8"))
    buffer = memoryview(data)[8 + header_len:]
    metadata = header.pop("__metadata__", {})
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        shape = info["shape"]
        raw = bytearray(buffer[begin:end])
        dtype = info["dtype"]
        if dtype == "BF16":
            flat = _bf16_bits_to_float32(raw)
        elif dtype in _SAFETENSORS_DTYPES:
            torch_dtype = _SAFETENSORS_DTYPES[dtype]
            flat = torch.frombuffer(raw, dtype=torch_dtype) if len(raw) else torch.empty(0, dtype=torch_dtype)
        else:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {dtype}")
        if flat.numel() != math.prod(shape):
            raise ValueError(f"{path}: tensor {name} holds {flat.numel()} values, shape {shape} needs {math.prod(shape)}")
        tensors[name] = flat.reshape(shape)
    return tensors, metadata


def write_safetensors(path, tensors):
    """Writes {name: tensor} as F32 (used for the reference's own logits output)."""
    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        array = tensors[name].detach().to(torch.float32).contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(array)]}
        chunks.append(array)
        offset += len(array)
    encoded = json.dumps(header).encode("utf-8")
    encoded += b" " * ((8 - len(encoded) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for chunk in chunks:
            f.write(chunk)


def read_checkpoint(model_dir):
    """All tensors of model.safetensors or of the shards named in model.safetensors.index.json."""
    index_path = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index_path):
        with open(index_path) as f:
            weight_map = json.load(f)["weight_map"]
        tensors = {}
        for shard in sorted(set(weight_map.values())):
            shard_tensors, _ = read_safetensors(os.path.join(model_dir, shard))
            tensors.update(shard_tensors)
        missing = [name for name in weight_map if name not in tensors]
        if missing:
            raise ValueError(f"{index_path}: tensors named in weight_map not found in the shards: {missing[:5]}")
        return tensors
    tensors, _ = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    return tensors


# ---------------------------------------------------------------------------------------------
# config (spec §1)

def parse_config(document):
    """The text config as a flat dict, from the qwen3_5 wrapper (text_config) or qwen3_5_text form."""
    text = document.get("text_config", document)
    cfg = {key: text[key] for key in (
        "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "num_key_value_heads", "linear_num_key_heads", "linear_num_value_heads", "linear_key_head_dim",
        "linear_value_head_dim", "linear_conv_kernel_dim")}
    cfg["head_dim"] = text.get("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
    cfg["rms_norm_eps"] = text.get("rms_norm_eps", 1e-6)
    rope = text.get("rope_parameters") or {}
    cfg["rope_theta"] = rope.get("rope_theta", text.get("rope_theta", 10000.0))
    cfg["partial_rotary_factor"] = rope.get("partial_rotary_factor", text.get("partial_rotary_factor", 0.25))
    cfg["attn_output_gate"] = text.get("attn_output_gate", True)
    if "layer_types" in text:
        cfg["layer_types"] = list(text["layer_types"])
    else:
        interval = text.get("full_attention_interval", 4)
        cfg["layer_types"] = ["full_attention" if (i + 1) % interval == 0 else "linear_attention"
                              for i in range(cfg["num_hidden_layers"])]
    if len(cfg["layer_types"]) != cfg["num_hidden_layers"]:
        raise ValueError(f"layer_types has {len(cfg['layer_types'])} entries, num_hidden_layers is {cfg['num_hidden_layers']}")
    tie = text.get("tie_word_embeddings", document.get("tie_word_embeddings", False))
    cfg["tie_word_embeddings"] = bool(tie)
    cfg["rotary_dim"] = int(cfg["head_dim"] * cfg["partial_rotary_factor"])
    if cfg["rotary_dim"] <= 0 or cfg["rotary_dim"] % 2:
        raise ValueError(f"rotary dim {cfg['rotary_dim']} must be positive and even")
    return cfg


def load_model(model_dir, dtype=torch.float64):
    """(config, weights) with canonical weight names; the head is tied when lm_head.weight is absent."""
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = parse_config(json.load(f))
    raw = read_checkpoint(model_dir)
    if "model.language_model.embed_tokens.weight" in raw:
        prefix = "model.language_model."
    elif "model.embed_tokens.weight" in raw:
        prefix = "model."
    else:
        raise ValueError(f"{model_dir}: no embed_tokens.weight under model.language_model. or model.")
    weights = {}
    for name, tensor in raw.items():
        if name.startswith(prefix):
            weights[name[len(prefix):]] = tensor.to(dtype)
        elif name == "lm_head.weight":
            weights[name] = tensor.to(dtype)
    if "lm_head.weight" not in weights:
        weights["lm_head.weight"] = weights["embed_tokens.weight"]
    cfg["checkpoint_prefix"] = prefix
    return cfg, weights


# ---------------------------------------------------------------------------------------------
# PEFT LoRA adapters (spec §7)

_LORA_KEY = re.compile(r"base_model\.model\.(model\.(?:language_model\.)?(layers\.\d+\.[a-z_]+\.[a-z_]+))\.lora_([AB])\.weight")


def pattern_value(pattern, module_name, default):
    r"""rank_pattern / alpha_pattern: the first key k (in file order) with
    re.match(rf"(.*\.)?({k})$", module_name) gives the value; else `default` (PEFT's get_pattern_key)."""
    for key, value in pattern.items():
        if re.match(rf"(.*\.)?({key})$", module_name):
            return value
    return default


def _adapter_factors(adapter_dir, dtype):
    """{canonical module: (full module name, {"A"/"B": (file key, tensor)})} of a PEFT adapter
    directory, and its adapter_config.json."""
    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        config = json.load(f)
    tensors, _ = read_safetensors(os.path.join(adapter_dir, "adapter_model.safetensors"))
    factors = {}
    for key, tensor in tensors.items():
        match = _LORA_KEY.fullmatch(key)
        if not match:
            raise ValueError(f"{adapter_dir}: unexpected adapter key {key}")
        full_name, module, factor = match.groups()
        factors.setdefault(module, (full_name, {}))[1][factor] = (key, tensor.to(dtype))
    return factors, config


def with_adapter(weights, adapter_dir, dtype=torch.float64):
    """A copy of `weights` with the LoRA modules of the PEFT adapter directory added (keys in either
    namespace, base_model.model.model.layers.N. or base_model.model.model.language_model.layers.N.).
    Per module: rank and alpha from rank_pattern / alpha_pattern (matched against the module's name
    without base_model.model.), else r / lora_alpha; scaling alpha / r, or alpha / sqrt(r) with
    use_rslora. Fails on a key, rank or shape that does not fit."""
    factors, config = _adapter_factors(adapter_dir, dtype)
    adapted = dict(weights)
    for module, (full_name, pair) in factors.items():
        if set(pair) != {"A", "B"} or module + ".weight" not in weights:
            raise ValueError(f"{adapter_dir}: module {full_name} needs lora_A and lora_B and a base weight")
        (_, lora_a), (_, lora_b) = pair["A"], pair["B"]
        rank = pattern_value(config.get("rank_pattern") or {}, full_name, config["r"])
        alpha = pattern_value(config.get("alpha_pattern") or {}, full_name, config["lora_alpha"])
        out_features, in_features = weights[module + ".weight"].shape
        if lora_a.shape != (rank, in_features) or lora_b.shape != (out_features, rank):
            raise ValueError(f"{adapter_dir}: {full_name} has A {list(lora_a.shape)} and B {list(lora_b.shape)}, "
                             f"expected [{rank}, {in_features}] and [{out_features}, {rank}]")
        scaling = alpha / math.sqrt(rank) if config.get("use_rslora", False) else alpha / rank
        adapted[module + ".lora_A"], adapted[module + ".lora_B"] = lora_a, lora_b
        adapted[module + ".lora_scaling"] = torch.tensor(scaling, dtype=dtype)
    return adapted


def adapter_factor_keys(adapter_dir):
    """{"<module>.lora_A" / "<module>.lora_B" (the names with_adapter gives the factors): the
    factor's key in adapter_model.safetensors}."""
    factors, _ = _adapter_factors(adapter_dir, torch.float32)
    return {f"{module}.lora_{factor}": key
            for module, (_, pair) in factors.items() for factor, (key, _) in pair.items()}


# ---------------------------------------------------------------------------------------------
# building blocks (spec §3)

def linear(weights, name, x):
    """x W^T for the module `name` (e.g. "layers.0.mlp.up_proj"), plus s (x A^T) B^T when the weights
    carry a LoRA module for it."""
    y = x @ weights[name + ".weight"].t()
    if name + ".lora_A" in weights:
        y = y + weights[name + ".lora_scaling"] * ((x @ weights[name + ".lora_A"].t()) @ weights[name + ".lora_B"].t())
    return y


def rms_norm_zero_centred(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * (1.0 + weight)


def gated_rms_norm(x, gate, weight, eps):
    """Norm first, then gate: w * (x / rms(x)) * silu(z); plain weight."""
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)) * F.silu(gate)


def l2norm(x):
    return x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + L2NORM_EPS)


def mlp(weights, prefix, x):
    return linear(weights, prefix + "down_proj",
                  F.silu(linear(weights, prefix + "gate_proj", x)) * linear(weights, prefix + "up_proj", x))


def rotary_cos_sin(cfg, positions, dtype):
    rotary_dim = cfg["rotary_dim"]
    inv_freq = cfg["rope_theta"] ** (-torch.arange(0, rotary_dim, 2, dtype=torch.float64) / rotary_dim)
    freqs = positions.to(torch.float64)[:, None] * inv_freq[None, :]
    angles = torch.cat([freqs, freqs], dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x, cos, sin):
    """Rotate-half RoPE on the first R dims of x [T, heads, hd]; dims R.. pass through."""
    rotary_dim = cos.shape[-1]
    rotated, passthrough = x[..., :rotary_dim], x[..., rotary_dim:]
    half = rotary_dim // 2
    rotate_half = torch.cat([-rotated[..., half:], rotated[..., :half]], dim=-1)
    rotated = rotated * cos[:, None, :] + rotate_half * sin[:, None, :]
    return torch.cat([rotated, passthrough], dim=-1)


def gated_attention(cfg, weights, prefix, x, position, cache):
    """Spec §3.4. `cache` (dict or None) holds "keys"/"values" [nkv, T_past, hd]."""
    seq_len = x.shape[0]
    nq, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    projected = linear(weights, prefix + "q_proj", x)
    if cfg["attn_output_gate"]:
        projected = projected.view(seq_len, nq, 2 * hd)
        query, gate = projected[..., :hd], projected[..., hd:].reshape(seq_len, nq * hd)
    else:
        query, gate = projected.view(seq_len, nq, hd), None
    key = linear(weights, prefix + "k_proj", x).view(seq_len, nkv, hd)
    value = linear(weights, prefix + "v_proj", x).view(seq_len, nkv, hd)
    eps = cfg["rms_norm_eps"]
    query = rms_norm_zero_centred(query, weights[prefix + "q_norm.weight"], eps)
    key = rms_norm_zero_centred(key, weights[prefix + "k_norm.weight"], eps)
    positions = torch.arange(position, position + seq_len)
    cos, sin = rotary_cos_sin(cfg, positions, x.dtype)
    query, key = apply_rotary(query, cos, sin), apply_rotary(key, cos, sin)
    key, value = key.transpose(0, 1), value.transpose(0, 1)  # [nkv, T, hd]
    if cache is not None:
        if "keys" in cache:
            key = torch.cat([cache["keys"], key], dim=1)
            value = torch.cat([cache["values"], value], dim=1)
        cache["keys"], cache["values"] = key, value
    group = nq // nkv
    key, value = key.repeat_interleave(group, dim=0), value.repeat_interleave(group, dim=0)
    scores = query.transpose(0, 1) @ key.transpose(1, 2) * hd ** -0.5  # [nq, T, T_total]
    total = key.shape[1]
    query_pos = torch.arange(position, position + seq_len)[:, None]
    key_pos = torch.arange(total)[None, :]
    scores = scores.masked_fill(key_pos > query_pos, float("-inf"))
    attended = (torch.softmax(scores, dim=-1) @ value).transpose(0, 1).reshape(seq_len, nq * hd)
    if gate is not None:
        attended = attended * torch.sigmoid(gate)
    return linear(weights, prefix + "o_proj", attended)


# ---------------------------------------------------------------------------------------------
# gated delta rule (spec §3.6 step 7, §5.1). Inputs per v-head: q, k [T, nv, dk] (l2-normalised,
# q already scaled by dk^-1/2), v [T, nv, dv], g, beta [T, nv]; state [nv, dk, dv].

def recurrent_gated_delta_rule(q, k, v, g, beta, initial_state=None):
    nv, dk, dv = v.shape[1], k.shape[2], v.shape[2]
    state = initial_state if initial_state is not None else v.new_zeros(nv, dk, dv)
    outputs = []
    for t in range(q.shape[0]):
        state = state * g[t].exp()[:, None, None]
        predicted = (state * k[t][:, :, None]).sum(1)               # S^T k  [nv, dv]
        update = beta[t][:, None] * (v[t] - predicted)
        state = state + k[t][:, :, None] * update[:, None, :]
        outputs.append((state * q[t][:, :, None]).sum(1))           # S^T q
    return torch.stack(outputs) if outputs else v.new_zeros(0, nv, dv), state


def chunked_gated_delta_rule(q, k, v, g, beta, initial_state=None, chunk_size=CHUNK_SIZE):
    """WY/UT chunked form in log space; T padded with zeros to a multiple of chunk_size."""
    seq_len, nv, dk, dv = q.shape[0], q.shape[1], k.shape[2], v.shape[2]
    pad = (-seq_len) % chunk_size
    q, k, v = (F.pad(x, (0, 0, 0, 0, 0, pad)) for x in (q, k, v))
    g, beta = (F.pad(x, (0, 0, 0, pad)) for x in (g, beta))
    chunks = (seq_len + pad) // chunk_size
    # -> [nv, chunks, C, d]
    q, k, v = (x.transpose(0, 1).reshape(nv, chunks, chunk_size, -1) for x in (q, k, v))
    g, beta = (x.transpose(0, 1).reshape(nv, chunks, chunk_size) for x in (g, beta))
    cumulative = g.cumsum(-1)                                           # G_i
    lower = torch.ones(chunk_size, chunk_size, dtype=torch.bool).tril()
    # Gamma_ij = exp(G_i - G_j) for i >= j; the upper triangle is masked before exp (no overflow).
    log_decay = (cumulative[..., :, None] - cumulative[..., None, :]).masked_fill(~lower, float("-inf"))
    decay = log_decay.exp()
    strict = ~lower | torch.eye(chunk_size, dtype=torch.bool)
    a_matrix = (beta[..., :, None] * (k @ k.transpose(-1, -2)) * decay).masked_fill(strict, 0.0)
    identity = torch.eye(chunk_size, dtype=q.dtype).expand_as(a_matrix)
    t_matrix = torch.linalg.solve_triangular(identity + a_matrix, identity, upper=False, unitriangular=True)
    w = t_matrix @ (k * (beta * cumulative.exp())[..., None])
    u = t_matrix @ (v * beta[..., None])
    state = initial_state if initial_state is not None else v.new_zeros(nv, dk, dv)
    outputs = []
    for n in range(chunks):
        q_n, k_n, g_n = q[:, n], k[:, n], cumulative[:, n]
        v_new = u[:, n] - w[:, n] @ state
        intra = (q_n @ k_n.transpose(-1, -2)) * decay[:, n]
        outputs.append((q_n * g_n.exp()[..., None]) @ state + intra @ v_new)
        to_end = (g_n[:, -1:] - g_n).exp()                              # e_i = exp(G_C - G_i)
        state = state * g_n[:, -1].exp()[:, None, None] + (k_n * to_end[..., None]).transpose(-1, -2) @ v_new
    output = torch.stack(outputs, dim=1).reshape(nv, chunks * chunk_size, dv).transpose(0, 1)
    return output[:seq_len], state


def gated_deltanet(cfg, weights, prefix, x, cache, recurrent):
    """Spec §3.6. `cache` (dict or None) holds "conv" [Kc-1, conv_dim] and "state" [nv, dk, dv]."""
    seq_len = x.shape[0]
    nk, nv = cfg["linear_num_key_heads"], cfg["linear_num_value_heads"]
    dk, dv, kernel = cfg["linear_key_head_dim"], cfg["linear_value_head_dim"], cfg["linear_conv_kernel_dim"]
    key_dim = nk * dk
    projected = linear(weights, prefix + "in_proj_qkv", x)              # [T, conv_dim]
    z = linear(weights, prefix + "in_proj_z", x).view(seq_len, nv, dv)
    b = linear(weights, prefix + "in_proj_b", x)
    a = linear(weights, prefix + "in_proj_a", x)
    conv_weight = weights[prefix + "conv1d.weight"]                     # [conv_dim, 1, Kc]
    conv_dim = conv_weight.shape[0]
    if cache is not None and "conv" in cache:
        window = torch.cat([cache["conv"], projected], dim=0)
        convolved = F.conv1d(window.t()[None], conv_weight, groups=conv_dim)[0].t()
    else:
        window = torch.cat([projected.new_zeros(kernel - 1, conv_dim), projected], dim=0)
        convolved = F.conv1d(projected.t()[None], conv_weight, padding=kernel - 1, groups=conv_dim)[0, :, :seq_len].t()
    convolved = F.silu(convolved)
    query = convolved[:, :key_dim].reshape(seq_len, nk, dk)
    key = convolved[:, key_dim:2 * key_dim].reshape(seq_len, nk, dk)
    value = convolved[:, 2 * key_dim:].reshape(seq_len, nv, dv)
    beta = torch.sigmoid(b)
    g = -weights[prefix + "A_log"].exp() * F.softplus(a + weights[prefix + "dt_bias"], beta=1.0, threshold=20.0)
    ratio = nv // nk
    query = l2norm(query).repeat_interleave(ratio, dim=1) * dk ** -0.5
    key = l2norm(key).repeat_interleave(ratio, dim=1)
    initial = cache.get("state") if cache is not None else None
    rule = recurrent_gated_delta_rule if recurrent else chunked_gated_delta_rule
    output, state = rule(query, key, value, g, beta, initial)
    if cache is not None:
        cache["conv"], cache["state"] = window[-(kernel - 1):], state
    output = gated_rms_norm(output, z, weights[prefix + "norm.weight"], cfg["rms_norm_eps"])
    return linear(weights, prefix + "out_proj", output.reshape(seq_len, nv * dv))


# ---------------------------------------------------------------------------------------------
# model (spec §3.1, §4)

def new_cache(cfg):
    return {"position": 0, "layers": [{} for _ in range(cfg["num_hidden_layers"])]}


def forward(cfg, weights, tokens, cache=None, recurrent=False, all_logits=True):
    """Logits [T, vocab] for `tokens` (list or 1-D tensor), continuing from `cache` when given;
    [1, vocab] for the last position only when not all_logits."""
    tokens = torch.as_tensor(tokens, dtype=torch.long)
    position = cache["position"] if cache is not None else 0
    eps = cfg["rms_norm_eps"]
    hidden = weights["embed_tokens.weight"][tokens]
    for i, layer_type in enumerate(cfg["layer_types"]):
        prefix = f"layers.{i}."
        layer_cache = cache["layers"][i] if cache is not None else None
        x = rms_norm_zero_centred(hidden, weights[prefix + "input_layernorm.weight"], eps)
        if layer_type == "linear_attention":
            x = gated_deltanet(cfg, weights, prefix + "linear_attn.", x, layer_cache, recurrent)
        else:
            x = gated_attention(cfg, weights, prefix + "self_attn.", x, position, layer_cache)
        hidden = hidden + x
        x = rms_norm_zero_centred(hidden, weights[prefix + "post_attention_layernorm.weight"], eps)
        hidden = hidden + mlp(weights, prefix + "mlp.", x)
    if cache is not None:
        cache["position"] = position + len(tokens)
    if not all_logits:
        hidden = hidden[-1:]
    hidden = rms_norm_zero_centred(hidden, weights["norm.weight"], eps)
    return hidden @ weights["lm_head.weight"].t()


def greedy_continuation(cfg, weights, prompt, count, use_cache=True):
    """`count` greedy tokens after `prompt` (first maximum wins ties, like argmax)."""
    with torch.no_grad():
        generated = []
        if use_cache:
            cache = new_cache(cfg)
            logits = forward(cfg, weights, prompt, cache)
            for _ in range(count):
                generated.append(int(torch.argmax(logits[-1])))
                logits = forward(cfg, weights, [generated[-1]], cache, recurrent=True)
        else:
            for _ in range(count):
                logits = forward(cfg, weights, list(prompt) + generated)
                generated.append(int(torch.argmax(logits[-1])))
    return generated


# ---------------------------------------------------------------------------------------------
# causal-LM loss and LoRA gradients (spec §3.7)

IGNORE_INDEX = -100


def read_examples(path):
    """[(input_ids, labels)] of a JSONL file, one {"input_ids": [...]} or {"input_ids": [...],
    "labels": [...]} object per non-blank line; labels are unshifted and default to input_ids."""
    examples = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            record = json.loads(line)
            input_ids = record.get("input_ids")
            labels = record.get("labels", input_ids)
            if not input_ids or len(labels) != len(input_ids):
                raise ValueError(f"{path}:{number}: needs a non-empty input_ids and labels of the same length")
            examples.append((list(input_ids), list(labels)))
    if not examples:
        raise ValueError(f"{path}: no examples")
    return examples


def loss_sum(cfg, weights, examples, recurrent=False):
    """(sum of the cross-entropies of every non-ignored target, their count) over the examples,
    each run on its own: position t predicts labels[t + 1], the last position predicts nothing."""
    total, count = 0.0, 0
    for input_ids, labels in examples:
        targets = torch.as_tensor(labels[1:], dtype=torch.long)
        if len(targets) == 0:
            continue
        logits = forward(cfg, weights, input_ids, recurrent=recurrent)[:-1]
        total = total + F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")
        count += int((targets != IGNORE_INDEX).sum())
    return total, count


def lora_loss_and_gradients(cfg, adapted, examples, factor_names, recurrent=False):
    """The Hugging Face mean loss over all examples as one batch and its autograd gradient with
    respect to each named LoRA factor ({name: gradient}); everything else stays frozen."""
    leaves = dict(adapted)
    for name in factor_names:
        leaves[name] = adapted[name].detach().clone().requires_grad_(True)
    total, count = loss_sum(cfg, leaves, examples, recurrent)
    if count == 0:
        raise ValueError("every target is ignored: the loss is undefined")
    loss = total / count
    gradients = torch.autograd.grad(loss, [leaves[name] for name in factor_names])
    return float(loss), dict(zip(factor_names, gradients))


# ---------------------------------------------------------------------------------------------
# self-check: chunked == recurrent in float64

def self_check(tolerance=1e-10):
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for seq_len, decay_scale, with_state in ((1, 1.0, False), (63, 1.0, True), (64, 21.0, False),
                                             (65, 0.05, True), (150, 5.0, True)):
        nv, dk, dv = 3, 5, 4
        q = l2norm(torch.randn(seq_len, nv, dk, generator=generator, dtype=torch.float64)) * dk ** -0.5
        k = l2norm(torch.randn(seq_len, nv, dk, generator=generator, dtype=torch.float64))
        v = torch.randn(seq_len, nv, dv, generator=generator, dtype=torch.float64)
        g = -decay_scale * torch.rand(seq_len, nv, generator=generator, dtype=torch.float64)
        beta = torch.rand(seq_len, nv, generator=generator, dtype=torch.float64)
        state = torch.randn(nv, dk, dv, generator=generator, dtype=torch.float64) if with_state else None
        out_r, state_r = recurrent_gated_delta_rule(q, k, v, g, beta, state)
        out_c, state_c = chunked_gated_delta_rule(q, k, v, g, beta, state)
        for name, a, b in (("output", out_r, out_c), ("state", state_r, state_c)):
            error = float((a - b).abs().max())
            if not math.isfinite(error) or error > tolerance:
                raise AssertionError(f"chunked vs recurrent {name} differ by {error} (T={seq_len}, decay {decay_scale})")
            worst = max(worst, error)
    return worst


def random_model(seed=0, **overrides):
    """An asymmetric random config and weights held in memory (nk != nv, dk != dv, nq != nkv,
    randomised norms, untied head) for self-checks."""
    generator = torch.Generator().manual_seed(seed)
    cfg = parse_config(dict({
        "vocab_size": 97, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 4,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "linear_num_key_heads": 2,
        "linear_num_value_heads": 6, "linear_key_head_dim": 8, "linear_value_head_dim": 12,
        "linear_conv_kernel_dim": 4, "full_attention_interval": 2,
        "rope_parameters": {"rope_theta": 10000.0, "partial_rotary_factor": 0.5}}, **overrides))
    hidden, nq, nkv, hd = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    nk, nv = cfg["linear_num_key_heads"], cfg["linear_num_value_heads"]
    dk, dv, kernel = cfg["linear_key_head_dim"], cfg["linear_value_head_dim"], cfg["linear_conv_kernel_dim"]

    def normal(*shape, std=0.2):
        return torch.randn(*shape, generator=generator, dtype=torch.float64) * std

    weights = {"embed_tokens.weight": normal(cfg["vocab_size"], hidden, std=1.0),
               "norm.weight": normal(hidden, std=0.1), "lm_head.weight": normal(cfg["vocab_size"], hidden)}
    for i, layer_type in enumerate(cfg["layer_types"]):
        p = f"layers.{i}."
        weights.update({p + "input_layernorm.weight": normal(hidden, std=0.1),
                        p + "post_attention_layernorm.weight": normal(hidden, std=0.1),
                        p + "mlp.gate_proj.weight": normal(cfg["intermediate_size"], hidden),
                        p + "mlp.up_proj.weight": normal(cfg["intermediate_size"], hidden),
                        p + "mlp.down_proj.weight": normal(hidden, cfg["intermediate_size"])})
        if layer_type == "linear_attention":
            p += "linear_attn."
            weights.update({p + "in_proj_qkv.weight": normal(2 * nk * dk + nv * dv, hidden),
                            p + "in_proj_z.weight": normal(nv * dv, hidden),
                            p + "in_proj_b.weight": normal(nv, hidden), p + "in_proj_a.weight": normal(nv, hidden),
                            p + "conv1d.weight": normal(2 * nk * dk + nv * dv, 1, kernel, std=0.5),
                            p + "A_log": torch.log(torch.rand(nv, generator=generator, dtype=torch.float64) * 16 + 0.01),
                            p + "dt_bias": 1.0 + normal(nv, std=0.1), p + "norm.weight": 1.0 + normal(dv, std=0.1),
                            p + "out_proj.weight": normal(hidden, nv * dv)})
        else:
            p += "self_attn."
            weights.update({p + "q_proj.weight": normal(2 * nq * hd, hidden), p + "k_proj.weight": normal(nkv * hd, hidden),
                            p + "v_proj.weight": normal(nkv * hd, hidden), p + "o_proj.weight": normal(hidden, nq * hd),
                            p + "q_norm.weight": normal(hd, std=0.1), p + "k_norm.weight": normal(hd, std=0.1)})
    return cfg, weights


def self_check_model(tolerance=1e-10):
    """Whole model: chunked == recurrent (logits and autograd gradients), and cached prefill + decode
    == one full forward."""
    cfg, weights = random_model()
    tokens = torch.randint(0, cfg["vocab_size"], (140,), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = forward(cfg, weights, tokens)
        checks = {"recurrent": forward(cfg, weights, tokens, recurrent=True)}
        cache = new_cache(cfg)
        pieces = [forward(cfg, weights, tokens[:70], cache), forward(cfg, weights, tokens[70:135], cache)]
        pieces += [forward(cfg, weights, tokens[t:t + 1], cache, recurrent=True) for t in range(135, 140)]
        checks["cached"] = torch.cat(pieces)
    # Autograd runs through both delta-rule forms and gives the same gradients.
    leaves = {name: tensor.clone().requires_grad_(True) for name, tensor in weights.items()}
    probe = ["layers.0.linear_attn.A_log", "layers.0.linear_attn.dt_bias", "layers.0.linear_attn.conv1d.weight",
             "layers.0.linear_attn.in_proj_qkv.weight", "layers.1.self_attn.q_proj.weight", "norm.weight"]
    gradients = {}
    for recurrent in (False, True):
        loss = forward(cfg, leaves, tokens[:70], recurrent=recurrent).logsumexp(-1).sum()
        gradients[recurrent] = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, [leaves[n] for n in probe])])
    full_grad = gradients[False]
    worst = 0.0
    error = float((gradients[True] - full_grad).norm() / full_grad.norm())
    if not math.isfinite(error) or error > tolerance or float(full_grad.norm()) == 0.0:
        raise AssertionError(f"gradients of the chunked and recurrent forms differ by {error} (relative L2)")
    worst = max(worst, error)
    for name, other in checks.items():
        error = float(((other - full).norm() / full.norm()))
        if not math.isfinite(error) or error > tolerance:
            raise AssertionError(f"model {name} logits differ from the full chunked forward by {error} (relative L2)")
        worst = max(worst, error)
    return worst


LORA_KINDS = ("q_proj", "k_proj", "v_proj", "o_proj", "in_proj_qkv", "in_proj_z", "in_proj_b", "in_proj_a",
              "out_proj", "gate_proj", "up_proj", "down_proj")


def random_lora(weights, rank=3, alpha=5.0, seed=0):
    """A copy of `weights` with random LoRA factors (both A and B non-zero) on every linear module."""
    generator = torch.Generator().manual_seed(seed)
    adapted = dict(weights)
    for name, weight in weights.items():
        module = name[:-len(".weight")]
        if name.endswith(".weight") and module.rsplit(".", 1)[-1] in LORA_KINDS:
            out_features, in_features = weight.shape
            adapted[module + ".lora_A"] = torch.randn(rank, in_features, generator=generator, dtype=weight.dtype) * 0.3
            adapted[module + ".lora_B"] = torch.randn(out_features, rank, generator=generator, dtype=weight.dtype) * 0.3
            adapted[module + ".lora_scaling"] = torch.tensor(alpha / rank, dtype=weight.dtype)
    return adapted


def self_check_lora_gradients(tolerance=1e-10, finite_difference_tolerance=1e-6):
    """LoRA gradients of the loss over a masked batch (lengths across the chunk boundary): equal for
    the chunked and recurrent delta rule, and equal to central finite differences on a few entries.
    Returns (chunked vs recurrent relative L2, worst finite-difference relative error)."""
    cfg, weights = random_model(seed=2)
    adapted = random_lora(weights, seed=3)
    generator = torch.Generator().manual_seed(4)
    tokens = [torch.randint(0, cfg["vocab_size"], (length,), generator=generator).tolist() for length in (70, 20)]
    examples = [(tokens[0], [IGNORE_INDEX] * 12 + tokens[0][12:]), (tokens[1], tokens[1])]
    names = sorted(name for name in adapted if name.endswith((".lora_A", ".lora_B")))
    loss, chunked = lora_loss_and_gradients(cfg, adapted, examples, names)
    _, recurrent = lora_loss_and_gradients(cfg, adapted, examples, names, recurrent=True)
    flat_chunked = torch.cat([chunked[n].reshape(-1) for n in names])
    flat_recurrent = torch.cat([recurrent[n].reshape(-1) for n in names])
    forms = float((flat_recurrent - flat_chunked).norm() / flat_chunked.norm())
    if not math.isfinite(forms) or forms > tolerance or float(flat_chunked.norm()) == 0.0:
        raise AssertionError(f"LoRA gradients of the chunked and recurrent forms differ by {forms} (relative L2)")
    worst = 0.0
    step = 1e-5
    probes = (("layers.0.linear_attn.in_proj_a.lora_A", (1, 3)), ("layers.0.linear_attn.in_proj_qkv.lora_B", (40, 2)),
              ("layers.1.self_attn.q_proj.lora_A", (0, 7)), ("layers.2.linear_attn.out_proj.lora_B", (5, 1)),
              ("layers.3.mlp.down_proj.lora_A", (2, 30)))
    for name, index in probes:
        values = []
        for sign in (1.0, -1.0):
            shifted = dict(adapted)
            shifted[name] = adapted[name].clone()
            shifted[name][index] += sign * step
            with torch.no_grad():
                total, count = loss_sum(cfg, shifted, examples)
            values.append(float(total) / count)
        numeric = (values[0] - values[1]) / (2 * step)
        analytic = float(chunked[name][index])
        error = abs(numeric - analytic) / max(abs(analytic), 1e-3)
        if not math.isfinite(error) or error > finite_difference_tolerance:
            raise AssertionError(f"d loss / d {name}{list(index)}: autograd {analytic}, finite differences {numeric}")
        worst = max(worst, error)
    return forms, worst


def _parse_tokens(text):
    return [int(t) for t in text.split(",") if t.strip()]


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    logits_parser = sub.add_parser("logits", help="write logits [T, vocab] as F32 safetensors")
    logits_parser.add_argument("--model", required=True)
    logits_parser.add_argument("--tokens", required=True)
    logits_parser.add_argument("--out", required=True)
    logits_parser.add_argument("--recurrent", action="store_true")
    logits_parser.add_argument("--adapter", help="PEFT LoRA adapter directory")
    greedy_parser = sub.add_parser("greedy", help="print greedy continuation ids, comma-separated")
    greedy_parser.add_argument("--model", required=True)
    greedy_parser.add_argument("--tokens", required=True)
    greedy_parser.add_argument("--max-tokens", type=int, default=32)
    greedy_parser.add_argument("--adapter", help="PEFT LoRA adapter directory")
    grad_parser = sub.add_parser("grad", help="write the loss and every LoRA gradient as F32 safetensors")
    grad_parser.add_argument("--model", required=True)
    grad_parser.add_argument("--adapter", required=True, help="PEFT LoRA adapter directory")
    grad_parser.add_argument("--data", required=True, help='JSONL: {"input_ids": [...]} or {"input_ids", "labels"} per line')
    grad_parser.add_argument("--out", required=True)
    grad_parser.add_argument("--recurrent", action="store_true")
    sub.add_parser("self-check", help="chunked vs recurrent delta rule, LoRA gradients vs finite differences, in float64")
    args = parser.parse_args(argv)
    if args.command == "self-check":
        print(f"delta rule: chunked == recurrent, max abs difference {self_check():.3g}")
        print(f"model: recurrent, cached and gradients == chunked, relative L2 difference {self_check_model():.3g}")
        forms, finite = self_check_lora_gradients()
        print(f"LoRA gradients: recurrent == chunked, relative L2 difference {forms:.3g}; "
              f"finite differences, worst relative error {finite:.3g}")
        return 0
    cfg, weights = load_model(args.model)
    if args.adapter:
        weights = with_adapter(weights, args.adapter)
    if args.command == "grad":
        keys = adapter_factor_keys(args.adapter)
        loss, gradients = lora_loss_and_gradients(cfg, weights, read_examples(args.data), sorted(keys), args.recurrent)
        outputs = {keys[name]: gradient for name, gradient in gradients.items()}
        outputs["loss"] = torch.tensor([loss])
        write_safetensors(args.out, outputs)
    elif args.command == "logits":
        with torch.no_grad():
            logits = forward(cfg, weights, _parse_tokens(args.tokens), recurrent=args.recurrent)
        write_safetensors(args.out, {"logits": logits})
    else:
        print(",".join(str(t) for t in greedy_continuation(cfg, weights, _parse_tokens(args.tokens), args.max_tokens)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
