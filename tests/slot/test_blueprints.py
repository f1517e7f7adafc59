"""esper-lite's 16 seed blueprints: parity with esper-lite's own code (the fixture
tests/fixtures/esper-lite-blueprints.pt, see README-blueprints.md: keys and their order,
parameter counts, init from the same RNG seed, outputs in eval and train mode, gradients, the
MULTIPLY zero-init, error messages); init rules; kwargs; migrate_seed_weights; blueprints in
slots (topology, registration, checkpoints); and every blueprint compiled in multi-slot hosts
(compiled == eager, outputs and gradients)."""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import esper_slot as es
from esper_slot import BlendMode, SeedSlot, Stage
from esper_slot.blueprints import (
    BLUEPRINTS,
    blueprint_names,
    build_blueprint,
    find_final_affine_layer,
    is_blueprint,
    is_blueprint_name,
    migrate_seed_weights,
    zero_init_final_layer,
)
from esper_slot.blueprints import cnn as cnn_bp
from esper_slot.blueprints import transformer as tr_bp
from tests.support.slot_models import CnnHost, MultiSlotCnn, MultiSlotMlp, TransformerHost
from tests.support.twins import Twins, slots_of, torch_compile

FIXTURE = torch.load(
    Path(__file__).parent.parent / "fixtures" / "esper-lite-blueprints.pt", weights_only=True
)
ENTRIES = FIXTURE["entries"]
TIGHT = {"rtol": 1e-5, "atol": 1e-6}  # float32; the same ops, here they were bit-identical
ALL = [(topo, name) for topo in ("cnn", "transformer") for name in blueprint_names(topo)]

# What esper-lite zero-inits at birth (Linear/Conv weights and biases; norm scales).
ZERO_AT_BIRTH = {
    ("cnn", "noop"): set(),
    ("cnn", "norm"): {"scale"},
    ("cnn", "attention"): {"fc.2.weight"},
    ("cnn", "depthwise"): set(),
    ("cnn", "bottleneck"): {"up.weight"},
    ("cnn", "conv_small"): {"conv.weight"},
    ("cnn", "conv_light"): set(),
    ("cnn", "conv_heavy"): set(),
    ("transformer", "noop"): set(),
    ("transformer", "norm"): {"scale"},
    ("transformer", "lora"): {"up.weight"},
    ("transformer", "lora_large"): {"up.weight"},
    ("transformer", "attention"): {"proj.weight", "proj.bias"},
    ("transformer", "flex_attention"): {"proj.weight", "proj.bias"},
    ("transformer", "mlp_small"): {"fc2.weight", "fc2.bias"},
    ("transformer", "mlp"): {"fc2.weight", "fc2.bias"},
}
NOT_IDENTITY_AT_BIRTH = {
    ("cnn", "attention"),
    ("cnn", "depthwise"),
    ("cnn", "conv_light"),
    ("cnn", "conv_heavy"),
}


@pytest.fixture(autouse=True)
def _quiet_flex():
    with warnings.catch_warnings():  # flex_attention's "called without torch.compile" on CPU
        warnings.filterwarnings("ignore", "flex_attention called without torch.compile")
        yield


def build(entry: dict, seed: int | None = None) -> nn.Module:
    torch.manual_seed(entry["seed"] if seed is None else seed)
    return build_blueprint(entry["topology"], entry["name"], entry["size"], dict(entry["kwargs"]))


def sample(topology: str, size: int) -> torch.Tensor:
    return torch.randn(2, size, 4, 4) if topology == "cnn" else torch.randn(2, 6, size)


# ---- parity with esper-lite's own code ----


