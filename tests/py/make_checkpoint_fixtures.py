"""Checkpoint fixtures for tests/checkpoint.rs, written into the folder given as argv[1].

Real `torch.save` files (zip and legacy formats), a safetensors file, hand-crafted files in the
torch layouts (big-endian, legacy storage views) and hostile files (forbidden globals, storages
claiming more data than present, deep nesting). `expected.json` records, for every readable
fixture, the key order and each tensor's dtype, shape and exact values as torch saved them.
Nothing here ever unpickles the hostile files.
"""

import collections
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile

import torch

OUT = sys.argv[1]
os.makedirs(OUT, exist_ok=True)
EXPECTED = {}


def path(name):
    return os.path.join(OUT, name)


BITS = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def describe(t):
    """dtype, shape and exact values: floats as their bit patterns (JSON floats may not round-trip)."""
    t = t.detach().contiguous()
    if t.dtype.is_floating_point:
        values = t.view(BITS[t.element_size()]).long().flatten().tolist()
    else:
        values = t.long().flatten().tolist()
    return {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape), "values": values}


def expect(name, sd):
    """Records what reading fixture `name` must give: the tensors of `sd`, in order."""
    tensors = [(k, v) for k, v in sd.items() if isinstance(v, torch.Tensor)]
    EXPECTED[name] = {"keys": [k for k, _ in tensors], "tensors": {k: describe(v) for k, v in tensors}}


# --- real torch.save files ------------------------------------------------------------------


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4, 5)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        return self.fc(x.mean((2, 3)))


torch.manual_seed(0)
model = Tiny().train()
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
for _ in range(2):  # non-trivial running statistics, num_batches_tracked == 2, optimizer state
    opt.zero_grad()
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    opt.step()
sd = model.state_dict()  # an OrderedDict carrying `_metadata` (set through BUILD in the pickle)
assert hasattr(sd, "_metadata")

torch.save(sd, path("small_zip.pt"))
expect("small_zip.pt", sd)
torch.save(sd, path("small_legacy.pt"), _use_new_zipfile_serialization=False)
expect("small_legacy.pt", sd)

torch.save({"state_dict": sd, "epoch": 3, "arch": "tiny", "optimizer": opt.state_dict()}, path("nested.pt"))
expect("nested.pt", sd)

dp = collections.OrderedDict(("module." + k, v) for k, v in sd.items())
torch.save(dp, path("dataparallel.pt"))
expect("dataparallel.pt", sd)

base = torch.randn(4, 6)
dtypes = collections.OrderedDict()
dtypes["f16"] = torch.randn(3, 5).half()
dtypes["bf16"] = torch.randn(7).bfloat16()
dtypes["f64"] = torch.randn(2, 2, dtype=torch.float64)
dtypes["i64"] = torch.tensor([-(2**62), -1, 0, 2**53 + 1, 2**62])
dtypes["i32"] = torch.tensor([-7, 0, 2**31 - 1], dtype=torch.int32)
dtypes["i16"] = torch.tensor([-300, 5], dtype=torch.int16)
dtypes["i8"] = torch.tensor([-128, 127], dtype=torch.int8)
dtypes["u8"] = torch.tensor([0, 200, 255], dtype=torch.uint8)
dtypes["bool"] = torch.tensor([True, False, True])
dtypes["base"] = base
dtypes["tail"] = base[1:]  # shares base's storage, offset 6
dtypes["transposed"] = base.t()  # non-contiguous view of the same storage
dtypes["column"] = base[:, 2]  # stride 6, offset 2
dtypes["expanded"] = torch.arange(3.0).expand(4, 3)  # stride 0
dtypes["scalar"] = torch.tensor(3.25)
dtypes["empty"] = torch.zeros(0, 3)
dtypes["param"] = torch.nn.Parameter(torch.randn(2, 2))
assert dtypes["tail"].untyped_storage().data_ptr() == base.untyped_storage().data_ptr()
torch.save(dtypes, path("dtypes_zip.pt"))
expect("dtypes_zip.pt", dtypes)
torch.save(dtypes, path("dtypes_legacy.pt"), _use_new_zipfile_serialization=False)
expect("dtypes_legacy.pt", dtypes)

# safetensors, with metadata (the python package if installed, else the format by hand).
META = {"format": "pt", "source": "make_checkpoint_fixtures"}
flat = {k: v.contiguous() for k, v in sd.items()}
try:
    from safetensors.torch import save_file

    save_file(flat, path("small.safetensors"), metadata=META)
