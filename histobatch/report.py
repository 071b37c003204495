"""Self-contained HTML reports: one per slide (``OUT/<slide>/report.html``) and one per cohort.

Everything a person needs to judge a slide at a glance, with no network: the overview (tissue
outline, nuclei coloured by type), two full-resolution crops with nucleus contours, the type
composition and densities, morphology histograms per type, run metadata, and warnings for the
usual reasons to distrust a result. Pictures are embedded as base64 PNG/JPEG.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from histobatch.layout import MASKS_NAME, OVERVIEW_NAME, REPORT_NAME, SUMMARY_NAME, TABLE_NAME

logger = logging.getLogger(__name__)

COHORT_REPORT_NAME = "report.html"

#: Below this much tissue the statistics rest on few nuclei.
LOW_TISSUE_MM2 = 0.5
#: Typical H&E nuclear density is thousands per mm²; far below suggests focus, stain or domain.
LOW_DENSITY_PER_MM2 = 500.0
#: Mean optical densities of tissue pixels (skimage ``rgb2hed`` units) below which the stain is
#: suspect. CoNSeP and MoNuSeg H&E crops: haematoxylin 0.017-0.081, eosin 0.003-0.031 per image;
#: the same images faded to 30 % give 0.005, and a grey copy has no eosin at all.
LOW_HEMATOXYLIN_OD = 0.008
LOW_EOSIN_OD = 0.002

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;
max-width:1200px}
h1{font-size:1.5em;margin-bottom:0}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid
#ddd;padding-bottom:4px}.sub{color:#666;margin-top:4px}img{max-width:100%;border:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em}td,th{padding:3px 10px;border-bottom:1px solid #eee;
text-align:right}td:first-child,th:first-child{text-align:left}.warn{background:#fff4e5;
border-left:4px solid #f0a030;padding:6px 10px;margin:4px 0}.ok{color:#2a7a2a}
.row{display:flex;gap:16px;flex-wrap:wrap}.row>div{flex:1 1 380px}
"""