def test_fixture_names_and_provenance():
    assert FIXTURE["commit"] == "2016337eca625ecacb4b3600d9472bc0323c162d"
    assert not FIXTURE["skipped"]
    for topo in ("cnn", "transformer"):
        assert set(FIXTURE["names"][topo]) == set(BLUEPRINTS[topo]), topo
        assert blueprint_names(topo) == tuple(sorted(FIXTURE["names"][topo]))
    assert len(ALL) == 16
    covered = {(e["topology"], e["name"]) for e in ENTRIES.values()}
    assert covered == set(ALL)
    for channels, groups in FIXTURE["num_groups"].items():
        assert cnn_bp.get_num_groups(channels) == groups, channels


@pytest.mark.parametrize("key", list(ENTRIES))
def test_matches_esper_lite(key):
    """Same class name, keys in the same order, parameter count, init (bit for bit from the
    same RNG seed), strict load of esper-lite's state, outputs in eval and train mode, gradients,
    and the MULTIPLY zero-init."""
    e = ENTRIES[key]
    module = build(e)
    assert type(module).__name__ == e["class_name"]
    state = module.state_dict()
    assert list(state) == e["keys"]
    assert sum(p.numel() for p in module.parameters()) == e["param_count"]
    for k in state:
        assert torch.equal(state[k], e["birth"][k]), k
    module.load_state_dict(e["state"], strict=True)
    x = e["input"]
    module.eval()
    with torch.no_grad():
        torch.testing.assert_close(module(x.clone()), e["eval_out"], **TIGHT)
    module.train()
    xg = x.clone().requires_grad_(True)
    y = module(xg)
    torch.testing.assert_close(y.detach(), e["train_out"], **TIGHT)
    if "grad_output" in e:
        (y * e["grad_output"]).sum().backward()
        torch.testing.assert_close(xg.grad, e["input_grad"], **TIGHT)
        grads = {n: p.grad for n, p in module.named_parameters() if p.grad is not None}
        assert grads.keys() == e["param_grads"].keys()
        for n, g in grads.items():
            torch.testing.assert_close(g, e["param_grads"][n], msg=n, **TIGHT)
    multiply = build(e)
    found = find_final_affine_layer(multiply)
    assert (found[0] if found else "") == e["multiply_final"]
    zero_init_final_layer(multiply, allow_missing=True)
    after = multiply.state_dict()
    assert list(after) == list(e["multiply"])
    for k in after:
        assert torch.equal(after[k], e["multiply"][k]), k


@pytest.mark.parametrize("topo,name", ALL)
def test_unexpected_kwargs_raise_esper_lites_error(topo, name):
    expected = FIXTURE["errors"][f"{topo}/{name}/bogus"]
    with pytest.raises(ValueError) as info:
        build_blueprint(topo, name, 16, {"bogus": 1})
    assert str(info.value) == expected


@pytest.mark.parametrize("name", ["attention", "flex_attention"])
def test_heads_must_divide_dim(name):
    with pytest.raises(ValueError) as info:
        build_blueprint("transformer", name, 10, {"n_head": 4})
    assert str(info.value) == FIXTURE["errors"][f"transformer/{name}/n_head"]


# ---- init rules ----


@pytest.mark.parametrize("topo,name", ALL)
def test_init_rules(topo, name):
    """Which affine layers (and norm scales) are zero at birth, and identity at birth exactly
    where esper-lite's seeds are."""
    size = 32
    module = build_blueprint(topo, name, size, {})
    zero = {n for n, p in module.named_parameters() if not p.any()}
    norm_biases = {
        n for n, m in module.named_modules() if isinstance(m, (nn.GroupNorm, nn.LayerNorm))
    }
    zero -= {f"{n}.bias" for n in norm_biases}  # torch's default for norms: ones and zeros
    assert zero == ZERO_AT_BIRTH[(topo, name)]
    x = sample(topo, size)
    with torch.no_grad():
        y = module(x)
    if (topo, name) in NOT_IDENTITY_AT_BIRTH:
        assert not torch.allclose(y, x)
    else:
        assert torch.equal(y, x)


