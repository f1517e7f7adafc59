"""Checkpoint files: every failure to read or check one is a CheckpointError naming the file and
the cause, a digest refuses silently corrupted data, and older files still load.

The fuzz test's size is ESPER_CHECKPOINT_FUZZ mutations per kind (default 20, 80 files in all);
``python -m tests.checkpoints.test_checkpoint_integrity [N [SEED]]`` runs N per kind and prints the
outcomes (the corruption experiment's measure: N = 100 for truncation, overwritten bytes and random
bytes).
"""

from __future__ import annotations

import collections
import io
import logging
import os
import random
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

import esper_slot as es
from esper_slot import BlendMode, CheckpointError, Stage, integrity
from tests.support.slot_models import MultiSlotMlp

FIXTURE = Path(__file__).parent.parent / "fixtures" / "checkpoint-before-digest.pt"
LOGGER = "esper_slot.checkpoint"


def two_slot_host(seed: int = 0) -> MultiSlotMlp:
    """The host of tests/fixtures/checkpoint-before-digest.pt (saved by save_checkpoint at
    9a0c594, before checkpoints had a digest): slot 0 BLENDING (mlp_small, mid-ramp on a
    sigmoid), slot 1 TRAINING (lora rank 2, MULTIPLY), every tensor with distinct values."""
    torch.manual_seed(seed)
    model = MultiSlotMlp(n_slots=2, channels=8)
    blending, training = model.slots
    blending.germinate("mlp_small", blend=BlendMode.ADD)
    blending.start_blending(10, curve="sigmoid")
    for _ in range(3):
        blending.step()
    training.germinate("lora", blend=BlendMode.MULTIPLY, seed_kwargs={"rank": 2})
    with torch.no_grad():  # the seeds' zero-init layers: give every tensor distinct bytes
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def fresh_host() -> MultiSlotMlp:
    return MultiSlotMlp(n_slots=2, channels=8)


def content(model: nn.Module) -> dict:
    """Everything a load can change: every parameter, buffer and slot record, and each slot's
    stage and seed object."""
    out: dict = {
        k: (v.detach().clone() if torch.is_tensor(v) else v) for k, v in model.state_dict().items()
    }
    for i, slot in enumerate(model.slots):
        out[f"<slot {i}>"] = (slot.stage, id(slot.seed), slot.alpha.clone())
    return out


def same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for key in a:
        x, y = a[key], b[key]
        if torch.is_tensor(x):
            if not (torch.is_tensor(y) and x.dtype == y.dtype and torch.equal(x, y)):
                return False
        elif isinstance(x, tuple):
            if x[:2] != y[:2] or not torch.equal(x[2], y[2]):
                return False
        elif x != y:
            return False
    return True


def saved_state(model: nn.Module) -> dict:
    return {
        k: (v.detach().clone() if torch.is_tensor(v) else v) for k, v in model.state_dict().items()
    }


def state_equal(state: dict, saved: dict) -> bool:
    return state.keys() == saved.keys() and all(
        (torch.is_tensor(v) and v.dtype == saved[k].dtype and torch.equal(v, saved[k]))
        if torch.is_tensor(saved[k])
        else v == saved[k]
        for k, v in state.items()
    )


# ---- files from before the digest, and files any torch reads --------------------------------


def test_a_file_saved_before_the_digest_loads_with_one_notice(caplog):
    caplog.set_level(logging.INFO, logger="esper_slot")
    model = fresh_host()
    es.load_checkpoint(model, FIXTURE)
    notices = [r for r in caplog.records if r.name.startswith("esper_slot")]
    assert len(notices) == 1 and notices[0].levelno == logging.WARNING
    assert str(FIXTURE) in notices[0].getMessage() and "not verified" in notices[0].getMessage()
    assert [s.stage for s in model.slots] == [Stage.BLENDING, Stage.TRAINING]
    raw = torch.load(FIXTURE, weights_only=True)
    assert state_equal(saved_state(model), raw)
    x = torch.randn(3, 5, 8)
    assert torch.equal(model(x), two_slot_host()(x))  # the host it was saved from, rebuilt


