"""PyTorch's recurrent layers onto this package's cells and ``θ``, and back.

Supported (one layer, unidirectional, ``tanh`` for the RNN, no LSTM projection):

=====================  ====================  ==================================================
torch module           cell                  mapping
=====================  ====================  ==================================================
``nn.RNNCell``         ``elman``             ``W = W_hh``, ``U = W_ih``, ``b = b_ih + b_hh``
``nn.RNN``
``nn.GRUCell``         ``gru-reset-after``   torch's gate order is ``(r, z, n)``; its new state is
``nn.GRU``                                   ``(1 − z) n + z h``, ours ``(1 − z) h + z h̃``: our
                                             ``z`` is torch's ``1 − z``, so ``W_z = −W_hz``,
                                             ``U_z = −W_iz``, ``b_z = −(b_iz + b_hz)``; ``W_r = W_hr``,
                                             ``U_r = W_ir``, ``b_r = b_ir + b_hr``; torch's ``n`` is the
                                             reset-after candidate: ``W_h = W_hn``, ``b_hr = b_hn``
                                             (inside the reset), ``U_h = W_in``, ``b_h = b_in``
``nn.LSTMCell``        ``lstm``              gate order ``(i, f, g, o)``; ``W_g = W_h·``, ``U_g = W_i·``,
``nn.LSTM``                                  ``b_g = b_i· + b_h·``; our state is ``[h; c]``
=====================  ====================  ==================================================

torch keeps two biases where one suffices (except the GRU's ``b_hn``, which the reset gate
multiplies): going to ``θ`` adds them; going back to torch puts the sum in ``b_ih`` and zeros in
``b_hh``.  Gradients map by the chain rule: a summed bias's gradient goes to both torch biases, a
negated block's gradient is negated (:func:`gradient_to_torch`).

The functions on weight dictionaries (``{"weight_ih": …}``, numpy arrays, torch's names with or
without the ``_l0`` suffix) need no torch; :func:`from_torch` and :func:`to_torch` take modules.
"""
from __future__ import annotations

import numpy as np

from .cells import make_cell
from .cells.base import Cell

#: torch layer kind -> cell name
CELL_OF = {"rnn": "elman", "gru": "gru-reset-after", "lstm": "lstm"}
#: torch's gate order in the stacked weights, per kind
TORCH_GATES = {"rnn": ("a",), "gru": ("r", "z", "n"), "lstm": ("i", "f", "g", "o")}
NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def _blocks(kind: str) -> list[tuple]:
    """``(our block, torch gate, "ih"/"hh"/"bias"/"bias_hh", sign)`` for every block of the cell;
    ``"bias"`` means ``b_ih + b_hh`` of the gate."""
    if kind == "rnn":
        return [("W", "a", "hh", 1), ("U", "a", "ih", 1), ("b", "a", "bias", 1)]
    if kind == "gru":
        return [("W_z", "z", "hh", -1), ("U_z", "z", "ih", -1), ("b_z", "z", "bias", -1),
                ("W_r", "r", "hh", 1), ("U_r", "r", "ih", 1), ("b_r", "r", "bias", 1),
                ("W_h", "n", "hh", 1), ("b_hr", "n", "bias_hh", 1),
                ("U_h", "n", "ih", 1), ("b_h", "n", "bias_ih", 1)]
    if kind == "lstm":
        return [(f"{p}_{g}", g, part, 1) for g in "ifgo" for p, part in (("W", "hh"), ("U", "ih"), ("b", "bias"))]
    raise ValueError(f"unknown torch layer kind {kind!r}; choose from {', '.join(CELL_OF)}")


def _normalise(weights: dict) -> dict:
    """Torch names without the layer suffix, as float64 arrays; a missing bias is zero."""
    out = {}
    for key, value in weights.items():
        name = key[:-3] if key.endswith("_l0") else key
        if name in NAMES:
            out[name] = np.asarray(value, dtype=float)
        elif key.endswith(("_l1", "_reverse")) or "_l0_" in key or "proj" in key:
            raise ValueError(f"only one unidirectional layer without projection is supported (found {key!r})")
    if "weight_ih" not in out or "weight_hh" not in out:
        raise ValueError("the weights need weight_ih and weight_hh")
    rows = out["weight_hh"].shape[0]
    for b in ("bias_ih", "bias_hh"):
        out.setdefault(b, np.zeros(rows))
    return out


def _gate_rows(kind: str, gate: str, hidden: int) -> slice:
    i = TORCH_GATES[kind].index(gate)
    return slice(i * hidden, (i + 1) * hidden)