def _png(image: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _jpeg(image: np.ndarray, quality: int = 85) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).convert("RGB").save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _figure(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _img(src: str, alt: str) -> str:
    return f'<img src="{src}" alt="{html.escape(alt)}">'


def _table(rows: list[list[Any]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{html.escape(title)}</h2>{body}</section>'


def _page(title: str, subtitle: str, sections: list[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)} · histobatch</title><style>{STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><div class='sub'>{html.escape(subtitle)}</div>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )


def _write_atomic(path: Path, text: str) -> None:
    from histobatch.stats import temporary_name

    temporary = temporary_name(path)
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def stain_check(thumbnail: np.ndarray, tissue: np.ndarray) -> dict[str, float]:
    """Mean haematoxylin and eosin optical densities of the tissue pixels of a thumbnail."""
    import cv2
    from skimage.color import rgb2hed

    h, w = thumbnail.shape[:2]
    mask = cv2.resize(tissue.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
    if not mask.any():
        return {"hematoxylin_od": 0.0, "eosin_od": 0.0}
    hed = rgb2hed(thumbnail[mask].reshape(-1, 1, 3))
    return {"hematoxylin_od": float(hed[..., 0].mean()), "eosin_od": float(hed[..., 1].mean())}


def slide_warnings(summary: dict[str, Any], stain: dict[str, float] | None) -> list[str]:
    """Reasons to look twice at a slide's result."""
    warnings = []
    tissue = summary.get("tissue_area_mm2", 0.0)
    if tissue < LOW_TISSUE_MM2:
        warnings.append(
            f"Little tissue: {tissue:.2f} mm² (< {LOW_TISSUE_MM2} mm²); statistics rest on few "
            "nuclei."
        )
    density = summary.get("nucleus_density_per_mm2", 0.0)
    if tissue > 0 and density < LOW_DENSITY_PER_MM2:
        warnings.append(
            f"Few nuclei for the tissue: {density:,.0f} per mm² (< {LOW_DENSITY_PER_MM2:,.0f}); "
            "check focus, stain and whether the tissue resembles the model's training data."
        )
    if summary.get("mpp_source") == "--mpp":
        warnings.append(
            f"µm/px {summary.get('mpp')} was given with --mpp (not in the slide's metadata): a "
            "wrong value scales every nucleus; check it."
        )
    if stain is not None and (
        stain["hematoxylin_od"] < LOW_HEMATOXYLIN_OD or stain["eosin_od"] < LOW_EOSIN_OD
    ):
        warnings.append(
            f"Odd stain: mean optical density of the tissue is {stain['hematoxylin_od']:.3f} "
            f"haematoxylin, {stain['eosin_od']:.4f} eosin (H&E: at least {LOW_HEMATOXYLIN_OD} "
            f"and {LOW_EOSIN_OD}); faded, unstained, greyscale or not H&E."
        )
    return warnings


def full_resolution_crops(
    folder: Path, summary: dict[str, Any], size: int = 384, count: int = 2, contours: bool = True
):
    """Crops (model grid, full resolution) around the densest places of a segmented slide.

    Returns ``(pixels, x, y, nuclei)`` per crop: RGB with nucleus contours in their type colours
    (``contours=False``: the plain image), the top-left corner in slide pixels and the nuclei
    counted in the crop's grid cell.
    """
    import pandas as pd
    import zarr
    from skimage.segmentation import find_boundaries

    from histobatch.model import CONSEP4_COLORS
    from histobatch.resample import ModelSpace
    from histobatch.slide import open_slide

    table = pd.read_parquet(folder / TABLE_NAME, columns=["x", "y"])
    if table.empty:
        return []
    root = zarr.open_group(str(folder / MASKS_NAME), mode="r")
    instances, classes = root["instances"]["0"], root["classes"]["0"]
    meta = root["classes"].attrs["image-label"]
    colors = {c["label-value"]: c["rgba"][:3] for c in meta.get("colors", [])}
    lut = np.zeros((256, 3), np.uint8)
    for value, rgb in colors.items():
        lut[value] = rgb
    if not colors:
        lut[: len(CONSEP4_COLORS)] = CONSEP4_COLORS
    scale = summary["mpp"] / summary["model_mpp"]
    mx = (table["x"].to_numpy() + 0.5) * scale - 0.5
    my = (table["y"].to_numpy() + 0.5) * scale - 0.5
    height, width = instances.shape
    size = min(size, height, width)
    n_rows, n_cols = max(1, height // size), max(1, width // size)
    grid = np.histogram2d(
        my, mx, bins=[n_rows, n_cols], range=[[0, n_rows * size], [0, n_cols * size]]
    )[0]
    crops = []
    with open_slide(summary["slide_path"], mpp=summary["mpp"]) as slide:
        space = ModelSpace(slide, summary["model_mpp"])
        for flat in np.argsort(grid.ravel())[::-1][:count]:
            row, col = np.unravel_index(flat, grid.shape)
            y = int(min(row * size, height - size))
            x = int(min(col * size, width - size))
            pixels = space.read(x, y, size, size).copy()
            labels = np.asarray(instances[y : y + size, x : x + size])
            kinds = np.asarray(classes[y : y + size, x : x + size])
            if contours:
                edges = find_boundaries(labels, mode="inner")
                pixels[edges] = lut[kinds[edges]]
            crops.append((pixels, x / scale, y / scale, int(grid[row, col])))
    return crops


def _charts(folder: Path, summary: dict[str, Any]) -> dict[str, str]:
    """Composition/density bars and morphology histograms per type, as embedded PNGs."""
    import pandas as pd

    from histobatch.model import CONSEP4_CLASSES, CONSEP4_COLORS
    from histobatch.plots import _pyplot

    plt = _pyplot()
    types = summary["types"]
    names = list(types)
    palette = {n: np.array(c) / 255 for n, c in zip(CONSEP4_CLASSES, CONSEP4_COLORS, strict=True)}
    colors = [palette.get(n, (0.5, 0.5, 0.5)) for n in names]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 2.8))
    left.barh(names, [types[n]["fraction"] for n in names], color=colors)
    left.set_xlim(0, 1)
    left.set_xlabel("fraction of nuclei")
    left.invert_yaxis()
    right.barh(names, [types[n]["density_per_mm2"] for n in names], color=colors)
    right.set_xlabel("nuclei per mm² of tissue")
    right.invert_yaxis()
    charts = {"composition": _figure(fig)}

    table = pd.read_parquet(
        folder / TABLE_NAME, columns=["type", "area_um2", "eccentricity", "solidity"]
    )
    top_area = float(table.area_um2.quantile(0.99)) if len(table) else 80.0
    histograms = [
        ("area_um2", "area (µm²)", np.linspace(0, max(20.0, top_area), 40)),
        ("eccentricity", "eccentricity", np.linspace(0, 1, 30)),
        ("solidity", "solidity", np.linspace(0.5, 1, 30)),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3))
    for axis, (column, label, bins) in zip(axes, histograms, strict=True):
        for name, color in zip(names, colors, strict=True):
            values = table.loc[table["type"].astype(str) == name, column].to_numpy(float)
            if len(values):
                axis.hist(values, bins=bins, histtype="step", color=color, label=name, density=True)
        axis.set_xlabel(label)
    axes[0].set_ylabel("density")
    axes[-1].legend(fontsize=8)
    charts["morphology"] = _figure(fig)
    return charts


def _run_rows(summary: dict[str, Any], stain: dict[str, float] | None) -> list[list[str]]:
    model = summary.get("model", {})
    tiles = summary["tiles"]
    width, height = summary["dimensions"]
    timings = ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in summary.get("timings_s", {}).items())
    rows = [
        ["slide", summary["slide_path"]],
        ["format, size", f"{summary['format']}, {width:,} x {height:,} px"],
        ["µm/px", f"{summary['mpp']} ({summary['mpp_source']}); model {summary['model_mpp']}"],
        ["model", f"{model.get('name')} {model.get('version') or ''}"],
        ["device, precision", f"{summary.get('device')}, {summary.get('precision')}"],
        [
            "tiles",
            f"{tiles['with_tissue']} of {tiles['grid'][0] * tiles['grid'][1]} "
            f"(tile {tiles['tile_size']}, margin {tiles['margin']})",
        ],
        ["runtime", f"{summary['runtime_s']:.1f} s ({timings})"],
        ["histobatch", f"{summary.get('histobatch_version')}, {summary.get('created')}"],
    ]
    if stain:
        rows.append(
            [
                "stain (mean optical density)",
                f"haematoxylin {stain['hematoxylin_od']:.3f}, eosin {stain['eosin_od']:.3f}",
            ]
        )
    return rows


def write_slide_report(folder: str | Path) -> Path:
    """Write ``report.html`` into a finished slide folder (``OUT/<slide>``); return its path.

    Raises
    ------
    HistobatchError
        When ``folder`` is not a finished slide folder.
    """
    import cv2

    from histobatch.errors import HistobatchError

    folder = Path(folder)
    summary_path = folder / SUMMARY_NAME
    if not summary_path.is_file():
        raise HistobatchError("not a finished slide folder (no summary.json)", folder)
    summary = json.loads(summary_path.read_text())
    overview = cv2.cvtColor(cv2.imread(str(folder / OVERVIEW_NAME)), cv2.COLOR_BGR2RGB)
    if overview.shape[1] > 1400:
        factor = 1400 / overview.shape[1]
        overview = cv2.resize(overview, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    stain = summary.get("stain")
    warnings = slide_warnings(summary, stain)
    try:
        crops = full_resolution_crops(folder, summary)
    except Exception as exc:  # the slide may have moved since the run: say so, keep the rest
        logger.warning("%s: no full-resolution crops (%s)", folder.name, exc)
        warnings.append(f"No full-resolution crops: the slide could not be read ({exc}).")
        crops = []
    charts = _charts(folder, summary)

    types = summary["types"]
    type_rows = [
        [
            name,
            f"{t['count']:,}",
            f"{t['fraction']:.1%}",
            f"{t['density_per_mm2']:,.0f}",
            "" if t["mean_area_um2"] is None else f"{t['mean_area_um2']:.1f}",
        ]
        for name, t in types.items()
    ]
    meta_rows = _run_rows(summary, stain)
    crop_html = "".join(
        f"<div>{_img(_png(p), 'full-resolution crop')}<div class='sub'>level-0 x {x:,.0f}, "
        f"y {y:,.0f}; {n} nuclei centred here; contours coloured by type</div></div>"
        for p, x, y, n in crops
    )
    warning_html = (
        "".join(f"<div class='warn'>{html.escape(w)}</div>" for w in warnings)
        if warnings
        else "<div class='ok'>No warnings.</div>"
    )
    sections = [
        _section("warnings", "Warnings", warning_html),
        _section("overview", "Overview", _img(_jpeg(overview), "overview")),
        _section(
            "crops",
            "Full resolution",
            f"<div class='row'>{crop_html or '<div>No nuclei.</div>'}</div>",
        ),
        _section(
            "composition",
            "Type composition and density",
            _table(type_rows, ["type", "nuclei", "fraction", "per mm²", "mean area µm²"])
            + _img(charts["composition"], "composition"),
        ),
        _section("morphology", "Morphology per type", _img(charts["morphology"], "morphology")),
        _section("run", "Run", _table(meta_rows, ["", ""])),
    ]
    subtitle = (
        f"{summary['nucleus_count']:,} nuclei · {summary['tissue_area_mm2']:.2f} mm² tissue · "
        f"{summary['nucleus_density_per_mm2']:,.0f} nuclei/mm²"
    )
    text = _page(summary["slide_id"], subtitle, sections)
    path = folder / REPORT_NAME
    _write_atomic(path, text)
    return path


def write_cohort_report(out_dir: str | Path, cohort, plot_path: Path) -> Path:
    """Write ``OUT/report.html``: the cohort plot, one row per slide and links to slide reports."""
    out_dir = Path(out_dir)
    plot = base64.b64encode(plot_path.read_bytes()).decode() if plot_path.is_file() else ""
    rows = []
    for record in cohort.to_dict("records"):
        slide = str(record["slide"])
        link = (
            f'<a href="{html.escape(slide)}/{REPORT_NAME}">{html.escape(slide)}</a>'
            if (out_dir / slide / REPORT_NAME).is_file()
            else html.escape(slide)
        )
        if record.get("status") == "done":
            cells = [
                f"{record['nuclei']:,.0f}",
                f"{record['tissue_mm2']:.2f}",
                f"{record['nuclei_per_mm2']:,.0f}",
            ] + [
                f"{record.get(f'{t}_fraction', float('nan')):.1%}"
                for t in ("other", "inflammatory", "epithelial", "spindle")
            ]
        else:
            cells = [html.escape(str(record.get("error") or record.get("status")))] + [""] * 6
        rows.append(
            f"<tr><td>{link}</td><td>{html.escape(str(record.get('status')))}</td>"
            + "".join(f"<td>{c}</td>" for c in cells)
            + "</tr>"
        )
    done = int((cohort["status"] == "done").sum()) if len(cohort) else 0
    header = "".join(
        f"<th>{h}</th>"
        for h in [
            "slide",
            "status",
            "nuclei",
            "tissue mm²",
            "per mm²",
            "other",
            "inflammatory",
            "epithelial",
            "spindle",
        ]
    )
    picture = _img("data:image/png;base64," + plot, "cohort composition") if plot else ""
    sections = [
        _section("composition", "Type composition and density", picture),
        _section("slides", "Slides", f"<table><tr>{header}</tr>{''.join(rows)}</table>"),
    ]
    title = f"Cohort: {done} of {len(cohort)} slide(s) finished"
    text = _page(title, str(out_dir.resolve()), sections)
    path = out_dir / COHORT_REPORT_NAME
    _write_atomic(path, text)
    return path
