"""Training throughput on this machine: megapixels of network input per second of one optimiser
step (forward, loss, backward, AdamW), over threads, batch, crop size, memory format,
torch.compile, the pixel-shuffle network and bf16 autocast (where the CPU has it); plus the
cost of making the augmented crops with their targets (on a 2-core CPU the loader runs in the
training process, so its time adds to every step).

    python bench/train_speed.py                 # the full grid (~10 min on 2 cores)
    python bench/train_speed.py --quick         # three rows

Random images and real-looking targets (instance maps of random discs); the network is the
default model's architecture (``--encoder``, ``--separation``). Run alone: another process on the
cores halves every figure. Appends the table to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from results import DATA, publish


def _targets(batch: int, crop: int, separation: str, rng: np.random.Generator):
    import torch

    from histobatch.targets import separation_targets

    insts = np.zeros((batch, crop, crop), np.int32)
    yy, xx = np.mgrid[:crop, :crop]
    for b in range(batch):
        for label in range(1, crop * crop // 400 + 1):
            cy, cx = rng.integers(0, crop, 2)
            r = rng.uniform(3, 8)
            insts[b][(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = label
    sep = np.stack([separation_targets(i, separation) for i in insts])
    types = (insts % 4 + 1) * (insts > 0)
    return (
        torch.from_numpy((insts > 0).astype(np.float32)),
        torch.from_numpy(sep),
        torch.from_numpy(types.astype(np.int64)),
        torch.ones(batch, dtype=torch.bool),
    )


def step_throughput(
    threads: int,
    batch: int,
    crop: int,
    channels_last: bool,
    compile_: bool,
    encoder: str,
    separation: str,
    steps: int,
    pixel_shuffle: int = 1,
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16),
    bf16: bool = False,
) -> float:
    """Megapixels of input per second of training steps (after warm-up steps)."""
    import torch

    from histobatch.model import ModelConfig, build_network
    from histobatch.train.losses import nucleus_loss

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = ModelConfig(
        encoder=encoder,
        separation=separation,
        mpp=0.5,
        pixel_shuffle=pixel_shuffle,
        decoder_channels=list(decoder_channels),
    )
    network = build_network(config)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    network = network.to(memory_format=fmt).train()
    model = torch.compile(network) if compile_ else network
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4)
    rng = np.random.default_rng(0)
    image = torch.randn(batch, 3, crop, crop).contiguous(memory_format=fmt)
    np_t, sep_t, tp_t, has = _targets(batch, crop, separation, rng)

    def one_step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(image)
        loss, _ = nucleus_loss(out, np_t, sep_t, tp_t, has, None, separation)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3 if compile_ else 2):
        one_step()
    started = time.perf_counter()
    for _ in range(steps):
        one_step()
    elapsed = time.perf_counter() - started
    return batch * crop * crop * steps / elapsed / 1e6


def loader_throughput(crop: int, separation: str, n: int) -> float:
    """Megapixels per second of augmented crops with targets from real consep4 crops at 20x."""
    from histobatch.model import IMAGENET_MEAN, IMAGENET_STD
    from histobatch.train.augment import build_augmentation
    from histobatch.train.data import CropDataset
    from histobatch.train.datasets import read_dataset

    samples = read_dataset("consep", DATA / "consep4" / "train", "identity", scale=0.5)[:64]
    dataset = CropDataset(
        samples, build_augmentation("default", crop), IMAGENET_MEAN, IMAGENET_STD, n, separation
    )
    dataset.reshuffle(np.random.default_rng(0))
    started = time.perf_counter()
    for index in range(n):
        dataset[index]
    return n * crop * crop / (time.perf_counter() - started) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="resnet18")
    parser.add_argument("--separation", default="distance")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()

    from histobatch.device import cpu_supports_bf16

    # (threads, batch, crop, channels_last, compile, pixel_shuffle, bf16)
    grid = [
        (2, 16, 128, True, False, 1, False),
        (1, 16, 128, True, False, 1, False),
        (2, 16, 128, False, False, 1, False),
        (2, 8, 128, True, False, 1, False),
        (2, 32, 128, True, False, 1, False),
        (2, 4, 256, True, False, 1, False),
        (2, 8, 256, True, False, 1, False),
        (2, 8, 256, False, False, 1, False),
        (2, 16, 128, True, True, 1, False),
        (2, 16, 128, False, True, 1, False),
        # the default model's network (40x input and output, 20x grid inside)
        (2, 8, 256, True, False, 2, False),
        (2, 8, 384, True, False, 2, False),
        (2, 4, 512, True, False, 2, False),
    ]
    if cpu_supports_bf16():  # bf16 autocast only where the CPU has it natively
        grid += [
            (2, 8, 128, True, False, 1, True),
            (2, 8, 384, True, False, 2, True),
            (2, 4, 512, True, False, 2, True),
        ]
    if args.quick:
        grid = grid[:3]
    rows = [
        "| threads | batch | crop | channels_last | torch.compile | pixel shuffle | bf16 | Mpx/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    best = (0.0, None)
    for threads, batch, crop, cl, comp, shuffle, bf16 in grid:
        decoder = (256, 128, 64, 32, 16 if shuffle == 1 else 32)
        try:
            mpx = step_throughput(
                threads,
                batch,
                crop,
                cl,
                comp,
                args.encoder,
                args.separation,
                args.steps,
                shuffle,
                decoder,
                bf16,
            )
            cell = f"{mpx:.3f}"
        except Exception as exc:  # e.g. torch.compile without a working compiler
            mpx, cell = 0.0, f"failed: {type(exc).__name__}"
        rows.append(
            f"| {threads} | {batch} | {crop} | {cl} | {comp} | {shuffle} | {bf16} | {cell} |"
        )
        print(rows[-1], flush=True)
        if mpx > best[0]:
            best = (mpx, (threads, batch, crop, cl, comp, shuffle, bf16))
    loader = loader_throughput(128, args.separation, 128)
    rows += [
        "",
        "| metric | value |",
        "|---|---|",
        f"| fastest step Mpx/s | {best[0]:.3f} ({best[1]}) |",
        f"| crop making Mpx/s (augment + targets, 1 thread, real consep4 at 20x) | {loader:.3f} |",
        f"| epoch Mpx/s at the fastest (steps and crops in one process) | "
        f"{1 / (1 / best[0] + 1 / loader):.3f} |",
    ]
    publish(
        "Training throughput",
        f"U-Net {args.encoder}, separation {args.separation}, {args.steps} timed steps after "
        "warm-up; Mpx/s of network input (40x pixels for pixel shuffle 2); nothing else running.",
        rows,
    )


if __name__ == "__main__":
    main()
