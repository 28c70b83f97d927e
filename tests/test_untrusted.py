"""Tuning files and settings can never make vkconvt wrong or stuck (issue 22, items 1, 2, 3 and 5).

A tuning file is untrusted input: a bad one (a spec the kernel table refuses, zeros, deep nesting,
a FIFO, a symlink to /dev/zero, a directory, a huge or binary file, ...) is reported once, naming
the file and the field, and ignored as a whole (the shipped defaults serve), and every call stays
exact. Writing one never follows a symlink and never leaves a partial file; a full disk is said at
once. VKCONVT_VULKAN_LIBRARY naming something that is not a Vulkan loader is one clear error naming
the variable, with the NumPy backend serving calls that do not insist on Vulkan."""
import errno
import json
import os
import subprocess
import sys
import textwrap

import pytest

from vkconvt import costmodel, kernels, tune
from conftest import needs_vulkan

HERE = os.path.dirname(os.path.abspath(__file__))


def run_py(code, *args, timeout=180, **env):
    e = dict(os.environ, PYTHONPATH=HERE + os.pathsep + os.environ.get("PYTHONPATH", ""))
    e.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)] + list(args), capture_output=True, text=True,
                          env=e, timeout=timeout)


def shipped():
    with open(costmodel.SHIPPED["lavapipe"]) as f:
        return json.load(f)


def with_spec(op, index, spec):
    data = shipped()
    data["kernels"][op][index][1] = spec if isinstance(spec, dict) else list(spec)
    return json.dumps(data)


def zero_spec_files():
    """The shipped file with one spec field set to 0, for every field of every kernel it names."""
    out = []
    for op, entries in shipped()["kernels"].items():
        for i, (name, spec) in enumerate(entries):
            kern = kernels.KERNELS[name]
            for j, field in enumerate(kern.spec):
                if kern.ranges.get(field, (1, 1))[0] > 0:           # 0 is not a value of the field
                    out.append((f"zero {name}.{field}", with_spec(op, i, spec[:j] + [0] + spec[j + 1:]),
                                f"kernels.{op}[{i}]: {name}: spec field {field}=0"))
    return out


DEEP = "[" * 200000 + "]" * 200000
CRAFTED = [                 # (label, content, what the warning must say)
    ("issue: sg=0", with_spec("conv_transpose_1d", 1, [8, 8, 48, 1, 0, 0, 1, 2]), "kernels.conv_transpose_1d[1]: "
     "conv_transpose_1d_sg: spec field sg=0"),
    ("issue: tn=3", with_spec("matmul", 0, [8, 64, 3, 8, 4]), "kernels.matmul[0]: matmul_sg: spec field tn=3"),
    ("issue: cip=0", with_spec("conv_transpose_1d", 1, [8, 8, 48, 1, 8, 0, 1, 0]), "spec field cip=0"),
    ("wg % sg", with_spec("conv_transpose_1d", 1, [12, 8, 48, 1, 8, 0, 1, 2]), "wg=12, sg=8 break"),
    ("sg beyond the device", with_spec("matmul", 0, [64, 64, 4, 64, 4]), "needs more than this device offers"),
    ("spec too short", with_spec("matmul", 0, [8, 64]), "a spec has 5 fields"),
    ("spec of floats", with_spec("matmul", 0, [8.0, 64, 4, 8, 4]), "wg=8.0 is not an int"),
    ("spec of bools", with_spec("matmul", 0, [True, 64, 4, 8, 4]), "wg=True is not an int"),
    ("spec huge", with_spec("matmul", 0, [8, 64, 4, 8, 10 ** 30]), "kk=1000000000000000000000000000000"),
    ("spec dict, wrong fields", with_spec("matmul", 0, {"wg": 8}), "spec fields ['wg']"),
    ("kernel of another op", json.dumps(dict(shipped(), kernels={"matmul": [["col2im_1d", [64]]]})),
     "'col2im_1d' is not a kernel of matmul"),
    ("unknown op", json.dumps(dict(shipped(), kernels={"fft": [["x", [1]]]})), "kernels.fft"),
    ("deep nesting", DEEP[:1000000], "nested too deeply"),
    ("deep nesting in a field", json.dumps(shipped())[:-1] + ', "x": ' + "[" * 100000 + "]" * 100000 + "}",
     "nested too deeply"),
    ("not UTF-8", b"\xff\xfe{}", "not UTF-8"),
    ("binary", bytes(range(256)) * 16, "not UTF-8"),
    ("empty", "", "Expecting value"),
    ("huge number", '{"vulkan": {"calls": 1' + "0" * 5000 + '}, "numpy": {"np_calls": 1}}', "digits"),
    ("inf", '{"vulkan": {"calls": Infinity}, "numpy": {"np_calls": 1}}', "vulkan.calls = inf"),
    ("negative", '{"vulkan": {"calls": -1e-3}, "numpy": {"np_calls": 1}}', "vulkan.calls = -0.001"),
    ("string coefficient", '{"vulkan": {"calls": "1"}, "numpy": {"np_calls": 1}}', "vulkan.calls = '1'"),
    ("list", "[1, 2, 3]", "expected a JSON object, got list"),
    ("too large", "{" + " " * (costmodel.MAX_FILE_BYTES + 10) + "}", "more than a tuning file's"),
] + zero_spec_files()
SPECIAL = [("a FIFO", "fifo", "not a regular file"), ("a symlink to /dev/zero", "devzero", "not a regular file"),
           ("a directory", "dir", "not a regular file"), ("a dangling symlink", "dangling", "No such file"),
           ("a symlink loop", "loop", "Too many levels of symbolic links")]

