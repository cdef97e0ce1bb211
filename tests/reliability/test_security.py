"""Security of what the package loads: weights from safetensors (``.bin`` only through
``torch.load(weights_only=True)``), pickled annotations only through the restricted unpickler.

Extends tests/data/converters/test_safe_pickle.py (REDUCE / GLOBAL / INST / class instances /
truncation are there) with the remaining ways a pickle can name code or exhaust resources, and
checks the source tree for any other deserialiser."""

from __future__ import annotations

import ast
import copyreg
import io
import json
import os
import pickle
import struct
from pathlib import Path

import pytest
import torch

from regiongpt.data.safe_pickle import UnsafePickleError, safe_load, safe_loads

PACKAGE = Path(__file__).resolve().parents[2] / "regiongpt"
# yaml.load is accepted only with these loaders, each checked below to be a yaml.SafeLoader subclass.
SAFE_YAML_LOADERS = {"_StrictSafeLoader": "regiongpt.yaml_files"}


# ------------------------------------------------------------------------------------ source scan
def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def _keyword(call: ast.Call, name: str):
    for keyword in call.keywords:
        if keyword.arg == name and isinstance(keyword.value, ast.Constant):
            return keyword.value.value
    return None


def unsafe_deserialisers(files: list[Path], base: Path) -> list[str]:
    """Calls and imports that could deserialise code: torch.load without weights_only=True;
    pickle outside safe_pickle.py; marshal, shelve, dill, joblib, cloudpickle; pandas pickles;
    numpy loads that allow pickles; unsafe YAML loaders; eval/exec."""
    problems = []
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        where = path.relative_to(base)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names]
                if isinstance(node, ast.ImportFrom) and node.module:
                    names.append(node.module)
                roots = {n.split(".")[0] for n in names}
                risky = {"marshal", "shelve", "dill", "joblib", "cloudpickle"} & roots
                if risky:
                    problems.append(f"{where}:{node.lineno}: imports {sorted(risky)}")
                if "pickle" in roots and path.name != "safe_pickle.py":
                    problems.append(f"{where}:{node.lineno}: imports pickle outside safe_pickle.py")
        for call, name in _calls(tree):
            line = f"{where}:{call.lineno}: {ast.unparse(call)[:100]}"
            if name.endswith("torch.load") and _keyword(call, "weights_only") is not True:
                problems.append(f"{line} lacks weights_only=True")
            if name.split(".")[-1] in ("read_pickle", "from_pickle"):
                problems.append(f"{line} reads a pickle")
            numpy_load = name.split(".")[-1] == "load" and name.split(".")[0] in ("np", "numpy")
            if numpy_load and _keyword(call, "allow_pickle") is not False:
                problems.append(f"{line} needs allow_pickle=False")
            safe_loader = name == "yaml.load" and any(
                k.arg == "Loader" and isinstance(k.value, ast.Name) and k.value.id in SAFE_YAML_LOADERS
                for k in call.keywords
            )
            if (
                name in ("yaml.load", "yaml.load_all", "yaml.unsafe_load", "yaml.full_load")
                and not safe_loader
            ):
                problems.append(f"{line}: use yaml.safe_load")
            if name in ("eval", "exec"):
                problems.append(f"{line}: eval/exec")
    return problems


def test_the_yaml_loaders_the_scan_accepts_are_safe_loaders():
    import importlib

    import yaml

    for name, module in SAFE_YAML_LOADERS.items():
        assert issubclass(getattr(importlib.import_module(module), name), yaml.SafeLoader)


def test_the_scan_flags_yaml_load_with_any_other_loader(tmp_path):
    source = tmp_path / "bad.py"
    source.write_text("import yaml\nyaml.load(text, Loader=yaml.UnsafeLoader)\nyaml.load(text)\n")
    assert len(unsafe_deserialisers([source], tmp_path)) == 2


def test_every_deserialiser_in_the_package_is_a_safe_one():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 40
    problems = unsafe_deserialisers(files, PACKAGE.parent)
    assert not problems, "\n".join(problems)


def test_the_scan_finds_what_it_looks_for(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import pickle\nimport torch, yaml, numpy as np\n"
        "torch.load('x')\ntorch.load('x', weights_only=False)\nyaml.load('a')\nnp.load('a.npy')\neval('1')\n"
    )
    assert len(unsafe_deserialisers([probe], tmp_path)) == 6


# ------------------------------------------------------------------------------------ weights
class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoints_load_from_safetensors_only(tmp_path, tiny_factory):
    """A directory with a (malicious) pytorch_model.bin but no model.safetensors is refused,
    and the pickle never runs."""
    from regiongpt.api import RegionGPT
    from regiongpt.modeling.checkpoint import load_checkpoint

    model, processor = tiny_factory()
    good = tmp_path / "good"
    RegionGPT(model, processor).save_pretrained(good)
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "config.json").write_text((good / "config.json").read_text())
    marker = tmp_path / "pwned"
    torch.save({"weight": _Exploit(marker)}, evil / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="has no model.safetensors"):
        load_checkpoint(evil)
    with pytest.raises((FileNotFoundError, ValueError)):
        RegionGPT.from_pretrained(evil)
    assert not marker.exists()


