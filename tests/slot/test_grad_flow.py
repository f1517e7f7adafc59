"""Always-on grad-flow status (docs/origins/ste-assertion-debug-only.md): recorded in forward, read
outside, one warning per slot per blocked episode on the "esper_slot" logger, eager and
compiled."""

from __future__ import annotations

import contextlib
import logging

import pytest
import torch
from torch._dynamo.utils import counters

import esper_slot
from esper_slot import GradFlowMonitor, Stage, check_grad_flow
from tests.support.slot_models import host_and_input


def warnings_from(caplog):
    return [r for r in caplog.records if r.name == "esper_slot" and r.levelno == logging.WARNING]


def set_frozen(module, frozen):
    for p in module.parameters():
        p.requires_grad_(not frozen)


def train_steps(step, x, n=3):
    for _ in range(n):
        step(x).square().sum().backward()


def compile_with(how, model):
    """The model as called: eager, torch.compile (with the Dynamo setting the README asks of
    torch before 2.13, whose default skips parameters' requires_grad guards), or
    esper_slot.compile (which needs nothing: it applies that setting to its own calls)."""
    if how == "torch.compile":
        return torch.compile(model, fullgraph=True, backend="aot_eager")
    if how == "esper_slot.compile":
        return esper_slot.compile(model, fullgraph=True, backend="aot_eager")
    return model


@pytest.mark.parametrize("how", ["eager", "torch.compile", "esper_slot.compile"])
@pytest.mark.parametrize("isolate", [True, False])
def test_frozen_seed_gives_one_warning_per_episode(isolate, how, caplog):
    torch._dynamo.reset()
    counters.clear()
    model, x, make_seed = host_and_input("transformer")
    model.slot.germinate(make_seed(), isolate_gradients=isolate)
    step = compile_with(how, model)
    caplog.set_level(logging.WARNING, logger="esper_slot")
    with contextlib.ExitStack() as stack:
        if how == "torch.compile" and hasattr(
            torch._dynamo.config, "use_recursive_dict_tags_for_guards"
        ):
            stack.enter_context(
                torch._dynamo.config.patch(use_recursive_dict_tags_for_guards=False)
            )
        frozen_seed_episodes(model, step, x, caplog)


def frozen_seed_episodes(model, step, x, caplog):

    train_steps(step, x)
    status = check_grad_flow(step)["slot"]
    assert status.ok and status.expected and status.blocked_steps == 0
    assert not warnings_from(caplog)

    set_frozen(model.slot.seed, True)  # without isolation the features still require grad
    train_steps(step, x, n=4)
    status = check_grad_flow(step)["slot"]
    assert not status.ok and status.expected and status.blocked_steps == 4
    assert any("frozen" in c for c in status.causes)
    train_steps(step, x)
    assert check_grad_flow(step)["slot"].blocked_steps == 7
    (record,) = warnings_from(caplog)  # one warning for the whole episode
    assert "'slot'" in record.getMessage() and "frozen" in record.getMessage()
    assert "checkpoint" in record.getMessage()

    set_frozen(model.slot.seed, False)
    train_steps(step, x, n=1)
    assert check_grad_flow(step)["slot"].ok
    assert len(warnings_from(caplog)) == 1

    set_frozen(model.slot.seed, True)  # a new episode warns again, once
    train_steps(step, x, n=2)
    check_grad_flow(step)
    check_grad_flow(step)
    assert len(warnings_from(caplog)) == 2
    assert not counters["graph_break"]


def test_forward_under_no_grad_in_train_mode_is_blocked(caplog):
    model, x, make_seed = host_and_input("cnn")
    model.slot.germinate(make_seed())
    with torch.no_grad():
        model(x)
    status = model.slot.check_grad_flow()
    assert not status.ok and any("gradients disabled" in c for c in status.causes)
    assert len(warnings_from(caplog)) == 1


def test_eval_mode_forwards_are_not_recorded(caplog):
    model, x, make_seed = host_and_input("cnn")
    model.slot.germinate(make_seed())
    model.eval()
    with torch.no_grad():
        model(x)
    status = model.slot.check_grad_flow()
    assert status.ok and status.forward_passes == 0
    assert not warnings_from(caplog)


def test_healthy_and_dormant_slots_log_nothing(caplog):
    model, x, make_seed = host_and_input("cnn")
    train_steps(model, x)
    status = check_grad_flow(model)["slot"]
    assert status.ok and not status.expected and status.stage == Stage.DORMANT.name
    model.slot.germinate(make_seed())
    model.slot.start_blending(2)
    train_steps(model, x)
    assert check_grad_flow(model)["slot"].ok
    assert not warnings_from(caplog)


def test_monitor_checks_every_n_steps(caplog):
    model, x, make_seed = host_and_input("cnn")
    model.slot.germinate(make_seed())
    set_frozen(model.slot.seed, True)
    monitor = GradFlowMonitor(model, every=3)
    results = []
    for _ in range(6):
        train_steps(model, x, n=1)
        results.append(monitor.step())
    assert [r is not None for r in results] == [False, False, True, False, False, True]
    assert results[-1]["slot"].blocked_steps == 6
    assert len(warnings_from(caplog)) == 1
    with pytest.raises(ValueError, match="every must be a positive int"):
        GradFlowMonitor(model, every=0)


def test_state_dict_does_not_carry_run_telemetry():
    model, _, _ = host_and_input("cnn")
    assert not any("grad_flow" in key for key in model.state_dict())