def test_squeeze_excitation_starts_at_sigmoid_3():
    module = build_blueprint("cnn", "attention", 32, {})
    fc = module.fc
    assert [type(m) for m in fc] == [nn.Linear, nn.ReLU, nn.Linear, nn.Sigmoid]
    assert fc[0].bias is None and fc[0].weight.shape == (8, 32) and fc[0].weight.any()
    assert torch.equal(fc[2].bias, torch.full((32,), 3.0)) and not fc[2].weight.any()
    x = sample("cnn", 32)
    torch.testing.assert_close(module(x), x * torch.sigmoid(torch.tensor(3.0)))
    zero_init_final_layer(module)  # MULTIPLY: fc.2 bias 3.0 becomes 0, the gate 0.5
    torch.testing.assert_close(module(x), x * 0.5)


def test_zero_init_final_layer_rule():
    """The last affine layer in named_modules order (registration, not execution), weight and
    bias; none: ValueError unless allow_missing."""

    class Backwards(nn.Module):
        def __init__(self):
            super().__init__()
            self.late = nn.Linear(4, 4)
            self.early = nn.Sequential(nn.Linear(4, 4), nn.Conv1d(4, 4, 1))

        def forward(self, x):
            return self.late(self.early(x))

    module = Backwards()
    assert find_final_affine_layer(module)[0] == "early.1"
    zero_init_final_layer(module)
    assert not module.early[1].weight.any() and not module.early[1].bias.any()
    assert module.late.weight.any() and module.early[0].weight.any()
    for name in ("noop", "norm"):
        seed = build_blueprint("cnn", name, 8, {})
        before = {k: v.clone() for k, v in seed.state_dict().items()}
        zero_init_final_layer(seed, allow_missing=True)
        assert all(torch.equal(v, before[k]) for k, v in seed.state_dict().items())
        with pytest.raises(ValueError, match="No affine layer"):
            zero_init_final_layer(seed)


# ---- kwargs and errors ----


def test_kwargs_change_the_modules():
    assert build_blueprint("transformer", "lora", 16, {"rank": 4}).down.weight.shape == (4, 16)
    assert build_blueprint("transformer", "lora", 16, {}).down.weight.shape == (8, 16)
    assert build_blueprint("transformer", "lora_large", 16, {}).up.weight.shape == (16, 32)
    attention = build_blueprint("transformer", "attention", 16, {"n_head": 2})
    assert (attention.n_head, attention.head_dim) == (2, 8)
    assert build_blueprint("transformer", "flex_attention", 16, {}).n_head == 4
    assert build_blueprint("transformer", "mlp", 16, {}).fc1.out_features == 64
    assert build_blueprint("transformer", "mlp_small", 16, {}).fc1.out_features == 32
    assert build_blueprint("transformer", "mlp", 16, {"expansion": 3}).fc1.out_features == 48
    assert build_blueprint("cnn", "attention", 32, {"reduction": 8}).fc[0].out_features == 4
    assert build_blueprint("cnn", "attention", 3, {}).fc[0].out_features == 1  # max(1, ...)
    assert build_blueprint("cnn", "bottleneck", 64, {"reduction": 2}).down.out_channels == 32
    assert build_blueprint("cnn", "bottleneck", 12, {}).down.out_channels == 8  # max(8, ...)


@pytest.mark.parametrize("name", ["mlp", "mlp_small"])
def test_checkpointed_mlp_matches_plain(name):
    torch.manual_seed(1)
    plain = build_blueprint("transformer", name, 8, {})
    nn.init.normal_(plain.fc2.weight)
    checked = build_blueprint("transformer", name, 8, {"checkpoint": True})
    checked.load_state_dict(plain.state_dict())
    x = torch.randn(2, 5, 8)
    outs = []
    for module in (plain, checked):
        xg = x.clone().requires_grad_(True)
        y = module(xg)
        y.square().sum().backward()
        outs.append((y, xg.grad, module.fc1.weight.grad))
    for a, b in zip(*outs):
        torch.testing.assert_close(b, a)


