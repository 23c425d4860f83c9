"""The ```python blocks of the package's README run, as written, against
the test server (each in its own interpreter, found by SESSIONLOG_SERVER
and SESSIONLOG_TOKEN_FILE as a reader's would be)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ServerProcess

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```$", README.read_text(encoding="utf-8"), re.M | re.S)


def test_the_readme_has_python_blocks() -> None:
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{n}" for n in range(1, len(BLOCKS) + 1)])
def test_a_readme_block_runs(server: ServerProcess, block: str) -> None:
    env = {
        **os.environ,
        "SESSIONLOG_SERVER": server.tcp_address,
        "SESSIONLOG_TOKEN_FILE": str(server.token_file),
    }
    done = subprocess.run(
        [sys.executable, "-c", block], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"{block}\n--- stderr:\n{done.stderr}"
    assert done.stdout, "the block printed nothing"
