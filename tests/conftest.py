import contextlib
import io
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# real data fixtures live beside the checkout (../shared/data), never inside it
SHARED_DATA = Path(os.environ.get('SHARED_DATA', ROOT.parent / 'shared' / 'data'))
if (SHARED_DATA / 'tiktoken_cache').is_dir():  # GPT-2 BPE files for tiktoken, no network needed
    os.environ.setdefault('TIKTOKEN_CACHE_DIR', str(SHARED_DATA / 'tiktoken_cache'))


@pytest.fixture(scope='session')
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real-data fixtures not found at {SHARED_DATA} (set SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope='session')
def char_data(shared_data, tmp_path_factory):
    """data/shakespeare_char prepared once per session from the real text, in a temporary folder."""
    import prepare_data
    out = tmp_path_factory.mktemp('data') / 'shakespeare_char'
    out.mkdir()
    prepare_data.prepare_shakespeare_char(shared_data / 'tinyshakespeare' / 'input.txt', out)
    return out


@pytest.fixture(scope='session')
def cifar_dir(shared_data, tmp_path_factory):
    """A data_dir holding cifar10/, prepared once per session from the real CIFAR-10 subset."""
    import prepare_data
    source = shared_data / 'cifar10_mini' / 'cifar-10-python.tar.gz'
    if not source.exists():
        pytest.skip(f"{source} not found")
    out = tmp_path_factory.mktemp('data')
    (out / 'cifar10').mkdir()
    prepare_data.prepare_cifar('cifar10', str(source), out / 'cifar10')
    return out


@pytest.fixture(autouse=True)
def _restore_process_hooks():
    """A training script run in this process (runpy) installs an excepthook and SIGINT/SIGTERM
    handlers; put pytest's back after each test."""
    import signal
    hook, handlers = sys.excepthook, {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    sys.excepthook = hook
    for s, h in handlers.items():
        signal.signal(s, h)


def run_script(script, *args):
    """Run a script of the repository in this process, as `python SCRIPT ARGS` from the repository root
    would, on one thread as OMP_NUM_THREADS=1 would; returns a CompletedProcess (returncode, stdout,
    stderr). No interpreter start-up and no torch import: about two seconds saved per run. Tests
    that need a process of their own (signals, environment variables, torch.compile) use subprocess."""
    import torch
    out, err = io.StringIO(), io.StringIO()
    argv, threads, cwd = sys.argv, torch.get_num_threads(), os.getcwd()
    sys.argv = [script, *map(str, args)]
    torch.set_num_threads(1)
    os.chdir(ROOT)
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(str(ROOT / script), run_name='__main__')
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = argv
        torch.set_num_threads(threads)
        os.chdir(cwd)
    return subprocess.CompletedProcess([script, *args], code, out.getvalue(), err.getvalue())
