"""Checkpoints the trainer can resume from: atomic to write, verified before anything is loaded.

A checkpoint is one folder, ``<out>/checkpoint/``, holding three files:

- ``model.safetensors``: the model's ``state_dict`` (parameters and persistent buffers), plain contiguous
  CPU tensors. Tied weights (one tensor under several names, e.g. an embedding shared with the output
  projection) are stored once, under the alphabetically first name; the other names are recorded in the
  file's metadata (``aliases``: name -> stored name). Loading copies into the model's existing
  parameters, so a model whose weights are tied stays tied (same ``Parameter``, same storage).
- ``trainer.pt``: ``{"optimizer": optimizer.state_dict() or None, "trainer_state": dict}`` written with
  ``torch.save`` and read with ``torch.load(weights_only=True)``: only tensors, dict, list, tuple, str,
  int, float, bool and None, checked before anything is written. ``capture_rng_state`` builds such a dict
  of the python, numpy, torch and CUDA generators.
- ``meta.json``: format name and version, the run config, ``step``, the int-valued top-level entries of
  ``trainer_state`` (``counters``), the creation time, and the sha256 and size of the other two files.

``save_checkpoint`` writes into ``<out>/checkpoint.tmp-<pid>/``, fsyncs, then swaps:
``checkpoint -> checkpoint.prev``, ``checkpoint.tmp-<pid> -> checkpoint``, delete ``checkpoint.prev``.
At every instant a complete checkpoint exists under ``checkpoint/`` or, between the two renames only,
under ``checkpoint.prev/``, which ``load_checkpoint`` falls back to with a warning. One writer per
``<out>`` folder (rank 0 under DDP).

``load_checkpoint`` and ``load_weights`` check everything (meta.json, sizes and hashes, the safetensors
header, names, shapes, the architecture config) before they touch the model, raise ``CheckpointError``
naming the file, what is wrong and what to do, and never write to disk.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import safetensors
import safetensors.torch
import torch
import torch.nn as nn

PathLike = Union[str, os.PathLike]

CHECKPOINT_DIR = "checkpoint"
PREV_DIR = "checkpoint.prev"
TMP_PREFIX = "checkpoint.tmp-"
MODEL_FILE = "model.safetensors"
TRAINER_FILE = "trainer.pt"
META_FILE = "meta.json"
FORMAT_NAME = "instant-reward-checkpoint"
FORMAT_VERSION = 1
#: Mismatches listed in one error; more are counted, not listed.
MAX_LISTED = 5
_HASH_CHUNK = 1 << 20
_PLAIN_SCALARS = (str, int, float, bool, type(None))


class CheckpointError(RuntimeError):
    """A checkpoint that is unreadable, corrupt, truncated, or does not fit the model or run config."""


# ---- the model's weights as stored ---------------------------------------------------------------------


def _unwrap(model: nn.Module) -> nn.Module:
    """The module whose ``state_dict`` names are stored: DDP/DataParallel and torch.compile wrappers add
    prefixes (``module.``, ``_orig_mod.``) that would tie a checkpoint to how the run was launched."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def _alias_groups(state: Mapping[str, torch.Tensor]) -> list[list[str]]:
    """Names grouped by the exact tensor view they hold (tied weights share one group), sorted."""
    groups: dict[tuple, list[str]] = {}
    for name, t in state.items():
        # Empty tensors all sit at address 0 without being tied.
        key = (name,) if t.numel() == 0 else (t.device, t.untyped_storage().data_ptr(), t.storage_offset(),
                                              tuple(t.shape), t.stride(), t.dtype)
        groups.setdefault(key, []).append(name)
    return sorted(sorted(g) for g in groups.values())