PROBE = """
    import json, os, sys, warnings, numpy as np, vkconvt
    from vkconvt import costmodel, profile
    from vkconvt.vulkan import device
    info = device.resolve_device(None)
    path = costmodel.cache_path(info)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(0)

    def problems():           # fresh inputs per file: a kernel that wrote nothing must not pass on stale buffers
        probs = [(rng.standard_normal((1, 64, 100)).astype(np.float32), rng.standard_normal((64, 32, 8)).astype(np.float32),
                  4), (rng.standard_normal((2, 8, 25)).astype(np.float32), rng.standard_normal((8, 1, 4)).astype(np.float32), 2)]
        return [(x, w, s, vkconvt.conv_transpose1d(x, w, stride=s, groups=w.shape[0] if w.shape[1] == 1 else 1,
                                                   backend="numpy")) for x, w, s in probs]

    def place(kind, content):
        if os.path.lexists(path):
            os.rmdir(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)
        if kind == "file":
            with open(path, "wb") as f:
                f.write(content.encode() if isinstance(content, str) else content)
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "devzero":
            os.symlink("/dev/zero", path)
        elif kind == "dir":
            os.mkdir(path)
        elif kind == "dangling":
            os.symlink(path + ".missing", path)
        elif kind == "loop":
            os.symlink(path, path)

    for label, kind, content in json.loads(open(sys.argv[1]).read()):
        place(kind, content if kind != "file" or not content.startswith("hex:") else bytes.fromhex(content[4:]))
        costmodel._reported.clear()        # as in a fresh process (two files may share a stamp)
        profile._loaded.clear()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            prof = vkconvt.backends.get("vulkan").profile()       # a new profile: no call reuses an old plan
            for _ in range(3):
                for algo in ("direct", "gemm"):
                    for x, w, s, ref in problems():
                        out = vkconvt.conv_transpose1d(x, w, stride=s, groups=w.shape[0] if w.shape[1] == 1 else 1,
                                                       algorithm=algo, backend="vulkan")
                        assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max(), (label, algo)
            assert vkconvt.backends.get("vulkan").profile() is prof
        msgs = [str(c.message) for c in caught]
        print(json.dumps([label, len(msgs), msgs[0] if msgs else "", prof.tuned, prof.source]), flush=True)
"""


