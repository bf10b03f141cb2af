"""The model gate: predictions cut into a training step at a yield point, never mid-optimizer-step."""

from __future__ import annotations

import threading
import time

import torch
from torch import nn

from livetrain_widgets.engine.gate import ModelGate


def _net() -> nn.Module:
    return nn.Sequential(*[nn.Sequential(nn.Linear(64, 64), nn.ReLU()) for _ in range(6)], nn.Linear(64, 1))


def test_prediction_runs_inside_a_paused_step_and_sees_unchanged_weights() -> None:
    torch.manual_seed(0)
    net = _net()
    gate = ModelGate()
    gate.attach(net)
    entered_forward = threading.Event()
    release_step = threading.Event()
    events: list[str] = []
    weights_at_prediction: list[torch.Tensor] = []

    def train() -> None:
        with gate.training():
            x = torch.randn(8, 64)
            h = net[0](x)
            entered_forward.set()
            release_step.wait(5)  # a prediction is queued by now
            loss = net[1:](h).pow(2).mean()  # passes yield points: the prediction runs here
            events.append("forward done")
            loss.backward()
            with torch.no_grad():
                for p in net.parameters():
                    p -= 0.1 * p.grad
            events.append("optimizer step")

    def predict() -> None:
        def job() -> None:
            with torch.no_grad():
                events.append("predict")
                weights_at_prediction.append(net[0][0].weight.detach().clone())
                net(torch.randn(2, 64))

        gate.run_prediction(job)

    before = net[0][0].weight.detach().clone()
    t = threading.Thread(target=train)
    t.start()
    assert entered_forward.wait(5)
    p = threading.Thread(target=predict)
    p.start()
    time.sleep(0.05)
    assert events == []  # training holds the model outside yield points
    release_step.set()
    p.join(5)
    t.join(5)
    assert events == ["predict", "forward done", "optimizer step"]
    assert torch.equal(weights_at_prediction[0], before)
    assert not torch.equal(net[0][0].weight, before)


def test_yield_points_in_backward() -> None:
    net = _net()
    gate = ModelGate()
    gate.attach(net)
    calls = []
    orig = gate.yield_point

    def counting() -> None:
        calls.append(torch.is_grad_enabled())
        orig()

    gate.yield_point = counting  # type: ignore[method-assign]
    with gate.training():
        loss = net(torch.randn(4, 64)).sum()
        n_forward = len(calls)
        loss.backward()
    assert n_forward == 7  # one per module with parameters
    assert len(calls) > n_forward  # and more during backward


def test_no_deadlock_under_contention() -> None:
    net = _net()
    gate = ModelGate()
    gate.attach(net)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3)
    stop = threading.Event()
    steps = 0
    preds = 0

    def train() -> None:
        nonlocal steps
        while not stop.is_set():
            with gate.training():
                opt.zero_grad()
                net(torch.randn(16, 64)).pow(2).mean().backward()
                opt.step()
            steps += 1

    def predict() -> None:
        nonlocal preds

        def job() -> torch.Tensor:
            with torch.no_grad():
                return net(torch.randn(1, 64))

        while not stop.is_set():
            assert gate.run_prediction(job).shape == (1, 1)
            preds += 1

    threads = [threading.Thread(target=f) for f in (train, predict, predict)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(5)
        assert not t.is_alive()
    assert steps > 5 and preds > 5


def test_prediction_errors_reach_the_caller_not_the_step() -> None:
    net = _net()
    gate = ModelGate()
    gate.attach(net)
    started = threading.Event()
    go = threading.Event()
    outcome: list[object] = []

    def train() -> None:
        with gate.training():
            h = net[0](torch.randn(2, 64))
            started.set()
            go.wait(5)
            net[1:](h).sum().backward()
            outcome.append("step finished")

    def boom() -> None:
        raise ValueError("bad image")

    t = threading.Thread(target=train)
    t.start()
    assert started.wait(5)

    def predict() -> None:
        try:
            gate.run_prediction(boom)
        except ValueError as exc:
            outcome.append(str(exc))

    p = threading.Thread(target=predict)
    p.start()
    time.sleep(0.05)
    go.set()
    p.join(5)
    t.join(5)
    assert outcome == ["bad image", "step finished"]
    # Outside a step, the prediction runs on the caller's thread.
    assert gate.run_prediction(lambda: threading.get_ident()) == threading.get_ident()
