"""The issue-19 kit: conv1d and conv_transpose1d-backward kernels, checked standalone.

Host side (no device): the conv1d folding is exact and keeps every shader index below 2**31, push
arrays pack like kernels.pack, and the unregistered kernel records agree with their shaders (Push
fields and order, int/float fields, constant_ids, binding comments, variants.txt twins) the way
tests/test_kernels.py and tests/test_build.py will hold them once registered.
Device side: scripts/conv1d_kit_check.py runs every kernel and float16 twin over the kit's case
table through raw kp, in a subprocess (one kp.Manager per process), and each check is a test here.
"""
import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
from conftest import needs_vulkan
from test_kernels import push_block, spec_constants, strip_comments

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import conv1d_kit as kit  # noqa: E402
import conv1d_kit_check as chk  # noqa: E402

from vkconvt.kernels import GRID, conv1d as k1  # noqa: E402

RECORDS = sorted(kit.KERNELS.values(), key=lambda k: k.name)
NEW = [k for k in RECORDS if k.shader in {b.name for b in kit.BASE}]


# ------------------------------------------------------------------------------- folding
def triples(l_in, k, s, d, p, t0, t1):
    """Every (t, k, m) with m = t*s - p + k*d inside the input, for outputs [t0, t1)."""
    return {(t, kk, t * s - p + kk * d) for t in range(t0, t1) for kk in range(k) if 0 <= t * s - p + kk * d < l_in}


@pytest.mark.parametrize("seed", range(6))
def test_fold_is_exact(seed):
    """A folded window keeps exactly the (output, tap, input) triples that land, in its local form."""
    rnd = random.Random(seed)
    for _ in range(300):
        l_in, k, s, d = rnd.randint(1, 30), rnd.randint(1, 9), rnd.randint(1, 7), rnd.randint(1, 5)
        p = rnd.randint(0, 25)
        l_out = (l_in + 2 * p - d * (k - 1) - 1) // s + 1
        if l_out < 1:
            continue
        t0 = rnd.randrange(l_out)
        t1 = rnd.randint(t0 + 1, l_out)
        f = k1.fold_conv1d(l_in, k, s, d, p, t0, t1)
        want = triples(l_in, k, s, d, p, t0, t1)
        got = {(t0 + i, f.kb + q, f.lb + i * f.s + q * f.d - f.pad) for i in range(t1 - t0) for q in range(f.kw)
               if 0 <= i * f.s + q * f.d - f.pad < f.lw}
        assert got == want, (l_in, k, s, d, p, t0, t1, f)
        assert f.pad >= 0 and 0 <= f.lb and f.lb + f.lw <= l_in and f.kb + f.kw <= k


@pytest.mark.parametrize("case", [c for c in kit.CASES if c.huge] + [kit.Case(l=5, k=2, stride=1 << 40, padding=1 << 40)],
                         ids=lambda c: c.id)
def test_windows_fit_32_bits(case):
    """Huge strides, paddings and dilations: every window's indices fit int32 and the windows tile
    the output; a single-output window is never split further."""
    wins = k1.conv1d_windows(case.l, case.k, case.stride, case.dilation, case.padding, case.l_out)
    assert wins[0][0] == 0 and wins[-1][1] == case.l_out
    assert all(a[1] == b[0] for a, b in zip(wins, wins[1:]))
    for t0, t1, f in wins:
        assert k1.index_bound(t1 - t0, f) < k1.INT_LIMIT and abs(f.pad) < k1.INT_LIMIT


def test_pack_push_checks_names_and_ranges():
    kern = kit.KERNELS["conv1d"]
    fields = dict.fromkeys(kern.push[:-3], 0)
    fields.update(pad=-3, act_slope=0.5)
    arr = kit.pack_push(kern, fields, (1, 2, 3))
    assert arr[kern.push.index("pad")] == (1 << 32) - 3 and list(arr[-3:]) == [1, 2, 3]
    assert arr[kern.push.index("act_slope")] == np.float32(0.5).view(np.uint32)
    with pytest.raises(KeyError, match="missing"):
        kit.pack_push(kern, {k: v for k, v in fields.items() if k != "cig"}, (1, 1, 1))
    with pytest.raises(OverflowError):
        kit.pack_push(kern, dict(fields, lw=1 << 32), (1, 1, 1))


# ------------------------------------------------------------------------------- records vs shaders
@pytest.mark.parametrize("kern", NEW, ids=lambda k: k.name)
def test_records_match_their_shaders(kern):
    """What tests/test_kernels.py checks of a registered kernel: Push order, int and float fields,
    constant_ids 0.., defaults per device class, binding comments with the record's shapes."""
    text = open(os.path.join(ROOT, "shaders", kern.shader + ".comp")).read()
    names, signed, floats = push_block(strip_comments(text))
    assert tuple(names) == kern.push and kern.push[-3:] == GRID
    assert signed == set(kern.signed) and floats == set(kern.floats)
    spec_names, ids = spec_constants(strip_comments(text))
    assert ids == list(range(len(kern.spec)))
    assert all(len(kern.defaults[c]) == len(kern.spec) for c in ("cpu", "gpu"))
    import re
    first = {}
    for b, comment in re.findall(r"binding\s*=\s*(\d+)\)\s*(?:readonly|writeonly)?\s*buffer\s+\w+\s*\{[^}]*\}\s*;"
                                 r"[ \t]*(?://[ \t]*(.*))?", text):
        first.setdefault(int(b), comment)
    assert sorted(first) == list(range(len(kern.bindings)))
    for b, (_, shape) in enumerate(kern.bindings):
        assert first[b].strip().startswith(shape.split(" ")[0]), (b, first[b], shape)


def test_check_ids_cover_every_kernel_and_twin():
    used = {cid.split("/")[1] for cid in chk.check_ids()}
    for base in kit.BASE:
        if base.op in ("conv1d", "conv1d_grad_weight"):
            assert {base.name, base.name + "_f16"} <= used
    assert {"rows", "rows_f16", "transposed", "transposed_f16", "matmul_sg", "matmul_sg_f16"} <= used


# ------------------------------------------------------------------------------- on the device
@pytest.fixture(scope="module")
def results(tmp_path_factory):
    path = tmp_path_factory.mktemp("kit") / "results.json"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "conv1d_kit_check.py"), "--json", str(path)],
                       capture_output=True, text=True, timeout=3600, env=dict(os.environ, PYTHONPATH=ROOT))
    assert path.exists(), r.stdout[-3000:] + r.stderr[-3000:]
    return json.loads(path.read_text())["results"]


@needs_vulkan
@pytest.mark.parametrize("cid", chk.check_ids())
def test_kernel(results, cid):
    row = results[cid]
    if row["status"] == "skip":
        pytest.skip(row["detail"])
    assert row["status"] == "pass", f"{cid}: {row['status']} nmse={row.get('nmse')} tol={row.get('tol')} {row['detail']}"
