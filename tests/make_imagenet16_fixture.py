#!/usr/bin/env python3
"""Writes the fake ImageNet16-120 files of tests/fixtures/imagenet16/ (run by hand; the
files are committed, so the tests need no numpy):

    /opt/torchenv/bin/python tests/make_imagenet16_fixture.py [OUT_DIR]

Python 3 with numpy. Every run writes the same bytes.

dir/: a dataset folder in the layout of the real one (spec nats_sss.md B1-B2):
train_data_batch_1..10 (dict of `labels`, `data`, `mean`) and val_data (`labels`, `data`).
`data` is numpy uint8 (n, 768), `labels` a list of ints, `mean` float64 (768,).

How each file is pickled:
- train_data_batch_1..8 and val_data: protocol 2 as Python 2.7 with numpy 1.x writes it
  (`str` payloads as SHORT_BINSTRING/BINSTRING, global numpy.core.multiarray._reconstruct,
  dtype arguments ('u1', 0, 1), keys in Python 2's dict order: labels, data, mean);
- train_data_batch_9: protocol 5 as Python 3 with numpy 2 writes it (numpy's _frombuffer);
- train_data_batch_10: protocol 4 as Python 3 with numpy 2 writes it (`bytes` payload).
The Python 2 files (these and bad/*) were checked byte for byte against Python 2.7.18 with
numpy 1.16.6: loading each file there and dumping it again with its protocol gives the
same bytes.

Content (the tests recompute it from these rules, not from the reader):
- Train images are numbered g = 0..39 across the files in order 1..10; file k holds
  TRAIN_ROWS[k-1] of them. Image g has label TRAIN_LABELS[g % 8] and pixel bytes
  x[c, h, w] = (3 g + 80 c + 16 h + w) % 256, stored at row[256 c + 16 h + w].
- Val images v = 0..11: label VAL_LABELS[v % 4], x[c, h, w] = (200 + 5 v + 80 c + 16 h + w) % 256.
- Labels outside 1..120 are ImageNet classes that ImageNet16-120 drops: of the 40 train
  images 25 are kept, of the 12 val images 9.
- `mean` (unused by the reader) is the per-position mean of all train rows.

bad/: single files that must be refused (name: what is wrong), each with 3 rows of image
g = 0..2's pixels unless said otherwise:
- truncated: the first half of dir/train_data_batch_1's bytes;
- list: a list [data, labels] instead of a dict;
- no_data: a dict without `data`;
- float_data: `data` float64;
- int16_data: `data` int16;
- rows_3072: `data` uint8 (3, 3072), the row of a 32x32 image;
- flat_data: `data` uint8 (2304,), one dimension;
- fortran: `data` uint8 (3, 768) in Fortran order;
- label_count: 3 rows, 2 labels;
- label_text: labels the strings '1', '2', '3';
- label_zero: labels 1, 0, 2 (0-based labels: not the format's 1..1000);
- over_120: labels 121, 500, 1000: no image of the 120 classes;
- protocol0: dir/train_data_batch_1's dict at protocol 0 (Python 2's default), whose
  array bytes, written as escaped text, hold both quote characters (an escaped \' that
  the reader's pickle decoder does not take).
"""

import os
import pickle
import struct
import sys

import numpy as np

TRAIN_ROWS = [4, 5, 3, 4, 5, 3, 4, 5, 3, 4]
TRAIN_LABELS = [1, 121, 120, 1000, 7, 119, 500, 2]
VAL_LABELS = [120, 130, 1, 64]
PIXELS = 768  # 3 planes of 16x16

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# numpy 2's _reconstruct, whatever module path this numpy gives it.
_reconstruct = np.ndarray.__reduce__(np.zeros(1, np.uint8))[0]


def image(offset, step, n):
    """Row n of a file whose image n has x[c,h,w] = (offset + step n + 80 c + 16 h + w) % 256."""
    c, hw = np.divmod(np.arange(PIXELS), 256)
    return ((offset + step * n + 80 * c + hw) % 256).astype(np.uint8)


def train_rows(first, count):
    return np.stack([image(0, 3, g) for g in range(first, first + count)])


def val_rows(count):
    return np.stack([image(200, 5, v) for v in range(count)])


