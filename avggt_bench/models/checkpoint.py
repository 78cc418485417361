"""Checkpoint loading: local `.safetensors`/`.pt` files or hub ids, strict and readable.

`resolve_checkpoint` turns a `model.checkpoint` value into a local file (downloading a hub id once
into the user's Hugging Face cache); `load_checkpoint` loads it strictly: any mismatch raises a
`CheckpointError` that lists missing, unexpected and mis-shaped keys by name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from avggt_bench.errors import CheckpointError

log = logging.getLogger(__name__)

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
HUB_FILENAMES = ("model.safetensors", "model.pt")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(?::[\w./-]+)?$")
_MAX_LISTED = 20


@dataclass(frozen=True)
class WeightsInfo:
    """What the record says about the weights: `random` or the checkpoint's id, file and hash."""

    source: str
    path: str | None = None
    sha256: str | None = None
    skipped_prefixes: tuple[str, ...] = ()
    init: str | None = None

    @property
    def random(self) -> bool:
        return self.source == "random"

    def as_dict(self) -> dict:
        return {
            "weights": "random" if self.random else "checkpoint",
            "source": self.source,
            "path": self.path,
            "sha256": self.sha256,
            "skipped_prefixes": list(self.skipped_prefixes),
            "init": self.init,
        }


def random_weights(scale: float) -> WeightsInfo:
    return WeightsInfo("random", init=f"recipe(crc32(key)-seeded normal, scale={scale})")


def read_manifest(name: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """Key -> (shape, dtype) of an official state dict, from `resources/<name>.tsv`."""
    path = RESOURCES / f"{name}.tsv"
    out: dict[str, tuple[tuple[int, ...], str]] = {}
    with path.open() as f:
        next(f)
        for line in f:
            key, shape, dtype = line.rstrip("\n").split("\t")
            dims = tuple(int(d) for d in shape.split("x")) if shape else ()
            out[key] = (dims, dtype)
    return out


def is_hub_id(value: str) -> bool:
    return bool(_HUB_ID.match(value)) and not Path(value).exists()


def resolve_checkpoint(value: str) -> Path:
    """A local path as is; a hub id (`org/name` or `org/name:file`) via the Hugging Face cache."""
    path = Path(os.path.expanduser(value))
    if path.exists():
        if path.is_dir():
            for name in HUB_FILENAMES:
                if (path / name).is_file():
                    return path / name
            raise CheckpointError(
                f"checkpoint folder {path} holds none of {', '.join(HUB_FILENAMES)}; "
                "pass the weight file itself"
            )
        return path
    if not is_hub_id(value):
        raise CheckpointError(
            f"checkpoint {value!r} is neither an existing file nor a hub id like "
            "'facebook/VGGT-1B'; check the path (model.checkpoint=/path/to/model.safetensors)"
        )
    return _download(value)


def _download(hub_id: str) -> Path:
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    repo, _, filename = hub_id.partition(":")
    candidates = (filename,) if filename else HUB_FILENAMES
    errors = []
    for name in candidates:
        try:
            return Path(hf_hub_download(repo_id=repo, filename=name))
        except LocalEntryNotFoundError:  # not cached and the hub is unreachable
            errors.append(f"{name}: not in the local cache and the hub is unreachable")
            if not constants.HF_HUB_OFFLINE:
                break  # each further name would wait through the same network retries
        except EntryNotFoundError as exc:  # the repo lacks this file: try the next name
            errors.append(f"{name}: not in the repository ({type(exc).__name__})")
        except Exception as exc:  # offline, unknown or gated repo: trying other names won't help
            errors.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            break
    raise CheckpointError(
        f"could not obtain {hub_id!r} from the Hugging Face hub (no network, or the file is "
        f"missing):\n  " + "\n  ".join(errors) + "\n"
        f"Fix: download {candidates[0]} from https://huggingface.co/{repo} on a machine with "
        f"network access, then pass model.checkpoint=/path/to/{candidates[0]} (or copy it into "
        f"the Hugging Face cache, HF_HOME, and set HF_HUB_OFFLINE=1)."
    )


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a `.safetensors` or torch pickle file (`.pt`, `.pth`, `.bin`)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}"
        ) from exc
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]  # training checkpoints wrap the weights
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return obj