def test_plain_torch_save_loads_with_one_notice_and_verify_false_says_nothing(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="esper_slot")
    source = two_slot_host()
    torch.save(source.state_dict(), tmp_path / "plain.pt")
    torch.save(dict(source.state_dict()), tmp_path / "dict.pt")  # no _metadata at all
    for name in ("plain.pt", "dict.pt"):
        caplog.clear()
        target = fresh_host()
        es.load_checkpoint(target, tmp_path / name)
        assert len(caplog.records) == 1 and "no esper-slot digest" in caplog.text
        assert state_equal(saved_state(target), saved_state(source))
        caplog.clear()
        es.load_checkpoint(fresh_host(), tmp_path / name, verify=False)
        assert not caplog.records


def test_new_files_keep_the_models_keys_and_load_with_plain_torch(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="esper_slot")
    source = two_slot_host()
    before = dict(source.state_dict()._metadata)
    path = es.save_checkpoint(source, tmp_path / "m.pt")
    assert dict(source.state_dict()._metadata) == before
    raw = torch.load(path, weights_only=True)
    assert list(raw) == list(source.state_dict())
    assert integrity.DIGEST_KEY in raw._metadata
    digest = raw._metadata[integrity.DIGEST_KEY]
    assert digest["algorithm"] == integrity.ALGORITHM and list(digest["entries"]) == list(raw)
    plain = fresh_host()
    plain.load_state_dict(raw)  # strict, by PyTorch itself: the digest is not a key
    assert state_equal(saved_state(plain), saved_state(source))
    target = fresh_host()
    es.load_checkpoint(target, path)
    assert not caplog.records  # verified: nothing to say
    assert state_equal(saved_state(target), saved_state(source))


def test_read_checkpoint_drops_the_digest_so_a_changed_copy_is_not_refused(tmp_path, caplog):
    path = es.save_checkpoint(two_slot_host(), tmp_path / "m.pt")
    state = es.read_checkpoint(path)
    assert integrity.DIGEST_KEY not in state._metadata
    state["layers.0.bias"] = state["layers.0.bias"] + 1
    torch.save(state, tmp_path / "edited.pt")
    caplog.set_level(logging.INFO, logger="esper_slot")
    target = fresh_host()
    es.load_checkpoint(target, tmp_path / "edited.pt")  # unverified (one notice), not refused
    assert len(caplog.records) == 1
    assert torch.equal(target.layers[0].bias, state["layers.0.bias"])


def test_a_state_dict_given_to_save_checkpoint_is_not_changed(tmp_path):
    state = {"w": torch.arange(4.0), "rec": {"a": 1}}
    path = es.save_checkpoint(state, tmp_path / "s.pt")
    assert list(state) == ["w", "rec"] and state["rec"] == {"a": 1}
    assert type(state) is dict and not hasattr(state, "_metadata")
    got = es.read_checkpoint(path)
    assert list(got) == ["w", "rec"] and torch.equal(got["w"], state["w"])
    assert got["rec"] == {"a": 1}


def test_a_non_tensor_where_a_tensor_belongs_changes_nothing(tmp_path):
    # an unverified file (plain torch.save) whose value is not a tensor: PyTorch itself would
    # raise only after copying the modules before it
    state = saved_state(two_slot_host())
    state["slots.1.seed.up.weight"] = 3
    torch.save(state, tmp_path / "odd.pt")
    target = two_slot_host(seed=1)
    before = content(target)
    with pytest.raises(
        CheckpointError, match="'slots.1.seed.up.weight' is a int in the checkpoint, not a tensor"
    ):
        es.load_checkpoint(target, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match="not a tensor"):
        target.load_state_dict(state)
    assert same(content(target), before)


# ---- the digest ---------------------------------------------------------------------------


def _digest(value) -> str:
    return integrity.digest_values([value], workers=1)[0]


DTYPES = [
    torch.float32,
    torch.float64,
    torch.float16,
    torch.bfloat16,
    torch.int8,
    torch.uint8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.bool,
    torch.complex64,
    torch.complex128,
]
DTYPES += [
    d
    for d in (getattr(torch, "float8_e4m3fn", None), getattr(torch, "uint16", None))
    if d is not None
]