def test_build_blueprint_errors():
    with pytest.raises(ValueError, match="no blueprints for topology 'rnn'"):
        build_blueprint("rnn", "norm", 8, {})
    with pytest.raises(ValueError, match=r"no transformer blueprint named 'depthwise'.*lora"):
        build_blueprint("transformer", "depthwise", 8, {})
    with pytest.raises(ValueError, match="no cnn blueprint named 'lora'"):
        build_blueprint("cnn", "lora", 8, {})
    for channels in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="positive int channel count"):
            build_blueprint("cnn", "norm", channels, {})
    for kwargs in ({"rank": "8"}, {"rank": None}):
        with pytest.raises(ValueError, match="cannot be built"):
            build_blueprint("transformer", "lora", 8, kwargs)
    with pytest.raises(ValueError, match="cannot be built"):
        build_blueprint("transformer", "attention", 8, {"n_head": 0})
    assert is_blueprint("cnn", "depthwise") and not is_blueprint("transformer", "depthwise")
    assert not is_blueprint(None, "norm") and is_blueprint_name("lora")
    assert is_blueprint_name("depthwise") and not is_blueprint_name("conv3x3")
    assert blueprint_names("rnn") == ()


def test_blueprints_import_only_torch():
    """The package sits below the slot: only torch, the stdlib and itself."""
    allowed = ("torch", "__future__", "collections", "typing")
    for path in (Path(es.__file__).parent / "blueprints").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level == 1:  # within the package
                    continue
                assert node.level == 0, (path.name, node.module)
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in allowed, (path.name, name)


# ---- flex_attention ----


def test_flex_attention_paths_and_mask_cache():
    torch.manual_seed(2)
    flex = build_blueprint("transformer", "flex_attention", 8, {})
    sdpa = build_blueprint("transformer", "attention", 8, {})
    nn.init.normal_(flex.proj.weight)
    sdpa.load_state_dict(flex.state_dict())
    x = torch.randn(2, 5, 8)
    y = flex(x)  # CPU with grad: the SDPA fallback, no mask built
    assert y.requires_grad and not flex._block_mask_cache
    torch.testing.assert_close(y, sdpa(x), rtol=0, atol=0)
    with torch.no_grad():  # flex_attention itself, its mask cached
        torch.testing.assert_close(flex(x), sdpa(x), **TIGHT)
        assert list(flex._block_mask_cache) == [(5, "cpu", "torch.float32")]
        for t in range(1, 10):  # LRU: 8 entries, the oldest evicted
            flex(torch.randn(1, t, 8))
        assert list(flex._block_mask_cache) == [
            (t, "cpu", "torch.float32") for t in (2, 3, 4, 5, 6, 7, 8, 9)
        ]
    flex.double()
    assert not flex._block_mask_cache
    assert "_block_mask_cache" not in str(flex.state_dict().keys())


def test_flex_attention_compiles_in_one_graph():
    """esper-lite's cached mask (@torch.compiler.disable) breaks a fullgraph compile; here the
    mask is built inside the graph."""
    torch.manual_seed(3)
    flex = build_blueprint("transformer", "flex_attention", 8, {"n_head": 2})
    nn.init.normal_(flex.proj.weight)
    compiled = torch_compile(flex, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), flex(x), **TIGHT)
    assert len(flex._block_mask_cache) == 1  # eager's; the compiled call used none


def test_without_flex_attention_only_it_is_unavailable(monkeypatch):
    monkeypatch.setattr(tr_bp, "_FLEX", None)
    monkeypatch.setattr(tr_bp, "FLEX_IMPORT_ERROR", ImportError("no flex here"))
    with pytest.raises(ImportError, match="no flex here"):
        build_blueprint("transformer", "flex_attention", 8, {})
    with pytest.raises(ValueError, match="flex_attention.*no flex here"):
        SeedSlot(8, "transformer").germinate("flex_attention")
    for name in blueprint_names("transformer"):
        if name != "flex_attention":
            build_blueprint("transformer", name, 8, {})
    assert is_blueprint_name("flex_attention")


