"""Hostile checkpoints for tests/hostile.rs, written into the folder given as argv[1].

argv[2] is the shipped LeNet-5 safetensors file: `lenet5.pth` is the same weights as a real
`torch.save` zip, and several hostile files are that archive rewritten (a deflated `data.pkl`
padded with millions of opcodes, a record given twice, two `data.pkl`). The others are built from
scratch in the torch layouts: a deflated storage of zeros that inflates 1000-fold, one record
named by 100 central-directory entries, memo amplification, a safetensors shape past i64, and a
pickle global named in terminal escape sequences. `expected.json` records what torch.load makes
of the ambiguous files (which copy it reads), so the tests can say what zoo would have loaded
instead. Nothing here unpickles a hostile file except through torch.load(weights_only=True).
"""

import collections
import io
import json
import os
import pickle
import struct
import sys
import zlib

import torch
from safetensors.torch import load_file

OUT = sys.argv[1]
LENET = sys.argv[2]
os.makedirs(OUT, exist_ok=True)
EXPECTED = {}


def path(name):
    return os.path.join(OUT, name)


# --- a minimal zip writer: hostile layouts that zipfile will not produce ---------------------


def write_zip(name, records, extra_central=()):
    """records: (name, bytes or (chunk, count) of a repeated chunk, deflate?) in file order.
    extra_central: (name, index of a record) central-directory entries that point at the
    local header of an existing record."""
    out = io.BytesIO()
    central = []
    for rname, data, deflate in records:
        nameb = rname.encode()
        crc, size = 0, 0
        comp = zlib.compressobj(9, zlib.DEFLATED, -15) if deflate else None
        chunks = [data] if isinstance(data, (bytes, bytearray)) else (data[0] for _ in range(data[1]))
        payload = bytearray()
        for c in chunks:
            crc = zlib.crc32(c, crc)
            size += len(c)
            payload += comp.compress(c) if comp else c
        if comp:
            payload += comp.flush()
        method = 8 if deflate else 0
        offset = out.tell()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0, crc, len(payload), size, len(nameb), 0))
        out.write(nameb)
        out.write(payload)
        central.append((nameb, method, crc, len(payload), size, offset))
    for cname, index in extra_central:
        _, method, crc, csize, size, offset = central[index]
        central.append((cname.encode(), method, crc, csize, size, offset))
    cd_start = out.tell()
    for nameb, method, crc, csize, size, offset in central:
        out.write(
            struct.pack(
                "<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0, crc, csize, size, len(nameb), 0, 0, 0, 0, 0, offset
            )
        )
        out.write(nameb)
    cd_end = out.tell()
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central), cd_end - cd_start, cd_start, 0))
    with open(path(name), "wb") as f:
        f.write(out.getbuffer())


# --- pickles in the torch layout, written by hand ---------------------------------------------


class FakeStorage:
    def __init__(self, key, numel):
        self.key, self.numel = key, numel


class FakeTensor:
    def __init__(self, storage, size):
        stride = [1] * len(size)
        for i in range(len(size) - 2, -1, -1):
            stride[i] = stride[i + 1] * size[i + 1]
        self.args = (storage, 0, tuple(size), tuple(stride), False, collections.OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, FakeStorage):
            return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
        return None


def torch_pickle(obj):
    buf = io.BytesIO()
    TorchPickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def torch_records(pkl, storages, prefix="archive"):
    """The records of a torch zip: data.pkl, byteorder, the storages, version."""
    recs = [(f"{prefix}/data.pkl", pkl, False), (f"{prefix}/byteorder", b"little", False)]
    recs += [(f"{prefix}/data/{k}", data, deflate) for k, data, deflate in storages]
    recs.append((f"{prefix}/version", b"3\n", False))
    return recs


# --- the real LeNet-5 archive and rewrites of it ----------------------------------------------

sd = collections.OrderedDict(load_file(LENET))
torch.save(sd, path("lenet5.pth"))

import zipfile