@dataclass
class KeyReport:
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mis_shaped: list[tuple[str, tuple, tuple]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mis_shaped)

    def message(self, what: str) -> str:
        lines = [f"checkpoint does not match {what}:"]
        for title, items in (
            ("missing keys", self.missing),
            ("unexpected keys", self.unexpected),
            (
                "mis-shaped keys (checkpoint vs model)",
                [f"{k}: {tuple(a)} vs {tuple(b)}" for k, a, b in self.mis_shaped],
            ),
        ):
            if items:
                shown = items[:_MAX_LISTED]
                more = f" ... and {len(items) - len(shown)} more" if len(items) > len(shown) else ""
                lines.append(f"  {len(items)} {title}: " + ", ".join(shown) + more)
        lines.append(
            "Fix: use the checkpoint of this preset (e.g. facebook/VGGT-1B for 'vggt'), or the "
            "preset the checkpoint was trained for."
        )
        return "\n".join(lines)


def compare_keys(
    state: dict[str, torch.Tensor], expected: dict[str, torch.Size], optional: tuple[str, ...] = ()
) -> KeyReport:
    report = KeyReport()
    for key, shape in expected.items():
        if key not in state:
            if key not in optional:
                report.missing.append(key)
        elif tuple(state[key].shape) != tuple(shape):
            report.mis_shaped.append((key, tuple(state[key].shape), tuple(shape)))
    report.unexpected = [k for k in state if k not in expected]
    return report


def load_state_dict_strict(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    skip_prefixes: tuple[str, ...] = (),
    optional: tuple[str, ...] = (),
) -> tuple[str, ...]:
    """Copy `state` into `model`; every key must match except those under `skip_prefixes`
    (dropped, reported once) and `optional` ones (may be absent). Floating tensors are cast to the
    parameter's dtype. Returns the prefixes that were actually skipped."""
    skipped = tuple(p for p in skip_prefixes if any(k.startswith(p) for k in state))
    for prefix in skipped:
        count = sum(k.startswith(prefix) for k in state)
        log.info("skipping %d checkpoint tensors under %r (not built in this model)", count, prefix)
    state = (
        {k: v for k, v in state.items() if not k.startswith(skip_prefixes)}
        if skip_prefixes
        else state
    )
    expected = {k: v.shape for k, v in model.state_dict().items()}
    report = compare_keys(state, expected, optional)
    if not report.ok:
        raise CheckpointError(report.message(type(model).__name__))
    with torch.no_grad():
        own = model.state_dict()
        for key, value in state.items():
            own[key].copy_(value.to(own[key].dtype) if value.is_floating_point() else value)
    return skipped


def file_sha256(path: Path, cache_dir: Path | None = None) -> str:
    """SHA-256 of a file, cached by (path, size, mtime) so 5 GB checkpoints are hashed once."""
    stat = path.stat()
    cache_dir = (
        cache_dir or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "avggt_bench"
    )
    cache_file = cache_dir / "sha256.json"
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        return cache[key]
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            digest.update(chunk)
    cache[key] = digest.hexdigest()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        cache_file.write_text(json.dumps(cache, indent=1))
    except OSError:
        pass
    return cache[key]


def load_checkpoint(
    model: nn.Module,
    value: str,
    skip_prefixes: tuple[str, ...] = (),
    optional: tuple[str, ...] = (),
) -> WeightsInfo:
    """Resolve, read and strictly load a checkpoint; returns what the record should say."""
    path = resolve_checkpoint(value)
    state = read_state_dict(path)
    skipped = load_state_dict_strict(model, state, skip_prefixes, optional)
    return WeightsInfo(value, str(path), file_sha256(path), skipped)
