"""PyTorch layers onto cells and θ (``simulations/interop.py``): against a committed fixture made
with torch (no torch needed), and against torch itself when it is installed."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rtrl_validation.proofs_checks.gradcheck import linearization_ops, rounding_bound
from rtrl_validation.proofs_checks.symbolic import gamma
from rtrl_validation.simulations import LinearReadout, make_estimator, run_sequence
from rtrl_validation.simulations.interop import from_weights, gradient_to_torch, to_weights

FIXTURE = Path(__file__).parent / "fixtures" / "torch_layers"
META = json.loads(FIXTURE.with_suffix(".json").read_text())
KINDS = META["kinds"]


def fixture(kind):
    with np.load(FIXTURE.with_suffix(".npz"), allow_pickle=False) as data:
        return {key.split(".", 1)[1]: data[key] for key in data.files if key.startswith(kind + ".")}


def readout_for(cell, V, c):
    """φ of a LinearReadout reading ``h`` (the first ``hidden`` state entries) with ``V``, ``c``."""
    Vs = np.zeros((V.shape[0], cell.k))
    Vs[:, :cell.hidden] = V
    return LinearReadout(cell.k, V.shape[0]), np.concatenate([Vs.T.ravel(), c])


def forward_bound(cell, T):
    """``2γ_N`` with ``N = T(k+m+2)`` + the linearization's operations (two float64 evaluations)."""
    return 2 * gamma(T * (cell.k + cell.m + 2) + linearization_ops(cell.k, cell.m))


def ours(kind, f):
    cell, theta = from_weights(kind, {n: f[n] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
    readout, phi = readout_for(cell, f["V"], f["c"])
    res = run_sequence(cell, theta, readout, phi, f["xs"], f["ys"], make_estimator("rtrl"), record_states=True)
    return cell, theta, readout, phi, res


@pytest.mark.parametrize("kind", KINDS)
def test_outputs_and_gradients_match_torch_fixture(kind):
    f = fixture(kind)
    cell, theta, readout, phi, res = ours(kind, f)
    T, n = f["h"].shape
    states = res.states[1:, 0]
    # forward: each state entry within γ_N max(1, |s|), N = T(k+m+2) + the linearization's operations
    bound = forward_bound(cell, T)
    ref = f["h"] if kind != "lstm" else np.concatenate([f["h"], f["cell"]], axis=1)
    assert np.all(np.abs(states - ref) <= bound * np.maximum(1.0, np.abs(ref)))
    assert abs(res.loss[0] - f["loss"]) <= bound * T * max(1.0, abs(float(f["loss"])))
    # gradient: RTRL's dL/dθ mapped to torch's parameters against autograd, within 2γ_N G_abs
    rb = rounding_bound(cell, theta, readout, phi, f["xs"], f["ys"])[0]
    grads = gradient_to_torch(kind, cell, res.grad_theta[0])
    bounds = gradient_to_torch(kind, cell, 2 * rb + np.finfo(float).tiny)
    for name, g in grads.items():
        assert np.all(np.abs(g - f[f"grad.{name}"]) <= np.abs(bounds[name])), name


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip(kind):
    f = fixture(kind)
    cell, theta = from_weights(kind, {n: f[n] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
    w = to_weights(kind, cell, theta)
    again = from_weights(kind, w)[1]
    assert np.array_equal(again, theta)
    np.testing.assert_array_equal(w["weight_hh"], f["weight_hh"])      # the GRU's z is negated twice
    np.testing.assert_array_equal(w["weight_ih"], f["weight_ih"])
    np.testing.assert_array_equal(w["bias_ih"] + w["bias_hh"], f["bias_ih"] + f["bias_hh"]) if kind != "gru" \
        else np.testing.assert_array_equal(w["bias_hh"][6:], f["bias_hh"][6:])


def test_gru_update_gate_sign():
    """torch's z is our 1 − z: our W_z is minus torch's W_hz (rows r, z, n)."""
    f = fixture("gru")
    cell, theta = from_weights("gru", {n: f[n] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
    P = cell.unpack(theta)
    np.testing.assert_array_equal(P["W_z"], -f["weight_hh"][3:6])
    np.testing.assert_array_equal(P["W_r"], f["weight_hh"][0:3])
    np.testing.assert_array_equal(P["b_hr"][:, 0], f["bias_hh"][6:9])


def test_bad_weights_are_refused():
    with pytest.raises(ValueError, match="unknown torch layer kind"):
        from_weights("transformer", {})
    f = fixture("rnn")
    with pytest.raises(ValueError, match="one unidirectional layer"):
        from_weights("rnn", {"weight_ih_l1": f["weight_ih"], "weight_ih": f["weight_ih"], "weight_hh": f["weight_hh"]})


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_against_torch(kind):
    torch = pytest.importorskip("torch")
    from rtrl_validation.simulations.interop import from_torch, to_torch
    torch.manual_seed(1)
    cls = {"rnn": (torch.nn.RNNCell, torch.nn.RNN), "gru": (torch.nn.GRUCell, torch.nn.GRU),
           "lstm": (torch.nn.LSTMCell, torch.nn.LSTM)}[kind]
    x = torch.randn(4, 2, dtype=torch.float64)
    for module in (cls[0](2, 3).double(), cls[1](2, 3).double()):
        cell, theta = from_torch(module)
        with torch.no_grad():
            out = module(x) if module.__class__ in (cls[0],) else module(x[:, None])[0][:, 0]
        if module.__class__ is cls[0]:
            out = out[0] if kind == "lstm" else out          # a batch of 4 single steps
            s = np.zeros((4, cell.k))
            mine = cell.step(theta, s, x.numpy())[:, :3]
        else:
            s = np.zeros((1, cell.k))
            mine = []
            for t in range(4):
                s = cell.step(theta, s, x[t:t + 1].numpy())
                mine.append(s[0, :3])
            mine = np.array(mine)
        bound = forward_bound(cell, 4) * np.maximum(1.0, np.abs(out.numpy()))
        assert np.all(np.abs(mine - out.numpy()) <= bound)
        other = type(module)(2, 3).double()
        to_torch(other, cell, theta)
        with torch.no_grad():
            again = other(x) if module.__class__ is cls[0] else other(x[:, None])[0][:, 0]
        again = again[0] if (kind == "lstm" and module.__class__ is cls[0]) else again
        assert np.all(np.abs(again.numpy() - out.numpy()) <= bound)
