"""The .dvc container: round trip, damage and truncation, bounds, atomic writes."""

from __future__ import annotations

import random
import struct
import time
import tracemalloc
import zlib
from fractions import Fraction

import pytest
import torch

from dvc_common import BitstreamError, InputError, ModelMismatchError
from dvc_ext import bitstream as bs
from dvc_ext.bitstream import (
    FRAME_I,
    FRAME_P,
    BitstreamReader,
    BitstreamWriter,
    Header,
)


def _header(**kw) -> Header:
    base = dict(
        width=416, height=240, intra_period=10, fps=Fraction(50), quality=3,
        coding_threads=1, intra_codec="edic", motion_codec="bmshj2018-hyperprior",
        residual_codec="gaacnn", fingerprint=bytes(range(32)),
    )  # fmt: skip
    base.update(kw)
    return Header(**base)


FRAMES = [
    (FRAME_I, 3, [b"intra-payload" * 3]),
    (FRAME_P, 3, [b"mv", b"residual!"]),
    (FRAME_P, 5, [b"", b"r" * 200]),  # an empty sub-stream and a 2-byte varint
]


def _write(path, header=None, frames=FRAMES) -> BitstreamWriter:
    with BitstreamWriter(path) as w:
        w.write_header(header or _header())
        for ft, q, subs in frames:
            w.write_frame(ft, q, subs)
    return w