def _weights_to_save(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors to store, aliases): one entry per tied group; every tensor contiguous, on the CPU and owning
    its bytes, because safetensors refuses tensors that share storage."""
    state = _unwrap(model).state_dict()
    tensors, aliases, storages = {}, {}, {}
    for group in _alias_groups(state):
        kept = group[0]
        aliases.update({name: kept for name in group[1:]})
        t = state[kept].detach()
        # Distinct views of one storage (not tied, but overlapping or packed) get their own copy.
        ptr = (t.device, t.untyped_storage().data_ptr())
        tensors[kept] = t.clone() if ptr in storages else t
        storages[ptr] = kept
    tensors = {name: t.cpu().contiguous() for name, t in tensors.items()}
    return tensors, aliases


def _check_loadable_types(obj: Any, where: str) -> None:
    """Raise where ``torch.load(weights_only=True)`` would refuse ``obj`` - before anything is written."""
    if isinstance(obj, torch.Tensor):
        if type(obj) not in (torch.Tensor, nn.Parameter):
            raise TypeError(f"{where} is a tensor subclass {type(obj).__name__}; store a plain tensor "
                            "(x.as_subclass(torch.Tensor))")
        return
    if type(obj) in _PLAIN_SCALARS or isinstance(obj, (torch.dtype, torch.device, torch.Size)):
        return
    if type(obj) in (dict, OrderedDict):
        for key, value in obj.items():
            _check_loadable_types(key, f"{where} key {key!r}")
            _check_loadable_types(value, f"{where}[{key!r}]")
        return
    if type(obj) in (list, tuple):
        for i, value in enumerate(obj):
            _check_loadable_types(value, f"{where}[{i}]")
        return
    raise TypeError(f"{where} is a {type(obj).__module__}.{type(obj).__qualname__} ({obj!r:.80}); {TRAINER_FILE} is "
                    "read with torch.load(weights_only=True), which accepts only tensors, dict, list, tuple, str, "
                    "int, float, bool and None: convert it first (numpy arrays: torch.from_numpy(x) or x.tolist(); "
                    "numpy scalars: int(x) or float(x); objects: their state as a dict)")


def _to_plain(obj: Any) -> Any:
    """numpy arrays and scalars inside dicts/lists/tuples as python lists and numbers."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_plain(v) for v in obj)
    return obj


# ---- writing ------------------------------------------------------------------------------------------


def _fsync(path: Path) -> None:
    if path.is_dir() and os.name == "nt":  # Windows cannot open a folder to fsync it
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _digest(path: Path) -> dict[str, Any]:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            sha.update(chunk)
    return {"sha256": sha.hexdigest(), "bytes": path.stat().st_size}


def _write_weights(model: nn.Module, file: Path) -> None:
    tensors, aliases = _weights_to_save(model)
    metadata = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION), "aliases": json.dumps(aliases)}
    safetensors.torch.save_file(tensors, str(file), metadata=metadata)
    _fsync(file)