with zipfile.ZipFile(path("lenet5.pth")) as z:
    real = [(i.filename, z.read(i.filename)) for i in z.infolist()]
prefix = real[0][0].split("/")[0]

# A deflated data.pkl holding 8 Mi EMPTY_DICT + POP before the real state dict: ~16 KB on disk,
# 16 MiB inflated, ~1.2 GB of dicts for a reader that budgets against the inflated record.
bomb = []
for n, data in real:
    if n.endswith("/data.pkl"):
        data = data[:2] + b"}0" * (8 << 20) + data[2:]
        bomb.append((n, data, True))
    else:
        bomb.append((n, data, False))
write_zip("pickle_bomb.pth", bomb)

# Every storage record twice: first the real bytes, then zeros. torch.load reads the first copy.
dup = [(n, d, False) for n, d in real]
dup += [(n, bytes(len(d)), False) for n, d in real if "/data/" in n]
write_zip("duplicate_record.pth", dup)

# Two top-level data.pkl: the real archive, and a copy under another prefix with zeroed weights.
two = [(n, d, False) for n, d in real]
two += [(n.replace(prefix, "other", 1), bytes(len(d)) if "/data/" in n else d, False) for n, d in real]
write_zip("two_data_pkl.pth", two)

# What torch.load makes of the ambiguous files: the digest of each tensor it returns.
for name in ["lenet5.pth", "duplicate_record.pth", "two_data_pkl.pth"]:
    try:
        loaded = torch.load(path(name), weights_only=True)
        EXPECTED[name] = {"torch": "ok", "sum_abs": float(sum(v.abs().sum() for v in loaded.values()))}
    except Exception as e:  # noqa: BLE001 - recording torch's refusal is the point
        EXPECTED[name] = {"torch": "refused", "error": str(e).splitlines()[0][:200]}

# --- built from scratch -----------------------------------------------------------------------

# One tensor of 128 Mi floats whose storage is 512 MiB of zeros, deflated to ~0.5 MB.
numel = 128 << 20
pkl = torch_pickle(collections.OrderedDict(w=FakeTensor(FakeStorage("0", numel), [numel])))
write_zip("storage_bomb.pth", torch_records(pkl, [("0", (bytes(1 << 20), 512), True)]))

# 100 tensors of 8 MiB each, whose records are one 8 MiB record named 100 times.
numel = 2 << 20
pkl = torch_pickle(collections.OrderedDict((f"t{i}", FakeTensor(FakeStorage(str(i), numel), [numel])) for i in range(100)))
recs = torch_records(pkl, [("0", bytes(range(256)) * (numel * 4 // 256), False)])
write_zip("shared_records.pth", recs, [(f"archive/data/{i}", 2) for i in range(1, 100)])

# Memo amplification: a 1000-pair list, then OrderedDict(list) rebuilt from the memo 200,000
# times (1.4 MB of pickle; ~80 KB of dict each time).
p = bytearray(b"\x80\x02]q\x00(")
p += b"K\x01K\x02\x86" * 1000
p += b"e" + b"ccollections\nOrderedDict\nq\x01"
p += b"h\x01h\x00\x85R0" * 200_000
p += b"00}."
write_zip("memo_amplification.pth", torch_records(bytes(p), []))

# A pickle global whose module and name are terminal escape sequences: clear the screen, set
# the window title, move up and print a fake success line.
evil = b"\x80\x02c" + b"os\x1b[2J\x1b]0;zoo: weights OK\x07" + b"\n" + b"system\x1b[1A\r\x1b[32mweights OK\x1b[0m" + b"\n."
write_zip("escape_global.pth", torch_records(evil, []))

# safetensors: a shape with a zero dimension (so no data) and one past i64.
header = json.dumps({"w": {"dtype": "F32", "shape": [0, 2**63 + 5], "data_offsets": [0, 0]}}).encode()
header += b" " * (-len(header) % 8)
with open(path("huge_dim.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(header)) + header)

with open(path("expected.json"), "w") as f:
    json.dump(EXPECTED, f, indent=1)
