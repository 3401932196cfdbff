"""Where each dataset lives under ``--data-root``.

``--data-root DIR`` may point at one dataset's own folder or at a folder that
holds several of them under their usual archive names:

    DIR/CUB_200_2011/   images.txt, image_class_labels.txt, bounding_boxes.txt, images/
    DIR/cars196/        cars_annos.mat, car_ims/
    DIR/Stanford_Online_Products/   Ebay_train.txt, Ebay_test.txt, <class folders>/
    DIR/InShop/         list_eval_partition.txt, img/
"""

from __future__ import annotations

from pathlib import Path

DATASET_DIRS = {
    "cub200": "CUB_200_2011",
    "cars196": "cars196",
    "sop": "Stanford_Online_Products",
    "inshop": "InShop",
}
MARKER_FILES = {
    "cub200": "images.txt",
    "cars196": "cars_annos.mat",
    "sop": "Ebay_train.txt",
    "inshop": "list_eval_partition.txt",
}


def dataset_root(dataset: str, root: Path) -> Path:
    """The folder holding ``dataset``'s official files: ``root`` itself when its
    marker file is there, else ``root/<usual folder name>``."""
    root = Path(root)
    if (root / MARKER_FILES[dataset]).exists():
        return root
    return root / DATASET_DIRS[dataset]
