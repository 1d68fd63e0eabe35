import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize('args,fragment', [(['nope'], 'unknown part'), (['optim', '--compile=maybe'], 'unknown compile')])
def test_bad_arguments_exit_2_with_one_line(args, fragment):
    out = subprocess.run([sys.executable, str(ROOT / 'bench.py'), *args], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and fragment in out.stderr and len(out.stderr.strip().splitlines()) == 1