@pytest.fixture(scope="module")
def small_file(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("bs") / "small.dvc"
    _write(path)
    return path.read_bytes()


def test_round_trip(tmp_path):
    path = tmp_path / "a.dvc"
    w = _write(path)
    r = BitstreamReader(path)
    h = r.header
    assert h == _header(frame_count=3)
    assert len(r) == 3
    got = list(r)
    assert [tuple(f) for f in got] == FRAMES
    assert got[1].frame_type == FRAME_P and got[1].substreams == [b"mv", b"residual!"]
    # Byte accounting: every byte of the file, the same on both sides.
    size = path.stat().st_size
    assert w.counts.total == r.counts.total == size
    assert w.counts == r.counts == bs.count_bytes(path)
    c = r.counts
    assert (c.intra, c.motion, c.residual) == (39, 2, 209)
    assert c.header == r.header_bytes
    assert c.as_dict()["total"] == size
    # Reading from bytes is the same as from the file; iterating twice works.
    assert list(BitstreamReader(path.read_bytes())) == got == list(r)


@pytest.mark.parametrize(
    "kw",
    [
        dict(fps=None, fingerprint=bytes(16), intra_codec="", motion_codec=""),
        dict(fps=Fraction(30000, 1001), color_format="yuv420", matrix="bt709",
             full_range=True, intra_period=0, quality=63, coding_threads=255),
        dict(width=1, height=16384, intra_codec="x" * 64),
    ],
)  # fmt: skip
def test_header_fields(tmp_path, kw):
    path = tmp_path / "h.dvc"
    _write(path, _header(**kw), FRAMES[:1])
    assert BitstreamReader(path).header == _header(frame_count=1, **kw)


# Header + one I-frame + one P-frame, field by field as in docs/bitstream.md.
GOLDEN = (
    "44564358" "01" "01" "5000"  # magic, version 1.1, body length 80
    "b000" "9000" "02000000" "0c000000"  # 176x144, 2 frames, intra period 12
    "30750000" "e9030000"  # 30000/1001 fps
    "0d" "05" "01" "00"  # yuv420 | bt709 << 2 | full << 3, quality 5, 1 thread, flags
    "04" "65646963"  # "edic"
    "14" "626d73686a323031382d68797065727072696f72"  # "bmshj2018-hyperprior"
    "0c" "6d6274323031382d6d65616e"  # "mbt2018-mean"
    "10" "000102030405060708090a0b0c0d0e0f"  # 16-byte fingerprint
    "d7638b5b"  # header CRC32
    "05" "01" "01" "49" "6c8d4301"  # I, q5: 1 sub-stream of 1 byte "I", CRC
    "45" "02" "01" "02" "4d" "5252" "0dd45424"  # P, q5: "M", "RR", CRC
)  # fmt: skip


def test_golden_layout():
    h = Header(
        176, 144, 2, 12, Fraction(30000, 1001), "yuv420", "bt709", True, 5, 1,
        "edic", "bmshj2018-hyperprior", "mbt2018-mean", bytes(range(16)),
    )  # fmt: skip
    data = bs.encode_header(h) + _frame(FRAME_I, 5, [b"I"])
    data += _frame(FRAME_P, 5, [b"M", b"RR"])
    assert data.hex() == GOLDEN
    r = BitstreamReader(bytes.fromhex(GOLDEN))
    assert r.header == h
    assert [tuple(f) for f in r] == [(0, 5, [b"I"]), (1, 5, [b"M", b"RR"])]


def test_golden_layout_of_a_prediction_mode_record():
    h = Header(
        176, 144, 1, 12, Fraction(30000, 1001), "yuv420", "bt709", True, 5, 1,
        "edic", "bmshj2018-hyperprior", "mbt2018-mean", bytes(range(16)),
        flags=bs.FLAG_PRED_MODES,
    )  # fmt: skip
    data = bs.encode_header(h)
    assert data[31] == 0x01 and data.hex()[-8:] == "b064970a"  # flags byte, CRC
    # type 2, q5: 3 sub-streams of 1, 0 and 2 bytes: mode "ref" (2), no motion, "RR"
    rec = bs.encode_frame(bs.FRAME_PM, 5, [b"\x02", b"", b"RR"])
    assert rec.hex() == "8503010002025252048e2820"
    r = BitstreamReader(data + rec)
    assert [tuple(f) for f in r] == [(2, 5, [b"\x02", b"", b"RR"])]
    assert r.counts.frame_overhead == len(rec) - 2 and r.counts.residual == 2


def test_negative_intra_period_means_first_only(tmp_path):
    _write(tmp_path / "a.dvc", _header(intra_period=-1), FRAMES[:1])
    assert BitstreamReader(tmp_path / "a.dvc").header.intra_period == 0


def test_truncation_at_every_byte(small_file):
    t0 = time.perf_counter()
    for n in range(len(small_file)):
        with pytest.raises(BitstreamError):
            list(BitstreamReader(small_file[:n]))
    assert time.perf_counter() - t0 < 5


def test_truncated_messages(small_file, tmp_path):
    with pytest.raises(BitstreamError, match="empty file"):
        BitstreamReader(b"")
    with pytest.raises(BitstreamError, match="truncated at byte 6"):
        BitstreamReader(small_file[:6])
    # Cut inside the last frame: the message says which frame and where.
    path = tmp_path / "cut.dvc"
    path.write_bytes(small_file[:-10])
    with pytest.raises(BitstreamError, match="frame 2: its sub-streams need"):
        list(BitstreamReader(path))
    # Cut at a record boundary.
    r = BitstreamReader(small_file)
    it = iter(r)
    next(it)
    end_of_first = r.header_bytes + r.counts.total - r.header_bytes
    with pytest.raises(
        BitstreamError, match="announces 3 frames, the file ends after 1"
    ):
        list(BitstreamReader(small_file[:end_of_first]))
    with pytest.raises(BitstreamError, match="trailing data"):
        list(BitstreamReader(small_file + b"\0"))


def test_every_single_bit_flip_is_caught(small_file):
    t0 = time.perf_counter()
    for i in range(len(small_file) * 8):
        data = bytearray(small_file)
        data[i // 8] ^= 1 << (i % 8)
        with pytest.raises(BitstreamError):
            list(BitstreamReader(bytes(data)))
    assert time.perf_counter() - t0 < 10


def test_random_damage(small_file):
    rng = random.Random(0)
    for _ in range(300):
        data = bytearray(small_file)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if bytes(data) == small_file:
            continue
        with pytest.raises(BitstreamError):
            list(BitstreamReader(bytes(data)))


def test_crc_messages(small_file):
    data = bytearray(small_file)
    data[20] ^= 0xFF  # inside the header body
    with pytest.raises(BitstreamError, match="header CRC mismatch"):
        BitstreamReader(bytes(data))
    data = bytearray(small_file)
    data[-1] ^= 0x01  # the last frame's CRC
    with pytest.raises(BitstreamError, match="frame 2 CRC mismatch"):
        list(BitstreamReader(bytes(data)))
    with pytest.raises(BitstreamError, match="bad magic b'RIFF'"):
        BitstreamReader(b"RIFF" + small_file[4:])


def _raw_header(major=1, minor=1, width=416, height=240, count=1, flags=0,
                extra=b"", body_len=None, fp_len=16, name_len=4) -> bytes:  # fmt: skip
    """A header with a valid CRC but chosen (possibly bad) fields."""
    body = struct.pack("<HHIIIIBBBB", width, height, count, 0, 25, 1, 0, 0, 1, flags)
    body += bytes([name_len]) + b"edic" + b"\0" + b"\0"
    body += bytes([fp_len]) + bytes(16) + extra
    n = len(body) if body_len is None else body_len
    head = b"DVCX" + bytes([major, minor]) + struct.pack("<H", n) + body
    return head + struct.pack("<I", zlib.crc32(head))


def _frame(ft=FRAME_I, q=0, subs=(b"x",)) -> bytes:
    return bs.encode_frame(ft, q, list(subs))


def test_version_policy():
    # The helper builds what the writer builds.
    assert _raw_header() == bs.encode_header(
        Header(416, 240, 1, 0, Fraction(25), intra_codec="edic", fingerprint=bytes(16))
    )
    with pytest.raises(BitstreamError, match="unsupported newer bitstream version 2.0"):
        BitstreamReader(_raw_header(major=2, minor=0))
    with pytest.raises(BitstreamError, match="unknown bitstream version 0.3"):
        BitstreamReader(_raw_header(major=0, minor=3))
    # A newer minor version with appended header fields: read, fields skipped.
    r = BitstreamReader(_raw_header(minor=7, extra=b"future fields") + _frame())
    assert r.header.version == (1, 7) and r.header.intra_codec == "edic"
    assert [f.substreams for f in r] == [[b"x"]]
    with pytest.raises(BitstreamError, match="feature flags 0x04"):
        BitstreamReader(_raw_header(flags=0x04))
    # A 1.0 file (no flags) still reads; the 1.1 flag is known.
    assert BitstreamReader(_raw_header(minor=0)).header.version == (1, 0)
    assert BitstreamReader(_raw_header(flags=bs.FLAG_PRED_MODES)).header.flags == 1


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        (dict(width=20000), "frame size 20000x240 out of bounds"),
        (dict(height=0), "frame size 416x0 out of bounds"),
        (dict(count=10**7 + 1), "frame count 10000001 out of bounds"),
        (dict(count=0), "frame count 0 out of bounds"),
        (dict(fp_len=20), "fingerprint length 20"),
        (dict(name_len=200), "name length 200 out of bounds"),
        (dict(name_len=60), "overrun"),
        (dict(body_len=65535), "header length 65535 out of bounds"),
        (dict(body_len=10), "header length 10 out of bounds"),
    ],
)
def test_bounds_checked_before_allocation(kw, msg):
    with pytest.raises(BitstreamError, match=msg):
        BitstreamReader(_raw_header(**kw) + _frame())


