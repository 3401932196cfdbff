"""Reliability: files the harness loads run no code, a damaged checkpoint never
blocks a run, an unreachable tracking server fails fast in one line, damaged
datasets are reported, and paths from annotation files stay inside their root."""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.config import SyntheticConfig
from benchmark.errors import UserError
from benchmark.train import checkpoints


class _Boom:
    """A pickle that runs code when loaded with weights_only=False."""

    def __reduce__(self):
        return (os.system, (f"touch {_Boom.marker}",))


def _crafted(path: Path, marker: Path, wrap: bool = True) -> None:
    _Boom.marker = str(marker)
    obj = {"epoch": 0, "method": {}, "payload": _Boom()} if wrap else _Boom()
    with open(path, "wb") as fh:
        torch.save(obj, fh)


def test_a_crafted_pickle_runs_nothing_and_is_refused_in_one_line(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "final.pt"
    _crafted(path, marker)
    with pytest.raises(checkpoints.CheckpointError) as err:
        checkpoints.load(path)
    assert "refused" in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()


def test_a_crafted_resume_checkpoint_is_moved_aside_and_runs_nothing(tmp_path, capsys):
    marker = tmp_path / "ran"
    _crafted(tmp_path / "checkpoint.pt", marker)
    assert checkpoints.load_resume(tmp_path) is None
    assert not marker.exists() and not (tmp_path / "checkpoint.pt").exists()
    assert list(tmp_path.glob("checkpoint.pt.unreadable-*"))
    assert "refused" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncated", "empty", "random"])
def test_a_damaged_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys, damage):
    state = {"epoch": 3, "method": {"w": torch.arange(4.0)}, "fingerprint": "x", "selection": {}}
    checkpoints.save_resume(dict(state, epoch=2), tmp_path)
    checkpoints.save_resume(state, tmp_path)
    assert checkpoints.load_resume(tmp_path)["epoch"] == 3
    data = (tmp_path / "checkpoint.pt").read_bytes()
    bad = {"truncated": data[: len(data) // 2], "empty": b"",
           "random": np.random.default_rng(0).bytes(len(data))}[damage]
    (tmp_path / "checkpoint.pt").write_bytes(bad)
    got = checkpoints.load_resume(tmp_path)
    assert got["epoch"] == 2  # the previous good state, one epoch lost
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "moved it aside" in err and "previous checkpoint" in err
    # both damaged: the run starts afresh rather than failing
    (tmp_path / "checkpoint.prev.pt").write_bytes(b"garbage")
    assert checkpoints.load_resume(tmp_path) is None
    assert len(list(tmp_path.glob("*.unreadable-*"))) == 2


def test_saves_are_atomic_and_leave_no_temporary_file(tmp_path):
    checkpoints.save({"a": torch.ones(3)}, tmp_path / "best.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]
    (tmp_path / ".checkpoint.pt.1234.tmp").write_bytes(b"half a file")  # a killed writer's leftover
    assert checkpoints.load_resume(tmp_path) is None
    assert not list(tmp_path.glob("*.tmp"))


def test_teacher_weights_are_loaded_safely(tmp_path):
    """A teacher's final.pt (possibly downloaded from a tracking server) is loaded
    weights-only: a crafted one is refused, nothing runs."""
    from benchmark.config import load_config
    from benchmark.train.distill import load_teacher

    marker = tmp_path / "ran"
    path = tmp_path / "final.pt"
    _crafted(path, marker, wrap=False)
    cfg = load_config({"method": "distill", "distill": {"teacher": {"method": "cohort", "cohort": {}}}})
    with pytest.raises(UserError) as err:
        load_teacher(cfg, path, 10, torch.device("cpu"))
    assert "refused" in str(err.value) and not marker.exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_tracking_server_fails_in_one_line_within_seconds(monkeypatch):
    from benchmark.runner.store import RunStore
    from benchmark.runner.tracking import Tracker

    uri = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    t0 = time.time()
    with pytest.raises(UserError) as err:
        Tracker(uri)
    assert time.time() - t0 < 10 and uri in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UserError):
        RunStore(uri).finished_runs("smoke")


# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------


@pytest.fixture()
def cub(tmp_path):
    """A synthetic CUB in the official layout, copied so the test may damage it."""
    from benchmark.data import ensure_synthetic

    src = ensure_synthetic("cub200", SyntheticConfig(classes=8, images_per_class=4, image_size=96), tmp_path / "gen")
    root = tmp_path / "CUB_200_2011"
    shutil.copytree(src, root)
    return root


def _image_lines(root: Path) -> list[tuple[str, str]]:
    return [tuple(ln.split()) for ln in (root / "images.txt").read_text().splitlines() if ln.strip()]


def _damage(root: Path) -> dict[str, str]:
    """One fault of each kind; returns kind -> damaged file."""
    from PIL import Image

    lines = _image_lines(root)
    paths = {rel: root / "images" / rel for _, rel in lines}
    rels = list(paths)
    done = {}
    # a JPEG damaged in the middle: it still decodes (to wrong pixels)
    data = bytearray(paths[rels[0]].read_bytes())
    mid = len(data) // 2
    data[mid:mid + 64] = np.random.default_rng(1).bytes(64)
    paths[rels[0]].write_bytes(bytes(data))
    done["corrupt"] = rels[0]
    full = paths[rels[1]].read_bytes()
    paths[rels[1]].write_bytes(full[: len(full) * 2 // 3])
    done["truncated"] = rels[1]
    paths[rels[2]].write_bytes(b"not an image at all")
    done["unreadable"] = rels[2]
    Image.open(paths[rels[3]]).convert("L").save(paths[rels[3]], "JPEG")
    done["grayscale"] = rels[3]
    Image.open(paths[rels[4]]).convert("CMYK").save(paths[rels[4]], "JPEG")
    done["cmyk"] = rels[4]
    paths[rels[5]].unlink()
    done["missing"] = rels[5]
    return done


def test_data_check_reports_every_fault_kind(cub):
    from benchmark.data import read_dataset
    from benchmark.data.check import check_splits, image_fault

    clean = _image_lines(cub)[-1][1]
    assert image_fault(str(cub / "images" / clean)) is None
    damaged = _damage(cub)
    checks = {c.name: c for c in check_splits(read_dataset("cub200", cub), workers=2)}
    found = {kind: [Path(p).relative_to(cub / "images").as_posix() for p in paths]
             for c in checks.values() for kind, paths in c.faults.items()}
    assert {k: v for k, v in found.items()} == {k: [v] for k, v in damaged.items()}
    assert checks["train"].errors + checks["test"].errors == 4  # missing, unreadable, truncated, corrupt


def test_data_check_lists_singleton_classes_and_the_cli_exit_status(cub, capsys):
    from benchmark.cli import main

    lines = (cub / "images.txt").read_text().splitlines()
    labels = dict(ln.split() for ln in (cub / "image_class_labels.txt").read_text().splitlines())
    last = [ln for ln in lines if int(labels[ln.split()[0]]) == 104]  # a test class
    keep = [ln for ln in lines if ln not in last[1:]]  # leave it one image
    (cub / "images.txt").write_text("\n".join(keep) + "\n")
    assert main(["data", "check", "--data-root", str(cub.parent), "--no-progress", "--format", "json"]) == 0
    import json

    report = {r["split"]: r for r in json.loads(capsys.readouterr().out)}
    assert report["test"]["singleton_classes"] == 1 and report["train"]["singleton_classes"] == 0
    assert report["train"]["papers"]["dm2"] == {"classes": 100, "images": 5864}
    _damage(cub)
    assert main(["data", "check", "--data-root", str(cub), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "corrupt" in out and "missing" in out and "1-image classes" in out


def test_annotation_paths_cannot_leave_the_dataset(cub):
    from benchmark.data import read_dataset
    from benchmark.data.readers import DatasetFormatError

    text = (cub / "images.txt").read_text().splitlines()
    text[0] = text[0].split()[0] + " ../../../../etc/passwd"
    (cub / "images.txt").write_text("\n".join(text) + "\n")
    with pytest.raises(DatasetFormatError) as err:
        read_dataset("cub200", cub)
    assert "leaves the dataset folder" in str(err.value)


def test_fingerprint_changes_with_the_data_and_not_with_the_folder(cub, tmp_path):
    from benchmark.data import read_dataset
    from benchmark.data.inventory import inventory

    first = inventory(read_dataset("cub200", cub), cub)
    moved = tmp_path / "elsewhere" / "CUB_200_2011"
    shutil.copytree(cub, moved)
    assert inventory(read_dataset("cub200", moved), moved).fingerprints == first.fingerprints
    rel = _image_lines(moved)[-1][1]
    (moved / "images" / rel).write_bytes((moved / "images" / rel).read_bytes() + b"\0")  # a repaired file
    changed = inventory(read_dataset("cub200", moved), moved).fingerprints
    assert changed["train"] == first.fingerprints["train"] and changed["test"] != first.fingerprints["test"]
    (moved / "images" / rel).unlink()
    assert inventory(read_dataset("cub200", moved), moved).missing_count == 1


def _tiny_job(tmp_path, epochs=3, **overrides):
    from benchmark.config import load_config

    data = {"method": "cohort", "seed": 0,
            "data": {"dataset": "cub200", "synthetic": {"classes": 8, "images_per_class": 4, "image_size": 48},
                     "root": str(tmp_path / "data"), "batch_size": 8, "images_per_class": 2, "crop_size": 32,
                     "resize_size": 36, "num_workers": 0, "train_transform": "resize_pad_random_crop",
                     "test_transform": "resize_pad_center_crop"},
            "loss": {"name": "triplet"}, "optim": {"lr": 1e-3},
            "schedule": {"epochs": epochs, "iterations_per_epoch": 2},
            "cohort": {"members": [{"arch": "tiny_inception", "pretrained": False, "embedding_dim": 8}] * 2},
            "eval": {"recall_ks": [1, 2]}, "device": "cpu"}
    for key, value in overrides.items():
        node = data
        *path, last = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return load_config(data)


def test_a_run_with_a_damaged_checkpoint_resumes_from_the_previous_one_to_the_same_metrics(tmp_path, capsys):
    """Kill after epoch 2 of 3 (simulated: train 2 epochs), damage the newest
    checkpoint: the repeated run trains from epoch 1's state and ends exactly as an
    uninterrupted run does."""
    import dataclasses

    from benchmark.train import MemoryLogger, train

    straight = train(_tiny_job(tmp_path), MemoryLogger(), tmp_path / "a", progress=False).final_metrics
    work = tmp_path / "b"
    # the same job stopped after two epochs: its checkpoints, then the final epoch is lost
    cfg = _tiny_job(tmp_path)
    from benchmark.train import build_method, prepare
    from benchmark.train.loop import run_loop

    splits = prepare(cfg, work)
    method = build_method(cfg, int(splits.train.num_classes), torch.device("cpu"), {})
    short = dataclasses.replace(cfg, schedule=dataclasses.replace(cfg.schedule, epochs=2))
    run_loop(short, method, splits, torch.device("cpu"), MemoryLogger(), work, progress=False)
    # the short job's checkpoints have another fingerprint: re-stamp them as the 3-epoch job's
    from benchmark.train.common import config_fingerprint

    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        state = checkpoints.load(work / name)
        state["fingerprint"] = config_fingerprint(cfg)
        checkpoints.save(state, work / name)
    assert checkpoints.load(work / "checkpoint.pt")["epoch"] == 1
    (work / "checkpoint.pt").write_bytes(b"\x00" * 100)
    for name in ("final.pt", "best.pt"):
        (work / name).unlink(missing_ok=True)
    resumed = train(cfg, MemoryLogger(), work, progress=False)
    assert resumed.epochs_run == 2  # epochs 2 and 3: one epoch lost to the damaged file
    assert resumed.final_metrics == straight
    assert "moved it aside" in capsys.readouterr().err


def test_a_diverging_run_stops_in_one_line_naming_the_epoch(tmp_path, monkeypatch):
    from benchmark.train import MemoryLogger, train
    from benchmark.train.cohort import CohortMethod
    from benchmark.train.loop import TrainingDiverged

    real = CohortMethod.train_step
    calls = []

    def step(self, *args):
        out = real(self, *args)
        calls.append(1)
        return dict(out, loss=float("nan")) if len(calls) == 3 else out  # iteration 1 of epoch 2

    monkeypatch.setattr(CohortMethod, "train_step", step)
    cfg = _tiny_job(tmp_path)
    with pytest.raises(TrainingDiverged) as err:
        train(cfg, MemoryLogger(), tmp_path / "w", progress=False)
    # losses stay on the device and are read every READ_EVERY steps and at the end of an
    # epoch: the NaN of iteration 1 is seen at the epoch's end (iteration 2), no later
    assert "loss is nan by iteration 2 of epoch 2" in str(err.value) and "\n" not in str(err.value)


def test_dry_build_catches_impossible_shapes_names_and_parameters(tmp_path):
    import dataclasses

    from benchmark.errors import ConfigError
    from benchmark.train.dry import dry_build

    cfg = _tiny_job(tmp_path)
    dry_build(cfg, 4)  # builds
    bni = dataclasses.replace(cfg, cohort=dataclasses.replace(cfg.cohort, members=[
        dataclasses.replace(cfg.cohort.members[0], arch="bn_inception")]))
    tiny = dataclasses.replace(bni, data=dataclasses.replace(bni.data, crop_size=4, resize_size=4))
    for bad, needle in [(tiny, "cannot be built or run on 4x4"),
                        (dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, params={"nope": 1})), "nope")]:
        with pytest.raises(ConfigError) as err:
            dry_build(bad, 4, "where")
        assert needle in str(err.value) and str(err.value).startswith("where") and "\n" not in str(err.value)