def test_weight_conversion_reads_bin_files_with_weights_only(tmp_path):
    from regiongpt.convert.weights import ConversionError, WeightFiles

    marker = tmp_path / "pwned"
    source = tmp_path / "src"
    source.mkdir()
    torch.save({"layer.weight": torch.zeros(2), "payload": _Exploit(marker)}, source / "pytorch_model.bin")
    index = {"weight_map": {"layer.weight": "pytorch_model.bin"}}  # (without an index: below)
    (source / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    with pytest.raises(ConversionError, match="cannot read .* as a plain tensor file"):
        WeightFiles(source).get("layer.weight")
    assert not marker.exists()
    torch.save({"layer.weight": torch.ones(2)}, source / "pytorch_model.bin")
    assert torch.equal(WeightFiles(source).get("layer.weight"), torch.ones(2))


def test_weight_conversion_of_a_single_bin_file(tmp_path):
    from regiongpt.convert.weights import WeightFiles

    torch.save({"layer.weight": torch.ones(2)}, tmp_path / "pytorch_model.bin")
    assert torch.equal(WeightFiles(tmp_path).get("layer.weight"), torch.ones(2))


def test_safetensors_headers_cannot_run_code_or_lie_about_sizes(tmp_path, tiny_factory):
    """A safetensors file with a corrupt header is a clear error, not a crash."""
    from regiongpt.api import RegionGPT
    from regiongpt.modeling.checkpoint import load_checkpoint

    model, processor = tiny_factory()
    path = tmp_path / "ckpt"
    RegionGPT(model, processor).save_pretrained(path)
    weights = path / "model.safetensors"
    data = weights.read_bytes()
    (header_size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_size])
    name = next(k for k in header if k != "__metadata__")
    header[name]["data_offsets"] = [0, 10**12]  # claims a terabyte
    encoded = json.dumps(header).encode()
    weights.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data[8 + header_size :])
    with pytest.raises(Exception) as info:  # safetensors raises its own SafetensorError
        load_checkpoint(path)
    assert "safetensor" in type(info.value).__name__.lower() or "invalid" in str(info.value).lower()


# ------------------------------------------------------------------------------------ pickles
def test_extension_registry_codes_are_refused(tmp_path):
    """EXT1/EXT2/EXT4 opcodes look a global up in copyreg's registry: refused like GLOBAL."""
    module = os.system.__module__  # posix or nt
    copyreg.add_extension(module, "system", 0xF00D)
    try:
        payload = pickle.dumps(os.system, protocol=2)
        assert b"\x83" in payload  # EXT2
        with pytest.raises(UnsafePickleError, match=rf"refusing to load the global '{module}\.system'"):
            safe_loads(payload)
    finally:
        copyreg.remove_extension(module, "system", 0xF00D)


def test_persistent_ids_and_out_of_band_buffers_are_refused():
    class Persisting(pickle.Pickler):
        def persistent_id(self, obj):
            return "file:/etc/passwd" if obj == "secret" else None

    buffer = io.BytesIO()
    Persisting(buffer, protocol=2).dump({"x": "secret"})
    with pytest.raises(UnsafePickleError, match="refusing persistent id"):
        safe_loads(buffer.getvalue())
    oob = pickle.dumps(pickle.PickleBuffer(b"abc"), protocol=5, buffer_callback=lambda b: False)
    with pytest.raises(UnsafePickleError):
        safe_loads(oob)


def test_globals_hidden_deep_inside_plain_data_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    value: object = _Exploit(marker)
    for _ in range(200):
        value = {"refs": [value, 1, "x"]}
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(UnsafePickleError, match="refusing"):
            safe_loads(pickle.dumps(value, protocol=protocol))
    assert not marker.exists()


def test_lengths_beyond_the_data_are_refused_without_allocating_them():
    frame = b"\x80\x04\x95" + struct.pack("<Q", 2**63 + 5) + b"N."  # FRAME longer than sys.maxsize
    binbytes8 = b"\x80\x04\x8e" + struct.pack("<Q", 2**40) + b"abc."  # 1 TiB of bytes, 3 given
    unicode8 = b"\x80\x04\x8d" + struct.pack("<Q", 2**40) + b"abc."
    for payload in (frame, binbytes8, unicode8):
        with pytest.raises(UnsafePickleError, match="not a valid pickle"):
            safe_loads(payload)


def test_a_refs_file_that_is_not_a_pickle_at_all(tmp_path):
    for data in (b"", b"\x80", b"PK\x03\x04 zip", json.dumps([{"ref_id": 1}]).encode()):
        path = tmp_path / "refs(unc).p"
        path.write_bytes(data)
        with pytest.raises(UnsafePickleError, match=r"refs\(unc\)\.p"):
            safe_load(path)