def save_checkpoint(out_dir: PathLike, model: nn.Module, optimizer: Optional[torch.optim.Optimizer],
                    trainer_state: dict, config: dict, step: int) -> Path:
    """Write ``<out_dir>/checkpoint/`` atomically, replacing the previous checkpoint only once the new one
    is complete on disk.

    Args:
        out_dir: the run's output folder; created if missing.
        model: the model, possibly wrapped in DDP, DataParallel or torch.compile (names are stored unwrapped).
        optimizer: its state is stored for an exact resume; None stores none.
        trainer_state: anything else to resume (RNG states from ``capture_rng_state``, counters, schedules):
            only tensors, dict, list, tuple, str, int, float, bool, None. Its top-level int entries are also
            copied to meta.json's ``counters``.
        config: the run config, JSON-serialisable; ``load_checkpoint(expected_config=...)`` compares against it.
        step: the environment step (or update) count this checkpoint is taken at.

    Returns:
        The path of the new ``checkpoint/`` folder.

    Raises:
        TypeError, ValueError: a bad argument, before anything is written.
        OSError: writing failed; the temporary folder is removed and the previous checkpoint is kept.
    """
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"step must be a non-negative int, got {step!r} ({type(step).__name__})")
    if not isinstance(trainer_state, dict):
        raise TypeError(f"trainer_state must be a dict, got {type(trainer_state).__name__}; pass {{}} for none")
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}; pass dataclasses.asdict(cfg) or vars(args)")
    _check_loadable_types(trainer_state, "trainer_state")
    optimizer_state = None if optimizer is None else optimizer.state_dict()
    _check_loadable_types(optimizer_state, "optimizer.state_dict()")
    try:
        config_json = json.loads(json.dumps(config))
    except (TypeError, ValueError) as err:
        raise TypeError(f"config must be JSON-serialisable for {META_FILE} ({err}); convert such values first, "
                        "e.g. paths with str(p)") from None
    counters = {k: int(v) for k, v in trainer_state.items() if type(v) is int and isinstance(k, str)}

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    final, prev, tmp = out / CHECKPOINT_DIR, out / PREV_DIR, out / f"{TMP_PREFIX}{os.getpid()}"
    for stale in out.glob(f"{TMP_PREFIX}*"):  # left by a save that crashed; never a complete checkpoint
        shutil.rmtree(stale, ignore_errors=True)
    try:
        tmp.mkdir()
        _write_weights(model, tmp / MODEL_FILE)
        with open(tmp / TRAINER_FILE, "wb") as f:
            torch.save({"optimizer": optimizer_state, "trainer_state": trainer_state}, f)
            f.flush()
            os.fsync(f.fileno())
        meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "step": int(step), "counters": counters,
                "config": config_json, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "torch_version": torch.__version__, "safetensors_version": safetensors.__version__,
                "files": {name: _digest(tmp / name) for name in (MODEL_FILE, TRAINER_FILE)}}
        with open(tmp / META_FILE, "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        _fsync(tmp)
        if final.exists():
            # A .prev next to a complete checkpoint/ is left from a crash after the swap: stale.
            if prev.exists():
                shutil.rmtree(prev)
            os.replace(final, prev)
        os.replace(tmp, final)
        _fsync(out)
    except BaseException:
        if not final.exists() and prev.exists():  # undo the first rename so checkpoint/ is the old one again
            try:
                os.replace(prev, final)
            except OSError:
                pass  # load_checkpoint falls back to checkpoint.prev/
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(prev, ignore_errors=True)  # a failure here leaves a stale .prev the next save removes
    return final


def export_weights(model: nn.Module, path: PathLike) -> Path:
    """Write the model's weights alone to one ``.safetensors`` file (atomically) for ``load_weights``."""
    file = Path(path)
    if file.suffix != ".safetensors":
        raise ValueError(f"export path {str(file)!r} must end in .safetensors, so load_weights reads it as weights")
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(f"{file.name}.tmp-{os.getpid()}")
    try:
        _write_weights(model, tmp)
        os.replace(tmp, file)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync(file.parent)
    return file


# ---- reading and checking -----------------------------------------------------------------------------


def _resolve_dir(path: PathLike) -> Path:
    """The checkpoint folder for ``<out>`` or ``<out>/checkpoint``, falling back to ``checkpoint.prev``."""
    p = Path(path)
    if p.is_file():
        raise CheckpointError(f"{p} is a file; pass the run's --out folder or its {CHECKPOINT_DIR}/ folder "
                              "(load_weights also takes a .safetensors file)")
    if p.is_dir() and ((p / META_FILE).exists() or (p / MODEL_FILE).exists() or p.name == CHECKPOINT_DIR):
        return p
    out = p.parent if p.name == CHECKPOINT_DIR else p
    if (out / CHECKPOINT_DIR).is_dir():
        return out / CHECKPOINT_DIR
    if (out / PREV_DIR).is_dir():
        warnings.warn(f"{out / CHECKPOINT_DIR} is missing but {out / PREV_DIR} exists: the last save was interrupted "
                      "between its two renames; loading the previous checkpoint (the next save replaces it)",
                      RuntimeWarning, stacklevel=3)
        return out / PREV_DIR
    if not out.exists():
        raise CheckpointError(f"{p} does not exist; pass the --out folder of a run that saved a checkpoint")
    partial = sorted(q.name for q in out.glob(f"{TMP_PREFIX}*"))
    found = f" (only {partial}: a save that never completed)" if partial else ""
    raise CheckpointError(f"{out} holds no {CHECKPOINT_DIR}/ folder{found}; pass the --out folder of a run that "
                          "saved a checkpoint, or start the run without resuming")


def _read_meta(folder: Path, required_files: tuple[str, ...]) -> dict:
    file = folder / META_FILE
    if not file.is_file():
        raise CheckpointError(f"{file} is missing: {folder} is not a complete checkpoint (meta.json is written "
                              "last); restore the folder from a backup or start a new --out folder")
    try:
        meta = json.loads(file.read_bytes())
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{file} is not valid JSON ({err}): the file was truncated or modified; "
                              "restore it or start a new --out folder") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{file} is not an instant-reward checkpoint description (expected "
                              f"\"format\": \"{FORMAT_NAME}\"); pass a folder written by save_checkpoint")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{file} has format_version {version!r}, this code reads {FORMAT_VERSION}; use the "
                              "instant-reward version that wrote it, or start a new --out folder")
    files = meta.get("files")
    for name in required_files:
        entry = files.get(name) if isinstance(files, dict) else None
        if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str) and isinstance(entry.get("bytes"), int)):
            raise CheckpointError(f"{file} has no sha256 and size for {name}: it was modified; "
                                  "restore it or start a new --out folder")
    if not isinstance(meta.get("step"), int) or not isinstance(meta.get("config"), dict):
        raise CheckpointError(f"{file} lacks an int \"step\" or a dict \"config\": it was modified; "
                              "restore it or start a new --out folder")
    return meta


