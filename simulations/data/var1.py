"""VAR(1) Gaussian inputs with targets from a fixed teacher network (THEORY.md §5 "Setting").

    x_t = A x_{t−1} + ε_t,          ε_t ~ N(0, Q),   Q = (1 − a²) I,   A = a · O (O orthogonal)
    s*_t = F(s*_{t−1}, x_t; θ*),    y_t = V* s*_t + c* + σ_y η_t,   η_t ~ N(0, I)

``A = a·O`` has ``‖A‖₂ = a < 1``, so the input chain is stationary and geometrically ergodic with
``Cov(x) = I``; the teacher is an Elman cell of the student's class (``tanh`` or ``identity``)
whose recurrent matrix is ``W* = teacher_rho · O*`` (``O*`` orthogonal), so ``‖W*‖₂`` and its
spectral radius both equal ``teacher_rho < 1``: the teacher's memory decays like ``teacher_rho^t``
in every direction, and ``(x_t, s*_t)`` is a contraction-driven chain.  A student of the teacher's
size can realise it: ``(θ*, φ*)`` is then a global minimiser of the ergodic loss, with
``L(θ*, φ*) = ½ σ_y² n_out``.
With ``activation="identity"`` the joint system is linear and Gaussian and the ergodic loss has the
closed form of :mod:`simulations.linear_theory`.

The teacher instance is drawn from ``seed`` (a problem definition, not run randomness); sampling
uses the generator passed to ``init`` / ``sample``.

The recursion over ``t`` and the replicates is one compiled call
(:func:`~simulations.data.kernels.var1_teacher_steps`): ``sample`` of 100 steps at hidden 16,
inputs 8, one replicate takes 0.35–0.39 µs per step against 4.9 µs with the numpy loop, which
stays as the reference (:meth:`VAR1Teacher._steps_reference`, ``compiled = False``).  Both take
the same random draws in the same order (all ``ε`` of a call at once, then ``η``), so they differ
only by rounding: the order of the products' sums and the compiled ``tanh``
(:func:`~simulations.kernels.tanh_into`, within 4 ulp), a difference that the contraction
``teacher_rho < 1`` keeps at the size of one step's (``tests/test_var1_kernel.py`` derives the
bound).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import DataProcess
from .kernels import var1_teacher_steps
from ..cells import make_cell
from ..readouts import LinearReadout


def orthogonal(rng: np.random.Generator, n: int) -> np.ndarray:
    """A Haar-random ``n × n`` orthogonal matrix."""
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def check_unit(name, value, low=0.0, high=1.0, closed_low=True):
    """Refuse a number outside ``[low, high)`` (``(low, high)`` when ``closed_low`` is False)."""
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) and \
        (low <= value < high if closed_low else low < value < high)
    if not ok:
        raise ValueError(f"{name} must be in {'[' if closed_low else '('}{low}, {high}), got {value!r}")


#: the teacher activations the compiled kernel covers, and its ``tanh`` switch
KERNEL_TANH = {"tanh": True, "identity": False}


@dataclass
class TeacherState:
    x: np.ndarray        # B × m: last input
    s: np.ndarray        # B × k: teacher state


class VAR1Teacher(DataProcess):
    """VAR(1) inputs, targets from a teacher Elman network plus Gaussian noise (mse).

    ``hidden``, ``inputs``, ``n_out``: teacher sizes; ``activation``: ``"tanh"`` or ``"identity"``;
    ``teacher_rho``: ``‖W*‖₂`` = spectral radius of ``W*``; ``ar``: ``‖A‖₂``; ``noise``: ``σ_y``;
    ``out_scale``: scale of ``V*``;
    ``warmup``: steps the teacher runs in ``init`` so that samples start near stationarity.

    ``compiled`` (class attribute): draw the recursion with the compiled kernel (the default) or,
    when false, with the numpy reference loop; the random draws are the same.
    """

    name = "var1-teacher"
    loss = "mse"
    compiled: bool = True

    def __init__(self, hidden: int = 4, inputs: int = 2, n_out: int = 1, activation: str = "tanh",
                 teacher_rho: float = 0.6, ar: float = 0.5, noise: float = 0.1, out_scale: float = 1.0,
                 seed: int = 0, warmup: int = 200):
        check_unit("teacher_rho", teacher_rho, closed_low=False)
        check_unit("ar", ar)
        if not (isinstance(noise, (int, float)) and noise >= 0):
            raise ValueError(f"target noise must be >= 0, got {noise!r}")
        self.hidden, self.m, self.n_out = hidden, inputs, n_out
        self.activation, self.teacher_rho, self.ar = activation, float(teacher_rho), float(ar)
        self.noise, self.out_scale, self.seed, self.warmup = float(noise), float(out_scale), seed, int(warmup)
        rng = np.random.default_rng(seed)
        self.teacher = make_cell("elman", hidden, inputs, activation=activation)
        P = self.teacher.unpack(self.teacher.init(rng))
        P["W"] = teacher_rho * orthogonal(rng, hidden)          # ‖W*‖₂ = spectral radius = teacher_rho
        self.teacher_theta = self.teacher.pack(P)
        self.teacher_readout = LinearReadout(hidden, n_out)
        self.teacher_phi = self.teacher_readout.init(rng) * out_scale
        self.A = ar * orthogonal(rng, inputs)
        self.input_cov = (1.0 - ar * ar) * np.eye(inputs)
        self._chol = np.sqrt(1.0 - ar * ar)
        self._At = np.ascontiguousarray(self.A.T)                              # the kernel's operands
        self._G = np.ascontiguousarray(np.concatenate((P["W"], P["U"], P["b"]), axis=1).T)

    def with_noise(self, noise: float) -> "VAR1Teacher":
        """The same teacher and input law with target noise ``σ_y = noise`` (``0``: the teacher's
        clean output, whose mean loss is the excess loss ``L − ½σ_y² n_out`` with the same gradient)."""
        return VAR1Teacher(self.hidden, self.m, self.n_out, self.activation, self.teacher_rho, self.ar,
                           noise, self.out_scale, self.seed, self.warmup)

    def init(self, rng: np.random.Generator, batch: int) -> TeacherState:
        x = rng.standard_normal((batch, self.m))            # stationary law of x: N(0, I)
        state = TeacherState(x, np.zeros((batch, self.hidden)))
        if self.warmup:
            state, _, _ = self._run(state, self.warmup, rng, targets=False)
        return state

    def sample(self, state: TeacherState, T: int, rng: np.random.Generator):
        return self._run(state, T, rng, targets=True)

    def _run(self, state, T, rng, targets):
        B = state.x.shape[0]
        eps = self._chol * rng.standard_normal((T, B, self.m))
        compiled = self.compiled and self.activation in KERNEL_TANH
        xs, ss = (self._steps if compiled else self._steps_reference)(state, eps)
        if T:
            state = TeacherState(xs[-1].copy(), ss[-1].copy())
        if not targets:
            return state, xs, None
        ys = self.teacher_readout.predict(self.teacher_phi, ss)
        if self.noise > 0:
            ys = ys + self.noise * rng.standard_normal(ys.shape)
        return state, xs, ys

    def _steps(self, state: TeacherState, eps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(x_1 … x_T, s*_1 … s*_T)`` (``T × B × m``, ``T × B × k``) from ``state`` and the
        innovations ``eps`` (``T × B × m``), compiled (:func:`~simulations.data.kernels.var1_teacher_steps`)."""
        T, B, _ = eps.shape
        xs, ss = np.empty((T, B, self.m)), np.empty((T, B, self.hidden))
        var1_teacher_steps(self._At, self._G, KERNEL_TANH[self.activation], np.ascontiguousarray(state.x),
                           np.ascontiguousarray(state.s), eps, xs, ss)
        return xs, ss

    def _steps_reference(self, state: TeacherState, eps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_steps` as a numpy loop over steps (``x @ Aᵀ + ε_t`` and the teacher's
        :meth:`~simulations.cells.base.Cell.step`): the reference of the compiled kernel."""
        T, B, _ = eps.shape
        xs, ss = np.empty((T, B, self.m)), np.empty((T, B, self.hidden))
        x, s = state.x, state.s
        for t in range(T):
            x = x @ self.A.T + eps[t]
            s = self.teacher.step(self.teacher_theta, s, x)
            xs[t], ss[t] = x, s
        return xs, ss