def _tensor(dtype, shape) -> torch.Tensor:
    base = torch.randn(shape, dtype=torch.complex128 if dtype.is_complex else torch.float64) * 8
    return base.to(dtype) if dtype != torch.bool else base.real > 0


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_dtype_layout_and_size_digests_its_elements(dtype):
    torch.manual_seed(0)
    t = _tensor(dtype, (6, 10))
    digest = _digest(t)
    views = [t.t().contiguous().t(), t.clone(), t[:, :].clone()]  # non-contiguous, copies
    assert all(_digest(v) == digest for v in views)
    assert _digest(t.t()) == _digest(t.t().contiguous())  # transposed: C order of its view
    assert _digest(t[::2, 1::3]) == _digest(t[::2, 1::3].contiguous())  # strided slice
    assert _digest(t[2:4]) == _digest(t[2:4].clone())  # a view at a storage offset
    assert _digest(t[0].expand(3, 10)) == _digest(t[0].expand(3, 10).contiguous())  # stride 0
    assert _digest(t.reshape(10, 6)) != digest  # same bytes, another shape
    assert _digest(t[0, 0]) == _digest(t[0, 0].clone())  # 0-d
    assert _digest(t[:0]) == _digest(torch.empty(0, 10, dtype=dtype))  # zero elements
    assert _digest(t[:0]) != _digest(torch.empty(10, 0, dtype=dtype))
    flipped = t.clone()
    flipped.view(torch.uint8).view(-1)[5] ^= 1  # one bit of one element
    assert _digest(flipped) != digest


def test_same_bytes_in_another_dtype_and_header_changes_are_caught():
    t = torch.randn(4, 4).to(torch.bfloat16)
    assert _digest(t) != _digest(t.view(torch.int16)) != _digest(t.view(torch.float16))
    assert _digest(torch.zeros(4)) != _digest(torch.zeros(2, 2)) != _digest(torch.zeros(4, 1))
    c = torch.randn(3, dtype=torch.complex64)
    assert _digest(c.conj()) == _digest(c.conj().resolve_conj())  # a lazy conjugate's values
    assert _digest(-c) == _digest(torch.neg(c).clone())


def test_large_non_contiguous_and_blocked_tensors_match_in_place_ones(monkeypatch):
    t = torch.randn(64, 33)
    monkeypatch.setattr(integrity, "_BLOCK", 100)  # blocks of 3 rows, and rows larger than one
    assert _digest(t.t()) == _digest(t.t().contiguous())
    assert _digest(t[:, ::2]) == _digest(t[:, ::2].contiguous())
    assert _digest(t.t()[:, None]) == _digest(t.t()[:, None].contiguous())


@pytest.mark.parametrize(
    "a,b",
    [
        (0.1, 0.1 + 2**-56),
        (1, True),
        (0, False),
        (1, 1.0),
        ([1, 2], (1, 2)),
        ("1", 1),
        ({"a": 1}, {"a": 1.0}),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
        (None, "None"),
        (b"ab", "ab"),
        ({"k": [1, {"x": 0.5}]}, {"k": [1, {"x": 0.25}]}),
        (torch.float32, "float32"),
        (float("nan"), -float("nan")),
    ],
)
def test_records_are_digested_exactly(a, b):
    assert _digest(a) != _digest(b)
    assert _digest(a) == _digest(a) and _digest({"r": a}) != _digest({"r": b})


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch: quantized tensors deprecated, CSR beta
def test_quantized_sparse_and_other_values_are_verified_through_a_file(tmp_path):
    torch.manual_seed(0)
    state = {
        "q": torch.quantize_per_tensor(torch.randn(4, 4), 0.1, 3, torch.qint8),
        "qc": torch.quantize_per_channel(
            torch.randn(4, 4), torch.rand(4) + 0.1, torch.arange(4), 0, torch.qint8
        ),
        "coo": torch.randn(4, 4).relu().to_sparse(),
        "csr": torch.randn(4, 4).relu().to_sparse_csr(),
        "size": torch.Size([2, 3]),
        "dtype": torch.float16,
        "set": {1, 2},
    }
    path = es.save_checkpoint(state, tmp_path / "s.pt")
    got = es.read_checkpoint(path)
    assert _digest(got["qc"]) == _digest(state["qc"]) and got["set"] == {1, 2}
    raw = torch.load(path, weights_only=True)
    raw["q"] = torch.quantize_per_tensor(raw["q"].dequantize(), 0.2, 3, torch.qint8)
    torch.save(raw, tmp_path / "scale.pt")  # another scale: same ints would decode otherwise
    with pytest.raises(CheckpointError, match="entry 'q' does not match"):
        es.read_checkpoint(tmp_path / "scale.pt")


def test_threads_give_the_same_digests():
    values = [torch.randn(1 << 20), {"rec": 1}, torch.randn(300, 300).t(), torch.zeros(0)]
    assert integrity.digest_values(values, workers=2) == integrity.digest_values(values, workers=1)


