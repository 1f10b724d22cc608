"""Checkpoints: exact round trips (weights, tied weights, Adam moments, RNG states, counters), every kind of
damaged or mismatched checkpoint rejected with a CheckpointError naming the file and leaving the model as
it was, atomic saves under simulated crashes, the checkpoint.prev fallback, and loads that never write."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
import torch.nn as nn
from torch.nn import functional as F

import agents.checkpoint as ckpt
from agents.checkpoint import (
    CHECKPOINT_DIR,
    META_FILE,
    MODEL_FILE,
    PREV_DIR,
    TRAINER_FILE,
    CheckpointError,
    capture_rng_state,
    export_weights,
    load_checkpoint,
    load_weights,
    restore_rng_state,
    save_checkpoint,
)

VOCAB, WIDTH = 11, 8
CONFIG = {"d_model": WIDTH, "vocab_size": VOCAB, "lr": 1e-2, "layers": (1, 2)}


class TinyLM(nn.Module):
    """Embedding tied to the output projection (module-level tying: ``head.weight is embed.weight``), a
    persistent buffer, and optional extra layer / untying to build mismatched models."""

    def __init__(self, width: int = WIDTH, tied: bool = True, extra: bool = False):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, width)
        self.proj = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, VOCAB, bias=False)
        if tied:
            self.head.weight = self.embed.weight
        self.extra = nn.Linear(width, width) if extra else None
        self.register_buffer("scale", torch.full((), 0.5))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.proj(self.embed(tokens)))  # (B, T, C)
        if self.extra is not None:
            x = self.extra(x)
        return self.head(self.norm(x)) * self.scale  # (B, T, V)


def make_model(seed: int = 0, **kwargs) -> TinyLM:
    torch.manual_seed(seed)
    return TinyLM(**kwargs)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, VOCAB, (4, 5), generator=g)
    loss = F.cross_entropy(model(tokens).flatten(0, 1), tokens.roll(-1, 1).flatten())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def trained(seed: int = 0, steps: int = 2, **kwargs) -> tuple[TinyLM, torch.optim.Adam]:
    model = make_model(seed, **kwargs)
    optimizer = torch.optim.Adam(model.parameters(), lr=CONFIG["lr"])
    for i in range(steps):
        train_step(model, optimizer, seed=100 + i)
    return model, optimizer


def trainer_state(np_rng: np.random.Generator) -> dict:
    return {"rng": capture_rng_state({"env": np_rng}), "update": 7, "episodes": 123,
            "schedule": {"lr_scale": 0.5, "history": [1.0, 0.75], "done": False, "note": None}}


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file and folder under root with its bytes and mtime: loads must leave this unchanged."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else b"", p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors gain nothing from intra-op threads, which only wait on a busy shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, TinyLM, torch.optim.Adam]:
    """A run folder with a checkpoint at step 40 of a trained tied model."""
    model, optimizer = trained()
    save_checkpoint(tmp_path, model, optimizer, trainer_state(np.random.default_rng(3)), CONFIG, step=40)
    return tmp_path, model, optimizer


# ---- round trip ---------------------------------------------------------------------------------------


def test_round_trip_restores_weights_optimizer_state_and_counters_exactly(saved):
    out, model, optimizer = saved
    restored, restored_opt = trained(seed=1, steps=0)
    trainer, meta = load_checkpoint(out, restored, restored_opt, expected_config={"d_model": WIDTH})

    assert_same_state(model.state_dict(), restored.state_dict())
    a, b = optimizer.state_dict(), restored_opt.state_dict()
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys() and len(a["state"]) == len(list(model.parameters()))
    for i in a["state"]:
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(a["state"][i][name], b["state"][i][name]), (i, name)
    assert trainer["update"] == 7 and trainer["episodes"] == 123
    assert trainer["schedule"] == {"lr_scale": 0.5, "history": [1.0, 0.75], "done": False, "note": None}
    assert meta["step"] == 40 and meta["counters"] == {"update": 7, "episodes": 123}
    assert meta["config"] == {**CONFIG, "layers": [1, 2]}  # JSON: tuples come back as lists

    # The restored pair continues training exactly as the original does.
    train_step(model, optimizer, seed=999)
    train_step(restored, restored_opt, seed=999)
    assert_same_state(model.state_dict(), restored.state_dict())


def test_rng_states_round_trip_so_draws_continue_identically(tmp_path):
    model, optimizer = trained()
    np_rng = np.random.default_rng(5)
    torch.manual_seed(11)
    random.seed(12)
    save_checkpoint(tmp_path, model, optimizer, trainer_state(np_rng), CONFIG, step=1)
    expected = (np_rng.random(3).tolist(), torch.rand(3), random.random())

    np_rng.random(10), torch.rand(10), random.random()  # the run goes on and diverges
    trainer, _ = load_checkpoint(tmp_path, make_model())
    assert isinstance(trainer["rng"]["torch"], torch.Tensor) and trainer["rng"]["torch"].dtype == torch.uint8
    assert trainer["rng"]["numpy"]["env"]["bit_generator"] == "PCG64"
    fresh = np.random.default_rng(0)
    restore_rng_state(trainer["rng"], {"env": fresh})
    assert fresh.random(3).tolist() == expected[0]
    assert torch.equal(torch.rand(3), expected[1])
    assert random.random() == expected[2]


def test_restore_rng_state_names_a_generator_the_checkpoint_lacks():
    state = capture_rng_state({"env": np.random.default_rng(0)})
    with pytest.raises(CheckpointError, match=r"no numpy generator\(s\) \['sampler'\].*it has \['env'\]"):
        restore_rng_state(state, {"sampler": np.random.default_rng(0)})


def test_tied_weights_are_stored_once_and_stay_tied_after_load(saved):
    out, model, _ = saved
    stored = safetensors.torch.load_file(out / CHECKPOINT_DIR / MODEL_FILE)
    assert "embed.weight" in stored and "head.weight" not in stored  # one copy, under the first name
    restored, restored_opt = trained(seed=1, steps=0)
    load_checkpoint(out, restored, restored_opt)
    # Loading copies into the existing parameters, so the tie (one Parameter, one storage) survives
    # and the tied table keeps training as one tensor.
    assert restored.head.weight is restored.embed.weight
    assert torch.equal(restored.head.weight, model.embed.weight)
    train_step(restored, restored_opt, seed=5)
    assert restored.head.weight.data_ptr() == restored.embed.weight.data_ptr()


def test_untied_model_round_trips_both_tables(tmp_path):
    model, optimizer = trained(tied=False)
    save_checkpoint(tmp_path, model, optimizer, {}, CONFIG, step=0)
    restored = make_model(seed=1, tied=False)
    load_weights(tmp_path, restored)
    assert_same_state(model.state_dict(), restored.state_dict())
    assert not torch.equal(restored.head.weight, restored.embed.weight)


def test_wrappers_are_looked_through_in_both_directions(tmp_path):
    model, optimizer = trained()
    save_checkpoint(tmp_path, nn.DataParallel(model), optimizer, {}, CONFIG, step=3)
    names = safetensors.torch.load_file(tmp_path / CHECKPOINT_DIR / MODEL_FILE).keys()
    assert not any(n.startswith("module.") for n in names)
    plain, wrapped = make_model(seed=1), nn.DataParallel(make_model(seed=2))
    load_weights(tmp_path, plain)
    load_weights(tmp_path, wrapped)
    assert_same_state(plain.state_dict(), model.state_dict())
    assert_same_state(wrapped.module.state_dict(), model.state_dict())


def test_ddp_wrapped_model_saves_and_loads_unprefixed_names(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        model, optimizer = trained()
        ddp = nn.parallel.DistributedDataParallel(model)
        save_checkpoint(tmp_path / "run", ddp, optimizer, {}, CONFIG, step=3)
        restored = nn.parallel.DistributedDataParallel(make_model(seed=1))
        load_checkpoint(tmp_path / "run", restored)
    finally:
        dist.destroy_process_group()
    assert_same_state(restored.module.state_dict(), model.state_dict())
    assert "embed.weight" in safetensors.torch.load_file(tmp_path / "run" / CHECKPOINT_DIR / MODEL_FILE)


def test_load_weights_accepts_the_checkpoint_folder_and_an_exported_file(saved, tmp_path):
    out, model, _ = saved
    from_folder = make_model(seed=1)
    meta = load_weights(out / CHECKPOINT_DIR, from_folder, expected_config={"vocab_size": VOCAB})
    assert meta["step"] == 40
    exported = export_weights(model, tmp_path / "export" / "final.safetensors")
    from_file = make_model(seed=2)
    assert load_weights(exported, from_file) is None
    assert_same_state(from_folder.state_dict(), model.state_dict())
    assert_same_state(from_file.state_dict(), model.state_dict())
    assert from_file.head.weight is from_file.embed.weight


def test_load_weights_does_not_need_trainer_pt(saved):
    out, model, _ = saved
    (out / CHECKPOINT_DIR / TRAINER_FILE).write_bytes(b"")  # eval / --init read the weights only
    restored = make_model(seed=1)
    load_weights(out, restored)
    assert_same_state(restored.state_dict(), model.state_dict())


def test_a_save_leaves_exactly_one_complete_checkpoint(saved):
    out, model, optimizer = saved
    save_checkpoint(out, model, optimizer, {}, CONFIG, step=41)
    assert sorted(p.name for p in out.iterdir()) == [CHECKPOINT_DIR]
    assert sorted(p.name for p in (out / CHECKPOINT_DIR).iterdir()) == sorted([MODEL_FILE, TRAINER_FILE, META_FILE])
    meta = json.loads((out / CHECKPOINT_DIR / META_FILE).read_text())
    assert meta["format_version"] == ckpt.FORMAT_VERSION and meta["step"] == 41
    assert set(meta["files"]) == {MODEL_FILE, TRAINER_FILE} and all(len(e["sha256"]) == 64 for e in meta["files"].values())


# ---- bad arguments to save: rejected before anything is written ------------------------------------------


@pytest.mark.parametrize("state, config, step, match", [
    ({"rng": {"numpy": np.zeros(3)}}, CONFIG, 1, r"trainer_state\['rng'\]\['numpy'\] is a numpy.ndarray"),
    ({"count": np.int64(3)}, CONFIG, 1, r"trainer_state\['count'\] is a numpy.int64.*int\(x\)"),
    ({"f": np.float64(0.5)}, CONFIG, 1, r"trainer_state\['f'\] is a numpy.float64"),
    ({}, {"out": Path("runs")}, 1, r"config must be JSON-serialisable"),
    ({}, CONFIG, -1, r"step must be a non-negative int, got -1"),
])
def test_save_rejects_values_that_could_not_be_loaded_back(tmp_path, state, config, step, match):
    model, optimizer = trained(steps=0)
    with pytest.raises((TypeError, ValueError), match=match):
        save_checkpoint(tmp_path / "run", model, optimizer, state, config, step)
    assert not (tmp_path / "run").exists()


# ---- damaged and mismatched checkpoints --------------------------------------------------------------


def _rewrite_meta_hash(folder: Path, name: str) -> None:
    """Make meta.json agree with a damaged file, so the check behind the hash is reached."""
    meta = json.loads((folder / META_FILE).read_text())
    meta["files"][name] = ckpt._digest(folder / name)
    (folder / META_FILE).write_text(json.dumps(meta))


def _overwrite(folder: Path, name: str, offset: int, data: bytes) -> None:
    with open(folder / name, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _truncate(folder: Path, name: str) -> None:
    file = folder / name
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def _set_meta(folder: Path, **changes) -> None:
    meta = json.loads((folder / META_FILE).read_text())
    (folder / META_FILE).write_text(json.dumps({**meta, **changes}))


DAMAGE = {
    "bad header": (lambda d: _overwrite(d, MODEL_FILE, 0, b"\xff" * 12), MODEL_FILE, r"sha256 mismatch of model"),
    "bit flip": (lambda d: _overwrite(d, MODEL_FILE, (d / MODEL_FILE).stat().st_size - 3, b"\x00\x01"),
                 MODEL_FILE, r"sha256 mismatch of model\.safetensors\): the file was truncated or modified"),
    "bad header, consistent meta": (lambda d: (_overwrite(d, MODEL_FILE, 0, b"\xff" * 12),
                                               _rewrite_meta_hash(d, MODEL_FILE)), MODEL_FILE, r"unreadable safetensors header"),
    "garbled header json, consistent meta": (lambda d: (_overwrite(d, MODEL_FILE, 8, b"}{"),
                                                        _rewrite_meta_hash(d, MODEL_FILE)), MODEL_FILE, r"unreadable safetensors header"),
    "truncated weights": (lambda d: _truncate(d, MODEL_FILE), MODEL_FILE, r"model\.safetensors has \d+ bytes.*truncated"),
    "truncated trainer.pt": (lambda d: _truncate(d, TRAINER_FILE), TRAINER_FILE, r"trainer\.pt has \d+ bytes.*truncated"),
    "truncated trainer.pt, consistent meta": (lambda d: (_truncate(d, TRAINER_FILE), _rewrite_meta_hash(d, TRAINER_FILE)),
                                              TRAINER_FILE, r"cannot be read with torch.load\(weights_only=True\)"),
    "missing weights": (lambda d: (d / MODEL_FILE).unlink(), MODEL_FILE, r"is missing"),
    "missing meta.json": (lambda d: (d / META_FILE).unlink(), META_FILE, r"meta\.json is missing.*not a complete checkpoint"),
    "garbage meta.json": (lambda d: (d / META_FILE).write_bytes(b"\x00{not json"), META_FILE, r"is not valid JSON"),
    "meta.json of another format": (lambda d: (d / META_FILE).write_text("[1, 2]"), META_FILE, r"is not an instant-reward"),
    "newer format version": (lambda d: _set_meta(d, format_version=99), META_FILE, r"format_version 99, this code reads 1"),
    "meta.json without hashes": (lambda d: _set_meta(d, files={}), META_FILE, r"no sha256 and size for model"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_checkpoint_is_rejected_naming_the_file_and_nothing_changes(saved, case):
    out, _, _ = saved
    damage, name, match = DAMAGE[case]
    folder = out / CHECKPOINT_DIR
    damage(folder)
    before_disk = snapshot(out)
    model, optimizer = trained(seed=1, steps=1)
    before_model, before_opt = model_state(model), optimizer.state_dict()["state"][0]["exp_avg"].clone()

    with pytest.raises(CheckpointError, match=match) as err:
        load_checkpoint(out, model, optimizer)
    assert str(folder) in str(err.value) and (name in str(err.value) or str(folder / name) in str(err.value))
    assert snapshot(out) == before_disk
    assert_same_state(model_state(model), before_model)
    assert torch.equal(optimizer.state_dict()["state"][0]["exp_avg"], before_opt)


@pytest.mark.parametrize("other, match", [
    (dict(width=16), r"5 shape/dtype mismatches: embed.weight: file \(11, 8\), model \(11, 16\); norm.bias: .*"
                     r"proj.weight: file \(8, 8\), model \(16, 16\)\. It was written by a different architecture"),
    (dict(extra=True), r"2 missing: extra.bias; extra.weight"),
    (dict(tied=False), r"1 missing: head.weight \(the file ties it to embed.weight\)"),
])
def test_checkpoint_of_another_architecture_is_rejected_with_the_mismatches(saved, other, match):
    out, _, _ = saved
    model = make_model(seed=1, **other)
    before, before_disk = model_state(model), snapshot(out)
    with pytest.raises(CheckpointError, match=match) as err:
        load_weights(out, model)
    assert str(out / CHECKPOINT_DIR / MODEL_FILE) in str(err.value) and "different architecture" in str(err.value)
    assert_same_state(model_state(model), before)
    assert snapshot(out) == before_disk


def test_extra_keys_and_separately_stored_tied_weights_are_rejected(tmp_path):
    bigger, _ = trained(extra=True, steps=0)
    save_checkpoint(tmp_path / "extra", bigger, None, {}, CONFIG, step=0)
    with pytest.raises(CheckpointError, match=r"2 unexpected: extra.bias; extra.weight"):
        load_weights(tmp_path / "extra", make_model())
    untied, _ = trained(tied=False, steps=0)
    save_checkpoint(tmp_path / "untied", untied, None, {}, CONFIG, step=0)
    with pytest.raises(CheckpointError, match=r"stored separately but tied in this model: embed.weight and head.weight"):
        load_weights(tmp_path / "untied", make_model())


def test_config_mismatch_names_both_values_and_the_fix(saved):
    out, _, _ = saved
    model = make_model(seed=1, width=16)
    with pytest.raises(CheckpointError, match=r"written by a model with d_model=8, this run has d_model=16; "
                                              r"no n_heads, this run has n_heads=2.*--model.*new --out folder") as err:
        load_checkpoint(out, model, expected_config={"d_model": 16, "n_heads": 2, "vocab_size": VOCAB})
    assert str(out / CHECKPOINT_DIR) in str(err.value)
    assert load_checkpoint(out, make_model(), expected_config={"layers": (1, 2)})[1]["step"] == 40  # tuple == list


def test_optimizer_mismatches_are_rejected(saved, tmp_path):
    out, _, _ = saved
    model = make_model(seed=1)
    split = torch.optim.Adam([{"params": [model.embed.weight]}, {"params": list(model.proj.parameters())}])
    with pytest.raises(CheckpointError, match=r"parameter groups of sizes \[5\], this optimizer has \[1, 2\]"):
        load_checkpoint(out, model, split)
    save_checkpoint(tmp_path / "no-opt", model, None, {}, CONFIG, step=0)
    with pytest.raises(CheckpointError, match=r"holds no optimizer state.*pass optimizer=None"):
        load_checkpoint(tmp_path / "no-opt", model, torch.optim.Adam(model.parameters()))


@pytest.mark.parametrize("where", ["nothing", "empty folder", "partial save only"])
def test_a_folder_without_a_checkpoint_is_rejected(tmp_path, where):
    path = tmp_path / "run"
    if where != "nothing":
        path.mkdir()
    if where == "partial save only":
        (path / "checkpoint.tmp-123").mkdir()
    match = {"nothing": r"does not exist", "empty folder": r"holds no checkpoint/ folder",
             "partial save only": r"only \['checkpoint.tmp-123'\]: a save that never completed"}[where]
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path, make_model())


# ---- atomicity and the .prev fallback ----------------------------------------------------------------


def test_writer_crash_keeps_the_previous_checkpoint_and_leaves_no_half_state(saved, monkeypatch):
    out, model, optimizer = saved
    before = snapshot(out / CHECKPOINT_DIR)

    def half_write_then_fail(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\x08\x00\x00\x00half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", half_write_then_fail)
    train_step(model, optimizer, seed=7)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(out, model, optimizer, {}, CONFIG, step=50)
    assert sorted(p.name for p in out.iterdir()) == [CHECKPOINT_DIR]
    assert snapshot(out / CHECKPOINT_DIR) == before
    assert load_checkpoint(out, make_model(seed=1))[1]["step"] == 40


def test_failed_final_rename_rolls_back_to_the_previous_checkpoint(saved, monkeypatch):
    out, model, optimizer = saved
    before = snapshot(out / CHECKPOINT_DIR)
    real_replace = os.replace

    def fail_on_commit(src, dst):
        if Path(src).name.startswith(ckpt.TMP_PREFIX):
            raise OSError(5, "Input/output error")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_on_commit)
    with pytest.raises(OSError, match="Input/output error"):
        save_checkpoint(out, model, optimizer, {}, CONFIG, step=50)
    assert sorted(p.name for p in out.iterdir()) == [CHECKPOINT_DIR]
    assert snapshot(out / CHECKPOINT_DIR) == before
    assert load_checkpoint(out, make_model(seed=1))[1]["step"] == 40


def test_crash_between_renames_falls_back_to_prev_with_a_warning_and_next_save_recovers(saved):
    out, model, optimizer = saved
    # The disk as a crash after "checkpoint -> checkpoint.prev" leaves it: the old checkpoint under .prev
    # and the new one, complete or not, under a temporary name.
    os.replace(out / CHECKPOINT_DIR, out / PREV_DIR)
    (out / "checkpoint.tmp-99999").mkdir()
    (out / "checkpoint.tmp-99999" / MODEL_FILE).write_bytes(b"partial")
    before = snapshot(out)
    restored = make_model(seed=1)
    for path in (out, out / CHECKPOINT_DIR):
        with pytest.warns(RuntimeWarning, match=r"checkpoint is missing but .*checkpoint.prev exists"):
            _, meta = load_checkpoint(path, restored)
        assert meta["step"] == 40
    assert_same_state(restored.state_dict(), model.state_dict())
    assert snapshot(out) == before

    save_checkpoint(out, model, optimizer, {}, CONFIG, step=41)
    assert sorted(p.name for p in out.iterdir()) == [CHECKPOINT_DIR]
    assert load_checkpoint(out, restored)[1]["step"] == 41


def test_stale_prev_next_to_a_complete_checkpoint_is_ignored_then_replaced(saved):
    out, model, optimizer = saved
    shutil.copytree(out / CHECKPOINT_DIR, out / PREV_DIR)  # a crash after the swap, before .prev was deleted
    _set_meta(out / PREV_DIR, step=1)
    assert load_checkpoint(out, make_model(seed=1))[1]["step"] == 40
    save_checkpoint(out, model, optimizer, {}, CONFIG, step=42)
    assert sorted(p.name for p in out.iterdir()) == [CHECKPOINT_DIR]


def test_successful_load_writes_nothing(saved):
    out, _, _ = saved
    before = snapshot(out)
    model, optimizer = trained(seed=1, steps=0)
    load_checkpoint(out, model, optimizer, expected_config={"d_model": WIDTH})
    load_weights(out, model)
    assert snapshot(out) == before


CRASH_SCRIPT = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    import safetensors.torch, shutil
    sys.path.insert(0, sys.argv[3])
    from tests.test_checkpoint import CONFIG, trained
    from agents.checkpoint import save_checkpoint, TMP_PREFIX, PREV_DIR
    point, out = sys.argv[1], Path(sys.argv[2])
    model, optimizer = trained()
    save_checkpoint(out, model, optimizer, {}, CONFIG, step=1)
    real_save, real_replace, real_rmtree = safetensors.torch.save_file, os.replace, shutil.rmtree
    def save_file(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        os._exit(9)
    def replace(src, dst):
        if point == "between renames" and Path(src).name.startswith(TMP_PREFIX):
            os._exit(9)
        real_replace(src, dst)
    def rmtree(path, *args, **kwargs):
        if point == "before prev deletion" and Path(path).name == PREV_DIR:
            os._exit(9)
        real_rmtree(path, *args, **kwargs)
    if point == "while writing weights":
        safetensors.torch.save_file = save_file
    os.replace, shutil.rmtree = replace, rmtree
    save_checkpoint(out, model, optimizer, {}, CONFIG, step=2)
""")


