"""The training recipe: optional pre-training on type-less nuclei, then heads-only training with
the encoder frozen, then fine-tuning of the whole network at a lower rate (transfer learning).

A run is described by a YAML file (see ``examples/train_mixed.yaml`` and
:mod:`histobatch.train.config`) and writes to its folder: ``metrics.json`` (one entry per epoch),
``curves.png``, ``confusion.png``, ``samples.png``, ``checkpoint.pt`` (every epoch, for
``--resume``) and the final model folder ``model/``.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from histobatch.errors import HistobatchError
from histobatch.train.config import DataSpec, StageSpec, TrainConfig, load_train_config
from histobatch.train.reports import write_final_figures, write_history

__all__ = ["DataSpec", "StageSpec", "TrainConfig", "load_train_config", "train"]

logger = logging.getLogger(__name__)


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - libraries may use the global RNG
    torch.manual_seed(seed)


class _WorkerSeeder:
    """``worker_init_fn`` of the crop loader: one thread and a distinct augmentation seed per
    worker, derived from the epoch's seed."""

    def __init__(self, epoch_seed: int) -> None:
        self.epoch_seed = epoch_seed

    def __call__(self, worker_id: int) -> None:
        import torch

        torch.set_num_threads(1)
        seed = (self.epoch_seed * 1009 + worker_id) % 2**31
        np.random.seed(seed)  # noqa: NPY002
        random.seed(seed)
        info = torch.utils.data.get_worker_info()
        augmentation = getattr(info.dataset, "augmentation", None)
        if hasattr(augmentation, "set_random_seed"):
            augmentation.set_random_seed(seed)


def _initialise(model, init: str) -> None:
    """Load weights for ``--init PATH`` (a model folder or a checkpoint), shape-matching by key."""
    import torch
    from safetensors.torch import load_file

    if init in ("none", "imagenet"):
        return
    path = Path(init)
    if path.is_dir():
        state = load_file(str(path / "model.safetensors"))
    elif path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=False)["model"]
    else:
        raise HistobatchError("--init: no model folder or checkpoint here", path)
    own = model.network.state_dict()
    usable = {
        k: v.float() if v.is_floating_point() else v
        for k, v in state.items()
        if k in own and own[k].shape == v.shape
    }
    skipped = sorted(set(own) - set(usable))
    model.network.load_state_dict(usable, strict=False)
    logger.info(
        "initialised from %s (%d tensors; %d left as new: %s)",
        path,
        len(usable),
        len(skipped),
        ", ".join(skipped[:4]),
    )


def _set_trainable(network, freeze: str) -> list:
    if freeze not in ("none", "encoder"):
        raise HistobatchError(f"unknown freeze option {freeze!r}; use none or encoder")
    for parameter in network.parameters():
        parameter.requires_grad = True
    if freeze == "encoder":
        for parameter in network.encoder.parameters():
            parameter.requires_grad = False
    return [p for p in network.parameters() if p.requires_grad]


def _reset_head(network) -> None:
    for module in network.segmentation_head.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()


def _stage_sources(stage: StageSpec, config: TrainConfig):
    from histobatch.train.sources import read_sources

    return read_sources(stage.data, config.val_fraction, config.seed)


def _type_weights(stage: StageSpec, train_samples, n_classes: int):
    """The stage's type-loss weights as a tensor, or ``None``."""
    import torch

    from histobatch.train.losses import balanced_type_weights

    spec = stage.type_weights
    if spec in (None, "none"):
        return None
    if spec == "balanced":
        counts = np.zeros(n_classes, np.int64)
        for sample in train_samples:
            if sample.type_map is not None:
                counts += np.bincount(sample.type_map.ravel(), minlength=n_classes)[:n_classes]
        if not counts.sum():
            return None
        return balanced_type_weights(counts)
    if isinstance(spec, list) and len(spec) == n_classes:
        return torch.tensor([float(v) for v in spec])
    raise HistobatchError(
        f"stage {stage.name}: type_weights must be none, balanced or {n_classes} numbers"
    )