# ---- migrate_seed_weights ----


def test_migrate_seed_weights_renames_and_skips():
    w = {k: torch.randn(2) for k in "abcdefg"}
    esper = {
        "host.blocks.0.weight": w["a"],
        "seed_slots.r0c0.seed.fc1.weight": w["b"],
        "seed_slots.r0c0.seed.fc1.bias": w["c"],
        "seed_slots.r0c0._extra_state": {"_extra_state_version": 1},
        "seed_slots.r0c1.alpha_schedule.gate.0.weight": w["d"],  # not seed weights
        "seed_slots.r0c1.seed.scale": w["e"],
        "seed_slots.r0c2._extra_state": {},  # an empty slot
    }
    out = migrate_seed_weights(esper, {"r0c0": "blocks.0.slot", "r0c1": "", "r0c2": "x.slot"})
    assert list(out) == [
        "blocks.0.slot.seed.fc1.weight",
        "blocks.0.slot.seed.fc1.bias",
        "seed.scale",
    ]
    assert out["blocks.0.slot.seed.fc1.weight"] is w["b"] and out["seed.scale"] is w["e"]
    wrapped = {f"_orig_mod.module.{k}": v for k, v in esper.items()}
    assert migrate_seed_weights(wrapped, {"r0c0": "a", "r0c1": "b"}).keys() == {
        "a.seed.fc1.weight",
        "a.seed.fc1.bias",
        "b.seed.scale",
    }
    assert migrate_seed_weights({}, {"r0c0": "a"}) == {}


def test_migrate_seed_weights_errors():
    esper = {"seed_slots.r0c0.seed.w": torch.zeros(1), "seed_slots.r1c0.seed.w": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"\['r1c0'\] hold seed weights but are not in slots"):
        migrate_seed_weights(esper, {"r0c0": "a"})
    with pytest.raises(ValueError, match="'r0c0' and 'r1c0' both map to 'a'"):
        migrate_seed_weights(esper, {"r0c0": "a", "r1c0": "a"})
    with pytest.raises(ValueError, match="not a tensor"):
        migrate_seed_weights({"seed_slots.r0c0.seed.w": [1.0]}, {"r0c0": "a"})
    with pytest.raises(ValueError, match="module names"):
        migrate_seed_weights(esper, {"r0c0": 3})


def test_migrated_esper_lite_weights_load_into_our_slots():
    """An esper-lite-style model state (two slots, blueprints from the fixture) migrates into a
    host whose slots hold the same blueprints; each seed then gives esper-lite's output."""
    cnn, tr = ENTRIES["cnn/conv_heavy/32"], ENTRIES["transformer/attention/32"]
    esper = {"host.stem.weight": torch.zeros(1)}
    esper |= {f"seed_slots.r0c0.seed.{k}": v for k, v in cnn["state"].items()}
    esper |= {f"seed_slots.r0c1.seed.{k}": v for k, v in tr["state"].items()}
    ours = nn.ModuleDict({"c": CnnHost(channels=32), "t": TransformerHost(channels=32)})
    ours["c"].slot.germinate("conv_heavy")
    ours["t"].slot.germinate("attention")
    migrated = migrate_seed_weights(esper, {"r0c0": "c.slot", "r0c1": "t.slot"})
    assert len(migrated) == len(cnn["state"]) + len(tr["state"])
    ours.load_state_dict(ours.state_dict() | migrated, strict=True)
    ours.eval()
    with torch.no_grad():
        for host, entry in ((ours["c"], cnn), (ours["t"], tr)):
            torch.testing.assert_close(host.slot.seed(entry["input"]), entry["eval_out"], **TIGHT)


# ---- in a slot ----


