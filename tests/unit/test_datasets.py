"""Dataset readers on synthetic files in each layout and on the real data (skipped when absent)."""

import gzip

import numpy as np
import pytest
from PIL import Image

from histobatch.errors import HistobatchError
from histobatch.train.datasets import read_consep, read_dataset, read_instance_png, read_monuseg
from tests.conftest import real_data

APERIO_XML = """<Annotations MicronsPerPixel="0.252700">
 <Annotation Id="1"><Regions>
  <Region Id="1"><Vertices>
   <Vertex X="2" Y="3"/><Vertex X="12" Y="3"/><Vertex X="12" Y="9"/><Vertex X="2" Y="9"/>
  </Vertices></Region>
  <Region Id="2"><Vertices>
   <Vertex X="20" Y="20"/><Vertex X="30" Y="20"/><Vertex X="30" Y="30"/>
  </Vertices></Region>
  <Region Id="3"><Vertices><Vertex X="1" Y="1"/><Vertex X="2" Y="2"/></Vertices></Region>
 </Regions></Annotation>
</Annotations>
"""


def _monuseg_folder(folder, gzipped=False):
    (folder / "Images").mkdir(parents=True)
    (folder / "Annotations").mkdir()
    Image.fromarray(np.full((40, 36, 3), 200, np.uint8)).save(folder / "Images" / "TCGA-X.png")
    if gzipped:
        with gzip.open(folder / "Annotations" / "TCGA-X.xml.gz", "wt") as handle:
            handle.write(APERIO_XML)
    else:
        (folder / "Annotations" / "TCGA-X.xml").write_text(APERIO_XML)
    return folder


def test_monuseg_polygons_become_instances(tmp_path):
    (sample,) = read_monuseg(_monuseg_folder(tmp_path / "plain"))
    assert sample.name == sample.group == "TCGA-X" and sample.type_map is None
    assert sample.image.shape == (40, 36, 3) and sample.inst_map.shape == (40, 36)
    assert sorted(np.unique(sample.inst_map)) == [0, 1, 2]  # the 2-vertex region is skipped
    rect = sample.inst_map == 1
    ys, xs = np.nonzero(rect)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (3, 9, 2, 12)
    assert rect.sum() == 7 * 11
    triangle = (sample.inst_map == 2).sum()
    assert 50 <= triangle <= 70  # half of the 10x10 square, edge pixels included


def test_monuseg_reads_gzipped_annotations(tmp_path):
    (plain,) = read_monuseg(_monuseg_folder(tmp_path / "plain"))
    (packed,) = read_monuseg(_monuseg_folder(tmp_path / "gz", gzipped=True))
    assert np.array_equal(plain.inst_map, packed.inst_map)


def test_monuseg_without_annotation_names_the_image(tmp_path):
    folder = _monuseg_folder(tmp_path / "m")
    (folder / "Annotations" / "TCGA-X.xml").unlink()
    with pytest.raises(HistobatchError, match="no annotation TCGA-X.xml"):
        read_monuseg(folder)


def test_instance_png_layout_include_and_scale(tmp_path):
    (tmp_path / "Images").mkdir()
    (tmp_path / "Labels").mkdir()
    for name in ("image01", "image09"):
        inst = np.zeros((30, 40), np.uint16)
        inst[4:10, 5:15] = 1
        inst[20:28, 20:36] = 300  # labels above 255 survive
        Image.fromarray(np.full((30, 40, 3), 180, np.uint8)).save(
            tmp_path / "Images" / f"{name}.png"
        )
        Image.fromarray(inst).save(tmp_path / "Labels" / f"{name}.png")
    samples = read_instance_png(tmp_path)
    assert [s.name for s in samples] == ["image01", "image09"]
    assert sorted(np.unique(samples[0].inst_map)) == [0, 1, 300]
    (half,) = read_dataset("instance_png", tmp_path, "none", scale=0.5, include="image0[1-7]")
    assert half.name == "image01" and half.image.shape == (15, 20, 3)
    assert half.inst_map.shape == (15, 20) and sorted(np.unique(half.inst_map)) == [0, 1, 300]
    Image.fromarray(np.zeros((10, 10), np.uint16)).save(tmp_path / "Labels" / "image09.png")
    with pytest.raises(HistobatchError, match="sizes differ"):
        read_instance_png(tmp_path)


def test_unknown_layout_lists_the_choices(tmp_path):
    with pytest.raises(HistobatchError, match="consep, monuseg, instance_png"):
        read_dataset("pannuke", tmp_path, "none")


def test_real_monuseg_train():
    samples = read_monuseg(real_data("monuseg-train"))
    assert len(samples) == 13
    for sample in samples:
        assert sample.image.shape == (1000, 1000, 3)
        n = len(np.unique(sample.inst_map)) - 1
        assert 200 < n < 2000, (sample.name, n)  # hundreds of nuclei per 1000x1000 image
        assert 0.05 < (sample.inst_map > 0).mean() < 0.6


def test_real_cpm15_sizes_and_magnifications():
    samples = read_instance_png(real_data("cpm15"))
    assert len(samples) == 15
    for sample in samples:
        assert sample.inst_map.shape == sample.image.shape[:2]
        assert sample.inst_map.max() > 10
    sizes = {s.name: s.image.shape[:2] for s in samples}
    assert sizes["image10"] == (808, 1032) and sizes["image06"] == (392, 459)
    assert min(min(v) for v in sizes.values()) == 392


def test_real_consep4_types_are_the_merged_four():
    samples = read_consep(real_data("consep4", "train"), class_map="identity")
    assert len(samples) == 432
    assert len({s.group for s in samples}) == 27  # 27 source tiles, 16 crops each
    types = np.zeros(5, np.int64)
    for sample in samples:
        assert sample.image.shape == (256, 256, 3) and sample.inst_map.shape == (256, 256)
        types += np.bincount(sample.type_map.ravel(), minlength=5)[:5]
        assert ((sample.inst_map > 0) == (sample.type_map > 0)).all()
    assert (types[1:] > 0).all() and types[1] < types[2:].min()  # "other" is the rare one