def _check_config(folder: Path, meta: dict, expected_config: Optional[Mapping]) -> None:
    if expected_config is None:
        return
    saved = meta["config"]
    wanted = json.loads(json.dumps(dict(expected_config)))  # tuples -> lists, as stored
    diffs = [f"{k}={saved[k]!r}, this run has {k}={v!r}" if k in saved else f"no {k}, this run has {k}={v!r}"
             for k, v in wanted.items() if k not in saved or saved[k] != v]
    if diffs:
        raise CheckpointError(f"{folder} was written by a model with " + "; ".join(diffs) + " (see its "
                              f"{META_FILE} 'config'); pass the same model settings (e.g. --model) or start a new "
                              "--out folder")


def _read_verified(folder: Path, meta: dict, name: str) -> bytes:
    """The file's bytes, once its size and sha256 match meta.json (one read: what is checked is what is parsed)."""
    file, entry = folder / name, meta["files"][name]
    if not file.is_file():
        raise CheckpointError(f"{file} is missing: the checkpoint is incomplete; restore it or start over")
    data = file.read_bytes()
    if len(data) != entry["bytes"]:
        raise CheckpointError(f"{folder} is corrupt ({name} has {len(data)} bytes, {META_FILE} records "
                              f"{entry['bytes']}): the file was truncated or modified; restore it or start over")
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise CheckpointError(f"{folder} is corrupt (sha256 mismatch of {name}): the file was truncated or "
                              "modified; restore it or start over")
    return data


