"""What a slide is, before a long run: format, pyramid, µm/px, objective, associated images."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def slide_info(path: str | Path, mpp: float | None = None) -> dict[str, Any]:
    """Describe one slide file.

    Parameters
    ----------
    path
        The slide.
    mpp
        µm/px overriding the metadata (as ``segment --mpp``).

    Returns
    -------
    dict
        ``path, format, file_bytes, dimensions, levels [{level, width, height, downsample}],
        mpp, mpp_source, objective_power, associated_images {name: [w, h]}, vendor_properties``.

    Raises
    ------
    histobatch.errors.SlideError
        When the file cannot be opened (one line naming the file and the fix).
    """
    from histobatch.slide import open_slide

    path = Path(path)
    with open_slide(path, mpp=mpp, require_mpp=False) as slide:
        return {
            "path": str(path),
            "format": slide.format,
            "file_bytes": path.stat().st_size,
            "dimensions": list(slide.dimensions),
            "levels": [
                {"level": i, "width": w, "height": h, "downsample": round(d, 4)}
                for i, ((w, h), d) in enumerate(
                    zip(slide.level_dimensions, slide.level_downsamples, strict=True)
                )
            ],
            "mpp": slide.mpp,
            "mpp_source": slide.mpp_source,
            "objective_power": slide.objective_power,
            "associated_images": {k: list(v) for k, v in slide.associated_images.items()},
            "vendor_properties": len(slide.properties),
        }


def format_info(info: dict[str, Any]) -> str:
    """Human-readable lines for :func:`slide_info`'s result."""
    mpp = (
        f"{info['mpp']:.4g} µm/px ({info['mpp_source']})"
        if info["mpp"]
        else "unknown: pass --mpp to segment (e.g. --mpp 0.25 for 40x, 0.5 for 20x)"
    )
    width, height = info["dimensions"]
    lines = [
        f"{info['path']}",
        f"  format      {info['format']}, {info['file_bytes'] / 1e6:,.1f} MB",
        f"  size        {width:,} x {height:,} px"
        + (
            f" = {width * info['mpp'] / 1000:.2f} x {height * info['mpp'] / 1000:.2f} mm"
            if info["mpp"]
            else ""
        ),
        f"  µm/px       {mpp}",
        f"  objective   {info['objective_power']:g}x"
        if info["objective_power"]
        else "  objective   not recorded",
        f"  levels      {len(info['levels'])}",
    ]
    for level in info["levels"]:
        lines.append(
            f"    {level['level']}: {level['width']:,} x {level['height']:,} "
            f"(downsample {level['downsample']:g})"
        )
    associated = info["associated_images"]
    lines.append(
        "  associated  "
        + (", ".join(f"{k} {w}x{h}" for k, (w, h) in associated.items()) if associated else "none")
    )
    return "\n".join(lines)
