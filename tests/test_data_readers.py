"""Readers of the official dataset layouts, on small files written here in those formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from benchmark.config import DataConfig
from benchmark.data import check_dataset, eval_batches, read_dataset
from benchmark.data.readers import DatasetFormatError
from benchmark.errors import ConfigError, DatasetNotFoundError


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def write_cub(root: Path, classes=(1, 100, 101, 200), per_class=3) -> dict:
    """CUB_200_2011 files; returns {image id: (relpath, class, (x, y, w, h))}.

    The default classes sit on both sides of the split (100 | 101) and at its ends."""
    entries = {}
    k = 0
    for c in classes:
        for j in range(per_class):
            k += 1
            entries[k] = (f"{c:03d}.Bird_{c}/Bird_{c}_{j}.jpg", c, (1.5 * k, 2.0 + j, 10.0 + c % 7, 5.25))
    _write(root / "images.txt", "".join(f"{k} {e[0]}\n" for k, e in entries.items()))
    # Official files are ordered by id, but nothing requires it: shuffle one.
    _write(root / "image_class_labels.txt", "".join(f"{k} {entries[k][1]}\n" for k in reversed(entries)))
    _write(
        root / "bounding_boxes.txt",
        "".join(f"{k} {b[0]} {b[1]} {b[2]} {b[3]}\n" for k, (_, _, b) in entries.items()),
    )
    (root / "images").mkdir(exist_ok=True)
    return entries


def write_cars(root: Path, records) -> None:
    """cars_annos.mat in the official layout: 1xN struct array `annotations`."""
    fields = ["relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test"]
    ann = np.empty((1, len(records)), dtype=[(f, object) for f in fields])
    for i, (rel, box, cls, test) in enumerate(records):
        ann[0, i] = (rel,) + tuple(np.array([[v]], dtype=np.uint16) for v in (*box, cls)) + (
            np.array([[test]], dtype=np.uint8),
        )
    root.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(root / "cars_annos.mat"), {"annotations": ann, "class_names": np.array([["a", "b"]], dtype=object)})


def test_cub_splits_labels_and_paths(tmp_path):
    entries = write_cub(tmp_path)
    s = read_dataset("cub200", tmp_path)
    assert s.query is None and s.gallery is None and s.val is None
    assert len(s.train) == 6 and len(s.test) == 6
    assert s.train.boxes is None and s.test.boxes is None
    # classes 1,100 -> 0,1 in train; 101,200 -> 0,1 in test
    np.testing.assert_array_equal(s.train.labels, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(s.test.labels, [0, 0, 0, 1, 1, 1])
    assert s.train.labels.dtype == np.int64
    assert s.train.paths[0] == str(tmp_path / "images" / entries[1][0])
    assert s.test.paths[-1] == str(tmp_path / "images" / entries[12][0])
    assert all(Path(p).is_absolute() for p in s.train.paths + s.test.paths)


def test_cub_cropped_boxes_are_x1y1x2y2(tmp_path):
    entries = write_cub(tmp_path)
    s = read_dataset("cub200", tmp_path, cropped=True)
    x, y, w, h = entries[7][2]  # first test image
    np.testing.assert_allclose(s.test.boxes[0], [x, y, x + w, y + h])
    assert s.train.boxes.shape == (6, 4)


def test_cub_missing_class_is_a_one_line_format_error(tmp_path):
    write_cub(tmp_path)
    lines = (tmp_path / "image_class_labels.txt").read_text().splitlines()
    _write(tmp_path / "image_class_labels.txt", "\n".join(lines[1:]) + "\n")  # drops id 12
    with pytest.raises(DatasetFormatError, match="no class for image id 12") as exc:
        read_dataset("cub200", tmp_path)
    assert "\n" not in str(exc.value)


def test_cub_bad_row_names_file_and_line(tmp_path):
    write_cub(tmp_path)
    _write(tmp_path / "images.txt", "1 a.jpg\n2\n")
    with pytest.raises(DatasetFormatError, match=r"images.txt:2: expected 2 columns"):
        read_dataset("cub200", tmp_path)


def test_cars_split_by_class_ignoring_test_flag(tmp_path):
    records = [
        ("car_ims/000001.jpg", (10, 20, 110, 90), 1, 1),  # test flag set, class 1 -> train
        ("car_ims/000002.jpg", (0, 0, 5, 5), 98, 0),
        ("car_ims/000003.jpg", (3, 4, 50, 60), 99, 0),  # test flag unset, class 99 -> test
        ("car_ims/000004.jpg", (1, 1, 2, 2), 196, 1),
        ("car_ims/000005.jpg", (7, 8, 9, 10), 1, 0),
    ]
    write_cars(tmp_path, records)
    s = read_dataset("cars196", tmp_path, cropped=True)
    assert [Path(p).name for p in s.train.paths] == ["000001.jpg", "000002.jpg", "000005.jpg"]
    assert [Path(p).name for p in s.test.paths] == ["000003.jpg", "000004.jpg"]
    np.testing.assert_array_equal(s.train.labels, [0, 1, 0])
    np.testing.assert_array_equal(s.test.labels, [0, 1])
    np.testing.assert_allclose(s.train.boxes[0], [10, 20, 110, 90])
    np.testing.assert_allclose(s.test.boxes[0], [3, 4, 50, 60])
    assert s.train.paths[0] == str(tmp_path / "car_ims" / "000001.jpg")
    assert read_dataset("cars196", tmp_path).train.boxes is None


def test_cars_mat_without_annotations(tmp_path):
    scipy.io.savemat(str(tmp_path / "cars_annos.mat"), {"other": np.zeros(3)})
    with pytest.raises(DatasetFormatError, match="no 'annotations'"):
        read_dataset("cars196", tmp_path)


def test_sop_reads_both_files_and_remaps(tmp_path):
    head = "image_id class_id super_class_id path\n"
    _write(tmp_path / "Ebay_train.txt", head + "1 1 1 bicycle_final/a.JPG\n2 5 1 bicycle_final/b.JPG\n3 1 1 bicycle_final/c.JPG\n")
    _write(tmp_path / "Ebay_test.txt", head + "1 11319 2 chair_final/d.JPG\n2 11320 2 chair_final/e.JPG\n")
    s = read_dataset("sop", tmp_path)
    np.testing.assert_array_equal(s.train.labels, [0, 1, 0])
    np.testing.assert_array_equal(s.test.labels, [0, 1])
    assert s.test.paths[1] == str(tmp_path / "chair_final" / "e.JPG")
    with pytest.raises(ConfigError, match="data.cropped"):
        read_dataset("sop", tmp_path, cropped=True)


def test_inshop_query_gallery_share_labels(tmp_path):
    rows = [
        ("img/MEN/Denim/id_00000001/01_1_front.jpg", "id_00000001", "train"),
        ("img/MEN/Denim/id_00000004/01_1_front.jpg", "id_00000004", "train"),
        ("img/WOMEN/Dresses/id_00000007/01_1_front.jpg", "id_00000007", "query"),
        ("img/WOMEN/Dresses/id_00000007/02_2_side.jpg", "id_00000007", "gallery"),
        ("img/WOMEN/Dresses/id_00000003/01_1_front.jpg", "id_00000003", "gallery"),
        ("img/WOMEN/Dresses/id_00000009/01_1_front.jpg", "id_00000009", "query"),
        ("img/WOMEN/Dresses/id_00000009/03_4_full.jpg", "id_00000009", "gallery"),
    ]
    # The official file aligns its columns with runs of spaces.
    body = "".join(f"{n}   {i}      {s}\n" for n, i, s in rows)
    _write(tmp_path / "list_eval_partition.txt", f"{len(rows)}\nimage_name item_id evaluation_status\n{body}")
    s = read_dataset("inshop", tmp_path)
    assert s.test is None
    np.testing.assert_array_equal(s.train.labels, [0, 1])
    # joint ids {3, 7, 9} -> 0, 1, 2
    np.testing.assert_array_equal(s.query.labels, [1, 2])
    np.testing.assert_array_equal(s.gallery.labels, [1, 0, 2])
    assert s.query.paths[0] == str(tmp_path / rows[2][0])
    with pytest.raises(ConfigError, match="data.cropped"):
        read_dataset("inshop", tmp_path, cropped=True)


def test_inshop_bad_status(tmp_path):
    _write(tmp_path / "list_eval_partition.txt", "1\nimage_name item_id evaluation_status\na.jpg id_00000001 val\n")
    with pytest.raises(DatasetFormatError, match="'val'"):
        read_dataset("inshop", tmp_path)


@pytest.mark.parametrize(
    "dataset, names",
    [
        ("cub200", ["images.txt", "image_class_labels.txt"]),
        ("cars196", ["cars_annos.mat"]),
        ("sop", ["Ebay_train.txt", "Ebay_test.txt"]),
        ("inshop", ["list_eval_partition.txt"]),
    ],
)
def test_check_dataset_one_line_names_missing_files_root_and_layout(tmp_path, dataset, names):
    (tmp_path / "images").mkdir()  # cub: only the annotation files are missing
    with pytest.raises(DatasetNotFoundError) as exc:
        check_dataset(dataset, tmp_path)
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith(f"{dataset}: missing ")
    for name in names:
        assert str(tmp_path / name) in msg
    assert f"--data-root {tmp_path}" in msg and "layout" in msg


def test_check_dataset_cub_cropped_needs_boxes_and_missing_root(tmp_path):
    write_cub(tmp_path)
    (tmp_path / "bounding_boxes.txt").unlink()
    check_dataset("cub200", tmp_path)  # boxes only needed when cropped
    with pytest.raises(DatasetNotFoundError, match="bounding_boxes.txt"):
        check_dataset("cub200", tmp_path, cropped=True)
    with pytest.raises(DatasetNotFoundError, match="does not exist") as exc:
        read_dataset("sop", tmp_path / "nowhere")
    assert "\n" not in str(exc.value)


def test_missing_image_is_reported_lazily_in_one_line(tmp_path):
    write_cub(tmp_path)
    splits = read_dataset("cub200", tmp_path)  # no image exists: reading the lists succeeds
    cfg = DataConfig(crop_size=8, resize_size=8, num_workers=2)
    with pytest.raises(DatasetNotFoundError) as exc:
        next(iter(eval_batches(cfg, splits.test, 4)))  # raised from a worker process
    msg = str(exc.value)
    assert "\n" not in msg and splits.test.paths[0] in msg
