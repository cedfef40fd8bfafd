"""A tree ensemble walked 16 rows per instruction with AVX-512: the kernel for large trees where the processor has it.

Every row of a block steps down a tree level by level in lockstep (a leaf
loops on itself), :data:`ROUND` levels at a time, and the rows that reached
a leaf then drop out.  A step is three AVX-512 gathers for 16 rows (the
nodes' packed feature and left child, see :func:`pack_nodes`, their
thresholds, then the rows' values of those features) and one comparison;
:data:`VECTORS` vectors of 16 rows walk side by side so that their gathers
overlap, and the levels of a round stay in registers.  Rows drop out by
``vpcompressd``.  Numba emits no gathers or
compresses of its own, so they are LLVM's x86 intrinsics, emitted through
:func:`numba.extending.intrinsic`.

:func:`has_avx512` says whether this processor (and numba's target) has
the instructions; nothing here compiles until :func:`walk_sums` is called.
"""

from __future__ import annotations

import functools

import llvmlite.binding as llvm
import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

__all__ = ["ROUND", "VECTORS", "has_avx512", "pack_nodes", "walk_sums"]

ROUND = 6
"""Levels every row still inside a tree walks before those that reached a leaf drop out."""

VECTORS = 4
"""Vectors of 16 rows walked side by side.  One vector alone was no faster than the partition kernel (its
gathers wait on each other); on bench_trees.py's forests (Intel Xeon host, 2026-12-03, before the nodes were
packed), with 2 vectors the walk was 1.2-1.7x faster than the partition kernel, with 4 1.5-1.9x, with 8
1.2-1.8x."""

LANES = 16
_I1, _I16, _I32, _I64 = (ir.IntType(bits) for bits in (1, 16, 32, 64))
_V16I32, _V16F32, _V16I1 = ir.VectorType(_I32, LANES), ir.VectorType(ir.FloatType(), LANES), ir.VectorType(_I1, LANES)
_PTR = ir.PointerType()


@functools.cache
def has_avx512() -> bool:
    """Whether numba compiles for this processor and it has AVX-512 (its foundation, with which every gather,
    compress and mask here comes)."""
    if numba.config.CPU_NAME not in (None, "host"):  # a fixed target (NUMBA_CPU_NAME) may lack the instructions
        return False
    return bool(llvm.get_host_cpu_features().get("avx512f", False))


def pack_nodes(features, lefts, roots):
    """Each node's feature and left child in one 32-bit word, or None if some tree is too large for it.

    The word is the left child's place in its tree shifted past the
    feature's bits, then the feature: one gather per step instead of two
    (1.14-1.17x faster on bench_trees.py's forests).  Returns
    ``(words, feature_bits)``.
    """
    sizes = np.diff(np.append(roots, len(lefts)))
    place = lefts.astype(np.int64) - np.repeat(roots, sizes)
    bits = max(1, int(features.max(initial=0)).bit_length())
    if place.max(initial=0) >= 1 << (32 - bits):
        return None
    return ((place << bits) | features).astype(np.uint32), bits


def _declare(module, name, ret, args):
    if name in module.globals:
        return module.globals[name]
    return ir.Function(module, ir.FunctionType(ret, args), name=name)