class Py2Pickler(pickle._Pickler):
    """pickle.dump as Python 2.7 with numpy 1.x writes it: bytes and ASCII text are both
    Python 2 `str`, numpy's globals under their numpy 1 names, dtype flags as ints."""

    dispatch = pickle._Pickler.dispatch.copy()
    GLOBALS = {
        id(_reconstruct): b"numpy.core.multiarray\n_reconstruct\n",
        id(np.ndarray): b"numpy\nndarray\n",
        id(np.dtype): b"numpy\ndtype\n",
    }

    def save_py2_str(self, obj):
        data = obj if isinstance(obj, bytes) else obj.encode("ascii")
        if self.proto == 0:
            # Python 2's repr of a str is Python 3's of bytes without the b prefix.
            self.write(b"S" + repr(data)[1:].encode("ascii") + b"\n")
        elif len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str

    def save_global(self, obj, name=None):
        self.write(pickle.GLOBAL + self.GLOBALS[id(obj)])
        self.memoize(obj)

    def reducer_override(self, obj):
        if isinstance(obj, np.ndarray):
            fortran = bool(obj.flags.f_contiguous and not obj.flags.c_contiguous)
            payload = obj.tobytes(order="F" if fortran else "C")
            # A fresh (0,) per array, as numpy 1.x built it (a shared one would be memoized).
            return (_reconstruct, (np.ndarray, tuple([0]), b"b"),
                    (1, obj.shape, obj.dtype, fortran, payload))
        if isinstance(obj, np.dtype):
            cls, (code, _, _), state = obj.__reduce__()
            return (cls, (code, 0, 1), state)
        return NotImplemented


def dump_py2(path, obj, protocol=2):
    with open(path, "wb") as f:
        Py2Pickler(f, protocol).dump(obj)


def dump_py3(path, obj, protocol):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def write_dataset(out):
    os.makedirs(out, exist_ok=True)
    all_rows = train_rows(0, sum(TRAIN_ROWS))
    mean = all_rows.mean(axis=0)
    first = 0
    for k, count in enumerate(TRAIN_ROWS, start=1):
        labels = [TRAIN_LABELS[g % 8] for g in range(first, first + count)]
        rows = all_rows[first:first + count]
        path = os.path.join(out, f"train_data_batch_{k}")
        if k <= 8:
            dump_py2(path, {"labels": labels, "data": rows, "mean": mean})
        else:
            dump_py3(path, {"data": rows, "labels": labels, "mean": mean}, 5 if k == 9 else 4)
        first += count
    rows = val_rows(12)
    dump_py2(os.path.join(out, "val_data"),
             {"labels": [VAL_LABELS[v % 4] for v in range(12)], "data": rows})


def write_bad(out, dataset):
    os.makedirs(out, exist_ok=True)
    rows = train_rows(0, 3)
    with open(os.path.join(dataset, "train_data_batch_1"), "rb") as f:
        whole = f.read()
    with open(os.path.join(out, "truncated"), "wb") as f:
        f.write(whole[:len(whole) // 2])
    cases = {
        "list": [rows, [1, 2, 3]],
        "no_data": {"labels": [1, 2, 3], "mean": rows.mean(axis=0)},
        "float_data": {"labels": [1, 2, 3], "data": rows.astype(np.float64)},
        "int16_data": {"labels": [1, 2, 3], "data": rows.astype(np.int16)},
        "rows_3072": {"labels": [1, 2, 3], "data": np.tile(rows, 4)},
        "flat_data": {"labels": [1, 2, 3], "data": rows.reshape(-1)},
        "fortran": {"labels": [1, 2, 3], "data": np.asfortranarray(rows)},
        "label_count": {"labels": [1, 2], "data": rows},
        "label_text": {"labels": ["1", "2", "3"], "data": rows},
        "label_zero": {"labels": [1, 0, 2], "data": rows},
        "over_120": {"labels": [121, 500, 1000], "data": rows},
    }
    for name, obj in cases.items():
        dump_py2(os.path.join(out, name), obj)
    with open(os.path.join(dataset, "train_data_batch_1"), "rb") as f:
        first = pickle.load(f, encoding="latin1")
    dump_py2(os.path.join(out, "protocol0"),
             {"labels": first["labels"], "data": first["data"], "mean": first["mean"]}, 0)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests/fixtures/imagenet16")
    dataset = os.path.join(out, "dir")
    write_dataset(dataset)
    write_bad(os.path.join(out, "bad"), dataset)
    # What the AutoDL loader reads back (pickle.load with encoding='latin1').
    for name in sorted(os.listdir(dataset)):
        with open(os.path.join(dataset, name), "rb") as f:
            d = pickle.load(f, encoding="latin1")
        assert d["data"].dtype == np.uint8 and d["data"].shape == (len(d["labels"]), PIXELS)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
