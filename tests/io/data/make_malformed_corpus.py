#!/usr/bin/env python3
"""Writes the safetensors test corpus: small files (and sharded checkpoint folders), each named after
its defect, plus a few valid_* files that also seed the fuzzer.

Usage: make_malformed_corpus.py [OUTPUT_ROOT]   (default: the folder holding this script)
  OUTPUT_ROOT/safetensors/<case>.safetensors   single files
  OUTPUT_ROOT/sharded/<case>/                  checkpoint folders with model.safetensors.index.json

tests/io/safetensors_corpus_test.cpp holds the message fragment each case must produce.
Plain Python, no dependencies; the output is deterministic.
"""
import json
import os
import shutil
import struct
import sys


def header_bytes(header_text):
    """8-byte little-endian length, then the header text (str or bytes) as given."""
    raw = header_text.encode("utf-8") if isinstance(header_text, str) else header_text
    return struct.pack("<Q", len(raw)) + raw


def safetensors(entries, buffer, metadata=None, pad=True):
    """A file from header entries {name: {dtype, shape, data_offsets}} and a raw byte buffer."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    header.update(entries)
    text = json.dumps(header, separators=(",", ":"))
    if pad:
        text += " " * ((8 - len(text) % 8) % 8)
    return header_bytes(text) + buffer


def entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def raw_entry(text, buffer):
    """A file whose header is the literal JSON text (to express duplicates, bad numbers, ...)."""
    return header_bytes(text) + buffer


F32_ONE_TWO = struct.pack("<2f", 1.0, 2.0)

VALID = {
    "valid_f32": safetensors({"w": entry("F32", [2], 0, 8)}, F32_ONE_TWO, {"format": "pt"}),
    "valid_mixed": safetensors(
        {
            "a.f32": entry("F32", [2, 2], 0, 16),
            "b.i64": entry("I64", [1], 16, 24),
            "c.bf16": entry("BF16", [3], 24, 30),
            "d.f16": entry("F16", [1], 30, 32),
            "e.u8": entry("U8", [3], 32, 35),
            "f.empty": entry("F32", [0, 4], 35, 35),
        },
        struct.pack("<4f", 1.5, -2.0, 0.25, 8.0) + struct.pack("<q", -7)
        + bytes([0x80, 0x3F, 0x00, 0x40, 0xC0, 0xBF, 0x00, 0x3C, 1, 2, 3]),
        {"format": "pt", "note": "mixed dtypes"},
    ),
    "valid_scalar_and_empty": safetensors(
        {"scalar": entry("F32", [], 0, 4), "empty": entry("BF16", [3, 0], 4, 4)}, struct.pack("<f", 3.0)
    ),
    "valid_no_tensors": safetensors({}, b"", {"format": "pt"}),
    # Older writers did not pad the header: the reader must accept data that is not 8-byte aligned.
    "valid_unpadded": safetensors({"w": entry("F32", [2], 0, 8), "x": entry("U8", [1], 8, 9)},
                                  F32_ONE_TWO + b"\x05", pad=False),
    # JSON "-0" is the integer zero, as serde reads it.
    "valid_minus_zero": raw_entry('{"w": {"dtype": "F32", "shape": [-0, 2], "data_offsets": [-0, 0]}}', b""),
    "valid_subbyte": safetensors({"q": entry("F4", [4], 0, 2), "r": entry("F6_E2M3", [4], 2, 5)}, b"\x12\x34\x56\x78\x9a"),
}

MALFORMED = {
    "empty_file": b"",
    "too_short": b"\x01\x02\x03\x04\x05",
    "header_length_past_end": struct.pack("<Q", 1000) + b"{}",
    "header_length_over_limit": struct.pack("<Q", 100_000_001) + b"{}",
    "header_length_u64_max": struct.pack("<Q", 2**64 - 1) + b"{}",
    "header_not_utf8": header_bytes(b'{"w\xff":{}}'),
    "header_utf8_surrogate": header_bytes(b'{"ww\xed\xa0\x80":{}}'),
    "header_not_object": header_bytes("[1, 2]"),
    "header_invalid_json": header_bytes('{"w": '),
    "header_trailing_garbage": header_bytes("{}xx"),
    "number_overflow": raw_entry('{"w": {"dtype": "F32", "shape": [1e999], "data_offsets": [0, 4]}}', b"\0" * 4),
    "entry_not_object": raw_entry('{"w": 5}', b""),
    "entry_deeply_nested": raw_entry('{"w": ' + "[" * 20000 + "]" * 20000 + "}", b""),
    "missing_dtype": raw_entry('{"w": {"shape": [1], "data_offsets": [0, 4]}}', b"\0" * 4),
    "missing_shape": raw_entry('{"w": {"dtype": "F32", "data_offsets": [0, 4]}}', b"\0" * 4),
    "missing_data_offsets": raw_entry('{"w": {"dtype": "F32", "shape": [1]}}', b"\0" * 4),
    "dtype_not_string": safetensors({"w": entry(32, [1], 0, 4)}, b"\0" * 4),
    "shape_not_array": safetensors({"w": entry("F32", 1, 0, 4)}, b"\0" * 4),
    "offsets_not_integers": safetensors({"w": entry("F32", [1], 0, "4")}, b"\0" * 4),
    "offsets_three_elements": raw_entry('{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]}}',
                                        b"\0" * 8),
    "offsets_negative": safetensors({"w": entry("F32", [0], -4, -4)}, b""),
    "unknown_dtype": safetensors({"w": entry("F33", [1], 0, 4)}, b"\0" * 4),
    "dtype_lowercase": safetensors({"w": entry("f32", [1], 0, 4)}, b"\0" * 4),
    "negative_dim": safetensors({"w": entry("F32", [-2, -2], 0, 16)}, b"\0" * 16),
    "non_integer_dim": raw_entry('{"w": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}}', b"\0" * 4),
    "integral_float_dim": raw_entry('{"w": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}}', b"\0" * 8),
    "dim_too_large": safetensors({"w": entry("U8", [2**63], 0, 1)}, b"\0"),
    "shape_overflow": safetensors({"w": entry("U8", [2**40, 2**40], 0, 1)}, b"\0"),
    "subbyte_partial_byte": safetensors({"w": entry("F4", [3], 0, 2)}, b"\0" * 2),
    "byte_length_mismatch": safetensors({"w": entry("F32", [2, 2], 0, 12)}, b"\0" * 12),
    "begin_after_end": safetensors({"w": entry("F32", [0], 8, 4)}, b"\0" * 8),
    "offsets_past_buffer": safetensors({"w": entry("F32", [8], 0, 32)}, b"\0" * 16),
    "offsets_u64_max": raw_entry('{"w": {"dtype": "U8", "shape": [1], '
                                 '"data_offsets": [18446744073709551614, 18446744073709551615]}}', b"\0"),
    "overlapping_ranges": safetensors({"a": entry("F32", [2], 0, 8), "b": entry("F32", [2], 4, 12)}, b"\0" * 12),
    "empty_tensor_inside_another": safetensors({"a": entry("F32", [2], 0, 8), "b": entry("F32", [0], 4, 4)},
                                               b"\0" * 8),
    "hole_between_tensors": safetensors({"a": entry("F32", [2], 0, 8), "b": entry("F32", [1], 12, 16)},
                                        b"\0" * 16),
    "hole_at_start": safetensors({"a": entry("F32", [1], 4, 8)}, b"\0" * 8),
    "duplicate_name": raw_entry('{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
                                '"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}', b"\0" * 8),
    "duplicate_dtype_key": raw_entry('{"w": {"dtype": "F32", "dtype": "I32", "shape": [1], "data_offsets": [0, 4]}}',
                                     b"\0" * 4),
    "metadata_not_object": safetensors({}, b"", ["pt"]),
    "metadata_value_not_string": safetensors({}, b"", {"format": 1}),
    "trailing_bytes": safetensors({"w": entry("F32", [2], 0, 8)}, F32_ONE_TWO + b"\0" * 4),
    "trailing_bytes_no_tensors": safetensors({}, b"\0" * 3),
}


def shard(entries_and_bytes):
    """A shard holding F32 tensors [(name, values)], packed in the order given."""
    entries, buffer = {}, b""
    for name, values in entries_and_bytes:
        data = struct.pack(f"<{len(values)}f", *values)
        entries[name] = entry("F32", [len(values)], len(buffer), len(buffer) + len(data))
        buffer += data
    return safetensors(entries, buffer, {"format": "pt"})


SHARD_1 = "model-00001-of-00002.safetensors"
SHARD_2 = "model-00002-of-00002.safetensors"
GOOD_SHARDS = {SHARD_1: shard([("a", [1.0, 2.0])]), SHARD_2: shard([("b", [3.0]), ("c", [4.0, 5.0, 6.0])])}
GOOD_MAP = {"a": SHARD_1, "b": SHARD_2, "c": SHARD_2}


def index(weight_map, total_size=24):
    return json.dumps({"metadata": {"total_size": total_size}, "weight_map": weight_map}, indent=2,
                      sort_keys=True) + "\n"


SHARDED = {
    "valid_sharded": {**GOOD_SHARDS, "index": index(GOOD_MAP)},
    "missing_shard_file": {SHARD_1: GOOD_SHARDS[SHARD_1], "index": index(GOOD_MAP)},
    "tensor_missing_from_shard": {**GOOD_SHARDS, "index": index({**GOOD_MAP, "d": SHARD_1})},
    "tensor_mapped_to_wrong_shard": {**GOOD_SHARDS, "index": index({**GOOD_MAP, "a": SHARD_2})},
    "tensor_not_in_weight_map": {**GOOD_SHARDS, "index": index({"a": SHARD_1, "b": SHARD_2})},
    "tensor_in_two_shards": {SHARD_1: shard([("a", [1.0, 2.0]), ("b", [3.0])]), SHARD_2: GOOD_SHARDS[SHARD_2],
                             "index": index(GOOD_MAP)},
    "index_invalid_json": {**GOOD_SHARDS, "index": index(GOOD_MAP)[:-10]},
    "index_not_object": {**GOOD_SHARDS, "index": "[]\n"},
    "index_missing_weight_map": {**GOOD_SHARDS, "index": json.dumps({"metadata": {"total_size": 24}})},
    "weight_map_not_object": {**GOOD_SHARDS, "index": json.dumps({"weight_map": [SHARD_1]})},
    "weight_map_value_not_string": {**GOOD_SHARDS, "index": json.dumps({"weight_map": {**GOOD_MAP, "a": 1}})},
    "weight_map_path_escape": {**GOOD_SHARDS, "index": index({**GOOD_MAP, "a": "../" + SHARD_1})},
    "index_duplicate_tensor": {**GOOD_SHARDS,
                               "index": '{"weight_map": {"a": "%s", "a": "%s"}}' % (SHARD_1, SHARD_2)},
    "malformed_shard": {SHARD_1: GOOD_SHARDS[SHARD_1], SHARD_2: GOOD_SHARDS[SHARD_2][:-4], "index": index(GOOD_MAP)},
    "no_checkpoint_files": {"README": "not a checkpoint\n"},
}


def write(path, contents):
    with open(path, "wb") as stream:
        stream.write(contents.encode("utf-8") if isinstance(contents, str) else contents)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    single_dir, sharded_dir = os.path.join(root, "safetensors"), os.path.join(root, "sharded")
    for folder in (single_dir, sharded_dir):
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
    for name, contents in {**VALID, **MALFORMED}.items():
        write(os.path.join(single_dir, name + ".safetensors"), contents)
    for case, files in SHARDED.items():
        os.makedirs(os.path.join(sharded_dir, case))
        for file_name, contents in files.items():
            target = "model.safetensors.index.json" if file_name == "index" else file_name
            write(os.path.join(sharded_dir, case, target), contents)


if __name__ == "__main__":
    main()
