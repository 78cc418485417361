"""Running a job whose record does not exist yet: the `running` record, the path for the
dataset, the final status, the logger. Imports torch and the model code (the resume check in
`avggt_bench.job.start` does not)."""

from __future__ import annotations

import logging
from contextlib import nullcontext

import torch
from omegaconf import DictConfig, OmegaConf

from avggt_bench.data.protocol_scenes import ProtocolDataset, build_dataset
from avggt_bench.job.protocol import run_protocol_job
from avggt_bench.job.resume import JobId
from avggt_bench.job.scene import run_scene_job
from avggt_bench.job.units import Stages, failure_status
from avggt_bench.parallel.launch import local_device, start_parallel
from avggt_bench.parallel.shard import frame_parallel
from avggt_bench.precision import resolve_device, resolve_precision
from avggt_bench.records import Record, now_iso, provenance
from avggt_bench.records import write_record as _write_record
from avggt_bench.records.machine import LoadMeter, cpu_threads

log = logging.getLogger("avggt_bench.job")


def resolve_job_precision(cfg: DictConfig, device: torch.device) -> str:
    """`resolve_precision` with the attention preset (a preset may carry the precision policy
    of its method's release)."""
    return resolve_precision(cfg.get("precision"), device, attention=cfg.attention)


def execute(cfg: DictConfig, jid: JobId) -> Record:
    """Run the job and write its record (first `running`, then the outcome); never raises for a
    failure inside the job. `parallel=frames` (under torchrun): every rank runs the job on its
    frames (`avggt_bench.parallel`) and rank 0 alone writes the record."""
    device = resolve_device(cfg.get("device"))
    par = start_parallel(cfg, device)
    if par is not None:
        device = local_device(device)
    torch.set_num_threads(cpu_threads(cfg.get("threads")))
    precision = resolve_job_precision(cfg, device)
    # rank 0 writes the one record of a frame-parallel job
    write_record = _no_write if par is not None and par.rank != 0 else _write_record
    record = Record(
        run_id=jid.run_id,
        config_hash=jid.digest,
        series_hash=jid.series,
        job={**jid.job, "precision": precision}
        if par is None
        else {**jid.job, "precision": precision, "world_size": par.world},
        config={
            **OmegaConf.to_container(cfg, resolve=True),
            "num_views": jid.views,
        },
        status="running",
        provenance={
            **provenance(device, jid.job["machine"]),
            "seed": int(cfg.seed),
            "precision": precision,
        },
    )
    write_record(record, jid.path)
    log.info("%s: started -> %s", jid.run_id, jid.path)
    load = LoadMeter()
    torch.manual_seed(int(cfg.seed))
    try:
        with Stages(record)("dataset", cfg.dataset.name):
            dataset = build_dataset(cfg.dataset)
        record.status = "ok"
        with frame_parallel(par) if par is not None else nullcontext():
            if isinstance(dataset, ProtocolDataset):
                run_protocol_job(cfg, device, precision, record, dataset, load)
            else:
                run_scene_job(cfg, device, precision, record, dataset, load)
        if par is not None and not record.parallel:  # protocol jobs: per scene, in its row
            record.parallel = {"world_size": par.world, "per_scene": "scenes[i].parallel"}
        record.stage = None
    except KeyboardInterrupt:
        record.status, record.message = "error", "interrupted (Ctrl-C); rerun to compute it"
        record.finished_at = now_iso()
        write_record(record, jid.path)
        raise
    except Exception as exc:
        record.status, record.message = failure_status(exc)
    finally:
        record.finished_at = now_iso()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    record.provenance["load"] = load.as_dict()
    write_record(record, jid.path)
    return record


def _no_write(record: Record, path) -> None:
    """Ranks other than 0 of a frame-parallel job write no record."""
