"""The gates' pre-activations of a cell in one compiled pass over ``θ`` (THEORY.md §3).

A cell's forward step starts from ``a_g = Σ_A A v_{source(A)}`` for each gate ``g`` (for an Elman
cell ``a = [W U b] â``).  With numpy each block is one product and one addition (a GRU: nine products
and six additions, each a call of about 0.5–2 µs, while the arithmetic at ``k = 64`` takes about
1 µs), and a masked block must first be copied from ``θ``'s free entries into a zero-filled matrix.
:func:`affine_gates` forms every gate's pre-activation in one call straight from ``θ``: a full
block as column-by-column ``axpy`` (``θ`` holds it column-major), a masked block from its free
entries only (``nnz`` products, ``θ`` read in order, the output entry scattered), and, when asked,
copies a masked block's free entries into its matrix in the same pass (the matrices ``D_t``'s
factored terms read), or, when those matrices already hold ``θ``'s entries (a held ``θ``,
:meth:`~simulations.cells.base.Cell.hold`), multiplies through them.  Reference:
:func:`affine_gates_reference`.

Layout (``θ``'s, :mod:`simulations.jacobians.blocks`): a block at ``off`` holds its free entries
in column-major order, entry ``e`` at ``(idx_i[e], idx_j[e])``; a full block's entry ``(i, j)``
is at ``off + j·n_out + i``.
"""
from __future__ import annotations

import numba
import numpy as np

#: columns of the block table (one row per block): θ offset, free entries, outputs, inputs,
#: output offset in ``a``, source (0: ``u``, 1: ``w``, 2: the constant 1), source column offset,
#: 1 if full (else 0; 2 for a masked block multiplied through its matrix when refreshed or current,
#: 3 only when current), first row
#: of the block's masked entries in ``entries``, matrix offset in ``store``
OFF, SIZE, N_OUT, N_IN, OUT, SRC, SRC_OFF, FULL, ENTRY, STORE = range(10)
SOURCE_U, SOURCE_W, SOURCE_ONE = 0, 1, 2
#: the usual sources of a cell's blocks (state, input, constant) as the pre-activation pass reads them
STATE_INPUT_ONE = {"s": (SOURCE_U, 0), "x": (SOURCE_W, 0), "one": (SOURCE_ONE, 0)}
_ONES = np.ones(1)          # the constant source (a bias block has one input)
#: how :func:`affine_gates` reads a masked block: from ``θ``'s free entries (the matrices left as
#: they are), copying them into its matrix first (``REFRESH``: then a block marked 2 is multiplied
#: through it), or through its matrix, which holds them already (``CURRENT``: a block marked 2 or 3)
FREE, REFRESH, CURRENT = 0, 1, 2


@numba.njit(cache=True, nogil=True)
def _add_columns(A, n_out, n_in, v, ao):
    """``ao += A v`` for ``A`` (``n_out × n_in``) given column-major (flat, ``A[i, j]`` at
    ``j·n_out + i``); ``v``: ``n_in``.  Each output adds its ``n_in`` products in order ``j``, four
    columns per pass over ``ao``."""
    j = 0
    while j + 4 <= n_in:
        c0 = A[j * n_out:(j + 1) * n_out]
        c1 = A[(j + 1) * n_out:(j + 2) * n_out]
        c2 = A[(j + 2) * n_out:(j + 3) * n_out]
        c3 = A[(j + 3) * n_out:(j + 4) * n_out]
        v0, v1, v2, v3 = v[j], v[j + 1], v[j + 2], v[j + 3]
        for i in range(n_out):
            t = ao[i] + c0[i] * v0
            t = t + c1[i] * v1
            t = t + c2[i] * v2
            ao[i] = t + c3[i] * v3
        j += 4
    while j < n_in:
        c0 = A[j * n_out:(j + 1) * n_out]
        v0 = v[j]
        for i in range(n_out):
            ao[i] += c0[i] * v0
        j += 1


