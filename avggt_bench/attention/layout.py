"""The token layout every attention call carries: frames, special tokens and the patch grid."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class TokenLayout:
    """How the sequence axis of one attention call is arranged.

    The sequence holds `frames` frames of `tokens_per_frame` tokens each, frame-major. In each frame
    the first `num_special` tokens are special (camera/register tokens), followed by the `grid`
    (h, w) patches in row-major order. `reference_frame` marks models whose frame 0 is special
    (VGGT: own camera/register embeddings, defines the world frame); π³ has none.
    """

    frames: int
    grid: tuple[int, int]
    num_special: int
    reference_frame: bool = False

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def tokens_per_frame(self) -> int:
        return self.num_special + self.num_patches

    @property
    def num_tokens(self) -> int:
        return self.frames * self.tokens_per_frame

    @property
    def rope_table_size(self) -> int:
        """Positions run 0..h (rows) and 0..w (columns): a table of max(h, w) + 1 entries."""
        return max(self.grid) + 1

    def per_frame(self) -> TokenLayout:
        """The layout of one frame, as frame attention sees it."""
        return replace(self, frames=1)
