"""Batched network inference on tiles, with tile reading overlapped with compute."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from histobatch.model import NucleusModel
from histobatch.tiling import Tile

#: Flip axes of each test-time copy (height 2, width 3 of a batch), by number of copies.
FLIP_DIMS: dict[int, tuple[tuple[int, ...], ...]] = {
    1: ((),),
    2: ((), (3,)),
    4: ((), (3,), (2,), (2, 3)),
}


class Predictor:
    """Runs a nucleus model on batches of RGB tiles.

    Parameters
    ----------
    model
        A loaded model (its network is moved to ``device``).
    device
        Concrete torch device (see :func:`histobatch.device.resolve_device`).
    precision
        ``auto|fp32|bf16|fp16``; ``auto`` is fp16 autocast on CUDA and bf16 only on CPUs with
        native bf16 support, otherwise fp32.
    flips
        Test-time augmentation: the maps are averaged over this many flipped copies of each
        batch (1: none; 2: + left-right; 4: + up-down and both), at as many times the compute.
        Every map is a per-pixel scalar that flips with the image, so the copies are flipped
        back and averaged.
    """

    #: What runs the network (recorded in the run fingerprint and the summary).
    runtime = "torch"

    def __init__(
        self,
        model: NucleusModel,
        device: str = "cpu",
        precision: str = "auto",
        flips: int = 1,
    ) -> None:
        import torch

        from histobatch.device import autocast_dtype

        self.model = model
        self.device = torch.device(device)
        self.dtype = autocast_dtype(device, precision)
        self.network = model.network.to(self.device).eval()
        self.network = self.network.to(memory_format=torch.channels_last)
        config = model.config
        self._mean = torch.tensor(config.mean, device=self.device).view(1, 3, 1, 1) * 255
        self._std = torch.tensor(config.std, device=self.device).view(1, 3, 1, 1) * 255
        if flips not in FLIP_DIMS:
            raise ValueError(f"flips must be one of {sorted(FLIP_DIMS)}, not {flips}")
        self.flip_dims = FLIP_DIMS[flips]

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Maps for a batch of tiles.

        Parameters
        ----------
        batch
            ``(B, H, W, 3)`` uint8 RGB.

        Returns
        -------
        numpy.ndarray
            ``(B, 2 + K, H, W)`` float32: nuclear probability, centre distance (0 at a nucleus'
            centre, 1 at its rim, whatever the model's separation head; see
            :func:`centre_distance`), then K class probabilities.
        """
        import torch

        with torch.inference_mode():
            tensor = torch.from_numpy(batch).to(self.device, non_blocking=True)
            tensor = tensor.permute(0, 3, 1, 2).float()
            tensor = ((tensor - self._mean) / self._std).contiguous(
                memory_format=torch.channels_last
            )
            maps = None
            for dims in self.flip_dims:
                flipped = torch.flip(tensor, dims) if dims else tensor
                with torch.autocast(
                    self.device.type, dtype=self.dtype, enabled=self.dtype is not None
                ):
                    out = self.network(flipped)
                copy = output_to_maps(out.float(), self.model.config)
                copy = torch.flip(copy, dims) if dims else copy
                maps = copy if maps is None else maps.add_(copy)
            if len(self.flip_dims) > 1:
                maps /= len(self.flip_dims)
            return maps.cpu().numpy()