def test_huge_lengths_do_not_allocate():
    head = _raw_header(count=2)
    huge = bytes([FRAME_I << 6]) + bs.encode_varint(1) + bs.encode_varint(2**62)
    tracemalloc.start()
    try:
        with pytest.raises(BitstreamError, match="frame 0: its sub-streams need"):
            list(BitstreamReader(head + huge + bytes(50)))
        with pytest.raises(BitstreamError, match="100 sub-streams"):
            list(BitstreamReader(head + bytes([0]) + bs.encode_varint(100)))
        with pytest.raises(BitstreamError, match="longer than 10 bytes"):
            list(BitstreamReader(head + bytes([0]) + b"\xff" * 20))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_frame_type_and_substream_checks():
    head = _raw_header(count=1)
    # A P-frame record with one sub-stream (valid CRC): refused by type.
    rec = bytearray([FRAME_P << 6]) + bs.encode_varint(1) + bs.encode_varint(1) + b"x"
    rec += struct.pack("<I", zlib.crc32(rec))
    with pytest.raises(BitstreamError, match="P-frame needs 2 sub-stream"):
        list(BitstreamReader(head + bytes(rec)))
    rec = bytearray([3 << 6]) + bs.encode_varint(0)
    rec += struct.pack("<I", zlib.crc32(rec))
    with pytest.raises(BitstreamError, match="unknown frame type 3"):
        list(BitstreamReader(head + bytes(rec)))