def test_slots_build_their_topologys_blueprint():
    slot = SeedSlot(32, "cnn")
    slot.germinate("conv_light")
    assert isinstance(slot.seed, cnn_bp.ConvLightSeed) and slot.seed_factory == "conv_light"
    assert slot.seed.enhance.conv.weight.shape == (32, 32, 3, 3)
    assert slot.seed.enhance.gn.num_groups == 2
    slot = SeedSlot(16, "transformer")
    slot.germinate("lora", seed_kwargs={"rank": 4})
    assert isinstance(slot.seed, tr_bp.LoRASeed) and slot.seed.down.weight.shape == (4, 16)
    slot = SeedSlot(16, "transformer")
    slot.germinate("norm")
    assert isinstance(slot.seed, tr_bp.TransformerNormSeed)
    slot = SeedSlot(16, "cnn")
    slot.germinate("norm")
    assert isinstance(slot.seed, cnn_bp.NormSeed)
    slot = SeedSlot(16, "transformer")
    slot.germinate("noop")
    assert type(slot.seed) is nn.Identity
    with pytest.raises(ValueError, match="depthwise"):
        SeedSlot(16, "transformer").germinate("depthwise")
    with pytest.raises(ValueError, match="lora"):
        SeedSlot(16, "cnn").germinate("lora")
    with pytest.raises(ValueError, match="bogus"):
        SeedSlot(16, "cnn").germinate("conv_small", seed_kwargs={"bogus": 1})


def test_multiply_germinate_zeroes_the_last_affine_layer():
    slot = SeedSlot(8, "cnn")
    slot.germinate("conv_light", blend=BlendMode.MULTIPLY)
    assert not slot.seed.enhance.conv.weight.any()
    slot = SeedSlot(8, "cnn")
    slot.germinate("conv_light", blend=BlendMode.ADD)  # esper-lite: no zero-init for ADD
    assert slot.seed.enhance.conv.weight.any()
    slot = SeedSlot(8, "cnn")
    slot.germinate("attention", blend=BlendMode.MULTIPLY)
    assert not slot.seed.fc[2].bias.any()


def test_blueprint_names_cannot_be_registered():
    for name in ("norm", "depthwise", "lora", "flex_attention"):
        with pytest.raises(ValueError, match="built-in blueprint"):
            es.register_seed(name, lambda channels: nn.Identity())
    es.register_seed("bp_test_user_seed", lambda channels: nn.Linear(channels, channels))
    slot = SeedSlot(8, "transformer")
    slot.germinate("bp_test_user_seed", seed_kwargs={"channels": 8})
    assert isinstance(slot.seed, nn.Linear)


@pytest.mark.parametrize(
    "topo,name,mode",
    [
        ("cnn", "conv_heavy", BlendMode.ADD),
        ("cnn", "attention", BlendMode.MULTIPLY),
        ("transformer", "flex_attention", BlendMode.GATE),
        ("transformer", "lora", BlendMode.ADD),
    ],
)
def test_checkpoint_of_a_blueprint_reloads_into_an_empty_slot(topo, name, mode, tmp_path):
    host = CnnHost if topo == "cnn" else TransformerHost
    model = host()
    model.slot.germinate(name, blend=mode)
    for p in model.slot.seed.parameters():  # trained away from birth
        p.data.normal_()
    model.slot.start_blending(10, curve="cosine")
    for _ in range(3):
        model.slot.step()
    path = es.save_checkpoint(model, tmp_path / "bp.pt")
    fresh = host()
    es.load_checkpoint(fresh, path)
    assert fresh.slot.stage is Stage.BLENDING and fresh.slot.seed_factory == name
    assert type(fresh.slot.seed) is type(model.slot.seed)
    x = torch.randn(4, 3, 8, 8) if topo == "cnn" else torch.randn(4, 5, 6)
    assert torch.equal(fresh(x), model(x))
    model.eval()
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))


# ---- compiled in multi-slot hosts ----


