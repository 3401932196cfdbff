"""Checkpoint files: written atomically and durably, read without running code.

- Writing: the object goes to a temporary file of this process in the same
  folder, is flushed and fsynced, renamed over the target, and the folder is
  fsynced, so a crash or a kill leaves either the old file or the new one, never
  half of one. The resume checkpoint keeps its previous version
  (``checkpoint.prev.pt``), so one damaged file never costs more than an epoch.
- Reading: ``torch.load(weights_only=True)``: tensors and plain data only, so a
  crafted pickle in a checkpoint, a teacher's ``final.pt`` or a file downloaded
  from a tracking server runs nothing. A file that does not load so is refused in
  one line (:class:`CheckpointError`).
- A resume checkpoint that cannot be read (truncated, empty, random bytes, or
  refused) is moved aside under a name that says so, with a one-line warning, and
  the run resumes from the previous good state or starts afresh.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

import torch

from benchmark.errors import UserError

CHECKPOINT = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"
ARTIFACT_DIR = "checkpoint"  # the logger is offered each resume checkpoint under this name
TMP_SUFFIX = ".tmp"


class CheckpointError(UserError):
    """A checkpoint or weights file that cannot be read safely."""


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some filesystems do not open folders; the rename still happened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save(obj: Any, path: Path) -> None:
    """torch.save ``obj`` to ``path`` atomically and durably."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    try:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def save_resume(obj: Any, workdir: Path) -> None:
    """The resume checkpoint, keeping the previous one as ``checkpoint.prev.pt``."""
    workdir = Path(workdir)
    current = workdir / CHECKPOINT
    if current.exists():
        os.replace(current, workdir / PREVIOUS)
    save(obj, current)


def load(path: Path) -> Any:
    """A checkpoint or weights file as tensors and plain data; one-line CheckpointError
    when it is unreadable or holds anything else (code, custom classes)."""
    import pickle

    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except pickle.UnpicklingError as exc:
        reason = " ".join(str(exc).split())
        if "weights_only" in reason or "Unsupported global" in reason or "GLOBAL" in reason:
            raise CheckpointError(f"{path}: refused: it holds more than tensors and plain data (a pickled object "
                                  f"that would run code on load); not loaded") from None
        raise CheckpointError(f"{path}: unreadable ({reason[:160]})") from None
    except (RuntimeError, EOFError, ValueError, OSError, AttributeError, IndexError, TypeError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise CheckpointError(f"{path}: unreadable ({reason[:160]})") from None


def _move_aside(path: Path, why: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    aside = path.with_name(f"{path.name}.unreadable-{stamp}")
    os.replace(path, aside)
    print(f"warning: {why}; moved it aside to {aside}", file=sys.stderr)
    return aside


def remove_stale_tmp(workdir: Path) -> None:
    """Temporary files a killed writer left behind (never read; removed so no later
    run mistakes them for anything)."""
    for p in Path(workdir).glob(f".*{TMP_SUFFIX}"):
        try:
            p.unlink()
        except OSError:
            pass


def newest_resume(workdir: Path) -> Optional[Path]:
    """The newest readable resume checkpoint in ``workdir``: checkpoint.pt, else the
    previous one; None when there is none (the run starts afresh). Unreadable
    files are moved aside with a one-line warning each."""
    workdir = Path(workdir)
    remove_stale_tmp(workdir)
    for name in (CHECKPOINT, PREVIOUS):
        path = workdir / name
        if not path.exists():
            continue
        try:
            state = load(path)
        except CheckpointError as exc:
            older = name == CHECKPOINT and (workdir / PREVIOUS).exists()
            _move_aside(path, f"{exc}; resuming from {'the previous checkpoint' if older else 'the start'}")
            continue
        if isinstance(state, dict) and "epoch" in state and "method" in state:
            return path
        _move_aside(path, f"{path}: not a resume checkpoint of this harness")
    return None


def load_resume(workdir: Path) -> Optional[Any]:
    """The state of :func:`newest_resume` (None: start afresh)."""
    path = newest_resume(workdir)
    return load(path) if path is not None else None
