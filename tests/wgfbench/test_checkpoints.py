"""Per-step checkpoints of the context: safetensors round trip, atomic replacement keeping only the
newest, damaged files ignored with a warning, generator states restored, no-op when off."""

from __future__ import annotations

import json
import math
import os
import warnings

import pytest
import torch
from safetensors import safe_open

from wgfbench.context import Checkpoint, Context

F64 = torch.float64


def files(directory):
    return sorted(p.name for p in directory.iterdir())


def test_round_trip_restores_tensors_meta_and_generator_states(tmp_path):
    ctx = Context.create(7, checkpoints=tmp_path)
    ctx.randn(5)
    torch.randn(3, generator=ctx.cpu_generator)
    theta = torch.randn(4, 3, dtype=F64)
    counts = torch.arange(6, dtype=torch.int64)
    meta = {"h": 0.25, "steps": [{"t": 0.1, "loss": math.nan}], "name": "x"}
    ctx.save_checkpoint(3, {"theta": theta, "counts": counts}, meta)
    # What the saved run draws next ...
    expected = (ctx.randn(4), torch.randn(4, generator=ctx.cpu_generator, dtype=F64))

    resumed = Context.create(7, checkpoints=tmp_path)
    resumed.randn(11)  # a resumed solver's initial draws, overridden by the restored states
    checkpoint = resumed.load_checkpoint()
    assert isinstance(checkpoint, Checkpoint) and checkpoint.step == 3
    assert set(checkpoint.tensors) == {"theta", "counts"}
    assert torch.equal(checkpoint.tensors["theta"], theta) and checkpoint.tensors["theta"].dtype == F64
    assert torch.equal(checkpoint.tensors["counts"], counts)
    assert checkpoint.meta["h"] == 0.25 and checkpoint.meta["name"] == "x"
    assert math.isnan(checkpoint.meta["steps"][0]["loss"])
    # ... is what the resumed context draws.
    assert torch.equal(resumed.randn(4), expected[0])
    assert torch.equal(torch.randn(4, generator=resumed.cpu_generator, dtype=F64), expected[1])


def test_file_is_plain_safetensors_and_only_the_newest_is_kept(tmp_path):
    ctx = Context.create(0, checkpoints=tmp_path / "case")  # created at the first save
    for step in (1, 2, 3):
        ctx.save_checkpoint(step, {"x": torch.full((2,), float(step), dtype=F64)}, {"step": step})
        assert files(tmp_path / "case") == [f"step-{step:09d}.safetensors"]
    path = tmp_path / "case" / "step-000000003.safetensors"
    # A safetensors file: an 8-byte little-endian header length and a JSON header, no pickle.
    raw = path.read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    assert header["x"]["dtype"] == "F64" and header["x"]["shape"] == [2]
    assert json.loads(header["__metadata__"]["wgfbench.checkpoint"])["meta"] == {"step": 3}
    with safe_open(str(path), framework="pt") as f:
        assert set(f.keys()) == {"x", "context.generator", "context.cpu_generator"}
        assert f.get_tensor("context.generator").dtype == torch.uint8
    assert Context.create(0, checkpoints=tmp_path / "case").load_checkpoint().step == 3


def test_an_interrupted_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    """A crash while the new file is written (before the rename) leaves the previous checkpoint
    loadable and no temporary file; the next save removes stale temporary files too."""
    ctx = Context.create(0, checkpoints=tmp_path)
    ctx.save_checkpoint(1, {"x": torch.zeros(3)})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        ctx.save_checkpoint(2, {"x": torch.ones(3)})
    monkeypatch.undo()
    assert files(tmp_path) == ["step-000000001.safetensors"]
    assert Context.create(0, checkpoints=tmp_path).load_checkpoint().step == 1
    (tmp_path / ".step-leftover.tmp").write_bytes(b"partial")
    ctx.save_checkpoint(2, {"x": torch.ones(3)})
    assert files(tmp_path) == ["step-000000002.safetensors"]


