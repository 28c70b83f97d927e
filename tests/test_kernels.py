"""The kernel table against the shaders: every shaders/<name>.comp has one entry in
vkconvt.kernels.KERNELS and the other way round, and each shader's Push block (field names, order,
uint/int) and specialization constants (constant_id order) are exactly the table's, so a shader
and its host side cannot drift apart."""
import glob
import os
import re

import numpy as np
import pytest

from vkconvt import kernels
from vkconvt.kernels import cpu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = {os.path.splitext(os.path.basename(p))[0]: p for p in glob.glob(os.path.join(ROOT, "shaders", "*.comp"))}


def source(name):
    """The shader a kernel is compiled from (float16 twins: their base's, shaders/variants.txt)."""
    return SOURCES[kernels.KERNELS[name].shader]


def strip_comments(text):
    return re.sub(r"//[^\n]*", "", re.sub(r"/\*.*?\*/", "", text, flags=re.S))


def push_block(text):
    m = re.search(r"layout\s*\(\s*push_constant\s*\)\s*uniform\s+\w+\s*\{(.*?)\}", text, re.S)
    assert m, "no push_constant block"
    fields = re.findall(r"\b(uint|int|float)\s+(\w+)\s*;", m.group(1))
    return ([name for _, name in fields], {name for typ, name in fields if typ == "int"},
            {name for typ, name in fields if typ == "float"})


def spec_constants(text):
    ids = {}
    for m in re.finditer(r"layout\s*\(\s*constant_id\s*=\s*(\d+)\s*\)\s*const\s+\w+\s+(\w+)", text):
        ids[int(m.group(1))] = m.group(2)
    for m in re.finditer(r"local_size_(x|y|z)_id\s*=\s*(\d+)", text):
        ids[int(m.group(2))] = f"local_size_{m.group(1)}"
    return [ids[i] for i in sorted(ids)], sorted(ids)


def test_every_shader_has_one_table_entry():
    assert sorted(SOURCES) == sorted(k.name for k in kernels.KERNELS.values() if k.storage == "float32")
    for k in kernels.KERNELS.values():         # float16 twins: same source, same host description
        if k.storage == "float16":
            base = kernels.KERNELS[k.shader]
            assert k.name == base.name + "_f16" and (k.push, k.spec, k.bindings, k.op) == (
                base.push, base.spec, base.bindings, base.op)


@pytest.mark.parametrize("name", sorted(kernels.KERNELS))
def test_push_block_matches_the_table(name):
    kern = kernels.KERNELS[name]
    text = strip_comments(open(source(name)).read())
    names, signed, floats = push_block(text)
    assert tuple(names) == kern.push, f"{name}.comp Push {names} != table {kern.push}"
    assert signed == set(kern.signed), f"{name}.comp int fields {signed} != table {kern.signed}"
    assert floats == set(kern.floats), f"{name}.comp float fields {floats} != table {kern.floats}"
    assert kern.push[-3:] == kernels.GRID


@pytest.mark.parametrize("name", sorted(kernels.KERNELS))
def test_spec_constants_match_the_table(name):
    kern = kernels.KERNELS[name]
    names, ids = spec_constants(strip_comments(open(source(name)).read()))
    assert ids == list(range(len(kern.spec))), f"{name}.comp constant_ids {ids} are not 0..{len(kern.spec) - 1}"
    assert len(names) == len(kern.spec)
    for cls in kernels.DEVICE_CLASSES:
        assert len(kern.defaults[cls]) == len(kern.spec), f"{name}: defaults[{cls}] vs spec {kern.spec}"
    assert kern.op in kernels.OPS and kern in kernels.variants(kern.op, kern.storage)


@pytest.mark.parametrize("name", sorted(kernels.KERNELS))
def test_bindings_are_documented(name):
    """Every binding's first declaration (later ones may alias it as vec2/vec4 views) carries the
    table's shape as its comment."""
    text = open(source(name)).read()
    first = {}
    for b, comment in re.findall(r"binding\s*=\s*(\d+)\)\s*(?:readonly|writeonly)?\s*buffer\s+\w+\s*\{[^}]*\}\s*;"
                                 r"[ \t]*(?://[ \t]*(.*))?", text):
        first.setdefault(int(b), comment)
    assert sorted(first) == list(range(len(kernels.KERNELS[name].bindings)))
    for b, (_, shape) in enumerate(kernels.KERNELS[name].bindings):
        assert first[b].strip().startswith(shape.split(" ")[0]), f"{name}: binding {b} comment {first[b]!r} vs {shape!r}"


def test_pack_checks_names_and_ranges():
    kern = kernels.KERNELS["col2im_1d"]
    fields = dict.fromkeys(kern.push, 0)
    assert len(kernels.pack("col2im_1d", **fields)) == len(kern.push)
    with pytest.raises(KeyError, match="missing"):
        kernels.pack("col2im_1d", **{k: v for k, v in fields.items() if k != "C"})
    fields["pad"] = -5
    assert kernels.pack("col2im_1d", **fields)[kern.push.index("pad")] == (1 << 32) - 5
    fields["C"] = 1 << 32
    with pytest.raises(OverflowError):
        kernels.pack("col2im_1d", **fields)


@pytest.mark.parametrize("ci_dim, dtype", [(16, np.float32), (33, np.float32), (100, np.float16), (257, np.float32)])
def test_weight_repack_in_two_threads_equals_one(monkeypatch, ci_dim, dtype):
    """A large one-off weight is repacked by two threads (half the input channels each); the
    result is the one-thread repack's, into float32 and float16 buffers, for channel counts that
    are and are not multiples of the 16-channel blocks."""
    rng = np.random.default_rng(ci_dim)
    w = rng.standard_normal((2, ci_dim, 5, 3), dtype=np.float32)
    want = np.zeros((2, 3, ci_dim, 8), dtype)
    monkeypatch.setattr(cpu, "PARALLEL_FLOATS", 1 << 62)
    cpu._blocked_transpose(want, w, ci_dim)
    got = np.zeros_like(want)
    monkeypatch.setattr(cpu, "PARALLEL_FLOATS", 1)
    monkeypatch.setattr(cpu, "CPUS", 2)
    cpu._blocked_transpose(got, w, ci_dim)
    assert np.array_equal(got, want)
    assert np.array_equal(got[..., :5], w.transpose(0, 3, 1, 2).astype(dtype))


def test_weight_repack_error_in_the_second_thread_is_raised(monkeypatch):
    """An error in the helper thread's half (here a destination too short for it) reaches the caller."""
    monkeypatch.setattr(cpu, "PARALLEL_FLOATS", 1)
    monkeypatch.setattr(cpu, "CPUS", 2)
    w = np.ones((1, 64, 4, 2), np.float32)
    short = np.zeros((1, 2, 40, 4), np.float32)       # channels 40..63 (the second half) do not fit
    with pytest.raises(ValueError):
        cpu._blocked_transpose(short, w, 64)
