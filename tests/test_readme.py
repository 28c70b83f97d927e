"""README.md as a user pastes it (issue 23, item 2): every ```python block runs on its own, in a
fresh process, and finishes within a time limit, and prints what its `print(...)  # -> output`
comments say; every command line of the ```sh blocks names a script that exists, and every
`python -m vkconvt ...` in them parses with the CLI's own parser."""
import os
import re
import shlex
import subprocess
import sys

import pytest

from conftest import VULKAN_REASON

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
TIME_LIMIT_S = 600          # a block that compiles with Inductor takes tens of seconds here


def blocks(language):
    """(first line number, code) of every fenced block of that language."""
    out = []
    for m in re.finditer(rf"^```{language}\n(.*?)^```", README, flags=re.S | re.M):
        out.append((README.count("\n", 0, m.start()) + 1, m.group(1)))
    return out


PYTHON = blocks("python")
SHELL = blocks("sh")


def test_readme_has_the_blocks():
    assert len(PYTHON) >= 4 and len(SHELL) >= 4      # quick start, PyTorch, compile/export, float16
    assert any("torch.compile" in code for _, code in PYTHON)


@pytest.mark.parametrize("line,code", PYTHON, ids=[f"README.md:{line}" for line, _ in PYTHON])
def test_python_block_runs_as_pasted(line, code, tmp_path):
    if "torch" in code:
        pytest.importorskip("torch")
    if ('backend="vulkan"' in code or "device=0" in code) and VULKAN_REASON is not None:
        pytest.skip(f"the block asks for the Vulkan backend: {VULKAN_REASON}")
    script = tmp_path / "block.py"
    script.write_text(code)
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, env=env,
                       timeout=TIME_LIMIT_S)
    assert r.returncode == 0, f"README.md line {line}:\n{code}\n--- stderr:\n{r.stderr[-4000:]}"
    # `print(...)  # -> what it prints`: the comment is the output line ("..." stands for anything)
    prints = [text for text in code.splitlines() if text.lstrip().startswith("print(")]
    said = {i: text.split("# -> ", 1)[1].strip() for i, text in enumerate(prints) if "# -> " in text}
    if said:
        printed = r.stdout.strip().splitlines()
        assert len(printed) == len(prints), (prints, printed)
        for i, expect in said.items():
            assert re.fullmatch(".*".join(map(re.escape, expect.split("..."))), printed[i].strip()), (expect, printed[i])


def shell_commands():
    for line, code in SHELL:
        for i, text in enumerate(code.splitlines()):
            command = text.split("#", 1)[0].strip()
            if command:
                yield line + 1 + i, shlex.split(command)


def test_shell_blocks_name_real_scripts_and_valid_cli_arguments():
    from vkconvt.cli import build_parser
    ap, _ = build_parser()
    seen = 0
    for line, words in shell_commands():
        for w in words:
            if w.startswith("scripts/") and "bench-results" not in w:
                assert os.path.exists(os.path.join(ROOT, w)), f"README.md:{line}: {w} does not exist"
        if "-m" in words and words[words.index("-m") + 1] == "vkconvt":
            args = words[words.index("-m") + 2:]
            try:
                ap.parse_args(args)
            except SystemExit:
                pytest.fail(f"README.md:{line}: python -m vkconvt {' '.join(args)} does not parse")
            seen += 1
    assert seen >= 10
