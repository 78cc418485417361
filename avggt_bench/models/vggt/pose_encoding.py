"""VGGT's 9-number camera encoding "absT_quaR_FoV" and its conversion to cameras.

The functions compute in the dtype of their inputs: float32 reproduces the official conversion
bit for bit; pass float64 for metrics (the metrics compute in float64, docs/conventions.md).
Upstream: facebookresearch/vggt `vggt/utils/pose_enc.py::pose_encoding_to_extri_intri` and
`extri_intri_to_pose_encoding`.
"""

from __future__ import annotations

import torch


def quat_to_mat(quat: torch.Tensor) -> torch.Tensor:
    """Rotation matrices `[..., 3, 3]` from quaternions (x, y, z, w), not necessarily unit."""
    i, j, k, r = torch.unbind(quat, -1)
    s2 = 2.0 / (quat * quat).sum(-1)
    m = torch.stack(
        (
            1 - s2 * (j * j + k * k),
            s2 * (i * j - k * r),
            s2 * (i * k + j * r),
            s2 * (i * j + k * r),
            1 - s2 * (i * i + k * k),
            s2 * (j * k - i * r),
            s2 * (i * k - j * r),
            s2 * (j * k + i * r),
            1 - s2 * (i * i + j * j),
        ),
        -1,
    )
    return m.reshape((*quat.shape[:-1], 3, 3))


def mat_to_quat(mat: torch.Tensor) -> torch.Tensor:
    """Quaternions (x, y, z, w), w >= 0, from rotations, by the best-conditioned candidate."""
    batch = mat.shape[:-2]
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = torch.unbind(mat.reshape((*batch, 9)), -1)
    a = torch.sqrt(
        torch.clamp(
            torch.stack(
                (
                    1.0 + m00 + m11 + m22,
                    1.0 + m00 - m11 - m22,
                    1.0 - m00 + m11 - m22,
                    1.0 - m00 - m11 + m22,
                ),
                -1,
            ),
            min=0,
        )
    )
    cand = torch.stack(
        (
            torch.stack((a[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01), -1),
            torch.stack((m21 - m12, a[..., 1] ** 2, m10 + m01, m02 + m20), -1),
            torch.stack((m02 - m20, m10 + m01, a[..., 2] ** 2, m12 + m21), -1),
            torch.stack((m10 - m01, m20 + m02, m21 + m12, a[..., 3] ** 2), -1),
        ),
        -2,
    )
    floor = torch.tensor(0.1, dtype=a.dtype, device=a.device)
    cand = cand / (2.0 * a[..., None].max(floor))
    best = a.argmax(-1)
    rijk = torch.gather(cand, -2, best[..., None, None].expand((*batch, 1, 4))).squeeze(-2)
    xyzw = rijk[..., [1, 2, 3, 0]]
    return torch.where(xyzw[..., 3:4] < 0, -xyzw, xyzw)


def pose_encoding_to_extri_intri(
    pose_enc: torch.Tensor, image_size_hw: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """World-to-camera extrinsics `[..., 3, 4]` and intrinsics `[..., 3, 3]` for an (H, W) input."""
    height, width = image_size_hw
    t, quat = pose_enc[..., :3], pose_enc[..., 3:7]
    fov_h, fov_w = pose_enc[..., 7], pose_enc[..., 8]
    extrinsics = torch.cat((quat_to_mat(quat), t[..., None]), dim=-1)
    fy = (height / 2.0) / torch.tan(fov_h / 2.0)
    fx = (width / 2.0) / torch.tan(fov_w / 2.0)
    intrinsics = torch.zeros(
        (*pose_enc.shape[:-1], 3, 3), dtype=pose_enc.dtype, device=pose_enc.device
    )
    intrinsics[..., 0, 0] = fx
    intrinsics[..., 1, 1] = fy
    intrinsics[..., 0, 2] = width / 2
    intrinsics[..., 1, 2] = height / 2
    intrinsics[..., 2, 2] = 1.0
    return extrinsics, intrinsics


def extri_intri_to_pose_encoding(
    extrinsics: torch.Tensor, intrinsics: torch.Tensor, image_size_hw: tuple[int, int]
) -> torch.Tensor:
    """Inverse of `pose_encoding_to_extri_intri` (ground truth -> encoding), returned as float32."""
    height, width = image_size_hw
    t = extrinsics[..., :3, 3]
    quat = mat_to_quat(extrinsics[..., :3, :3])
    fov_h = 2 * torch.atan((height / 2) / intrinsics[..., 1, 1])
    fov_w = 2 * torch.atan((width / 2) / intrinsics[..., 0, 0])
    return torch.cat((t, quat, fov_h[..., None], fov_w[..., None]), dim=-1).float()