def test_a_changed_tensor_or_record_is_refused_naming_the_first_damaged_entry(tmp_path):
    source = two_slot_host()
    path = es.save_checkpoint(source, tmp_path / "m.pt")

    def edited(name, edit):
        raw = torch.load(path, weights_only=True)  # keeps the old digest, as torch.save would
        edit(raw)
        torch.save(raw, tmp_path / name)
        return tmp_path / name

    def bump(key):
        return lambda raw: raw[key].view(-1)[3].add_(1e-6)

    cases = {
        "tensor.pt": (
            bump("slots.0.seed.fc2.weight"),
            "entry 'slots.0.seed.fc2.weight' does not match its sha256 digest",
        ),
        "two.pt": (
            lambda raw: (bump("slots.1.seed.up.weight")(raw), bump("layers.0.bias")(raw)),
            "entry 'layers.0.bias' does not match its sha256 digest (and 1 more)",
        ),
        "record.pt": (
            lambda raw: raw["slots.0._extra_state"].update(alpha_steps_done=4),
            "entry 'slots.0._extra_state' does not match",
        ),
        "dtype.pt": (
            lambda raw: raw.__setitem__("layers.1.weight", raw["layers.1.weight"].double()),
            "entry 'layers.1.weight' does not match",
        ),
        "missing.pt": (
            lambda raw: raw.pop("slots.1.seed.down.weight"),
            "entry 'slots.1.seed.down.weight' is missing",
        ),
        "added.pt": (
            lambda raw: raw.__setitem__("extra", torch.zeros(1)),
            "entry 'extra' is not in the digest",
        ),
        "versions.pt": (
            lambda raw: raw._metadata["layers.0"].update(version=7),
            "<_metadata> (module versions) does not match",
        ),
    }
    for name, (edit, message) in cases.items():
        bad = edited(name, edit)
        target = two_slot_host(seed=1)
        before = content(target)
        with pytest.raises(CheckpointError) as info:
            es.load_checkpoint(target, bad)
        assert message in str(info.value) and str(bad) in str(info.value), name
        assert same(content(target), before), name
    es.load_checkpoint(fresh_host(), tmp_path / "tensor.pt", verify=False)  # what it gives up


def test_a_malformed_or_future_digest_is_refused(tmp_path):
    path = es.save_checkpoint(two_slot_host(), tmp_path / "m.pt")
    for change, message in [
        ({"algorithm": "md4"}, "its hash 'md4' is not one of"),
        ({"format": 2}, "its format is 2"),
        ({"entries": [1]}, "its entries are not a dict"),
        ({"metadata": None}, "its metadata digest is not a str"),
    ]:
        raw = torch.load(path, weights_only=True)
        raw._metadata[integrity.DIGEST_KEY].update(change)
        torch.save(raw, tmp_path / "bad.pt")
        with pytest.raises(CheckpointError, match="digest is malformed") as info:
            es.read_checkpoint(tmp_path / "bad.pt")
        assert message in str(info.value)
    raw = torch.load(path, weights_only=True)
    raw._metadata[integrity.DIGEST_KEY] = "not a dict"
    torch.save(raw, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="it is a str"):
        es.read_checkpoint(tmp_path / "bad.pt")


# ---- error messages -------------------------------------------------------------------------


def _without_member(data: bytes, member: str) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if info.filename != member:
                dst.writestr(info, src.read(info.filename))
    return out.getvalue()


