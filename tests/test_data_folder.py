"""`dataset=folder`: your own images, every one by default (with a stated cap), scene named after
the folder that holds them, messages that fit a folder."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from avggt_bench.data.datasets import FolderDataset, folder_scene_id
from avggt_bench.data.protocol_scenes import build_dataset
from avggt_bench.errors import DataError
from avggt_bench.paths import REPO_DIR


def write_images(folder, n, size=(24, 32)):
    folder.mkdir(parents=True)
    for i in range(n):
        img = np.full((*size, 3), i * 10 % 256, np.uint8)
        Image.fromarray(img).save(folder / f"{i:03d}.png")
    return folder


def test_default_takes_every_image_and_names_the_scene_folder(tmp_path, caplog):
    images = write_images(tmp_path / "my_scene" / "images", 9)
    cfg = OmegaConf.load(REPO_DIR / "conf" / "dataset" / "folder.yaml")
    cfg.path = str(images)
    ds = build_dataset(cfg)
    with caplog.at_level(logging.INFO, logger="avggt_bench.data.datasets"):
        scene = ds.load_views(None)
    assert scene.num_views == 9 and scene.frame_ids == [f"{i:03d}.png" for i in range(9)]
    assert scene.scene_id == "my_scene" and ds.sequences() == ["my_scene"]
    assert "9 images of 9, 32x24" in caplog.text and "capped" not in caplog.text
    assert folder_scene_id(tmp_path / "my_scene") == "my_scene"
    assert folder_scene_id(write_images(tmp_path / "shots", 1)) == "shots"


def test_cap_is_stated_and_evenly_spaced(tmp_path, caplog):
    images = write_images(tmp_path / "garden", 7)
    ds = FolderDataset(path=str(images), max_views=3)
    with caplog.at_level(logging.INFO, logger="avggt_bench.data.datasets"):
        scene = ds.load_views(None)
    assert scene.frame_indices == [0, 3, 6]
    assert "3 images of 7" in caplog.text and "capped at dataset.max_views=3" in caplog.text
    assert ds.load_views(2).frame_indices == [0, 6]  # an explicit count is never capped
    assert FolderDataset(path=str(images)).max_views == 200


def test_messages_fit_a_folder(tmp_path):
    images = write_images(tmp_path / "one", 1)
    with pytest.raises(DataError) as info:
        FolderDataset(path=str(images)).load_views(4)
    assert "holds 1 image;" in str(info.value) and "1 images" not in str(info.value)
    (images / "001.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DataError) as info:
        FolderDataset(path=str(images)).load_views(None)
    msg = str(info.value)
    assert "001.png" in msg and "remove or replace that file in the folder" in msg
    assert "frame list" not in msg