def train(
    config: TrainConfig, resume: bool = False, progress: bool = True, export_only: bool = False
) -> Path:
    """Run every stage of ``config``; return the folder of the trained model.

    Checkpoints after every epoch; with ``resume`` a run continues from its last checkpoint, giving
    the same result as an uninterrupted run on the CPU. With ``export_only`` the model folder and
    figures are written from the last checkpoint without training further (the epochs actually
    trained are recorded in the model's provenance).
    """
    import torch
    from tqdm import tqdm

    from histobatch.device import autocast_dtype, configure_threads, resolve_device
    from histobatch.model import CONSEP4_CLASSES, CONSEP4_COLORS, ModelConfig, new_model, save_model
    from histobatch.train.augment import build_augmentation
    from histobatch.train.data import CropDataset
    from histobatch.train.losses import nucleus_loss
    from histobatch.train.sources import sampling_probabilities, source_name
    from histobatch.train.validation import validate_sources

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    if device == "cpu":
        configure_threads(config.threads)
    dtype = autocast_dtype(device, config.precision)
    class_names = config.class_names or list(CONSEP4_CLASSES)
    colors = [list(c) for c in CONSEP4_COLORS][: len(class_names)]
    while len(colors) < len(class_names):
        colors.append([int(v) for v in np.random.default_rng(len(colors)).integers(0, 255, 3)])
    model_config = ModelConfig(
        name=config.name,
        architecture=config.architecture,
        encoder=config.encoder,
        decoder_channels=list(config.decoder_channels),
        class_names=class_names,
        class_colors=colors,
        mpp=config.mpp,
        separation=config.separation,
        pixel_shuffle=config.pixel_shuffle,
        refine_channels=config.refine_channels,
    )
    _seed_everything(config.seed)
    model = new_model(model_config, "imagenet" if config.init == "imagenet" else None)
    _initialise(model, config.init)
    network = model.network.to(device).to(memory_format=torch.channels_last)

    checkpoint_path = out / "checkpoint.pt"
    history: list[dict] = []
    start_stage, start_epoch, state = 0, 0, None
    if (resume or export_only) and checkpoint_path.is_file():
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        network.load_state_dict(state["model"])
        history = state["history"]
        start_stage, start_epoch = state["stage"], state["epoch"]
        logger.info("resuming at stage %d epoch %d", start_stage, start_epoch)
    elif export_only:
        raise HistobatchError("no checkpoint to export in this run folder", checkpoint_path)
    if export_only:
        start_stage = len(config.stages)
    started = time.time() - (state["elapsed"] if state else 0.0)

    last_val = None
    for stage_index, stage in enumerate(config.stages):
        if stage_index < start_stage:
            continue
        sources = _stage_sources(stage, config)
        train_samples, probabilities = sampling_probabilities(sources)
        if not train_samples:
            raise HistobatchError(f"stage {stage.name}: no training images")
        if stage.reset_head and not (state and stage_index == start_stage and start_epoch > 0):
            _reset_head(network)
        parameters = _set_trainable(network, stage.freeze)
        type_weights = _type_weights(stage, train_samples, model_config.n_classes)
        if config.np_type_power and type_weights is None:
            logger.warning(
                "stage %s: np_type_power %g has no effect without type_weights",
                stage.name,
                config.np_type_power,
            )
        if type_weights is not None:
            logger.info(
                "stage %s: type weights %s",
                stage.name,
                ", ".join(
                    f"{n} {w:.2f}" for n, w in zip(class_names, type_weights.tolist(), strict=True)
                ),
            )
        per_epoch = stage.samples_per_epoch or max(
            len(train_samples),
            int(sum(s.inst_map.size for s in train_samples) / config.crop_size**2),
        )
        steps = per_epoch // config.batch_size
        augmentation = build_augmentation(config.augment, config.crop_size)
        dataset = CropDataset(
            train_samples,
            augmentation,
            model_config.mean,
            model_config.std,
            steps * config.batch_size,
            model_config.separation,
            config.contact_weight,
            probabilities,
            config.crop_size,
        )
        optimizer = torch.optim.AdamW(parameters, lr=stage.lr, weight_decay=stage.weight_decay)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=stage.lr,
            total_steps=max(stage.schedule_epochs or 0, stage.epochs) * steps,
            pct_start=0.1,
        )
        first_epoch = 0
        if state and stage_index == start_stage and start_epoch > 0:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            first_epoch = start_epoch
        logger.info(
            "stage %s: %d train / %d val images, %d epochs x %d steps, lr %g, freeze %s",
            stage.name,
            len(train_samples),
            sum(len(source.val) for source in sources),
            stage.epochs,
            steps,
            stage.lr,
            stage.freeze,
        )
        for epoch in range(first_epoch, stage.epochs):
            epoch_seed = config.seed * 1_000_003 + stage_index * 10_007 + epoch
            rng = np.random.default_rng(epoch_seed)
            torch.manual_seed(epoch_seed)
            random.seed(epoch_seed)
            np.random.seed(epoch_seed % 2**32)  # noqa: NPY002
            if hasattr(augmentation, "set_random_seed"):
                augmentation.set_random_seed(epoch_seed)
            dataset.reshuffle(rng)
            loader = torch.utils.data.DataLoader(
                dataset,
                batch_size=config.batch_size,
                shuffle=False,
                num_workers=config.workers,
                worker_init_fn=_WorkerSeeder(epoch_seed) if config.workers else None,
                pin_memory=device.startswith("cuda"),
                drop_last=True,
            )
            network.train()
            if stage.freeze == "encoder":
                network.encoder.eval()
            running, parts_sum = 0.0, {}
            bar = tqdm(
                loader,
                desc=f"{stage.name} {epoch + 1}/{stage.epochs}",
                disable=not progress,
                leave=False,
            )
            for step, (image, np_t, hv_t, tp_t, has_types, sep_w) in enumerate(bar, start=1):
                image = image.to(device).contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.split(":")[0], dtype=dtype, enabled=dtype is not None):
                    output = network(image)
                loss, parts = nucleus_loss(
                    output,
                    np_t.to(device),
                    hv_t.to(device),
                    tp_t.to(device),
                    has_types.to(device),
                    type_weights,
                    model_config.separation,
                    sep_w.to(device) if config.contact_weight else None,
                    config.separation_weight,
                    config.np_type_power,
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                running += parts["total"]
                for key, value in parts.items():
                    parts_sum[key] = parts_sum.get(key, 0.0) + value
                bar.set_postfix(loss=f"{running / step:.3f}")
            record: dict[str, Any] = {
                "stage": stage.name,
                "epoch": epoch + 1,
                "lr": stage.lr,
                "lr_end": float(scheduler.get_last_lr()[0]),
                "train_loss": running / max(steps, 1),
                **{
                    f"train_loss_{k}": v / max(steps, 1)
                    for k, v in parts_sum.items()
                    if k != "total"
                },
            }
            if (epoch + 1) % max(config.val_every, 1) == 0 or epoch + 1 == stage.epochs:
                val = validate_sources(
                    network, sources, model_config, device, dtype, config.val_margin
                )
                record.update(val)
                last_val = val or last_val
            record["elapsed_s"] = round(time.time() - started, 1)
            history.append(record)
            logger.info(
                "%s epoch %d/%d: loss %.4f val_loss %s np-dice %.3f AJI %.3f PQ %.3f F_d %.3f "
                "mIoU %s F_c %s",
                stage.name,
                epoch + 1,
                stage.epochs,
                record["train_loss"],
                f"{record.get('val_loss', float('nan')):.4f}",
                record.get("val_np_dice", float("nan")),
                record.get("val_aji", float("nan")),
                record.get("val_pq", float("nan")),
                record.get("val_f_d", float("nan")),
                f"{record['val_miou']:.3f}" if "val_miou" in record else "-",
                " ".join(f"{v:.2f}" for v in record.get("val_f_c", {}).values()) or "-",
            )
            torch.save(
                {
                    "model": network.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "history": history,
                    "stage": stage_index,
                    "epoch": epoch + 1,
                    "elapsed": time.time() - started,
                },
                checkpoint_path.with_suffix(".tmp"),
            )
            checkpoint_path.with_suffix(".tmp").replace(checkpoint_path)
            write_history(out, history)
        state = None
        start_epoch = 0
        # Mark the stage as finished so a resume starts at the next one.
        torch.save(
            {
                "model": network.state_dict(),
                "optimizer": {},
                "scheduler": {},
                "history": history,
                "stage": stage_index + 1,
                "epoch": 0,
                "elapsed": time.time() - started,
            },
            checkpoint_path.with_suffix(".tmp"),
        )
        checkpoint_path.with_suffix(".tmp").replace(checkpoint_path)

    network.eval()
    if last_val is None:  # export only: the last validation of the history
        last_val = next((h for h in reversed(history) if "val_loss" in h), None)
        if last_val:
            last_val = {k: v for k, v in last_val.items() if k.startswith("val_")}
    # The last stage's data, read once for the threshold tuning and the final figures.
    sources = _stage_sources(config.stages[-1], config)
    if config.tune_postprocess:
        from histobatch.train.thresholds import tune_postprocess

        val_samples = [sample for source in sources for sample in source.val]
        if val_samples:
            best, table = tune_postprocess(
                network, val_samples, model_config, device, dtype, margin=config.val_margin
            )
            model_config.postprocess = best
            (out / "postprocess_tuning.json").write_text(json.dumps(table, indent=1) + "\n")
            last_val = validate_sources(
                network, sources, model_config, device, dtype, config.val_margin
            )
    model_config.provenance = {
        "recipe": [asdict(s) for s in config.stages],
        "init": config.init,
        "seed": config.seed,
        "crop_size": config.crop_size,
        "batch_size": config.batch_size,
        "augment": config.augment,
        "contact_weight": config.contact_weight,
        "separation_weight": config.separation_weight,
        "np_type_power": config.np_type_power,
        "data": sorted({source_name(d) for stage in config.stages for d in stage.data}),
        "precision": str(dtype).replace("torch.", "") if dtype else "fp32",
        "device": device,
        "train_time_s": round(time.time() - started, 1),
        "epochs_trained": {
            stage.name: sum(1 for h in history if h["stage"] == stage.name)
            for stage in config.stages
        },
    }
    if last_val:
        model_config.metrics = {
            "validation": {k: v for k, v in last_val.items() if k != "val_confusion"}
        }
    model.network = network.to("cpu").to(memory_format=torch.contiguous_format)
    model_dir = save_model(model, out / "model")
    write_final_figures(
        out, network, sources, model_config, "cpu", dtype if device == "cpu" else None
    )
    logger.info("model written to %s", model_dir)
    return model_dir