except ImportError:
    names = {torch.float32: "F32", torch.int64: "I64"}
    header, blobs, offset = {"__metadata__": META}, [], 0
    for k, v in flat.items():
        b = v.numpy().tobytes()
        header[k] = {"dtype": names[v.dtype], "shape": list(v.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path("small.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
expect("small.safetensors", flat)
EXPECTED["small.safetensors"]["metadata"] = META

# --- hand-crafted files in the torch layouts ------------------------------------------------


class FakeStorage:
    def __init__(self, key, numel, cls=torch.FloatStorage, view=None, legacy=False):
        self.key, self.numel, self.cls, self.view, self.legacy = key, numel, cls, view, legacy


class FakeTensor:
    """Pickles exactly as a tensor does: _rebuild_tensor_v2(storage, offset, size, stride, ...)."""

    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class FakePickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, FakeStorage):
            pid = ("storage", obj.cls, obj.key, "cpu", obj.numel)
            return pid + (obj.view,) if obj.legacy else pid
        return None


def fake_pickle(obj, protocol=2):
    buf = io.BytesIO()
    FakePickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()


def torch_zip(name, pkl, records=None, byteorder=b"little", prefix="archive"):
    with zipfile.ZipFile(path(name), "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{prefix}/data.pkl", pkl)
        z.writestr(f"{prefix}/byteorder", byteorder)
        for key, data in (records or {}).items():
            z.writestr(f"{prefix}/data/{key}", data)
        z.writestr(f"{prefix}/version", b"3\n")


def legacy_file(name, pkl, storages):
    """storages: [(key, numel, raw bytes)] in file order."""
    with open(path(name), "wb") as f:
        pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
        pickle.dump(1001, f, protocol=2)
        sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
        pickle.dump(sys_info, f, protocol=2)
        f.write(pkl)
        pickle.dump([k for k, _, _ in storages], f, protocol=2)
        for _, numel, data in storages:
            f.write(struct.pack("<q", numel) + data)


# Big-endian zip: the same pickle, byteorder "big", float32 storages byte-swapped.
be = collections.OrderedDict(a=torch.randn(3, 4), b=torch.randn(5))
buf = io.BytesIO()
torch.save(be, buf)
with zipfile.ZipFile(buf) as zin, zipfile.ZipFile(path("big_endian.pt"), "w", zipfile.ZIP_STORED) as zout:
    for info in zin.infolist():
        data = zin.read(info.filename)
        if info.filename.endswith("/byteorder"):
            data = b"big"
        elif "/data/" in info.filename:
            n = len(data) // 4
            data = struct.pack(f">{n}f", *struct.unpack(f"<{n}f", data))
        zout.writestr(info.filename, data)
expect("big_endian.pt", be)

# Legacy storage views (old torch wrote them): view ("v1", offset 2, 4 elements) of an 8-element root.
root = torch.arange(8.0) * 1.5
view = FakeStorage("root", 8, view=("v1", 2, 4), legacy=True)
whole = FakeStorage("root", 8, legacy=True)
obj = collections.OrderedDict(
    view_all=FakeTensor(view, 0, (4,), (1,)),
    view_strided=FakeTensor(view, 1, (2,), (2,)),
    whole=FakeTensor(whole, 0, (2, 4), (4, 1)),
)
legacy_file("legacy_view.pt", fake_pickle(obj), [("root", 8, root.numpy().tobytes())])
expect("legacy_view.pt", collections.OrderedDict(view_all=root[2:6], view_strided=root[3:6:2], whole=root.view(2, 4)))

# --- hostile files --------------------------------------------------------------------------


class EvilSystem:
    def __reduce__(self):
        return (os.system, ("echo hacked",))


class EvilEval:
    def __reduce__(self):
        return (eval, ("1+1",))


class EvilPopen:
    def __reduce__(self):
        return (subprocess.Popen, (["echo", "hacked"],))


torch.save({"w": torch.ones(2), "x": EvilSystem()}, path("evil_system_zip.pt"))
torch.save({"w": torch.ones(2), "x": EvilSystem()}, path("evil_system_legacy.pt"), _use_new_zipfile_serialization=False)
torch.save({"x": EvilEval()}, path("evil_eval.pt"), pickle_protocol=4)  # STACK_GLOBAL
torch.save({"x": EvilPopen()}, path("evil_popen.pt"), pickle_protocol=3)  # protocol 2 would spell it commands.Popen
# GLOBAL 'os system' spelt out (pickle itself would write posix.system).
torch_zip("evil_os_raw.pt", b"\x80\x02cos\nsystem\nX\x0b\x00\x00\x00echo hacked\x85R.")
torch.save(model, path("full_model.pt"))  # a pickled nn.Module, not a state dict

# Storages claiming more than the file holds, and views reaching outside their storage.
four = torch.ones(4).numpy().tobytes()
torch_zip("huge_storage.pt", fake_pickle({"w": FakeTensor(FakeStorage("0", 10**12), 0, (10**12,), (1,))}), {"0": four})
torch_zip("out_of_bounds.pt", fake_pickle({"w": FakeTensor(FakeStorage("0", 4), 0, (1000,), (1,))}), {"0": four})
torch_zip("offset_out_of_bounds.pt", fake_pickle({"w": FakeTensor(FakeStorage("0", 4), 3, (2,), (1,))}), {"0": four})
torch_zip(
    "expanded_bomb.pt", fake_pickle({"w": FakeTensor(FakeStorage("0", 4), 0, (10**6, 10**6), (0, 0))}), {"0": four}
)
torch_zip(
    "size_overflow.pt", fake_pickle({"w": FakeTensor(FakeStorage("0", 4), 0, (2**40, 2**40), (0, 0))}), {"0": four}
)
legacy_file(
    "legacy_bad_view.pt",
    fake_pickle({"w": FakeTensor(FakeStorage("root", 8, view=("v", 6, 10), legacy=True), 0, (10,), (1,))}),
    [("root", 8, root.numpy().tobytes())],
)
legacy_file(
    "legacy_huge_storage.pt",
    fake_pickle({"w": FakeTensor(FakeStorage("root", 10**12, legacy=True), 0, (4,), (1,))}),
    [("root", 10**12, four)],
)

# Deep nesting, written opcode by opcode (pickle itself would hit Python's recursion limit).
N = 100_000
torch_zip("nested_tuples.pt", b"\x80\x02)" + b"\x85" * N + b".")
torch_zip("nested_lists.pt", b"\x80\x02" + b"]" * N + b"a" * (N - 1) + b".")
torch_zip("many_marks.pt", b"\x80\x02" + b"(" * N + b".")

with open(path("expected.json"), "w") as f:
    json.dump(EXPECTED, f)
