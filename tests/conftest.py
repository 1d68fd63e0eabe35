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


def run_script(script, *args, where=ROOT):
    """Run a script of the repository in this process, as `python SCRIPT ARGS` typed in the folder
    `where` (the repository root) would, on one thread with OMP_NUM_THREADS=1 (which the processes
    it starts, a sweep's runs, inherit); returns a CompletedProcess (returncode, stdout, stderr). No
    interpreter start-up and no torch import: about two seconds saved per run. Tests that need a
    process of their own (signals, environment variables, torch.compile) use subprocess."""
    import torch
    out, err = io.StringIO(), io.StringIO()
    argv, threads, cwd = sys.argv, torch.get_num_threads(), os.getcwd()
    omp = os.environ.get('OMP_NUM_THREADS')
    sys.argv = [str(script), *map(str, args)]
    torch.set_num_threads(1)
    os.environ['OMP_NUM_THREADS'] = '1'
    os.chdir(where)
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
        if omp is None:
            del os.environ['OMP_NUM_THREADS']
        else:
            os.environ['OMP_NUM_THREADS'] = omp
    return subprocess.CompletedProcess([script, *args], code, out.getvalue(), err.getvalue())


def start_early(request, test_name, script, args, env, data_fixture):
    """For a module-scoped fixture: start `python SCRIPT ARGS --data_dir=DATA --out_dir=RUN` as a
    process of its own when the module starts, if the test test_name is to run, DATA being the fixture
    data_fixture's folder and RUN a new one. Returns (a function that waits for the process and returns
    its CompletedProcess, RUN), or None if the test is not to run or its data is missing. A compiled
    run with a cold Inductor cache spends half a minute compiling, on the second core while the
    module's other tests run on the first. Its output goes to files: a pipe that nobody reads yet
    would stop it once full."""
    if not any(item.originalname == test_name for item in request.session.items):
        return None
    try:
        data = request.getfixturevalue(data_fixture)
    except pytest.skip.Exception:
        return None  # the test itself skips, for the same reason
    folder = request.getfixturevalue('tmp_path_factory').mktemp('early')
    out, err = open(folder / 'stdout', 'w+'), open(folder / 'stderr', 'w+')
    proc = subprocess.Popen([sys.executable, str(ROOT / script), *map(str, args), f'--data_dir={data}',
                             f'--out_dir={folder / "run"}'], cwd=ROOT, env=env, stdout=out, stderr=err,
                            text=True)
    request.addfinalizer(lambda: (proc.kill(), proc.wait(), out.close(), err.close()))

    def result():
        proc.wait()
        out.seek(0), err.seek(0)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read())
    return result, folder / 'run'


class HostReads:
    """Counts, while active, every read of a tensor's value back to Python: .item(), bool(), int() and
    float() of a tensor (each one aten._local_scalar_dense), and .tolist() and .cpu() (.numpy() needs a
    tensor on the CPU already). On a GPU each of them waits for the device to finish its queue: one in
    the hot loop costs every step.

    `per_step` gets, at the end of every optimizer step (of the classes given), the reads since the
    end of the previous one: entry k covers the end of iteration k-1 (logging), the start of iteration k
    (evaluation, checkpoint) and its forward, backward and step."""

    def __init__(self, monkeypatch, *optimizer_classes):
        import torch
        from torch.utils._python_dispatch import TorchDispatchMode
        self.count, self.per_step, self.active, counter = 0, [], False, self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                if func is torch.ops.aten._local_scalar_dense.default and counter.active:
                    counter.count += 1
                return func(*args, **(kwargs or {}))
        self.mode = Mode()
        for name in ('tolist', 'cpu'):
            monkeypatch.setattr(torch.Tensor, name, self._counted(getattr(torch.Tensor, name)))
        for cls in optimizer_classes:
            monkeypatch.setattr(cls, 'step', self._marked(cls.step))

    def _counted(self, method):
        def counted(tensor, *args, **kwargs):
            self.count += self.active
            return method(tensor, *args, **kwargs)
        return counted

    def _marked(self, step):
        def marked(optimizer, *args, **kwargs):
            out = step(optimizer, *args, **kwargs)
            self.per_step.append(self.count - sum(self.per_step))
            return out
        return marked

    def __enter__(self):
        self.active = True
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        self.active = False
        return self.mode.__exit__(*exc)


def torch_scaler_reads_per_step(monkeypatch):
    """The host reads of one float16 step of torch's own GradScaler (its check for overflowed gradients):
    what a float16 step may read besides nothing."""
    import torch
    p = torch.nn.Parameter(torch.ones(4))
    opt, scaler = torch.optim.SGD([p], lr=0.1), torch.amp.GradScaler('cpu')
    with HostReads(monkeypatch) as reads:
        scaler.scale(p.sum()).backward()
        scaler.step(opt)
        scaler.update()
    return reads.count