def _parse_weights(file: Path, data: bytes) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, aliases) from safetensors bytes; the header is parsed by hand first for a clear error."""
    size = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
    try:
        if not 0 < size <= len(data) - 8:
            raise ValueError(f"header length {size} does not fit a {len(data)}-byte file")
        header = json.loads(data[8:8 + size])
        aliases = json.loads(header.get("__metadata__", {}).get("aliases", "{}"))
        tensors = safetensors.torch.load(data)
    except Exception as err:  # SafetensorError, ValueError, UnicodeDecodeError, AttributeError on odd JSON
        raise CheckpointError(f"{file} has an unreadable safetensors header ({type(err).__name__}: {err}); "
                              "the file is corrupt or not a safetensors file; restore it or start over") from None
    return tensors, aliases


def _listed(items: list[str]) -> str:
    more = f", and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return "; ".join(items[:MAX_LISTED]) + more


def _match_weights(file: Path, tensors: dict[str, torch.Tensor], aliases: dict[str, str],
                   model: nn.Module) -> dict[str, torch.Tensor]:
    """The full state dict to load strictly, after checking names, tying and shapes against the model."""
    state = model.state_dict()
    full, used, missing, untied, shapes = {}, set(), [], [], []
    for group in _alias_groups(state):
        present = [n for n in group if n in tensors]
        if not present:
            missing += [f"{n} (the file ties it to {aliases[n]})" if n in aliases else n for n in group]
        elif len(present) > 1:
            untied.append(" and ".join(present))
        else:
            used.add(present[0])
            full.update({n: tensors[present[0]] for n in group})
    unexpected = []
    for n in sorted(set(tensors) - used):
        tied_to = sorted(a for a, kept in aliases.items() if kept == n)
        unexpected.append(f"{n} (the file ties {', '.join(tied_to)} to it)" if tied_to else n)
    for name in used:  # one check per tied group; float dtypes may differ (load_state_dict casts)
        t, own = tensors[name], state[name]
        if t.shape != own.shape:
            shapes.append(f"{name}: file {tuple(t.shape)}, model {tuple(own.shape)}")
        elif t.dtype != own.dtype and not (t.is_floating_point() and own.is_floating_point()):
            shapes.append(f"{name}: file {t.dtype}, model {own.dtype}")
    problems = [f"{len(v)} {what}: {_listed(sorted(v))}" for what, v in
                (("missing", missing), ("unexpected", unexpected), ("stored separately but tied in this model", untied),
                 ("shape/dtype mismatches", shapes)) if v]
    if problems:
        raise CheckpointError(f"{file} does not fit this {type(model).__name__}. " + ". ".join(problems) + ". It "
                              "was written by a different architecture; pass the same model settings as the run "
                              "that wrote it (its meta.json 'config') or start a new --out folder")
    return full


def _load_model_weights(folder_or_file: Path, model: nn.Module, meta: Optional[dict]) -> None:
    """Check, then load strictly; the model is untouched unless every check passes."""
    if meta is None:
        file, data = folder_or_file, folder_or_file.read_bytes()
    else:
        file, data = folder_or_file / MODEL_FILE, _read_verified(folder_or_file, meta, MODEL_FILE)
    module = _unwrap(model)
    tensors, aliases = _parse_weights(file, data)
    module.load_state_dict(_match_weights(file, tensors, aliases, module), strict=True)


def load_weights(path: PathLike, model: nn.Module, expected_config: Optional[Mapping] = None) -> Optional[dict]:
    """Load only the weights (eval, sampling, ``--init``) from a checkpoint or an ``export_weights`` file.

    Args:
        path: ``<out>``, ``<out>/checkpoint`` or a ``.safetensors`` file from ``export_weights``.
        model: the model to load into (wrappers are looked through); tied weights stay tied.
        expected_config: architecture keys that must equal the checkpoint's config (checkpoints only).

    Returns:
        The checkpoint's meta.json as a dict, or None for a bare ``.safetensors`` file.

    Raises:
        CheckpointError: as ``load_checkpoint``; trainer.pt is neither read nor verified.
    """
    p = Path(path)
    if p.is_file() and p.suffix == ".safetensors":
        if expected_config is not None:
            raise ValueError(f"{p} is a bare weights file with no config to compare expected_config with; "
                             "pass expected_config=None or a checkpoint folder")
        _load_model_weights(p, model, None)
        return None
    folder = _resolve_dir(p)
    meta = _read_meta(folder, (MODEL_FILE,))
    _check_config(folder, meta, expected_config)
    _load_model_weights(folder, model, meta)
    return meta


def load_checkpoint(path: PathLike, model: nn.Module, optimizer: Optional[torch.optim.Optimizer] = None,
                    expected_config: Optional[Mapping] = None) -> tuple[dict, dict]:
    """Verify a checkpoint and load it into ``model`` (and ``optimizer``) to resume a run exactly.

    Args:
        path: the run's ``<out>`` folder or its ``checkpoint/`` folder. If ``checkpoint/`` is missing and
            ``checkpoint.prev/`` exists (a crash between the save's renames), the latter is loaded with a warning.
        model: the model to load into (DDP/DataParallel/compile wrappers are looked through).
        optimizer: if given, its state (e.g. Adam moments, step counts) is restored too.
        expected_config: the architecture-relevant config keys of this run; each must equal the stored value.

    Returns:
        ``(trainer_state, meta)``: the dict passed to ``save_checkpoint`` (tensors on the CPU), and
        meta.json (``step``, ``counters``, ``config``, ``created``, ...).

    Raises:
        CheckpointError: unreadable, corrupt, truncated or mismatched files, or a config mismatch; raised
            before the model or optimizer is modified. Nothing on disk is ever written.
    """
    folder = _resolve_dir(path)
    meta = _read_meta(folder, (MODEL_FILE, TRAINER_FILE))
    _check_config(folder, meta, expected_config)
    file = folder / TRAINER_FILE
    data = _read_verified(folder, meta, TRAINER_FILE)
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{file} cannot be read with torch.load(weights_only=True) ({type(err).__name__}: "
                              f"{str(err)[:200]}); it is corrupt or was not written by save_checkpoint; restore it "
                              "or start over") from None
    if not (isinstance(payload, dict) and isinstance(payload.get("trainer_state"), dict) and "optimizer" in payload):
        raise CheckpointError(f"{file} lacks the 'optimizer' and 'trainer_state' entries save_checkpoint writes; "
                              "restore it or start over")
    saved_optim = payload["optimizer"]
    if optimizer is not None:
        if saved_optim is None:
            raise CheckpointError(f"{file} holds no optimizer state (saved with optimizer=None); pass optimizer=None "
                                  "and start the optimizer fresh, or resume from a checkpoint that has one")
        wanted = [len(g["params"]) for g in optimizer.param_groups]
        stored = [len(g["params"]) for g in saved_optim.get("param_groups", [])]
        if wanted != stored:
            raise CheckpointError(f"{file} holds optimizer state for parameter groups of sizes {stored}, this "
                                  f"optimizer has {wanted}; build the optimizer as the run that wrote it did, or "
                                  "pass optimizer=None to start it fresh")
    _load_model_weights(folder, model, meta)
    if optimizer is not None:
        try:
            optimizer.load_state_dict(saved_optim)
        except (ValueError, KeyError, RuntimeError) as err:
            raise CheckpointError(f"{file}: the optimizer state does not fit this {type(optimizer).__name__} "
                                  f"({err}); use the optimizer the run that wrote it used") from None
    return payload["trainer_state"], meta


# ---- random number generators -------------------------------------------------------------------------


def capture_rng_state(np_generators: Optional[Mapping[str, np.random.Generator]] = None) -> dict:
    """The python, torch (CPU and every CUDA device) and named numpy generators' states, in types
    ``trainer.pt`` accepts; put it in ``trainer_state`` and hand it to ``restore_rng_state`` after loading.
    Under DDP each rank's generators differ: only the saving rank's are captured."""
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": {name: _to_plain(g.bit_generator.state) for name, g in (np_generators or {}).items()}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping, np_generators: Optional[Mapping[str, np.random.Generator]] = None) -> None:
    """Set the generators back to a ``capture_rng_state`` result; every named numpy generator must be in it.
    CUDA states are restored for as many devices as both the checkpoint and this machine have."""
    missing = sorted(set(np_generators or {}) - set(state.get("numpy", {})))
    if missing:
        raise CheckpointError(f"the checkpoint's RNG state has no numpy generator(s) {missing} (it has "
                              f"{sorted(state.get('numpy', {}))}); pass the names used when it was captured")
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    for name, g in (np_generators or {}).items():
        g.bit_generator.state = state["numpy"][name]
    if torch.cuda.is_available():
        for device, cuda_state in zip(range(torch.cuda.device_count()), state.get("cuda", [])):
            torch.cuda.set_rng_state(cuda_state, device)
