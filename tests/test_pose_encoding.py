"""VGGT's pose encoding <-> extrinsics/intrinsics."""

import math

import torch

from avggt_bench.models.vggt.pose_encoding import (
    extri_intri_to_pose_encoding,
    mat_to_quat,
    pose_encoding_to_extri_intri,
    quat_to_mat,
)


def random_rotations(n, gen, dtype=torch.float64):
    q = torch.randn(n, 4, generator=gen, dtype=dtype)
    return quat_to_mat(q / q.norm(dim=-1, keepdim=True))


def test_round_trip_float64():
    gen = torch.Generator().manual_seed(0)
    rot = random_rotations(50, gen)
    # include the hard cases: identity and 180-degree turns about each axis
    special = torch.stack(
        [
            torch.eye(3, dtype=torch.float64),
            torch.diag(torch.tensor([1.0, -1, -1], dtype=torch.float64)),
            torch.diag(torch.tensor([-1.0, 1, -1], dtype=torch.float64)),
            torch.diag(torch.tensor([-1.0, -1, 1], dtype=torch.float64)),
        ]
    )
    rot = torch.cat([rot, special])[None]
    t = torch.randn(1, rot.shape[1], 3, 1, generator=gen, dtype=torch.float64)
    ext = torch.cat([rot, t], dim=-1)
    height, width = 392, 518
    k = torch.zeros(1, rot.shape[1], 3, 3, dtype=torch.float64)
    k[..., 0, 0] = 400.0 + torch.rand(rot.shape[1], generator=gen, dtype=torch.float64) * 100
    k[..., 1, 1] = 380.0
    k[..., 0, 2], k[..., 1, 2], k[..., 2, 2] = width / 2, height / 2, 1.0
    enc = extri_intri_to_pose_encoding(ext, k, (height, width)).double()
    ext2, k2 = pose_encoding_to_extri_intri(enc, (height, width))
    # the encoding is stored as float32, so compare at float32 precision
    torch.testing.assert_close(ext2, ext, rtol=0, atol=5e-6)
    torch.testing.assert_close(k2, k, rtol=2e-6, atol=1e-4)
    assert (enc[..., 6] >= 0).all()  # w >= 0 (standardised)


def test_quaternion_conventions():
    # 90 degrees about z, scalar last: q = (0, 0, sin 45, cos 45)
    q = torch.tensor([0.0, 0.0, math.sin(math.pi / 4), math.cos(math.pi / 4)], dtype=torch.float64)
    r = quat_to_mat(q)
    expected = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float64)
    torch.testing.assert_close(r, expected, atol=1e-12, rtol=0)
    # non-unit quaternions give the same rotation (VGGT's encoding is not normalised)
    torch.testing.assert_close(quat_to_mat(3 * q), r, atol=1e-12, rtol=0)
    torch.testing.assert_close(mat_to_quat(r), q, atol=1e-12, rtol=0)


def test_intrinsics_from_fov():
    enc = torch.zeros(1, 1, 9, dtype=torch.float64)
    enc[..., 6] = 1.0
    enc[..., 7] = 2 * math.atan(0.5)  # fov_h
    enc[..., 8] = 2 * math.atan(0.25)  # fov_w
    _, k = pose_encoding_to_extri_intri(enc, (100, 60))
    assert math.isclose(k[0, 0, 1, 1].item(), 50 / 0.5)
    assert math.isclose(k[0, 0, 0, 0].item(), 30 / 0.25)
    assert k[0, 0, 0, 2].item() == 30 and k[0, 0, 1, 2].item() == 50
