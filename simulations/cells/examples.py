"""The built-in cells written as equations (:mod:`.symbolic`): examples of the notation, and the
reference that ``tests/test_symbolic_cells.py`` holds the hand-written cells to (THEORY.md §3)."""
from __future__ import annotations

import sympy as sp

from .symbolic import CellEquations, Equations, sigmoid


def elman(name: str = "elman") -> CellEquations:
    """``s' = tanh(W s + U x + b)``."""
    eq = Equations(name)
    a = eq.gate("a", W=eq.s, U=eq.x, b=1)
    return eq.update(sp.tanh(a))


def gru() -> CellEquations:
    """Standard GRU: the reset gate acts before the recurrent product, ``h̃ = tanh(W_h (r ⊙ s) + …)``."""
    eq = Equations("gru")
    s, x = eq.s, eq.x
    z = sigmoid(eq.gate("z", W_z=s, U_z=x, b_z=1))
    r = sigmoid(eq.gate("r", W_r=s, U_r=x, b_r=1))
    h = sp.tanh(eq.gate("h", W_h=r * s, U_h=x, b_h=1))
    return eq.update((1 - z) * s + z * h)


def gru_reset_after() -> CellEquations:
    """Reset-after GRU (cuDNN's and torch's form): ``h̃ = tanh(r ⊙ (W_h s + b_hr) + U_h x + b_h)``."""
    eq = Equations("gru-reset-after")
    s, x = eq.s, eq.x
    z = sigmoid(eq.gate("z", W_z=s, U_z=x, b_z=1))
    r = sigmoid(eq.gate("r", W_r=s, U_r=x, b_r=1))
    ahh = eq.gate("hh", W_h=s, b_hr=1)
    h = sp.tanh(r * ahh + eq.gate("h", U_h=x, b_h=1))
    return eq.update((1 - z) * s + z * h)


def lstm() -> CellEquations:
    """LSTM with state ``[h; c]``: ``c' = f c + i g``, ``h' = o tanh(c')``."""
    eq = Equations("lstm", state=("h", "c"))
    h, c = eq.state
    a = {g: eq.gate(g, **{f"W_{g}": h, f"U_{g}": eq.x, f"b_{g}": 1}) for g in "ifgo"}
    i, f, o = (sigmoid(a[g]) for g in "ifo")
    c_new = f * c + i * sp.tanh(a["g"])
    return eq.update(o * sp.tanh(c_new), c_new)


#: built-in cell name -> its equations
EQUATIONS = {"elman": elman, "contractive-elman": lambda: elman("contractive-elman"), "gru": gru,
             "gru-reset-after": gru_reset_after, "lstm": lstm}