def normalise(image: np.ndarray, mean: list[float], std: list[float]) -> np.ndarray:
    """``(H, W, 3)`` uint8 -> ``(3, H, W)`` float32 normalised with the model's mean and std."""
    array = image.astype(np.float32) / 255.0
    array = (array - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def output_to_maps(out, config):
    """``(B, 2 + K, H, W)`` maps (nuclear probability, centre distance, K class probabilities)
    from a ``(B, 1 + S + K, H, W)`` raw float network output of a model with ``config``."""
    import torch

    offset = config.type_offset
    return torch.cat(
        [
            torch.sigmoid(out[:, :1]),
            centre_distance(out[:, 1:offset], config.separation),
            torch.softmax(out[:, offset:], 1),
        ],
        dim=1,
    )


def centre_distance(separation_maps, kind: str):
    """Normalised distance to the nucleus centre, ``(B, 1, H, W)`` in [0, 1], from the raw output
    of a separation head.

    ``hv``: the Chebyshev norm ``max(|h|, |v|)`` of the horizontal/vertical maps (each scaled per
    nucleus, so the central region exists for every nucleus whatever its size, and pixels on a
    contact line between two nuclei, where the maps jump from +1 to -1, are far from both centres).
    ``distance``: one minus the predicted distance to the boundary.
    ``marker``: one minus the probability of a nucleus core.
    """
    import torch

    if kind == "hv":
        return torch.amax(separation_maps.clamp(-1, 1).abs(), dim=1, keepdim=True)
    if kind == "distance":
        return 1 - separation_maps[:, :1].clamp(0, 1)
    if kind == "marker":
        return 1 - torch.sigmoid(separation_maps[:, :1])
    raise ValueError(f"unknown separation {kind!r}")


def read_ahead(
    tiles: Iterable[Tile],
    read: Callable[[Tile], np.ndarray],
    batch_size: int,
    workers: int = 2,
) -> Iterator[tuple[list[Tile], np.ndarray]]:
    """Yield ``(tiles, pixels)`` batches, reading the next batches in threads while the caller
    computes on the current one. At most ``2 * batch_size`` tiles are in memory at once.
    """
    tiles = list(tiles)
    if not tiles:
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="read") as pool:
        pending: deque = deque()
        position = 0
        limit = 2 * batch_size
        while position < len(tiles) or pending:
            while position < len(tiles) and len(pending) < limit:
                tile = tiles[position]
                pending.append((tile, pool.submit(read, tile)))
                position += 1
            take = min(batch_size, len(pending))
            group = [pending.popleft() for _ in range(take)]
            yield [t for t, _ in group], np.stack([f.result() for _, f in group])


def predict_full(
    network,
    image: np.ndarray,
    mean,
    std,
    device: str,
    dtype,
    multiple: int = 32,
    margin: int = 0,
) -> np.ndarray:
    """Raw network output ``(C, H, W)`` float32 for one whole image (training-time validation).

    The image is mirrored by ``margin`` pixels on every side (as ``segment`` mirrors a plain
    image into its tile margins), then to a multiple of ``multiple`` (the model's
    :attr:`~histobatch.model.ModelConfig.size_multiple`); the output is cropped back.
    """
    import torch

    h, w = image.shape[:2]
    ph, pw = (-(h + 2 * margin)) % multiple, (-(w + 2 * margin)) % multiple
    pad = ((margin, margin + ph), (margin, margin + pw), (0, 0))
    padded = np.pad(image, pad, mode="reflect")
    tensor = torch.from_numpy(normalise(padded, mean, std))[None].to(device)
    with (
        torch.inference_mode(),
        torch.autocast(device.split(":")[0], dtype=dtype, enabled=dtype is not None),
    ):
        out = network(tensor)
    return out.float()[0, :, margin : margin + h, margin : margin + w].cpu().numpy()


def predict_image(network, image: np.ndarray, model_config, device: str, dtype, margin: int = 0):
    """:func:`predict_full` with the normalisation and size multiple of ``model_config``."""
    return predict_full(
        network,
        image,
        model_config.mean,
        model_config.std,
        device,
        dtype,
        model_config.size_multiple,
        margin,
    )


def raw_to_maps(raw: np.ndarray, model_config) -> np.ndarray:
    """``(2 + K, H, W)`` maps as :class:`Predictor` returns them, from one image's raw network
    output ``(C, H, W)``."""
    import torch

    return output_to_maps(torch.from_numpy(raw)[None], model_config)[0].numpy()
