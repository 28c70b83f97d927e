"""Shaders are compiled at build time: the script, its failure modes, and the built wheel."""
import glob
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "compile_shaders.py")
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from compile_shaders import float16_twins  # noqa: E402

# every module the build makes: one per shaders/*.comp, one more (<name>_f16) per shader that tests VKCONVT_F16
OPS = sorted([os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(ROOT, "shaders", "*.comp"))]
             + [name for name, _, _ in float16_twins(os.path.join(ROOT, "shaders"))])
have_glslang = shutil.which("glslangValidator") is not None
needs_glslang = pytest.mark.skipif(not have_glslang, reason="glslangValidator (Debian glslang-tools) not installed")


def test_shaders_are_the_kernel_table():
    from vkconvt import kernels
    assert OPS == sorted(kernels.KERNELS)


def test_float16_twins_are_the_table_twins():
    """One rule on both sides: the build compiles a _f16 twin of every shader that tests VKCONVT_F16,
    and the table derives a twin of exactly those kernels, from their source, with float16 storage."""
    from vkconvt import kernels
    twins = float16_twins(os.path.join(ROOT, "shaders"))
    assert twins
    assert sorted(name for name, _, _ in twins) == sorted(k.name for k in kernels.KERNELS.values()
                                                           if k.storage == "float16")
    for name, src, defines in twins:
        kern = kernels.KERNELS[name]
        assert os.path.basename(src) == kern.shader + ".comp" and kern.shader != name
        assert defines == ("VKCONVT_F16=1",)


def test_float16_twin_rule_skips_shaders_without_float16(tmp_path):
    (tmp_path / "a.comp").write_text("#ifdef VKCONVT_F16\n#endif\n")
    (tmp_path / "b.comp").write_text("void main() {}\n")
    assert [(n, os.path.basename(s), d) for n, s, d in float16_twins(str(tmp_path))] == \
        [("a_f16", "a.comp", ("VKCONVT_F16=1",))]


@needs_glslang
@pytest.mark.skipif(shutil.which("spirv-val") is None, reason="spirv-val (Debian spirv-tools) not installed")
def test_compile_and_check(tmp_path):
    r = subprocess.run([sys.executable, SCRIPT, "--check", "--out", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for op in OPS:
        data = (tmp_path / f"{op}.spv").read_bytes()
        assert data[:4] == b"\x03\x02\x23\x07", f"{op}.spv is not SPIR-V"
        assert f"{op}.spv" in r.stdout and "spirv-val ok" in r.stdout


@needs_glslang
def test_broken_shader_fails_with_compiler_message(tmp_path):
    src = tmp_path / "shaders"
    shutil.copytree(os.path.join(ROOT, "shaders"), src)
    with open(src / "col2im_1d.comp", "a") as f:
        f.write("\nvoid broken( { }\n")
    r = subprocess.run([sys.executable, SCRIPT, "--shaders", str(src), "--out", str(tmp_path / "out")],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert "glslangValidator failed on" in r.stderr and "col2im_1d.comp" in r.stderr and "ERROR" in r.stderr


def test_missing_compiler_is_a_clear_error(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))
    env.pop("GLSLANG_VALIDATOR", None)
    r = subprocess.run([sys.executable, SCRIPT, "--out", str(tmp_path / "out")], capture_output=True, text=True,
                       env=env)
    assert r.returncode == 1
    assert "glslangValidator not found" in r.stderr and "glslang-tools" in r.stderr


@needs_glslang
def test_wheel_ships_spirv_and_data(tmp_path):
    """A real build through the pyproject build hook (hatchling), from a copy of the tree whose
    vkconvt/spv/ is empty: the hook must compile every shader into the wheel."""
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "spv", "__pycache__", "bench-results",
                                                              "*.egg-info", "dist", "build"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    (whl,) = glob.glob(str(tmp_path / "dist" / "vkconvt-*.whl"))
    names = zipfile.ZipFile(whl).namelist()
    for op in OPS:
        assert f"vkconvt/spv/{op}.spv" in names
    assert "vkconvt/data/model_layers.json" in names and "vkconvt/data/vk_layer_settings.txt" in names


@needs_glslang
def test_wheel_build_fails_on_a_broken_shader(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "spv", "__pycache__", "bench-results",
                                                              "*.egg-info", "dist", "build"))
    with open(src / "shaders" / "matmul.comp", "a") as f:
        f.write("\nthis is not glsl;\n")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert "glslangValidator failed on" in r.stdout + r.stderr and "matmul.comp" in r.stdout + r.stderr