@needs_vulkan
def test_every_bad_tuning_file_is_reported_once_and_ignored_and_calls_stay_exact(tmp_path):
    cases = [(label, "file", content if isinstance(content, str) else "hex:" + content.hex())
             for label, content, _ in CRAFTED] + [(label, kind, "") for label, kind, _ in SPECIAL]
    expect = {label: why for label, _, why in CRAFTED} | {label: why for label, _, why in SPECIAL}
    listing = tmp_path / "cases.json"
    listing.write_text(json.dumps(cases))
    r = run_py(PROBE, str(listing), timeout=300, VKCONVT_CACHE_DIR=str(tmp_path / "cache"))
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(ln) for ln in r.stdout.splitlines() if ln.startswith("[")]
    assert [row[0] for row in rows] == [c[0] for c in cases]
    for label, count, msg, tuned, source in rows:
        assert count == 1, f"{label}: {count} warnings"
        assert "ignoring the tuning file" in msg and "costmodel-" in msg and expect[label] in msg, f"{label}: {msg}"
        assert not tuned and source.endswith("cost_lavapipe.json"), label


@needs_vulkan
def test_a_good_tuning_file_is_used(tmp_path):
    """The control: the shipped file copied to the cache is taken as this device's tuning."""
    r = run_py("""
        import os, shutil, warnings, numpy as np, vkconvt
        from vkconvt import costmodel
        from vkconvt.vulkan import device
        path = costmodel.cache_path(device.resolve_device(None))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        shutil.copy(costmodel.SHIPPED["lavapipe"], path)
        warnings.simplefilter("error")
        vkconvt.conv_transpose1d(np.ones((1, 2, 9), np.float32), np.ones((2, 2, 3), np.float32), backend="vulkan")
        print("tuned", vkconvt.backends.get("vulkan").profile().tuned)
    """, VKCONVT_CACHE_DIR=str(tmp_path))
    assert r.returncode == 0 and "tuned True" in r.stdout, r.stderr[-2000:]


def test_validate_keeps_only_what_it_checked():
    data = dict(shipped(), defaults={"calls": [1, 2]}, extra={"a": [1]})
    assert set(costmodel.validate(data)) == {"vulkan", "numpy", "kernels"}