@numba.njit(cache=True, nogil=True)
def affine_gates(theta, u, w, blocks, entries, store, mode, a):
    """``a[b, out + i] = Σ_{blocks} Σ_j A[i, j] v[b, j]`` for every replicate ``b`` (THEORY.md §3, a
    gate's pre-activation), each block ``A`` read from ``θ``'s free entries::

        full:    for j, for i:   a[b, out + i] += θ[tb, off + j·n_out + i] · v[b, j]
        masked:  for e:          a[b, out + I[e]] += θ[tb, off + e] · v[b, J[e]]

    with ``v`` the block's source (``u[:, src_off:]``, ``w[:, src_off:]`` or 1) and ``tb = b`` when
    ``θ`` has a row per replicate, else 0.  ``mode`` :data:`REFRESH`: a masked block's free entries
    are copied into its matrix in ``store`` (``store[tb, pos[e]] = θ[tb, off + e]``, other entries
    untouched: zero), and a block marked 2 (dense enough) is multiplied through its matrix as a
    full block (four products per load of the output instead of one scattered update per entry);
    :data:`CURRENT` (the matrices hold those entries already): so is a block marked 2 or 3;
    :data:`FREE`: every masked block from its free entries, ``store`` not read.  Either way each
    output adds its block's products in column order (a masked entry's zeros add nothing), blocks
    in table order, from 0: the ways give the same numbers.

    ``theta``: ``B' × p`` (``B' ∈ {1, B}``); ``u``, ``w``: ``B × ·``; ``blocks``: ``n_blocks × 10``
    int64 (columns :data:`OFF` … :data:`STORE`); ``entries``: int32, for each masked block from its
    row's :data:`ENTRY` on, ``I[e]``, then ``J[e]``, then the entries' store positions (``size``
    numbers each, ``e`` in θ's order); ``store``: ``B' × ·``; ``mode``: :data:`FREE`,
    :data:`REFRESH` or :data:`CURRENT`; ``a``: ``B × n`` (overwritten).
    """
    B, n = a.shape
    shared = theta.shape[0] == 1
    for b in range(B):
        tb = 0 if shared else b
        th, ab = theta[tb], a[b]
        for i in range(n):
            ab[i] = 0.0
        write = mode == REFRESH and (b == 0 or not shared)
        for r in range(blocks.shape[0]):
            off, size, n_out, n_in = blocks[r, OFF], blocks[r, SIZE], blocks[r, N_OUT], blocks[r, N_IN]
            out, src, so = blocks[r, OUT], blocks[r, SRC], blocks[r, SRC_OFF]
            ao = ab[out:out + n_out]
            if src == SOURCE_ONE:
                v = _ONES[:n_in]
            elif src == SOURCE_U:
                v = u[b, so:so + n_in]
            else:
                v = w[b, so:so + n_in]
            if blocks[r, FULL] == 1:
                _add_columns(th[off:off + size], n_out, n_in, v, ao)
                continue
            e0, st = blocks[r, ENTRY], blocks[r, STORE]
            vals = th[off:off + size]
            if write:                            # the matrix, refreshed in θ's order (increasing positions)
                pos, sb = entries[e0 + 2 * size:e0 + 3 * size], store[tb, st:]
                for e in range(size):
                    sb[pos[e]] = vals[e]
            kind = blocks[r, FULL]
            if (mode == REFRESH and kind == 2) or (mode == CURRENT and kind >= 2):
                _add_columns(store[tb, st:st + n_out * n_in], n_out, n_in, v, ao)
            else:                                # free entries in θ's order: I, J
                rows, cols = entries[e0:e0 + size], entries[e0 + size:e0 + 2 * size]
                for e in range(size):
                    ao[rows[e]] += vals[e] * v[cols[e]]


def affine_gates_reference(theta, u, w, blocks, entries, store, mode, a):
    """numpy reference of :func:`affine_gates`: each block formed as a dense matrix from ``θ``,
    then one product per block (``a`` overwritten; ``store`` refreshed when ``mode`` is
    :data:`REFRESH`, never read)."""
    B = a.shape[0]
    th = np.broadcast_to(theta, (B, theta.shape[1]))
    a[...] = 0.0
    for row in blocks:
        off, size, n_out, n_in, out, src, so, full, e0, st = (int(v) for v in row)
        if src == SOURCE_ONE:
            v = np.ones((B, n_in))
        else:
            v = (u if src == SOURCE_U else w)[:, so:so + n_in]
        if full == 1:
            A = th[:, off:off + size].reshape(B, n_in, n_out).swapaxes(1, 2)
        else:
            rows, cols, pos = entries[e0:e0 + 3 * size].reshape(3, size)
            A = np.zeros((B, n_out, n_in))
            A[:, rows, cols] = th[:, off:off + size]
            if mode == REFRESH:
                store[:, st + pos] = theta[:, off:off + size]
        a[:, out:out + n_out] += np.matmul(A, v[:, :, None])[:, :, 0]