def test_when_a_crash_left_two_checkpoints_the_newest_wins(tmp_path):
    """Between the rename and the deletion of the older file both exist; the newer is loaded."""
    older = tmp_path / "older"
    Context.create(0, checkpoints=older).save_checkpoint(2, {"x": torch.zeros(1)})
    ctx = Context.create(0, checkpoints=tmp_path / "case")
    ctx.save_checkpoint(4, {"x": torch.ones(1)})
    os.replace(older / "step-000000002.safetensors", tmp_path / "case" / "step-000000002.safetensors")
    checkpoint = Context.create(0, checkpoints=tmp_path / "case").load_checkpoint()
    assert checkpoint.step == 4 and torch.equal(checkpoint.tensors["x"], torch.ones(1))


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "no-header"])
def test_a_damaged_checkpoint_is_ignored_with_a_warning(tmp_path, damage):
    ctx = Context.create(0, checkpoints=tmp_path)
    ctx.save_checkpoint(5, {"x": torch.randn(100, dtype=F64)})
    path = tmp_path / "step-000000005.safetensors"
    raw = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(raw[: len(raw) - 17])
    elif damage == "garbage":
        path.write_bytes(b"\x93NUMPY" + bytes(range(200)))
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        from safetensors.torch import save_file

        save_file({"x": torch.zeros(2)}, path)  # a valid safetensors file, not a checkpoint
    fresh = Context.create(0, checkpoints=tmp_path)
    before = fresh.generator.get_state()
    with pytest.warns(RuntimeWarning, match="step-000000005.safetensors"):
        assert fresh.load_checkpoint() is None
    assert torch.equal(fresh.generator.get_state(), before)  # a fresh start draws as usual


def test_a_damaged_newest_falls_back_to_an_older_one(tmp_path):
    ctx = Context.create(0, checkpoints=tmp_path)
    ctx.save_checkpoint(1, {"x": torch.zeros(2)})
    (tmp_path / "step-000000002.safetensors").write_bytes(b"junk")
    with pytest.warns(RuntimeWarning, match="step-000000002"):
        assert Context.create(0, checkpoints=tmp_path).load_checkpoint().step == 1


def test_another_seeds_or_cases_checkpoint_is_not_resumed(tmp_path):
    """A checkpoint written for another seed, or whose meta differs from what the solver expects
    (its schedule), is skipped with a warning and leaves the generators untouched."""
    Context.create(1, checkpoints=tmp_path).save_checkpoint(2, {"x": torch.zeros(2)}, {"ends": (0.5, 1.0)})
    other = Context.create(2, checkpoints=tmp_path)
    with pytest.warns(RuntimeWarning, match="seed 1, not 2"):
        assert other.load_checkpoint() is None
    ctx = Context.create(1, checkpoints=tmp_path)
    before = ctx.generator.get_state()
    with pytest.warns(RuntimeWarning, match="another ends"):
        assert ctx.load_checkpoint(expect={"ends": [0.25, 0.5, 1.0]}) is None
    assert torch.equal(ctx.generator.get_state(), before)
    assert ctx.load_checkpoint(expect={"ends": (0.5, 1.0)}).step == 2  # tuples compare as JSON lists


def test_no_op_when_off_or_empty(tmp_path):
    ctx = Context.create(0)
    assert ctx.checkpoints is None
    ctx.save_checkpoint(1, {"x": torch.zeros(2)})
    assert ctx.load_checkpoint() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Context.create(0, checkpoints=tmp_path / "missing").load_checkpoint() is None
        assert Context.create(0, checkpoints=tmp_path).load_checkpoint() is None
    assert not (tmp_path / "missing").exists()


def test_reserved_names_are_refused_and_aliased_tensors_are_saved(tmp_path):
    ctx = Context.create(0, checkpoints=tmp_path)
    with pytest.raises(ValueError, match="reserved"):
        ctx.save_checkpoint(1, {"context.generator": torch.zeros(1)})
    pool = torch.randn(10, 2, dtype=F64)
    ctx.save_checkpoint(1, {"pool": pool, "batch": pool, "head": pool[:3]})
    tensors = Context.create(0, checkpoints=tmp_path).load_checkpoint().tensors
    assert torch.equal(tensors["batch"], pool) and torch.equal(tensors["head"], pool[:3])
