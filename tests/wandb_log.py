"""Read the summary of an offline wandb run from its `run-*.wandb` file (tests only).

The file is a LevelDB-style log: a 7-byte header (":W&B", magic, version), then 32 KiB blocks of
records (4-byte checksum, 2-byte length, 1-byte type: 1 full, 2 first, 3 middle, 4 last), each
record a `wandb_internal_pb2.Record`.
"""

import json
from pathlib import Path

BLOCK = 32768


def records(path: Path) -> list[bytes]:
    data, pos, out, pending = path.read_bytes(), 7, [], b""
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # block trailer padding
            pos += left
            continue
        length = int.from_bytes(data[pos + 4 : pos + 6], "little")
        kind = data[pos + 6]
        payload = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 1:
            out.append(payload)
        elif kind == 2:
            pending = payload
        elif kind == 3:
            pending += payload
        elif kind == 4:
            out.append(pending + payload)
    return out


def summary(path: Path) -> dict:
    from wandb.proto import wandb_internal_pb2

    found: dict = {}
    for raw in records(path):
        rec = wandb_internal_pb2.Record()
        rec.ParseFromString(raw)
        if rec.WhichOneof("record_type") == "summary":
            for item in rec.summary.update:
                key = item.key or "/".join(item.nested_key)
                found[key] = json.loads(item.value_json)
    return found