def _lifecycle_matches_compiled(model, x, names, seeds_from):
    """Germinate ``names`` into the slots (same weights in both twins), leave them in different
    stages (TRAINING, and BLENDING mid-ramp under ADD, MULTIPLY and GATE), compare compiled
    with eager; step every ramp and compare again (no recompile needed for that)."""
    twins = Twins(model, x, lambda m: torch_compile(m, fullgraph=True, backend="aot_eager"))
    modes = [BlendMode.ADD, BlendMode.ADD, BlendMode.MULTIPLY, BlendMode.GATE]
    for i, name in enumerate(names):

        def germinate(slots, i=i, name=name):
            torch.manual_seed(seeds_from + i)
            slots[i].germinate(name, blend=modes[i])
            for p in slots[i].seed.parameters():  # away from birth: every path matters
                p.data.add_(torch.randn_like(p) * 0.3)

        twins.both(germinate)
    for i in range(1, len(names)):
        twins.both(lambda s, i=i: (s[i].start_blending(4), s[i].step()))
    twins.check()
    twins.both(lambda s: [s[i].step() for i in range(1, len(names))])
    twins.check()
    stages = [s.stage for s in slots_of(twins.inner)]
    assert stages == [Stage.TRAINING] + [Stage.BLENDING] * (len(names) - 1)
    assert all(0 < s.alpha.item() < 1 for s in slots_of(twins.inner)[1:])


@pytest.fixture
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.backend_independent
@pytest.mark.usefixtures("_fresh_dynamo")
@pytest.mark.parametrize(
    "names",
    [
        ("noop", "norm", "attention", "depthwise"),
        ("bottleneck", "conv_small", "conv_light", "conv_heavy"),
    ],
    ids=["cnn-a", "cnn-b"],
)
def test_cnn_blueprints_compile(names):
    _lifecycle_matches_compiled(
        MultiSlotCnn(n_slots=4, channels=8), torch.randn(2, 3, 4, 4), names, 10
    )


@pytest.mark.backend_independent
@pytest.mark.usefixtures("_fresh_dynamo")
def test_transformer_blueprints_compile():
    _lifecycle_matches_compiled(
        MultiSlotMlp(n_slots=4, channels=8),
        torch.randn(2, 5, 8),
        ("noop", "norm", "lora", "lora_large"),
        20,
    )


@pytest.mark.usefixtures("_fresh_dynamo")
def test_attention_blueprints_compile_under_both_backends():
    """The one compile test of the Triton-interpreter pass too: attention, flex_attention
    (SDPA in the train step, flex_attention under no_grad) and both MLPs."""
    _lifecycle_matches_compiled(
        MultiSlotMlp(n_slots=4, channels=8),
        torch.randn(2, 5, 8),
        ("attention", "flex_attention", "mlp_small", "mlp"),
        30,
    )


def test_param_counts_match_esper_lites_formulas():
    """The spec's formulas at esper-lite's sizes (C=64, D=384), without building the big ones
    twice: counted on meta tensors."""
    expected = {
        ("cnn", "norm"): 129,
        ("cnn", "attention"): 2112,
        ("cnn", "depthwise"): 4800,
        ("cnn", "bottleneck"): 4480,
        ("cnn", "conv_small"): 4224,
        ("cnn", "conv_light"): 36992,
        ("cnn", "conv_heavy"): 73984,
        ("transformer", "norm"): 769,
        ("transformer", "lora"): 6144,
        ("transformer", "lora_large"): 24576,
        ("transformer", "attention"): 591360,
        ("transformer", "flex_attention"): 591360,
        ("transformer", "mlp_small"): 590976,
        ("transformer", "mlp"): 1181568,
    }
    with torch.device("meta"):
        for (topo, name), count in expected.items():
            module = build_blueprint(topo, name, 64 if topo == "cnn" else 384, {})
            assert sum(p.numel() for p in module.parameters()) == count, name