@pytest.mark.slow
@pytest.mark.parametrize("point, step", [("while writing weights", 1), ("between renames", 1), ("before prev deletion", 2)])
def test_a_killed_save_leaves_a_loadable_checkpoint(tmp_path, point, step):
    """A real crash (os._exit, no cleanup) at each point of a save; a subprocess per case, so it is slow."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, point, str(tmp_path), str(root)], cwd=root)
    assert done.returncode == 9
    names = {p.name for p in tmp_path.iterdir()}
    complete = tmp_path / (CHECKPOINT_DIR if CHECKPOINT_DIR in names else PREV_DIR)
    assert sorted(p.name for p in complete.iterdir()) == sorted([MODEL_FILE, TRAINER_FILE, META_FILE])
    with pytest.warns(RuntimeWarning) if point == "between renames" else contextlib.nullcontext():
        _, meta = load_checkpoint(tmp_path, make_model())
    assert meta["step"] == step



def test_the_project_policy_model_round_trips_with_its_tied_table(tmp_path):
    from agents.model import ModelConfig, PolicyModel

    config = ModelConfig.preset("tiny", vocab_size=20, max_source_len=6, max_target_len=5)
    torch.manual_seed(0)
    model = PolicyModel(config)
    save_checkpoint(tmp_path, model, torch.optim.Adam(model.parameters()), {}, {"d_model": config.d_model}, step=0)
    torch.manual_seed(1)
    restored = PolicyModel(config)
    load_checkpoint(tmp_path, restored, torch.optim.Adam(restored.parameters()), expected_config={"d_model": 64})
    assert_same_state(model.state_dict(), restored.state_dict())
