#!/usr/bin/env python3
"""Compile every shaders/<op>.comp to vkconvt/spv/<op>.spv with glslangValidator, and every shader
that tests VKCONVT_F16 once more, with VKCONVT_F16=1, to vkconvt/spv/<op>_f16.spv (float16 storage).

    python scripts/compile_shaders.py            # compile (what the build hook runs)
    python scripts/compile_shaders.py --check    # compile, then validate each module with spirv-val

A missing tool, a failed compile or any compiler message (warnings included) is an error.
Files are written atomically, so a reader never sees half a module. Each run also writes
manifest.json beside the modules: every module's size and SHA-256, which vkconvt checks before it
loads a module (vkconvt/vulkan/shaders.py), so a damaged module is reported, never run.
"""
import hashlib
import json
import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHADER_DIR = os.path.join(ROOT, "shaders")
OUT_DIR = os.path.join(ROOT, "vkconvt", "spv")
TARGET_ENV = "vulkan1.1"


class ShaderBuildError(RuntimeError):
    pass


def _tool(name, env_var, package):
    path = os.environ.get(env_var) or shutil.which(name)
    if not path:
        raise ShaderBuildError(
            f"{name} not found (set {env_var} or install Debian's '{package}'); "
            "it is needed to compile the vkconvt shaders")
    return path


def compile_one(src, out_dir, glslang=None, name=None, defines=()):
    glslang = glslang or _tool("glslangValidator", "GLSLANG_VALIDATOR", "glslang-tools")
    op = name or os.path.splitext(os.path.basename(src))[0]
    dst = os.path.join(out_dir, op + ".spv")
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{op}.", suffix=".spv", dir=out_dir)
    os.close(fd)
    try:
        cmd = [glslang, "-V", "--target-env", TARGET_ENV, "-I" + os.path.dirname(src)] + [
            "-D" + d for d in defines] + ["-o", tmp, src]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        # glslangValidator echoes the file name; anything else it says is a diagnostic.
        said = [ln for ln in (proc.stdout + proc.stderr).splitlines()
                if ln.strip() and ln.strip() not in (src, os.path.basename(src))]
        if proc.returncode != 0 or said:
            raise ShaderBuildError(f"glslangValidator failed on {src} {' '.join(defines)} (exit {proc.returncode}):\n"
                                   + "\n".join(said))
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dst


def validate(spv):
    spirv_val = _tool("spirv-val", "SPIRV_VAL", "spirv-tools")
    proc = subprocess.run([spirv_val, "--target-env", TARGET_ENV, spv], capture_output=True, text=True)
    if proc.returncode != 0 or (proc.stdout + proc.stderr).strip():
        raise ShaderBuildError(f"spirv-val rejected {spv}:\n{proc.stdout}{proc.stderr}")


def write_manifest(outputs, out_dir, validated):
    entries = {}
    for spv in outputs:
        with open(spv, "rb") as f:
            data = f.read()
        entries[os.path.basename(spv)] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                                          "spirv_val": validated}
    fd, tmp = tempfile.mkstemp(prefix=".manifest.", suffix=".json", dir=out_dir)
    with os.fdopen(fd, "w") as f:
        json.dump(entries, f, indent=1, sort_keys=True)
    os.replace(tmp, os.path.join(out_dir, "manifest.json"))
    return os.path.join(out_dir, "manifest.json")


F16 = "VKCONVT_F16"


def float16_twins(shader_dir=SHADER_DIR):
    """[(kernel, source path, ("VKCONVT_F16=1",))]: the one rule for float16 storage twins. Every
    shader whose source tests VKCONVT_F16 also compiles, with VKCONVT_F16=1, to <name>_f16.spv
    (the kernel table derives the same twins: vkconvt/kernels/__init__.py)."""
    out = []
    for src in sorted(glob.glob(os.path.join(shader_dir, "*.comp"))):
        with open(src) as f:
            if F16 in f.read():
                out.append((os.path.splitext(os.path.basename(src))[0] + "_f16", src, (f"{F16}=1",)))
    return out


def compile_all(shader_dir=SHADER_DIR, out_dir=OUT_DIR, check=False):
    sources = sorted(glob.glob(os.path.join(shader_dir, "*.comp")))
    if not sources:
        raise ShaderBuildError(f"no *.comp shaders found in {shader_dir}")
    glslang = _tool("glslangValidator", "GLSLANG_VALIDATOR", "glslang-tools")
    outputs = [compile_one(src, out_dir, glslang) for src in sources]
    outputs += [compile_one(src, out_dir, glslang, name, defines) for name, src, defines in float16_twins(shader_dir)]
    if check:
        for spv in outputs:
            validate(spv)
    write_manifest(outputs, out_dir, check)
    return outputs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="validate each module with spirv-val")
    ap.add_argument("--shaders", default=SHADER_DIR, help="folder of *.comp sources")
    ap.add_argument("--out", default=OUT_DIR, help="folder for the *.spv modules")
    args = ap.parse_args(argv)
    try:
        outputs = compile_all(args.shaders, args.out, check=args.check)
    except ShaderBuildError as exc:
        print(f"compile_shaders: {exc}", file=sys.stderr)
        return 1
    for spv in outputs:
        print(f"{os.path.relpath(spv, ROOT)}  {os.path.getsize(spv)} bytes" + ("  (spirv-val ok)" if args.check else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
