"""Hatchling build hook: compile shaders/*.comp into vkconvt/spv/*.spv before packaging.

Any compiler message, or a missing glslangValidator, fails the build with that message.
The same code runs by hand as ``python scripts/compile_shaders.py``.
"""
import importlib.util
import os

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


def _load_compiler(root):
    path = os.path.join(root, "scripts", "compile_shaders.py")
    spec = importlib.util.spec_from_file_location("_vkconvt_compile_shaders", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ShaderBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version, build_data):
        if self.target_name != "wheel":
            return
        compiler = _load_compiler(self.root)
        out_dir = os.path.join(self.root, "vkconvt", "spv")
        compiled = compiler.compile_all(os.path.join(self.root, "shaders"), out_dir)
        self.app.display_info(f"vkconvt: compiled {len(compiled)} shaders into {out_dir}")
        build_data.setdefault("artifacts", []).extend(
            [f"vkconvt/spv/{os.path.basename(p)}" for p in compiled] + ["vkconvt/spv/manifest.json"])
