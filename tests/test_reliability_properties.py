"""Property-based tests (hypothesis): every registered quantizer, on any small valid shape and scale, gives codes
inside its codebook and decodes them back to exactly its output in eval mode; code datasets round-trip for any
shape and vocabulary; damaged image bytes are skipped or refused, never a crash; no config override, however odd,
gets past validation as anything but a clear error; a failed atomic write never changes the old file."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.core.errors import VqgenError
from stage1_tokenizer.quantizers import QUANTIZERS, build_quantizer

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def quantizer_case(draw, name: str):
    """A shape [B, D, H, W], a scale and options that fit quantizer ``name``. Options are chosen by the names its
    config model uses, so quantizers added later are covered with their defaults plus these."""
    fields = set(QUANTIZERS[name][1].model_fields)
    dim = draw(st.sampled_from([2, 4, 6, 8]))
    options = {}
    if "codebook_size" in fields:
        options["codebook_size"] = draw(st.integers(1, 40))
    if "levels" in fields:
        options["levels"] = draw(st.lists(st.integers(2, 7), min_size=1, max_size=4))
    if "bits" in fields:
        options["bits"] = draw(st.integers(1, 6))
    if "depth" in fields:
        options["depth"] = draw(st.integers(1, 3))
    if "groups" in fields:
        options["groups"] = draw(st.sampled_from([g for g in (1, 2, dim) if dim % g == 0]))
    if "cosine" in fields:
        options["cosine"] = draw(st.booleans())
    shape = (draw(st.integers(1, 3)), dim, draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    scale = draw(st.sampled_from([1e-3, 1.0, 30.0]))
    return options, shape, scale, draw(st.integers(0, 2**16))


@pytest.mark.parametrize("name", sorted(QUANTIZERS))
def test_codes_in_range_and_exact_decode_in_eval_mode(name):
    @FAST
    @given(case=quantizer_case(name))
    def check(case):
        options, shape, scale, seed = case
        torch.manual_seed(seed)
        quantizer = build_quantizer(name, shape[1], options)
        z = torch.randn(shape) * scale
        quantizer.train()
        quantizer(z)  # a training step first: data-dependent initialisations (k-means, EMA) must keep the contract
        quantizer.eval()
        with torch.no_grad():
            out = quantizer(z)
        b, _, h, w = shape
        sizes = list(quantizer.codebook_sizes)
        assert out.codes.dtype == torch.long
        assert tuple(out.codes.shape) == (b, h, w, len(sizes))
        assert (out.codes >= 0).all()
        assert (out.codes < torch.tensor(sizes)).all()
        assert out.z_q.shape == z.shape and torch.isfinite(out.z_q).all()
        assert torch.isfinite(out.loss)
        decoded = quantizer.decode_codes(out.codes)
        tolerance = 1e-5 * max(1.0, float(out.z_q.abs().max()))
        assert torch.allclose(decoded, out.z_q, atol=tolerance, rtol=1e-5), (decoded - out.z_q).abs().max()

    check()


@FAST
@given(n=st.integers(0, 6), grid=st.tuples(st.integers(1, 5), st.integers(1, 5)),
       sizes=st.lists(st.sampled_from([1, 2, 255, 256, 257, 32768, 32769, 70000]), min_size=1, max_size=3),
       labelled=st.booleans(), seed=st.integers(0, 2**16))
def test_code_datasets_round_trip_for_any_shape_and_vocabulary(n, grid, sizes, labelled, seed):
    from pipeline.core.code_dataset import CodeDataset, storage_dtype, write_code_dataset

    generator = torch.Generator().manual_seed(seed)
    codes = torch.stack([torch.randint(0, s, (n, *grid), generator=generator) for s in sizes], dim=-1)
    labels = torch.randint(0, 3, (n,), generator=generator) if labelled else None
    with tempfile.TemporaryDirectory() as folder:
        meta = {"tokenizer": {"dir": "t", "weights_sha256": "0" * 64},
                "dataset": {"name": "x", "split": "train", "classes": ["a", "b", "c"]}}
        write_code_dataset(Path(folder) / "codes", {"codes": codes},
                           {"codes": {"grid": list(grid), "codebook_sizes": sizes}}, labels, meta)
        data = CodeDataset(Path(folder) / "codes")
        stored, stored_labels = data.rows(0, len(data))
        assert torch.equal(stored, codes)
        assert data.meta["levels"][0]["dtype"] == str(storage_dtype(max(sizes))).removeprefix("torch.")
        if labelled:
            assert torch.equal(stored_labels, labels)


def _image_bytes(fmt: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (12, 12), (40, 90, 160)).save(buffer, format=fmt)
    return buffer.getvalue()


@FAST
@given(fmt=st.sampled_from(["PNG", "JPEG", "BMP", "GIF"]), cut=st.floats(0.0, 1.0),
       flips=st.lists(st.tuples(st.floats(0.0, 0.999), st.integers(0, 255)), max_size=4),
       fail=st.booleans())
def test_damaged_image_bytes_are_skipped_or_refused_never_a_crash(fmt, cut, flips, fail):
    from pipeline.config import load_config
    from pipeline.datasets import load_split

    good = _image_bytes(fmt)
    data = bytearray(good[: max(0, int(len(good) * cut))] if cut < 1.0 else good)
    for where, value in flips:
        if data:
            data[int(where * len(data))] = value
    suffix = {"JPEG": ".jpg"}.get(fmt, "." + fmt.lower())
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for split in ("train", "test"):
            (root / split / "a").mkdir(parents=True)
            (root / split / "a" / f"good{suffix}").write_bytes(good)
            (root / split / "a" / f"odd{suffix}").write_bytes(bytes(data))
        cfg = load_config([], ["data.name=imagefolder", f"data.root={root}", "data.image_size=8",
                               f"data.on_bad_image={'fail' if fail else 'skip'}"])
        try:
            split = load_split(cfg.data, "train")
        except VqgenError as err:
            assert fail and "cannot read image" in str(err)
            return
        assert len(split) + split.skipped == 2 and len(split) >= 1
        assert split.images.shape[1:] == (3, 8, 8)


def _config_keys() -> list[str]:
    from pipeline.config import PipelineConfig

    keys: list[str] = []

    def walk(tree, prefix):
        for key, value in tree.items():
            keys.append(prefix + key)
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")

    walk(PipelineConfig().model_dump(mode="json"), "")
    return keys


YAML_VALUES = st.one_of(
    st.integers(-10**6, 10**6).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from([".nan", ".inf", "-.inf", "null", "true", "no", "[]", "{}", "[1, 2]", "{a: 1}", "''", "~",
                     "0", "-1", "1e999", "0x10", "{name: fsq}", "{name: nope}", "[[1]]", "'8'"]),
    st.text(alphabet="abcxyz019.-_:{}[], '\"", max_size=12),
)


@settings(max_examples=200, deadline=None)
@given(pairs=st.lists(st.tuples(st.one_of(st.sampled_from(_config_keys()), st.from_regex(r"[a-z]{1,6}(\.[a-z_]{1,6}){0,2}",
                                                                                        fullmatch=True)),
                                YAML_VALUES), min_size=1, max_size=4))
def test_any_override_is_accepted_or_a_clear_error(pairs):
    from pipeline.config import load_config

    try:
        load_config([], [f"{key}={value}" for key, value in pairs])
    except VqgenError as err:
        assert str(err).strip()


@FAST
@given(content=st.binary(max_size=64), fail_at=st.sampled_from(["write", "replace", "none"]))
def test_a_failed_atomic_write_leaves_the_old_file(content, fail_at):
    import os

    from pipeline.core import files

    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "file.bin"
        target.write_bytes(b"old")
        real_replace = os.replace
        try:
            if fail_at == "replace":
                files.os.replace = lambda *a: (_ for _ in ()).throw(OSError(28, "No space left on device"))
            with files.atomic_path(target) as tmp:
                tmp.write_bytes(content)
                if fail_at == "write":
                    raise OSError(28, "No space left on device")
        except VqgenError as err:
            assert fail_at != "none" and "disk is full" in str(err)
        finally:
            files.os.replace = real_replace
        assert target.read_bytes() == (content if fail_at == "none" else b"old")
        assert [p.name for p in Path(folder).iterdir()] == ["file.bin"]


def test_data_name_override_keeps_the_other_data_settings():
    """`--data imagefolder` (data.name=...) comes after `--set data.image_size=64` on the command line: the other
    data settings must survive, while a new quantizer name still drops the old quantizer's options."""
    from pipeline.config import load_config

    cfg = load_config([], ["data.image_size=64", "data.on_bad_image=fail", "data.name=imagefolder", "data.root=/x"])
    assert (cfg.data.name, cfg.data.image_size, cfg.data.on_bad_image) == ("imagefolder", 64, "fail")
    cfg = load_config([], ["tokenizer.quantizer.codebook_size=16", "tokenizer.quantizer.name=fsq"])
    assert cfg.tokenizer.quantizer.model_dump() == {"name": "fsq"}