# ------------------------------------------------------------------------------ writing (item 3)
def test_writable_and_save_never_follow_a_symlink(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    folder = tmp_path / "cache"
    folder.mkdir()
    os.symlink(victim, folder / f".vkconvt-write-test-{os.getpid()}")     # the probe name of old
    target = folder / "costmodel-x.json"
    os.symlink(victim, target)
    assert tune.writable(str(target)) is None
    assert costmodel.save(None, shipped(), str(target)) == str(target)
    assert victim.read_text() == "precious"
    assert not target.is_symlink() and json.loads(target.read_text())["vulkan"] == shipped()["vulkan"]
    assert {p.name for p in folder.iterdir()} == {target.name, f".vkconvt-write-test-{os.getpid()}"}


@pytest.mark.parametrize("where", ["dump", "fsync", "replace"])
def test_save_on_a_full_disk_says_so_and_leaves_nothing(where, tmp_path, monkeypatch):
    target = tmp_path / "costmodel-x.json"
    target.write_text("old")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr({"dump": json, "fsync": os, "replace": os}[where], where, full)
    with pytest.raises(OSError, match=f"no space left to write {target}"):
        costmodel.save(None, shipped(), str(target))
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == [target.name] and target.read_text() == "old"


def test_writable_checks_free_space(tmp_path, monkeypatch):
    real = os.statvfs

    def nearly_full(path):
        st = real(path)
        return os.statvfs_result((st.f_bsize, st.f_frsize, st.f_blocks, st.f_bfree, 10) + tuple(st)[5:])
    monkeypatch.setattr(os, "statvfs", nearly_full)
    why = tune.writable(str(tmp_path / "costmodel-x.json"))
    assert why is not None and "has less than 1048576 bytes free" in why
    assert list(tmp_path.iterdir()) == []


@needs_vulkan
def test_tune_on_a_full_disk_stops_at_once_with_a_clear_message(tmp_path):
    r = run_py("""
        import os, sys, time
        real = os.statvfs
        os.statvfs = lambda p: os.statvfs_result((4096, 4096, 100, 0, 0) + tuple(real(p))[5:])
        from vkconvt import cli
        t = time.perf_counter()
        rc = cli.main(["tune", "--quick"])
        print("rc", rc, "seconds", time.perf_counter() - t)
    """, VKCONVT_CACHE_DIR=str(tmp_path))
    assert "Traceback" not in r.stderr and "rc 2" in r.stdout, r.stderr[-2000:]
    assert float(r.stdout.split("seconds")[1]) < 5
    assert "has less than" in r.stderr and "VKCONVT_CACHE_DIR" in r.stderr
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ VKCONVT_VULKAN_LIBRARY (item 5)
LOADER_PROBE = """
    import warnings, numpy as np
    warnings.simplefilter("always")
    import vkconvt
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            out = vkconvt.conv_transpose1d(np.ones((1, 1, 2), np.float32), np.ones((1, 1, 3), np.float32))
        print("result", out.tolist())
        try:
            vkconvt.conv_transpose1d(np.ones((1, 1, 2), np.float32), np.ones((1, 1, 3), np.float32), backend="vulkan")
            print("vulkan ran")
        except ImportError as exc:
            print("refused", type(exc).__name__, exc)
        print("available", [r["available"] for r in vkconvt.available() if r["name"] == "vulkan"][0])
    print("warnings", len(caught), caught[0].message if caught else "")
"""


def bad_loaders(tmp):
    empty, text = os.path.join(tmp, "empty.so"), os.path.join(tmp, "text.so")
    open(empty, "w").close()
    with open(text, "w") as f:
        f.write("not a library\n")
    return [("missing", os.path.join(tmp, "nope", "libvulkan.so.1"), "cannot be read: No such file"),
            ("directory", tmp, "is not a file (a directory)"), ("empty", empty, "is an empty file"),
            ("text", text, "cannot be loaded"), ("libc", "libc.so.6", "is not a Vulkan loader (it has no vkCreateInstance)"),
            ("libm path", "/lib/x86_64-linux-gnu/libm.so.6", "is not a Vulkan loader")]


@needs_vulkan      # (without kp, or a driver, that would be the reason given instead)
@pytest.mark.parametrize("i", range(6), ids=["missing", "directory", "empty", "text", "libc", "libm"])
def test_a_bad_vulkan_library_variable_is_one_clear_error(i, tmp_path):
    label, value, why = bad_loaders(str(tmp_path))[i]
    if value.startswith("/lib/") and not os.path.exists(value):
        pytest.skip(f"{value} is not on this system")
    r = run_py(LOADER_PROBE, VKCONVT_VULKAN_LIBRARY=value)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "result [[[1.0, 2.0, 2.0, 1.0]]]" in r.stdout                # the NumPy backend serves
    named = f"VKCONVT_VULKAN_LIBRARY={value!r} {why}"
    assert f"refused BackendUnavailable backend 'vulkan' is unavailable: {named}" in r.stdout, r.stdout
    assert "available False" in r.stdout and "warnings 1" in r.stdout and named in r.stdout.split("warnings 1")[1]


@needs_vulkan
def test_a_real_loader_in_the_variable_is_used():
    import ctypes.util
    lib = next((p for p in ("/usr/lib/x86_64-linux-gnu/libvulkan.so.1", "/usr/lib/libvulkan.so.1")
                if os.path.exists(p)), ctypes.util.find_library("vulkan"))
    if lib is None:
        pytest.skip("no libvulkan found by path")
    r = run_py(LOADER_PROBE, VKCONVT_VULKAN_LIBRARY=lib)
    assert r.returncode == 0 and "vulkan ran" in r.stdout and "warnings 0" in r.stdout, r.stdout + r.stderr[-2000:]


def test_bad_files_never_reach_numpy_with_garbage():
    """validate() refuses every crafted content that parses (a unit-level check of the table)."""
    for label, content, why in CRAFTED:
        if label == "too large":            # refused by read_untrusted before any parsing
            continue
        try:
            data = json.loads(content)
        except (ValueError, RecursionError):
            continue
        with pytest.raises(ValueError) as info:
            costmodel.validate(data, kernels.Device("cpu", 32768, 1024, 8, ("basic", "shuffle")))
        assert why in str(info.value), (label, str(info.value))