def _splat(builder, value, vector_type):
    one = builder.insert_element(ir.Constant(vector_type, None), value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(one, ir.Constant(vector_type, None), ir.Constant(_V16I32, [0] * LANES))


def _first_lanes(builder, count):
    """The mask of the first ``count`` (0-16, a 64-bit integer) lanes."""
    bits = builder.sub(builder.shl(ir.Constant(_I32, 1), builder.trunc(count, _I32)), ir.Constant(_I32, 1))
    return builder.bitcast(builder.trunc(bits, _I16), _V16I1)


def _vector_at(builder, data, index):
    return builder.bitcast(builder.gep(data, [index]), _V16I32.as_pointer())


def _gather(builder, data, index, mask, floats=False):
    """``data[index]`` in the lanes of ``mask`` (32-bit elements; the others 0, their addresses never read)."""
    name, vector = ("llvm.x86.avx512.mask.gather.dps.512", _V16F32) if floats else \
        ("llvm.x86.avx512.mask.gather.dpi.512", _V16I32)
    gather = _declare(builder.module, name, vector, [vector, _PTR, _V16I32, _V16I1, _I32])
    zero = ir.Constant(vector, 0.0 if floats else 0)
    return builder.call(gather, [zero, builder.bitcast(data, _PTR), index, mask, ir.Constant(_I32, 4)])


def _data(context, builder, signature, args, k):
    return context.make_array(signature.args[k])(context, builder, args[k]).data


@intrinsic
def _walk_round(typingctx, inside, nodes, i, count, words, thresholds, root, bits, flat, offset, n_features):
    """Rows ``inside[i:i + count]`` (``count`` at most 16 x :data:`VECTORS`), at ``nodes[i:i + count]`` of the
    tree at ``root``, step :data:`ROUND` levels down it; their new nodes are written back (whole vectors: the
    arrays are padded).  ``words`` and ``bits`` are :func:`pack_nodes`'."""
    sig = types.void(inside, nodes, i, count, words, thresholds, root, bits, flat, offset, n_features)

    def codegen(context, builder, signature, args):
        inside_p, nodes_p, words_p, thresholds_p, flat_p = (
            _data(context, builder, signature, args, k) for k in (0, 1, 4, 5, 8))
        start, count, root, bits, offset, n_features = (args[k] for k in (2, 3, 6, 7, 9, 10))
        block = builder.gep(flat_p, [offset])
        width = _splat(builder, builder.trunc(n_features, _I32), _V16I32)
        roots = _splat(builder, builder.trunc(root, _I32), _V16I32)
        shift = _splat(builder, builder.trunc(bits, _I32), _V16I32)
        ones = ir.Constant(_V16I32, [1] * LANES)
        feature_mask = builder.sub(builder.shl(ones, shift), ones)
        masks, places, row_starts, at = [], [], [], []
        for v in range(VECTORS):
            lanes = builder.sub(count, ir.Constant(_I64, LANES * v))
            lanes = builder.select(builder.icmp_signed("<", lanes, ir.Constant(_I64, 0)), ir.Constant(_I64, 0), lanes)
            lanes = builder.select(builder.icmp_signed(">", lanes, ir.Constant(_I64, LANES)),
                                   ir.Constant(_I64, LANES), lanes)
            masks.append(_first_lanes(builder, lanes))
            places.append(builder.add(start, ir.Constant(_I64, LANES * v)))
            row_starts.append(builder.mul(builder.load(_vector_at(builder, inside_p, places[v]), align=4), width))
            at.append(builder.load(_vector_at(builder, nodes_p, places[v]), align=4))
        for _ in range(ROUND):  # each level issued for every vector before the next level: their gathers overlap
            word = [_gather(builder, words_p, at[v], masks[v]) for v in range(VECTORS)]
            threshold = [_gather(builder, thresholds_p, at[v], masks[v], floats=True) for v in range(VECTORS)]
            feature = [builder.and_(word[v], feature_mask) for v in range(VECTORS)]
            left = [builder.add(builder.lshr(word[v], shift), roots) for v in range(VECTORS)]
            value = [_gather(builder, block, builder.add(row_starts[v], feature[v]), masks[v], floats=True)
                     for v in range(VECTORS)]
            at = [builder.add(left[v], builder.zext(builder.fcmp_ordered(">", value[v], threshold[v]), _V16I32))
                  for v in range(VECTORS)]
        for v in range(VECTORS):
            builder.store(at[v], _vector_at(builder, nodes_p, places[v]), align=4)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _drop_finished(typingctx, inside, nodes, i, count, leaves, leaf_at, kept, last):
    """Of rows ``inside[i:i + count]`` (at most 16), those at a leaf (every one if ``last``) note it in
    ``leaf_at``; the others are moved to ``inside[kept:]`` / ``nodes[kept:]``.  Returns the new ``kept``."""
    sig = types.uint64(inside, nodes, i, count, leaves, leaf_at, kept, last)

    def codegen(context, builder, signature, args):
        inside_p, nodes_p, leaves_p, leaf_at_p = (_data(context, builder, signature, args, k) for k in (0, 1, 4, 5))
        start, count, kept, last = args[2], args[3], args[6], args[7]
        mask = _first_lanes(builder, count)
        rows = builder.load(_vector_at(builder, inside_p, start), align=4)
        at = builder.load(_vector_at(builder, nodes_p, start), align=4)
        finished = builder.icmp_signed(">=", _gather(builder, leaves_p, at, mask), ir.Constant(_V16I32, [0] * LANES))
        finished = builder.and_(builder.or_(finished, _splat(builder, builder.trunc(last, _I1), _V16I1)), mask)
        scatter = _declare(builder.module, "llvm.x86.avx512.mask.scatter.dpi.512", ir.VoidType(),
                           [_PTR, _V16I1, _V16I32, _V16I32, _I32])
        builder.call(scatter, [builder.bitcast(leaf_at_p, _PTR), finished, rows, at, ir.Constant(_I32, 4)])
        going_on = builder.and_(builder.xor(finished, ir.Constant(_V16I1, [1] * LANES)), mask)
        compress = _declare(builder.module, "llvm.x86.avx512.mask.compress.v16i32", _V16I32,
                            [_V16I32, _V16I32, _V16I1])
        for vector, data in ((rows, inside_p), (at, nodes_p)):  # kept <= i: the lanes were read above
            builder.store(builder.call(compress, [vector, ir.Constant(_V16I32, None), going_on]),
                          _vector_at(builder, data, kept), align=4)
        popcount = _declare(builder.module, "llvm.ctpop.i16", _I16, [_I16])
        return builder.add(kept, builder.zext(builder.call(popcount, [builder.bitcast(going_on, _I16)]), _I64))

    return sig, codegen


@numba.njit(cache=True, nogil=True, boundscheck=False)
def walk_sums(X, thresholds, words, bits, leaves, roots, depths, value_offsets, tree_output, leaf_values, init,
              block):
    """``init`` plus, for every tree in order, the value of the leaf each row of ``X`` (float32) reaches.

    The arrays are :class:`rastercore.models.CompiledTrees`' (a leaf is its
    own left child), the nodes' features and left children packed by
    :func:`pack_nodes` into ``words`` and ``bits``; ``depths[t]`` is tree
    ``t``'s depth.  Rows go through a tree ``block`` at a time (``block``
    times the number of features below 2**31: a row's feature is a 32-bit
    index into the block); the leaves' values are added tree after tree,
    so the sums are the library's to the last bit.
    Only where :func:`has_avx512`.
    """
    n_rows, n_features, n_out = X.shape[0], X.shape[1], init.shape[0]
    flat = X.reshape(-1)
    sums = np.empty((n_rows, n_out), init.dtype)
    for i in range(n_rows):
        sums[i] = init
    step = np.uint64(LANES * VECTORS)
    leaf_at = np.empty(block, np.uint32)
    inside = np.empty(block + LANES * VECTORS, np.uint32)  # padded: whole vectors are read and written
    nodes = np.empty(block + LANES * VECTORS, np.uint32)
    lanes = np.uint64(LANES)
    for start in range(0, n_rows, block):
        m = min(block, n_rows - start)
        offset = np.uint64(start) * np.uint64(n_features)
        for t in range(roots.shape[0]):
            for r in range(m):
                inside[r], nodes[r] = r, roots[t]
            n, levels = np.uint64(m), depths[t]
            while n > 0:
                for i in range(np.uint64(0), n, step):
                    _walk_round(inside, nodes, i, min(step, n - i), words, thresholds, np.uint64(roots[t]),
                                np.uint64(bits), flat, offset, np.uint64(n_features))
                levels -= ROUND
                kept = np.uint64(0)
                for i in range(np.uint64(0), n, lanes):
                    kept = _drop_finished(inside, nodes, i, min(lanes, n - i), leaves, leaf_at, kept,
                                          np.uint64(levels <= 0))
                n = kept
            output, first = tree_output[t], value_offsets[t]
            for r in range(m):
                value = first + leaves[leaf_at[r]]
                if output >= 0:
                    sums[start + r, output] += leaf_values[value, 0]
                else:
                    for j in range(n_out):
                        sums[start + r, j] += leaf_values[value, j]
    return sums