def test_writer_refuses_bad_fields(tmp_path):
    bad = [
        (dict(width=0), "out of bounds"),
        (dict(width=16385), "out of bounds"),
        (dict(intra_codec="a" * 65), "longer than 64"),
        (dict(motion_codec="spaced name"), "non-printable"),
        (dict(residual_codec="caf\u00e9"), "not an ASCII"),
        (dict(fingerprint=b"short"), "16 or 32 bytes"),
        (dict(quality=64), "quality 64"),
        (dict(coding_threads=0), "thread count 0"),
        (dict(matrix="bt2020"), "matrix 'bt2020'"),
        (dict(color_format="yuv444"), "colour format 'yuv444'"),
    ]
    for kw, msg in bad:
        with pytest.raises(BitstreamError, match=msg):
            bs.encode_header(_header(**kw))
    with pytest.raises(BitstreamError, match="quality 64"):
        bs.encode_frame(FRAME_I, 64, [b""])
    with pytest.raises(BitstreamError, match="I-frame has 1 sub-stream"):
        bs.encode_frame(FRAME_I, 0, [b"a", b"b"])
    with pytest.raises(BitstreamError, match="unknown frame type 3"):
        bs.encode_frame(3, 0, [b""])


def test_atomic_writer(tmp_path):
    path = tmp_path / "out.dvc"
    with pytest.raises(RuntimeError, match="boom"):
        with BitstreamWriter(path) as w:
            w.write_header(_header())
            w.write_frame(FRAME_I, 0, [b"abc"])
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    # A failed rewrite leaves the earlier file as it was.
    _write(path)
    before = path.read_bytes()
    with pytest.raises(BitstreamError, match="announces 5 frames, 1 written"):
        with BitstreamWriter(path) as w:
            w.write_header(_header(frame_count=5))
            w.write_frame(FRAME_I, 0, [b"abc"])
    with pytest.raises(BitstreamError, match="no frames written"):
        with BitstreamWriter(path) as w:
            w.write_header(_header())
    with pytest.raises(BitstreamError, match="write_header must come before"):
        with BitstreamWriter(path) as w:
            w.write_frame(FRAME_I, 0, [b"abc"])
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.dvc"]
    with pytest.raises(InputError, match="does not exist"):
        BitstreamWriter(tmp_path / "missing" / "x.dvc")
    with pytest.raises(InputError, match="cannot read"):
        BitstreamReader(tmp_path / "nothing.dvc")


def test_varint_round_trip():
    for v in (0, 1, 127, 128, 300, 2**32, 2**63 - 1):
        enc = bs.encode_varint(v)
        assert bs.decode_varint(enc + b"tail", 0) == (v, len(enc))
    assert bs.encode_varint(300) == b"\xac\x02"


def test_fingerprint():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    cfg = {"name": "edic", "n": 4, "nested": {"b": [1, 2], "a": None}}
    fp = bs.fingerprint(net, cfg)
    assert len(fp) == 32 and fp == bs.fingerprint(net.state_dict(), cfg)
    assert len(bs.fingerprint(net, cfg, size=16)) == 16
    assert bs.fingerprint(net, cfg, size=16) == fp[:16]
    # Key order of the config does not matter; values, weights and dtypes do.
    assert bs.fingerprint(net, dict(reversed(list(cfg.items())))) == fp
    assert bs.fingerprint(net, {**cfg, "n": 5}) != fp
    sd = {k: v.clone() for k, v in net.state_dict().items()}
    sd["0.weight"].view(-1)[7] += 1e-6
    assert bs.fingerprint(sd, cfg) != fp
    sd = {k: v.clone() for k, v in net.state_dict().items()}
    sd["0.bias"] = sd["0.bias"].double()
    assert bs.fingerprint(sd, cfg) != fp
    sd = dict(net.state_dict())
    sd["renamed"] = sd.pop("0.bias")
    assert bs.fingerprint(sd, cfg) != fp
    # Scalars (BatchNorm's num_batches_tracked) and empty tensors are fine.
    assert bs.fingerprint({"s": torch.tensor(3), "e": torch.zeros(0)}, {}) is not None
    with pytest.raises(TypeError, match="not JSON-able"):
        bs.fingerprint(net, {"x": object()})


def test_check_fingerprint():
    h = _header()
    bs.check_fingerprint(h, bytes(range(32)))
    with pytest.raises(ModelMismatchError) as e:
        bs.check_fingerprint(h, bytes(32), "the model ckpt.pt")
    msg = str(e.value)
    assert bytes(range(32)).hex() in msg and bytes(32).hex() in msg
    assert "the model ckpt.pt" in msg
