"""The image-codec plug-in contract, run over every registered codec.

A codec added in one new file with ``@register_codec`` is picked up here with no
other change: the cases are generated from ``list_codecs()`` and each codec's
``tiny_config``. The classical codecs (``learned = False``) keep all of it for
the channel counts they code (``channels``: RGB); what they cannot keep (a rate
estimate to match, training) is in tests/test_classical_codecs.py.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dvc_common import BitstreamError, pad_to_multiple
from image_codecs import build_codec, codec_class, list_codecs
from image_codecs.payload import pack_compressed, unpack_compressed

CODECS = list_codecs()
Q = 3
# Not multiples of 64, and different from each other, so padding is exercised.
SIZE = (70, 90)
# (num_qualities, quality): CompressAI's contract, then variable rate.
QUALITY_CASES = [(1, None), (Q, None), (Q, 0), (Q, Q - 1)]


def tiny(name: str, in_channels: int, num_qualities: int):
    cfg = dict(codec_class(name).tiny_config)
    return build_codec(
        name, in_channels=in_channels, num_qualities=num_qualities, **cfg
    )


@functools.cache
def _model(name: str, in_channels: int, num_qualities: int):
    torch.manual_seed(1234)
    m = tiny(name, in_channels, num_qualities).eval()
    m.update(force=True)
    return m


def _input(in_channels: int, batch: int, multiple: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    x = torch.rand(batch, in_channels, *SIZE, generator=g)
    if in_channels == 2:  # flow-like: pixels, signed
        x = (x - 0.5) * 8
    return pad_to_multiple(x, multiple)[0]


def _quality_arg(quality, batch):
    # Batch 2 exercises per-element indexes: element 0 at the given index,
    # element 1 at another one.
    if quality is None or batch == 1:
        return quality
    return torch.tensor([quality, (quality + 1) % Q])


def _channels(name: str) -> tuple[int, ...]:
    # Classical codecs (x265-intra, jpeg, webp) code RGB only.
    return codec_class(name).channels or (2, 3)


def _cases():
    for name in CODECS:
        for c in _channels(name):
            for b in (1, 2):
                for nq, q in QUALITY_CASES:
                    yield pytest.param(
                        name, c, b, nq, q, id=f"{name}-c{c}-b{b}-Q{nq}-q{q}"
                    )


@pytest.mark.parametrize("name,in_channels,batch,nq,quality", list(_cases()))
def test_forward_compress_decompress(name, in_channels, batch, nq, quality):
    model = _model(name, in_channels, nq)
    x = _input(in_channels, batch, model.downsampling_factor)
    q = _quality_arg(quality, batch)
    with torch.no_grad():
        out = model(x, quality=q)
        assert out["x_hat"].shape == x.shape
        assert set(out["likelihoods"]) and all(
            lik.shape[0] == batch and bool((lik > 0).all())
            for lik in out["likelihoods"].values()
        )
        enc = model.compress(x, quality=q)
        assert len(enc["strings"]) >= 1
        for s in enc["strings"]:
            assert len(s) == batch and all(isinstance(b, bytes) for b in s)
        assert all(isinstance(v, int) for v in enc["shape"])
        dec = model.decompress(enc["strings"], enc["shape"], quality=q)
    assert dec["x_hat"].shape == x.shape
    # The decoder reproduces the encoder's closed-loop reconstruction exactly.
    assert torch.equal(dec["x_hat"], enc["x_hat"])


@pytest.mark.parametrize("name", CODECS)
def test_payload_round_trip_and_malformed(name):
    model = _model(name, 3, 1)
    x = _input(3, 1, model.downsampling_factor)
    with torch.no_grad():
        enc = model.compress(x)
        data = pack_compressed(enc)
        strings, shape = unpack_compressed(data)
        dec = model.decompress(strings, shape)
    assert torch.equal(dec["x_hat"], enc["x_hat"])
    for bad in (data[:-1], data + b"\0", b"", b"\xff" * 12):
        with pytest.raises(BitstreamError):
            unpack_compressed(bad)
    for wrong in (strings[:-1], [*strings, strings[0]]):  # a stream short, one over
        with pytest.raises(BitstreamError):
            model.decompress(wrong, shape)
    with pytest.raises(BitstreamError):
        model.decompress(strings, [0, 10**9])


def test_unknown_codec_lists_choices():
    with pytest.raises(KeyError, match="bmshj2018-hyperprior"):
        build_codec("no-such-codec")


@pytest.mark.slow
def test_decode_in_separate_process(tmp_path: Path):
    """One subprocess decodes every case (starting torch costs seconds)."""
    cases = []
    for name in CODECS:
        for c in _channels(name):
            model = _model(name, c, Q)
            for b, q in ((1, None), (2, 0)):
                x = _input(c, b, model.downsampling_factor)
                qa = _quality_arg(q, b)
                with torch.no_grad():
                    enc = model.compress(x, quality=qa)
                key = f"{name}-{c}-{b}-{q}"
                torch.save(
                    {
                        "state": model.state_dict(),
                        "strings": enc["strings"],
                        "shape": enc["shape"],
                        "x_hat": enc["x_hat"],
                    },
                    tmp_path / f"{key}.pt",
                )
                cases.append(
                    {
                        "key": key,
                        "name": name,
                        "in_channels": c,
                        "quality": None if qa is None else torch.as_tensor(qa).tolist(),
                    }
                )
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    script = r"""
import json, sys, torch
from pathlib import Path
from image_codecs import build_codec, codec_class
root = Path(sys.argv[1])
for case in json.loads((root / "cases.json").read_text()):
    blob = torch.load(root / f"{case['key']}.pt", weights_only=True)
    cfg = dict(codec_class(case["name"]).tiny_config)
    m = build_codec(case["name"], in_channels=case["in_channels"], num_qualities=NUM_Q, **cfg)
    m.load_state_dict(blob["state"])
    m.eval()
    q = case["quality"]
    q = None if q is None else torch.tensor(q)
    with torch.no_grad():
        x_hat = m.decompress(blob["strings"], blob["shape"], quality=q)["x_hat"]
    torch.save(x_hat, root / f"{case['key']}.out.pt")
""".replace("NUM_Q", str(Q))
    subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], check=True, timeout=600
    )
    for case in cases:
        want = torch.load(tmp_path / f"{case['key']}.pt", weights_only=True)["x_hat"]
        got = torch.load(tmp_path / f"{case['key']}.out.pt", weights_only=True)
        assert torch.equal(got, want), case["key"]