def from_weights(kind: str, weights: dict, **cell_options) -> tuple[Cell, np.ndarray]:
    """The cell and ``θ`` (``p``) equal to a torch layer of ``kind`` (``"rnn"``, ``"gru"``,
    ``"lstm"``) with ``weights`` (torch's names -> arrays: ``weight_ih`` ``G·n × m``, ``weight_hh``
    ``G·n × n``, ``bias_ih``, ``bias_hh`` ``G·n``)."""
    blocks = _blocks(kind)
    w = _normalise(weights)
    n_gates = len(TORCH_GATES[kind])
    hidden, m = w["weight_hh"].shape[1], w["weight_ih"].shape[1]
    if w["weight_hh"].shape[0] != n_gates * hidden:
        raise ValueError(f"weight_hh of a {kind} layer must be {n_gates}·hidden × hidden, got {w['weight_hh'].shape}")
    cell = make_cell(CELL_OF[kind], hidden, m, **cell_options)
    mats = {}
    for name, gate, part, sign in blocks:
        rows = _gate_rows(kind, gate, hidden)
        if part in ("ih", "hh"):
            A = w[f"weight_{part}"][rows]
        elif part == "bias":
            A = (w["bias_ih"][rows] + w["bias_hh"][rows])[:, None]
        else:
            A = w[part][rows][:, None]
        mats[name] = sign * A
    return cell, cell.pack(mats)


def _torch_layout(kind: str, cell: Cell, values: np.ndarray, summed_bias: tuple) -> dict:
    """``values`` (``p``, in θ's layout) placed in torch's arrays; a summed bias goes to each of the
    torch biases named in ``summed_bias``, a negated block is negated back."""
    P = cell.unpack(np.asarray(values, dtype=float))
    n, m = cell.hidden, cell.m
    G = len(TORCH_GATES[kind])
    out = {"weight_ih": np.zeros((G * n, m)), "weight_hh": np.zeros((G * n, n)),
           "bias_ih": np.zeros(G * n), "bias_hh": np.zeros(G * n)}
    for name, gate, part, sign in _blocks(kind):
        rows = _gate_rows(kind, gate, n)
        A = sign * np.asarray(P[name])
        if part in ("ih", "hh"):
            out[f"weight_{part}"][rows] = A
        else:
            for bias in (summed_bias if part == "bias" else (part,)):
                out[bias][rows] = A[:, 0]
    return out


def to_weights(kind: str, cell: Cell, theta: np.ndarray) -> dict:
    """Inverse of :func:`from_weights` (torch's names without suffix -> arrays; summed biases go to
    ``bias_ih``, ``bias_hh`` is zero there)."""
    return _torch_layout(kind, cell, theta, ("bias_ih",))


def gradient_to_torch(kind: str, cell: Cell, grad_theta: np.ndarray) -> dict:
    """``dL/dθ`` (``p``) as the gradients of torch's parameters (the chain rule through
    :func:`from_weights`: a summed bias's gradient goes to both biases, a negated block's is negated)."""
    return _torch_layout(kind, cell, grad_theta, ("bias_ih", "bias_hh"))


def torch_kind(module) -> str:
    """``"rnn"``, ``"gru"`` or ``"lstm"`` for a supported torch module; ``ValueError`` otherwise."""
    from torch import nn
    for kind, types in (("rnn", (nn.RNNCell, nn.RNN)), ("gru", (nn.GRUCell, nn.GRU)),
                        ("lstm", (nn.LSTMCell, nn.LSTM))):
        if isinstance(module, types):
            if getattr(module, "nonlinearity", "tanh") != "tanh":
                raise ValueError("only nonlinearity='tanh' RNNs map onto the elman cell")
            if getattr(module, "num_layers", 1) != 1 or getattr(module, "bidirectional", False) \
                    or getattr(module, "proj_size", 0):
                raise ValueError("only one unidirectional layer without projection is supported")
            return kind
    raise ValueError(f"unsupported torch module {type(module).__name__}")


def from_torch(module, **cell_options) -> tuple[Cell, np.ndarray]:
    """The cell and ``θ`` of a torch ``RNNCell``/``RNN``/``GRUCell``/``GRU``/``LSTMCell``/``LSTM``."""
    kind = torch_kind(module)
    weights = {k: v.detach().cpu().double().numpy() for k, v in module.state_dict().items()}
    return from_weights(kind, weights, **cell_options)


def to_torch(module, cell: Cell, theta: np.ndarray) -> None:
    """Copy ``θ`` into a torch module of the matching kind (in place, in the module's dtype)."""
    import torch
    kind = torch_kind(module)
    weights = to_weights(kind, cell, theta)
    state = module.state_dict()
    for key in state:
        name = key[:-3] if key.endswith("_l0") else key
        state[key] = torch.as_tensor(weights[name], dtype=state[key].dtype)
    module.load_state_dict(state)
