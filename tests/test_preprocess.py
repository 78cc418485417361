"""Image decoding and model-input preprocessing (VGGT's and π³'s official image loaders)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from avggt_bench.data.images import load_image, load_images, stack_images
from avggt_bench.errors import ConfigError, DataError
from avggt_bench.models.preprocess import preprocess
from avggt_bench.models.preprocess_geometry import (
    PreprocessConfig,
    Preprocessed,
    ViewTransform,
    target_size,
)

CROP = PreprocessConfig(mode="crop")
PAD = PreprocessConfig(mode="pad")
PI3 = PreprocessConfig(mode="pi3_budget")


# ----------------------------------------------------------------------------------------------
# independent re-statement of the official loaders (written from their documented steps, one by one)


def _official_open(path: Path, composite: bool = True) -> Image.Image:
    img = Image.open(path)
    if composite and img.mode == "RGBA":
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, img)
    return img.convert("RGB")


def _to_tensor(img: Image.Image) -> torch.Tensor:
    arr = np.array(img, dtype=np.uint8).astype(np.float32) / np.float32(255.0)
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def official_vggt(paths: list[Path], mode: str, size: int = 518) -> torch.Tensor:
    out = []
    for path in paths:
        img = _official_open(path)
        width, height = img.size
        if mode == "pad" and width < height:
            new_h = size
            new_w = round(width * (size / height) / 14) * 14
        else:
            new_w = size
            new_h = round(height * (size / width) / 14) * 14
        img = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
        t = _to_tensor(img)
        if mode == "crop" and new_h > size:
            y0 = (new_h - size) // 2
            t = t[:, y0 : y0 + size, :]
        if mode == "pad":
            hp, wp = size - t.shape[1], size - t.shape[2]
            if hp > 0 or wp > 0:
                t = F.pad(t, (wp // 2, wp - wp // 2, hp // 2, hp - hp // 2), value=1.0)
        out.append(t)
    shapes = {tuple(t.shape[1:]) for t in out}
    if len(shapes) > 1:
        mh = max(s[0] for s in shapes)
        mw = max(s[1] for s in shapes)
        padded = []
        for t in out:
            hp, wp = mh - t.shape[1], mw - t.shape[2]
            padded.append(F.pad(t, (wp // 2, wp - wp // 2, hp // 2, hp - hp // 2), value=1.0))
        out = padded
    return torch.stack(out)


def official_pi3(paths: list[Path], limit: int = 255000) -> torch.Tensor:
    first = Image.open(paths[0]).convert("RGB")
    w0, h0 = first.size
    scale = (limit / (w0 * h0)) ** 0.5
    wt, ht = w0 * scale, h0 * scale
    k, m = round(wt / 14), round(ht / 14)
    while (k * 14) * (m * 14) > limit:
        if k / m > wt / ht:
            k -= 1
        else:
            m -= 1
    size = (max(1, k) * 14, max(1, m) * 14)
    imgs = [Image.open(p).convert("RGB").resize(size, Image.Resampling.LANCZOS) for p in paths]
    return torch.stack([_to_tensor(i) for i in imgs])


def _write(tmp: Path, name: str, w: int, h: int, mode: str, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    # smooth-ish content plus noise so that resampling has something to do
    yy, xx = np.mgrid[0:h, 0:w]
    base = (127 + 100 * np.sin(xx / 7.0 + seed) * np.cos(yy / 5.0)).astype(np.int32)
    rgb = np.clip(base[..., None] + rng.integers(-40, 40, (h, w, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(rgb)
    if mode == "RGBA":
        alpha = rng.integers(0, 256, (h, w), dtype=np.uint8)
        alpha[: h // 3] = 0  # fully transparent band: must become white in VGGT modes
        img = Image.fromarray(np.dstack([rgb, alpha]))
    elif mode == "LA":
        img = img.convert("L")
        img = Image.merge("LA", (img, Image.fromarray(rng.integers(0, 256, (h, w), np.uint8))))
    elif mode != "RGB":
        img = img.convert(mode)
    path = tmp / name
    img.save(path)
    return path


# ----------------------------------------------------------------------------------------------
# target sizes


@pytest.mark.parametrize(
    ("wh", "mode", "expected"),
    [
        ((640, 480), "crop", (518, 392)),
        ((1920, 1080), "crop", (518, 294)),
        ((480, 640), "crop", (518, 686)),
        ((640, 480), "pad", (518, 392)),
        ((480, 640), "pad", (392, 518)),
        ((1920, 1080), "pad", (518, 294)),
        ((333, 777), "crop", (518, 1204)),
        ((333, 777), "pad", (224, 518)),
        ((1000, 1), "crop", (518, 0)),
        ((1000, 1), "pad", (518, 0)),
        ((14, 14), "crop", (518, 518)),
        ((14, 14), "pad", (518, 518)),
        ((518, 21), "crop", (518, 28)),  # 1.5 rounds to 2
        ((518, 35), "crop", (518, 28)),  # 2.5 rounds to 2 (ties to even)
        ((640, 480), "pi3_budget", (574, 434)),
        ((1920, 1080), "pi3_budget", (672, 378)),
        ((1024, 436), "pi3_budget", (770, 322)),
        ((480, 640), "pi3_budget", (434, 574)),
    ],
)
def test_target_size_examples(wh, mode, expected):
    assert target_size(*wh, PreprocessConfig(mode=mode)) == expected


def test_target_size_general_rule_and_other_sizes():
    for w, h in [(1, 1000), (7, 9), (517, 519), (4000, 3000), (3000, 4000), (1242, 375)]:
        assert target_size(w, h, CROP) == (518, round(h * (518 / w) / 14) * 14)
        new_w, new_h = target_size(w, h, PAD)
        assert max(new_w, new_h) == 518 and new_w % 14 == 0 and new_h % 14 == 0
        bw, bh = target_size(w, h, PI3)
        assert bw * bh <= 255000 and bw % 14 == 0 and bh % 14 == 0
    assert target_size(640, 480, PreprocessConfig(size=224)) == (224, 168)


# ----------------------------------------------------------------------------------------------
# bit-exactness


@pytest.mark.parametrize("mode", ["crop", "pad"])
def test_vggt_modes_bit_exact(tmp_path, mode):
    specs = [
        ("rgb.png", 64, 48, "RGB"),
        ("rgba.png", 64, 48, "RGBA"),
        ("grey.png", 64, 48, "L"),
        ("la.png", 64, 48, "LA"),
        ("pal.png", 64, 48, "P"),
        ("rgb.jpg", 64, 48, "RGB"),
    ]
    paths = [_write(tmp_path, n, w, h, m, i) for i, (n, w, h, m) in enumerate(specs)]
    expected = official_vggt(paths, mode)
    got = preprocess(paths, PreprocessConfig(mode=mode))
    assert isinstance(got, Preprocessed) and got.mode == mode
    assert got.images.dtype == torch.float32
    assert torch.equal(got.images, expected)
    # the same bits from decoded arrays, a uint8 tensor and PIL images
    arrays = [load_image(p) for p in paths]
    assert torch.equal(preprocess(arrays, PreprocessConfig(mode=mode)).images, expected)
    stacked = stack_images(arrays)
    assert torch.equal(preprocess(stacked, PreprocessConfig(mode=mode)).images, expected)
    pil = [Image.open(p) for p in paths]
    assert torch.equal(preprocess(pil, PreprocessConfig(mode=mode)).images, expected)


@pytest.mark.parametrize("mode", ["crop", "pad"])
@pytest.mark.parametrize("wh", [(700, 900), (900, 700), (518, 518), (518, 392), (300, 200)])
def test_vggt_modes_bit_exact_sizes(tmp_path, mode, wh):
    paths = [_write(tmp_path, f"{i}.png", *wh, "RGB", 10 + i) for i in range(2)]
    got = preprocess(paths, PreprocessConfig(mode=mode), workers=2)
    assert torch.equal(got.images, official_vggt(paths, mode))


def test_generalised_size_bit_exact(tmp_path):
    paths = [_write(tmp_path, f"{i}.png", 300, 400, "RGB", i) for i in range(2)]
    for mode in ("crop", "pad"):
        got = preprocess(paths, PreprocessConfig(mode=mode, size=224))
        assert torch.equal(got.images, official_vggt(paths, mode, size=224))


def test_rgba_composited_on_white(tmp_path):
    path = _write(tmp_path, "a.png", 30, 30, "RGBA", 3)
    arr = load_image(path)
    assert arr.dtype == np.uint8 and arr.shape == (30, 30, 3)
    assert (arr[:10] == 255).all()  # fully transparent rows become white
    # π³ drops alpha instead (plain convert): the transparent band keeps its colour
    assert not (load_image(path, composite_alpha=False)[:10] == 255).all()


def test_pi3_budget_bit_exact(tmp_path):
    paths = [
        _write(tmp_path, "a.png", 160, 120, "RGB", 0),
        _write(tmp_path, "b.png", 160, 120, "RGBA", 1),
        _write(tmp_path, "c.jpg", 160, 120, "L", 2),
    ]
    got = preprocess(paths, PI3)
    assert torch.equal(got.images, official_pi3(paths))
    assert got.image_hw == (434, 574)
    assert got.transforms[0].pad == (0, 0, 0, 0)


def test_mixed_sizes_pad_and_warn(tmp_path):
    paths = [
        _write(tmp_path, "land.png", 64, 48, "RGB", 0),
        _write(tmp_path, "port.png", 48, 64, "RGB", 1),
        _write(tmp_path, "wide.png", 96, 40, "RGB", 2),
    ]
    cfg = PreprocessConfig(mode="crop", allow_mixed_sizes=True)
    with pytest.warns(UserWarning, match="mixes image sizes"):
        got = preprocess(paths, cfg)
    assert torch.equal(got.images, official_vggt(paths, "crop"))
    assert got.image_hw == (518, 518)
    t0 = got.transforms[0]
    assert t0.resized_hw == (392, 518) and t0.pad == (63, 63, 0, 0)
    assert got.transforms[1].crop_offset_yx == (84, 0) and got.transforms[1].pad == (0, 0, 0, 0)
    assert (got.images[0, :, :63] == 1.0).all() and (got.images[0, :, -63:] == 1.0).all()


def test_pad_mode_white_bars(tmp_path):
    rgb = np.zeros((640, 480, 3), np.uint8)  # 480x640 (W x H), black
    got = preprocess([rgb], PAD)
    assert got.image_hw == (518, 518)
    t = got.transforms[0]
    assert t.resized_hw == (518, 392) and t.pad == (0, 0, 63, 63) and t.out_hw == (518, 518)
    img = got.images[0]
    assert (img[:, :, :63] == 1.0).all() and (img[:, :, -63:] == 1.0).all()
    assert (img[:, :, 63:-63] == 0.0).all()


def test_crop_portrait_transform():
    rgb = np.full((640, 480, 3), 7, np.uint8)
    got = preprocess(torch.from_numpy(rgb)[None], CROP)
    t = got.transforms[0]
    assert (t.src_hw, t.resized_hw, t.crop_offset_yx, t.pad, t.out_hw) == (
        (640, 480),
        (686, 518),
        (84, 0),
        (0, 0, 0, 0),
        (518, 518),
    )


# ----------------------------------------------------------------------------------------------
# intrinsics


def _project(K: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    uvw = X @ K.T
    return uvw[:, :2] / uvw[:, 2:]


@pytest.mark.parametrize(
    ("mode", "wh"),
    [
        ("crop", (480, 640)),
        ("crop", (640, 480)),
        ("pad", (480, 640)),
        ("pad", (333, 777)),
        ("pi3_budget", (1024, 436)),
    ],
)
def test_intrinsics_follow_transform(mode, wh):
    w, h = wh
    cfg = PreprocessConfig(mode=mode)
    got = preprocess([np.zeros((h, w, 3), np.uint8)], cfg)
    t = got.transforms[0]
    K = torch.tensor(
        [[500.0, 0.0, w / 2 - 3.0], [0.0, 510.0, h / 2 + 2.0], [0.0, 0.0, 1.0]], dtype=torch.float64
    )
    X = torch.randn(20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    X[:, 2] = X[:, 2].abs() + 2.0
    uv = _project(K, X)
    uv2 = _project(t.apply_to_intrinsics(K), X)
    sx, sy = t.resized_hw[1] / w, t.resized_hw[0] / h
    oy, ox = t.crop_offset_yx
    top, _, left, _ = t.pad
    torch.testing.assert_close(uv2[:, 0] + 0.5, sx * (uv[:, 0] + 0.5) - ox + left)
    torch.testing.assert_close(uv2[:, 1] + 0.5, sy * (uv[:, 1] + 0.5) - oy + top)
    torch.testing.assert_close(t.map_pixels(uv), uv2)
    Ks = torch.stack([K])
    torch.testing.assert_close(got.apply_to_intrinsics(Ks)[0], t.apply_to_intrinsics(K))


@pytest.mark.parametrize("mode", ["crop", "pad"])
def test_intrinsics_match_image_content(mode):
    # a bright blob at a known input location lands where the transformed K says it should
    h, w = 700, 420
    img = np.zeros((h, w, 3), np.uint8)
    cy, cx = 430, 150
    img[cy - 6 : cy + 7, cx - 6 : cx + 7] = 255
    got = preprocess([img], PreprocessConfig(mode=mode))
    t = got.transforms[0]
    K = torch.tensor([[300.0, 0.0, cx], [0.0, 300.0, cy], [0.0, 0.0, 1.0]], dtype=torch.float64)
    K2 = t.apply_to_intrinsics(K)
    lum = got.images[0, 0].double()
    ys, xs = torch.meshgrid(torch.arange(lum.shape[0]), torch.arange(lum.shape[1]), indexing="ij")
    x0, y0, x1, y1 = t.content_box_xyxy
    inside = (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
    weight = lum.clamp(0, 1) * (lum > 0.5) * inside
    com = ((weight * xs).sum() / weight.sum(), (weight * ys).sum() / weight.sum())
    assert abs(float(com[0]) - float(K2[0, 2])) < 0.5
    assert abs(float(com[1]) - float(K2[1, 2])) < 0.5


def test_view_transform_identity():
    t = ViewTransform((392, 518), (392, 518), (0, 0), (0, 0, 0, 0), (392, 518))
    K = torch.tensor(
        [[400.0, 0.5, 259.0], [0.0, 401.0, 196.0], [0.0, 0.0, 1.0]], dtype=torch.float64
    )
    assert torch.equal(t.apply_to_intrinsics(K), K)


# ----------------------------------------------------------------------------------------------
# loading and errors


def test_load_images_order_and_stack(tmp_path):
    paths = [_write(tmp_path, f"{i}.png", 20 + i % 2, 10, "RGB", i) for i in range(6)]
    arrays = load_images(paths, workers=3, progress=False)
    for p, a in zip(paths, arrays):
        assert np.array_equal(a, np.asarray(Image.open(p).convert("RGB")))
    with pytest.raises(DataError) as err:
        stack_images(arrays)
    msg = str(err.value)
    assert "20x10" in msg and "21x10" in msg and "index 1" in msg and "allow_mixed_sizes" in msg
    same = stack_images(arrays[::2])
    assert same.dtype == torch.uint8 and tuple(same.shape) == (3, 10, 20, 3)
    with pytest.raises(DataError):
        load_images([])
    with pytest.raises(DataError):
        stack_images([])


def test_mixed_sizes_rejected_by_default():
    imgs = [
        np.zeros((48, 64, 3), np.uint8),
        np.zeros((48, 64, 3), np.uint8),
        np.zeros((64, 48, 3), np.uint8),
    ]
    for mode in ("crop", "pad", "pi3_budget"):
        with pytest.raises(DataError) as err:
            preprocess(imgs, PreprocessConfig(mode=mode))
        msg = str(err.value)
        assert "64x48" in msg and "48x64" in msg and "index 2" in msg
        assert "allow_mixed_sizes=true" in msg and "resize/crop" in msg


def test_mixed_sizes_allowed_without_padding_still_warn():
    imgs = [np.zeros((48, 64, 3), np.uint8), np.zeros((64, 48, 3), np.uint8)]
    for mode, hw in (("pad", (518, 518)), ("pi3_budget", (434, 574))):
        with pytest.warns(UserWarning, match="all preprocess to"):
            got = preprocess(imgs, PreprocessConfig(mode=mode, allow_mixed_sizes=True))
        assert got.image_hw == hw
        assert all(t.out_hw == hw for t in got.transforms)


def test_no_warning_for_uniform_sizes():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        preprocess([np.zeros((48, 64, 3), np.uint8)] * 2, CROP)


def test_config_errors():
    with pytest.raises(ConfigError, match="crop, pad, pi3_budget"):
        PreprocessConfig(mode="square")
    with pytest.raises(ConfigError) as err:
        PreprocessConfig(size=512)
    msg = str(err.value)
    assert "512" in msg and "504" in msg and "518" in msg and "multiples of 14" in msg
    for bad in (0, -14, 13):
        with pytest.raises(ConfigError):
            PreprocessConfig(size=bad)
    with pytest.raises(ConfigError):
        PreprocessConfig(mode="pi3_budget", pixel_limit=0)


def test_empty_and_degenerate_inputs():
    for empty in ([], torch.zeros((0, 8, 8, 3), dtype=torch.uint8)):
        with pytest.raises(DataError, match="no images"):
            preprocess(empty)
    with pytest.raises(DataError, match="too elongated"):
        preprocess([np.zeros((1, 1000, 3), np.uint8)])
    with pytest.raises(DataError, match="uint8"):
        preprocess([np.zeros((8, 8, 3), np.float32)])


def test_corrupt_files(tmp_path):
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"this is not an image at all" * 10)
    good = _write(tmp_path, "ok.jpg", 120, 90, "RGB", 0)
    truncated = tmp_path / "truncated.jpg"
    data = good.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    missing = tmp_path / "missing.png"
    for bad in (garbage, truncated, missing):
        with pytest.raises(DataError) as err:
            load_image(bad)
        assert bad.name in str(err.value) and "re-download" in str(err.value)
        with pytest.raises(DataError, match=bad.name):
            preprocess([good, bad])
        with pytest.raises(DataError, match=bad.name):
            load_images([good, bad], workers=2)
