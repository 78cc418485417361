"""Frame sampling strategies of the evaluation protocols, deterministic and seeded.

A strategy maps a sequence's native frame list (N frames, positions 0..N−1, invalid frames
included so that published lists keep their meaning) to the positions a protocol evaluates, in
the order they are fed to the model. `build_sampler(cfg)` turns a preset's `sampling:` block into
a `Sampler`; `Sampler.select(key, n_native, valid)` is called once per sequence, in protocol order
(`random_choice_legacy` draws from one generator shared by the whole run, so the order of calls
is part of the protocol).

`num_views` override (view-count sweeps), `Sampler.with_count(n)`:
* `even_first`, `random_choice_legacy`, `first_n_stride`: the count `n` is replaced;
* `frame_list`: the first n listed indices (a prefix of a random draw is itself a random draw);
* `stride`, `stride_min_half`, `all`: replaced by `even_first(n)` over the valid frames.
The effective rule is `Sampler.describe()`, which the job record stores.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from avggt_bench.data.base import FrameError
from avggt_bench.errors import ConfigError, DataError

__all__ = [
    "STRATEGIES",
    "Sampler",
    "SamplingConfig",
    "build_sampler",
    "even_first",
    "fast_eval_subset",
    "first_n_stride",
    "load_frame_list",
    "stride",
    "stride_min_half",
    "validate_frame_list",
]

STRATEGIES: dict[str, tuple[str, ...]] = {
    # strategy: the parameters it takes (besides `strategy`)
    "stride": ("kf_every", "check_file"),
    "stride_min_half": ("kf_every", "check_file"),
    "frame_list": ("file", "n"),
    "random_choice_legacy": ("n", "seed", "fast_eval", "fast_eval_seed", "fast_eval_count"),
    "even_first": ("n",),
    "first_n_stride": ("stride", "n"),
    "all": (),
}


# --------------------------------------------------------------------------- the rules (pure)


def stride(n_native: int, kf_every: int) -> list[int]:
    """`0, kf, 2·kf, … < N` over the full native index space."""
    return list(range(0, n_native, kf_every))


def stride_min_half(n_native: int, kf_every: int) -> list[int]:
    """CUT3R's NRGBD rule: stride `min(kf, N // 2)` (at least 1), so at least two frames."""
    return list(range(0, n_native, max(1, min(kf_every, n_native // 2))))


def even_first(valid: Sequence[int], n: int) -> list[int]:
    """FastVGGT's rule on the sorted valid positions: first frame, then every `step`-th."""
    valid = list(valid)
    if len(valid) <= n:
        return valid
    if n == 1:
        return valid[:1]
    step = max(1, (len(valid) - 1) // (n - 1))
    return [valid[0], *valid[1:][::step][: n - 1]]


def first_n_stride(n_native: int, step: int, n: int) -> list[int]:
    """MonST3R subsets: `native[::step][:n]`."""
    return list(range(0, n_native, step))[:n]


def fast_eval_subset(names: Sequence[str], seed_rng: random.Random, count: int = 10) -> list[str]:
    """VGGT `--fast_eval`: `sample(sorted(names), count)` re-sorted; all names below `count`."""
    ordered = sorted(names)
    if len(ordered) < count:
        return ordered
    return sorted(seed_rng.sample(ordered, count))


# --------------------------------------------------------------------------- frame-list files


def load_frame_list(path: Path) -> dict[str, list[int]]:
    """Read a JSON frame list `{scene_key: [index, ...]}` (π³'s seq-id map format)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"frame list {path} not found. Stride lists ship in datasets/lists/; π³'s random "
            "maps must be imported from your copy of its evaluation files with "
            "`python -m avggt_bench.data.prepare frame-lists --pi3-dir <folder>` "
            "(datasets/README.md, section 'Scene and frame lists')"
        )
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"frame list {path} is not valid JSON ({exc}); re-import it") from exc
    if not isinstance(raw, dict):
        raise DataError(f"frame list {path} must be a JSON object {{scene: [indices]}}")
    out: dict[str, list[int]] = {}
    for key, value in raw.items():
        if not isinstance(value, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in value
        ):
            raise DataError(f"frame list {path}: entry {key!r} must be a list of integers")
        out[str(key)] = list(value)
    return out


def validate_frame_list(
    lists: Mapping[str, Sequence[int]],
    *,
    frames: Mapping[str, int] | None = None,
    expected_sequences: int | None = None,
    expected_per_sequence: int | None = None,
    where: str = "frame list",
) -> None:
    """Raise DataError on repeated or out-of-range indices or wrong counts.

    `frames` gives each scene's native frame count where known (scenes absent from it are only
    checked for repeats and negatives).
    """
    if expected_sequences is not None and len(lists) != expected_sequences:
        raise DataError(
            f"{where}: {len(lists)} sequences, expected {expected_sequences}; the file is "
            "incomplete or from another protocol"
        )
    for key, idx in lists.items():
        if len(set(idx)) != len(idx):
            raise DataError(f"{where}: sequence {key!r} repeats an index: {list(idx)}")
        if any(i < 0 for i in idx):
            raise DataError(f"{where}: sequence {key!r} has a negative index: {list(idx)}")
        if expected_per_sequence is not None and len(idx) != expected_per_sequence:
            raise DataError(
                f"{where}: sequence {key!r} has {len(idx)} indices, expected "
                f"{expected_per_sequence}"
            )
        n = None if frames is None else frames.get(key)
        if n is not None and max(idx, default=-1) >= n:
            raise DataError(
                f"{where}: sequence {key!r} index {max(idx)} is out of range for {n} frames"
            )


# --------------------------------------------------------------------------- configured sampler


@dataclass(frozen=True)
class SamplingConfig:
    """A preset's `sampling:` block, validated (unknown keys and values raise ConfigError)."""

    strategy: str
    kf_every: int | None = None
    n: int | None = None
    seed: int = 0
    stride: int | None = None
    file: str | None = None
    check_file: str | None = None
    fast_eval: bool = False
    fast_eval_seed: int = 0
    fast_eval_count: int = 10

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any] | str, where: str = "sampling") -> SamplingConfig:
        if isinstance(cfg, str):
            cfg = {"strategy": cfg}
        cfg = dict(cfg)
        strategy = cfg.get("strategy")
        if strategy not in STRATEGIES:
            raise ConfigError(
                f"{where}.strategy={strategy!r} is not a sampling strategy; valid: "
                f"{', '.join(STRATEGIES)}"
            )
        allowed = {"strategy", *STRATEGIES[strategy]}
        unknown = sorted(set(cfg) - allowed)
        if unknown:
            raise ConfigError(
                f"{where}: key(s) {unknown} do not apply to strategy {strategy!r}; it takes "
                f"{', '.join(sorted(allowed))}"
            )
        out = cls(**cfg)
        out._check(where)
        return out

    def _check(self, where: str) -> None:
        def positive(name: str) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"{where}.{name} must be a positive integer for strategy "
                    f"{self.strategy!r}, got {value!r}"
                )

        if self.strategy in ("stride", "stride_min_half"):
            positive("kf_every")
        if self.strategy in ("random_choice_legacy", "even_first", "first_n_stride"):
            positive("n")
        if self.strategy == "first_n_stride":
            positive("stride")
        if self.strategy == "frame_list" and not self.file:
            raise ConfigError(f"{where}.file is required for strategy frame_list")
        if self.strategy == "frame_list" and self.n is not None:
            positive("n")
        for name in ("seed", "fast_eval_seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{where}.{name} must be an integer >= 0, got {value!r}")

    def as_dict(self) -> dict[str, Any]:
        keys = ("strategy", *STRATEGIES[self.strategy])
        return {k: getattr(self, k) for k in keys}


@dataclass
class Sampler:
    """Selects frame positions per sequence; holds the run's random generator (if any)."""

    cfg: SamplingConfig
    lists_dir: Path | None = None
    overridden: int | None = None
    strict: bool = True
    warnings: dict[str, str] = field(default_factory=dict)
    _rng: np.random.RandomState | None = field(default=None, repr=False)
    _list: dict[str, list[int]] | None = field(default=None, repr=False)
    _check: dict[str, list[int]] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.cfg.strategy == "random_choice_legacy":
            # one dedicated legacy generator per run, never the global state
            self._rng = np.random.RandomState(self.cfg.seed)
        if self.cfg.strategy == "frame_list":
            self._list = load_frame_list(self.resolve(self.cfg.file))
        if self.cfg.check_file:
            path = self.resolve(self.cfg.check_file)
            self._check = load_frame_list(path) if path.is_file() else None

    def resolve(self, name: str | None) -> Path:
        path = Path(str(name)).expanduser()
        if not path.is_absolute() and self.lists_dir is not None:
            path = self.lists_dir / path
        return path

    @property
    def frame_list(self) -> dict[str, list[int]] | None:
        return self._list

    @property
    def needs_validity(self) -> bool:
        """True when the selection depends on which frames are valid (even_first)."""
        return self.effective_strategy == "even_first"

    @property
    def effective_strategy(self) -> str:
        if self.overridden is not None and self.cfg.strategy in (
            "stride",
            "stride_min_half",
            "all",
        ):
            return "even_first"
        return self.cfg.strategy

    def with_count(self, n: int | None) -> Sampler:
        """A fresh sampler (new generator) with the `num_views` override applied (module doc)."""
        if n is None:
            return Sampler(self.cfg, self.lists_dir, strict=self.strict)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"num_views must be a positive integer, got {n!r}")
        cfg = self.cfg
        if cfg.strategy in ("random_choice_legacy", "even_first", "first_n_stride", "frame_list"):
            cfg = replace(cfg, n=n)
        return Sampler(cfg, self.lists_dir, overridden=n, strict=self.strict)

    def describe(self) -> dict[str, Any]:
        out = self.cfg.as_dict()
        if self.overridden is not None:
            out["num_views_override"] = self.overridden
            out["effective_strategy"] = self.effective_strategy
        return out

    def select(self, key: str, n_native: int, valid: Sequence[bool] | None = None) -> list[int]:
        """Positions (into the native frame list) for sequence `key`, in feeding order.

        Raises DataError when the sequence cannot be sampled (absent from a frame list, fewer
        frames than a random draw needs, an index out of range, a stride check mismatch).
        """
        strategy = self.effective_strategy
        cfg = self.cfg
        if strategy == "all":
            return list(range(n_native))
        if strategy == "stride":
            out = stride(n_native, int(cfg.kf_every))
        elif strategy == "stride_min_half":
            out = stride_min_half(n_native, int(cfg.kf_every))
        elif strategy == "first_n_stride":
            out = first_n_stride(n_native, int(cfg.stride), int(cfg.n))
        elif strategy == "even_first":
            n = self.overridden if cfg.n is None else int(cfg.n)
            ok = list(range(n_native)) if valid is None else [i for i, v in enumerate(valid) if v]
            out = even_first(ok, int(n))
        elif strategy == "random_choice_legacy":
            n = int(cfg.n)
            if n_native < n:
                raise FrameError(
                    f"sequence {key!r} has {n_native} frames, fewer than the {n} a random draw "
                    "needs; it is skipped without consuming a draw",
                    "too_few_frames",
                )
            assert self._rng is not None
            out = [int(i) for i in self._rng.choice(n_native, n, replace=False)]
        elif strategy == "frame_list":
            assert self._list is not None
            if key not in self._list:
                raise FrameError(f"sequence {key!r} is not in frame list {cfg.file}", "not_listed")
            out = list(self._list[key])
            if cfg.n is not None:
                if cfg.n > len(out):
                    raise DataError(
                        f"num_views={cfg.n} but frame list {cfg.file} has {len(out)} indices "
                        f"for {key!r}"
                    )
                out = out[: cfg.n]
            bad = [i for i in out if not 0 <= i < n_native]
            if bad:
                raise DataError(
                    f"frame list {cfg.file}: indices {bad} of {key!r} are out of range for its "
                    f"{n_native} frames; the list is from another version of the data"
                )
        else:  # pragma: no cover - validated in SamplingConfig
            raise ConfigError(f"unknown sampling strategy {strategy!r}")
        if (
            self._check is not None
            and self.overridden is None
            and key in self._check
            and self._check[key] != out
        ):
            message = (
                f"sequence {key!r}: the {strategy} rule gives {len(out)} frames {out[:6]}..., "
                f"but {cfg.check_file} lists {len(self._check[key])}: the sequence on disk "
                f"does not have the published frame count (N = {n_native}); check the "
                "download is complete"
            )
            if self.strict:
                raise FrameError(message, "frame_count_mismatch")
            self.warnings[key] = message
        return out


def build_sampler(cfg: Mapping[str, Any] | str, lists_dir: Path | None = None) -> Sampler:
    """A `Sampler` from a preset's `sampling:` block (relative list paths under `lists_dir`)."""
    return Sampler(SamplingConfig.from_mapping(cfg), lists_dir)