def test_errors_name_the_file_and_the_cause(tmp_path):
    path = es.save_checkpoint(two_slot_host(), tmp_path / "m.pt")
    good = path.read_bytes()
    pickle_at = good.index(b"\x80\x02")  # the first pickle opcode: inside data.pkl
    damaged = bytearray(good)
    damaged[pickle_at + 40] ^= 0xFF
    (tmp_path / "folder.pt").mkdir()
    files = {
        "truncated.pt": (
            good[: len(good) // 2],
            "has no readable end (truncated",
            zipfile.BadZipFile,
        ),
        "empty.pt": (b"", "EOFError: the file ends early", EOFError),
        "pickle.pt": (bytes(damaged), "Bad CRC-32", zipfile.BadZipFile),
        "member.pt": (_without_member(good, "archive/data/3"), "data/3", RuntimeError),
        "nopickle.pt": (_without_member(good, "archive/data.pkl"), "data.pkl", None),
        "random.pt": (random.Random(0).randbytes(3000), "damaged", None),
    }
    for name, (data, _, _) in files.items():
        (tmp_path / name).write_bytes(data)
    files["absent.pt"] = (b"", "No such file", FileNotFoundError)
    files["folder.pt"] = (b"", "directory", IsADirectoryError)
    for name, (_, cause, kind) in files.items():
        with pytest.raises(CheckpointError) as info:
            es.load_checkpoint(fresh_host(), tmp_path / name)
        text = str(info.value)
        assert str(tmp_path / name) in text and cause in text, (name, text)
        assert info.value.__cause__ is not None, name
        if kind is not None:
            assert isinstance(info.value.__cause__, kind), (name, info.value.__cause__)
        with pytest.raises(CheckpointError):
            es.read_checkpoint(tmp_path / name)


def test_integrity_sits_below_the_slot():
    from tests.project.test_imports import graph, reachable

    edges = graph()
    assert edges["esper_slot.integrity"] <= {"esper_slot.extra_state"}
    assert "esper_slot.slot" not in reachable(edges, "esper_slot.integrity")


# ---- fuzzing the file -----------------------------------------------------------------------

KINDS = ("truncated", "overwritten", "random", "member removed")


def _mutate(good: bytes, kind: str, rng: random.Random) -> bytes:
    if kind == "truncated":
        return good[: rng.randrange(len(good))]
    if kind == "overwritten":
        data = bytearray(good)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if kind == "random":
        return rng.randbytes(rng.randint(0, 2 * len(good)))
    members = zipfile.ZipFile(io.BytesIO(good)).namelist()
    return _without_member(good, rng.choice(members))


def fuzz(per_kind: int, seed: int = 27, kinds=KINDS) -> collections.Counter:
    """Load ``per_kind`` mutations of each kind of a saved two-slot host into a host holding
    other values; asserts the invariants and returns the outcome counts: (kind, outcome, whether
    the file's data changed, as torch.load without any check reads it)."""
    rng = random.Random(seed)
    source = two_slot_host()
    saved = saved_state(source)
    outcomes: collections.Counter = collections.Counter()
    with tempfile.TemporaryDirectory() as folder:
        path = es.save_checkpoint(source, Path(folder) / "ckpt.pt")
        good = path.read_bytes()
        bad = Path(folder) / "bad.pt"
        for kind in kinds:
            for _ in range(per_kind):
                data = _mutate(good, kind, rng)
                bad.write_bytes(data)
                try:  # did the mutation change what an unchecked torch.load gives?
                    changed = not state_equal(dict(torch.load(bad, weights_only=True)), saved)
                except Exception:
                    changed = True  # unreadable
                target = two_slot_host(seed=1)
                before = content(target)
                try:
                    es.load_checkpoint(target, bad)
                except CheckpointError:
                    assert same(content(target), before), f"{kind}: a failed load changed it"
                    outcomes[kind, "CheckpointError", changed] += 1
                except Exception as err:
                    raise AssertionError(f"{kind}: {type(err).__name__}: {err}") from err
                else:
                    assert not changed and state_equal(saved_state(target), saved), (
                        f"{kind}: a mutation that changed the data loaded"
                    )
                    outcomes[kind, "loaded intact", changed] += 1
    return outcomes


def test_fuzzed_files_raise_only_checkpoint_error_and_never_load_changed_data(caplog):
    caplog.set_level(logging.INFO, logger="esper_slot")
    per_kind = int(os.environ.get("ESPER_CHECKPOINT_FUZZ", "20"))
    outcomes = fuzz(per_kind)
    assert sum(outcomes.values()) == per_kind * len(KINDS)
    assert not [r for r in caplog.records if "not verified" in r.getMessage()]  # digest found
    refused = sum(n for (_, outcome, _), n in outcomes.items() if outcome == "CheckpointError")
    assert refused >= per_kind * len(KINDS) // 2  # most mutations do change the data


def main(argv: list[str]) -> None:
    per_kind = int(argv[0]) if argv else 100
    seed = int(argv[1]) if len(argv) > 1 else 27
    outcomes = fuzz(per_kind, seed)
    print(
        f"{per_kind} files of each kind (seed {seed}); data changed = an unchecked torch.load "
        "fails or reads other data"
    )
    print("| mutation | outcome | data changed | files |\n|---|---|---|---|")
    for (kind, outcome, changed), n in sorted(outcomes.items()):
        print(f"| {kind} | {outcome} | {'yes' if changed else 'no'} | {n} |")


if __name__ == "__main__":
    main(sys.argv[1:])
