"""sweep.py on real tiny runs: the grid as the script's own command lines, a signal and a rerun that
skips and resumes, submitit's local executor, the fine-tuning chain, the run folder's lock, bad input.

The 2 x 2 grid of a 60-iteration tiny GPT is run three ways and compared: by hand (the dry run's
command lines without --out_dir, in this process), by a sweep stopped by SIGTERM and run again, and by
submitit's local executor continuing a copy of the stopped sweep. Resume is exact, so every run's
losses match its hand-run twin's. Linux only (fcntl, /proc), as the rest of the suite.
"""
import fcntl
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import run_io
from conftest import run_script

ROOT = Path(__file__).resolve().parent.parent
GRID = ['--weight_decay=0,0.1', '--seed=0,1']
NAMES = ['tiny_wd0_seed0', 'tiny_wd0_seed1', 'tiny_wd0.1_seed0', 'tiny_wd0.1_seed1']  # the grid's order
ENV = {k: v for k, v in os.environ.items() if k != 'OMP_NUM_THREADS'}  # the sweep picks the threads
THREADS = str(max(1, len(os.sched_getaffinity(0)) // 2))  # what it gives each of two jobs
TINY = """\
dataset = 'shakespeare_char'
data_dir = {data!r}
device = 'cpu'
compile = False
vocab_multiple = 1
n_layer = 1
n_head = 2
n_embd = 32
block_size = 32
batch_size = 4
gradient_accumulation_steps = 1
learning_rate = 3e-3
min_lr = 3e-4
warmup_iters = 5
max_iters = 60
eval_interval = 10
eval_iters = 2
log_interval = 5
"""


@pytest.fixture(scope='module')
def tiny(char_data, tmp_path_factory):
    """A config file of a tiny GPT on tiny Shakespeare; its runs are named tiny_..."""
    path = tmp_path_factory.mktemp('config') / 'tiny.py'
    path.write_text(TINY.format(data=str(char_data)))
    return path


def sweep(tiny, *args):
    return [sys.executable, str(ROOT / 'sweep.py'), str(ROOT / 'train_gpt.py'), str(tiny), *args]


def run_in(where, command):
    """A command line (python SCRIPT ARGS) run as a user typing it in the folder `where` would, but in this
    process (conftest.run_script: no interpreter start-up, one thread); so are the runs a sweep starts
    (OMP_NUM_THREADS=1, as the suite's other runs: the fastest for tiny models on a busy CPU).
    Returns (exit status, stdout, stderr)."""
    out = run_script(command[1], *command[2:], where=where)
    return out.returncode, out.stdout, out.stderr


def losses(run_dir):
    """What a run computed, without the wall-clock figures: (iter, loss) per line, eval losses too."""
    return [(r['iter'], r.get('loss'), r.get('train_loss'), r.get('val_loss'))
            for r in run_io.read_log(Path(run_dir) / 'log.jsonl')]


def assert_same_run(a, b):
    la, lb = losses(a), losses(b)
    assert [r[0] for r in la] == [r[0] for r in lb] and la[-1][0] == 60, (a, b)
    # the same thread count gives the same bits; another (a CI machine with more cores) the same to 1e-4
    assert la == [tuple(pytest.approx(v, rel=1e-4) if v is not None else v for v in r) for r in lb], (a, b)


def wait_for(predicate, proc, timeout=180):
    """Poll until predicate() returns something true, and return it; fail if the sweep ends first."""
    t0 = time.time()
    while not (found := predicate()):
        assert proc.poll() is None, f"the sweep ended first (exit {proc.returncode})"
        assert time.time() - t0 < timeout, 'the sweep made no progress'
        time.sleep(0.02)
    return found


def lock_is_held(path):
    with open(path, 'a') as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


@pytest.fixture(scope='module')
def direct(tiny, tmp_path_factory):
    """The grid run by hand: the dry run's command lines, each without its --out_dir, from one folder."""
    where = tmp_path_factory.mktemp('by_hand')
    code, out, err = run_in(where, sweep(tiny, *GRID, '--dry_run'))
    assert code == 0, err
    lines = out.splitlines()
    for line in lines:
        code, _, err = run_in(where, [a for a in shlex.split(line) if not a.startswith('--out_dir=')])
        assert code == 0, err
    return where, lines


def test_dry_run_prints_the_commands_and_by_hand_they_name_their_folders_alike(tiny, direct, tmp_path):
    where, lines = direct
    expected = [shlex.join([sys.executable, str(ROOT / 'train_gpt.py'), str(tiny), f'--weight_decay={wd}',
                            f'--seed={seed}', f'--out_dir=out/tiny_wd{wd}_seed{seed}'])
                for wd in ('0', '0.1') for seed in ('0', '1')]
    assert lines == expected
    assert sorted(p.name for p in (where / 'out').iterdir()) == sorted(NAMES)  # what the scripts named them
    # nothing was run by the dry run; once the runs are done, it says so instead of printing them
    assert not (tmp_path / 'out').exists()
    code, out, _ = run_in(where, sweep(tiny, *GRID, '--dry_run'))
    assert code == 0 and out.splitlines() == [f"# done: out/{n}" for n in NAMES]


@pytest.fixture(scope='module')
def swept(tiny, tmp_path_factory):
    """The grid swept 2 at a time, stopped by SIGTERM once two runs are done and another is past iteration 20,
    then swept again; a copy of the folders as the signal left them is kept for submitit to continue. The
    third run is paused (SIGSTOP) from the moment it is seen until the sweep has passed the signal on:
    where it stops does not depend on timing."""
    where = tmp_path_factory.mktemp('sweep')
    first = where / 'first.txt'
    with open(first, 'w') as f:
        proc = subprocess.Popen(sweep(tiny, *GRID, '--jobs=2'), cwd=where, env=ENV, stdout=f,
                                stderr=subprocess.STDOUT)
    facts, paused = {}, None

    def mid_run():
        done = [n for n in NAMES if f"] done {n}" in first.read_text()]
        iters = {n: [r['iter'] for r in run_io.read_log(where / 'out' / n / 'log.jsonl')] for n in NAMES}
        return len(done) >= 2 and next((n for n in NAMES if n not in done and iters[n]
                                        and 20 <= iters[n][-1] < 60), None)
    try:
        mid = facts['mid'] = wait_for(mid_run, proc)
        lock = where / 'out' / mid / 'sweep.lock'
        paused = int(lock.read_text().split()[1])  # 'pid N on HOST, COMMAND': the training process
        os.kill(paused, signal.SIGSTOP)
        facts['held'] = lock_is_held(lock)
        fds = Path(f'/proc/{paused}/fd').iterdir()  # the training process itself has the lock file open
        facts['inherited'] = any(os.readlink(fd) == str(lock) for fd in fds)
        environ = Path(f'/proc/{paused}/environ').read_bytes().split(b'\0')
        facts['threads'] = next((v[16:].decode() for v in environ if v.startswith(b'OMP_NUM_THREADS=')), None)
        proc.send_signal(signal.SIGTERM)
        wait_for(lambda: 'no new run starts' in first.read_text(), proc)
        os.kill(paused, signal.SIGCONT)
        paused = None
        facts['first'] = proc.wait(timeout=120), first.read_text()
    finally:
        if paused:
            os.kill(paused, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
    facts['stopped_at'] = {n: run_io.load_checkpoint(where / 'out' / n / 'ckpt.pt')['iter']
                           for n in NAMES if (where / 'out' / n / 'ckpt.pt').exists()}
    shutil.copytree(where / 'out', where.parent / f'{where.name}_copy' / 'out')
    logs = {n: where / 'out' / n / 'log.jsonl' for n, it in facts['stopped_at'].items() if it == 60}
    facts['logs'] = {n: (log.read_bytes(), log.stat().st_mtime_ns) for n, log in logs.items()}
    facts['second'] = run_in(where, sweep(tiny, *GRID, '--jobs=2'))  # the same, in this process
    return where, facts


@pytest.mark.slow
def test_a_stopped_sweep_run_again_skips_the_finished_runs_and_resumes_the_rest(swept, direct):
    where, facts = swept
    code, text = facts['first']
    assert code == 143 and text.strip().splitlines()[-1].startswith('stopped by SIGTERM'), text
    assert facts['held'] and facts['inherited'], "the running training process did not hold its folder's lock"
    assert facts['threads'] == THREADS  # cores // jobs
    # two runs (or three) had finished, the paused one stopped with a checkpoint of its own, past iteration 20
    assert sorted(n for n, it in facts['stopped_at'].items() if it == 60) == sorted(facts['logs'])
    assert len(facts['logs']) >= 2 and 20 <= facts['stopped_at'][facts['mid']] < 60, facts['stopped_at']
    code, out, err = facts['second']
    assert code == 0, out + err
    for name in facts['logs']:  # skipped, their logs untouched
        assert f"skip {name} (done)" in out
        log = where / 'out' / name / 'log.jsonl'
        assert (log.read_bytes(), log.stat().st_mtime_ns) == facts['logs'][name]
    assert f"resume {facts['mid']}" in out, out
    assert out.strip().splitlines()[-1] == 'sweep: 4 done'
    for name in NAMES:  # every run ends as the same command run by hand, uninterrupted
        assert_same_run(where / 'out' / name, direct[0] / 'out' / name)
    # and the sweep's folders make the table of its comparison: two settings of two seeds each
    table = run_script('plot.py', *(where / 'out' / n for n in NAMES), '--table=val_loss',
                       '--baseline=weight_decay=0', '--format=json')
    assert table.returncode == 0, table.stderr
    rows = json.loads(table.stdout)['rows']
    assert sorted(sorted(r['seeds']) for r in rows) == [[0, 1], [0, 1]], rows


@pytest.mark.slow
def test_the_stopped_grid_continued_through_submitits_local_executor_ends_as_by_hand(tiny, swept, direct):
    where, facts = swept
    copy = where.parent / f'{where.name}_copy'  # the folders as the SIGTERM left them
    out = subprocess.run(sweep(tiny, *GRID, '--jobs=2', '--cluster=local'), cwd=copy, env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    rest = [n for n in NAMES if n not in facts['logs']]
    assert all(f"skip {n} (done)" in out.stdout for n in facts['logs']), out.stdout
    assert out.stdout.count('] submitted ') == out.stdout.count('] done ') == len(rest), out.stdout
    assert f"done {facts['mid']} (resumed" in out.stdout, out.stdout
    assert len(list((copy / 'out' / '.submitit').glob('*_result.pkl'))) == len(rest)  # real submitit jobs
    for name in NAMES:
        assert_same_run(copy / 'out' / name, direct[0] / 'out' / name)
        assert (copy / 'out' / name / 'output.txt').read_text().startswith('=== ')


def test_a_second_sweep_fine_tunes_each_run_from_its_own_parent(tiny, direct):
    where, _ = direct
    chain = ['--learning_rate=1e-5', '--decay_lr=False', '--warmup_iters=0', '--max_iters=10', '--min_lr=0',
             '--init_from=out/tiny_wd{weight_decay}_seed{seed}/ckpt.pt', *GRID]
    code, out, err = run_in(where, sweep(tiny, *chain, '--dry_run'))
    assert code == 0, err
    lines = [shlex.split(line) for line in out.splitlines()]
    for args, parent in zip(lines, NAMES, strict=True):
        assert f'--init_from=out/{parent}/ckpt.pt' in args and (where / 'out' / parent / 'ckpt.pt').is_file()
    # one of them by hand, without --out_dir: train_gpt.py names it after its parent as the sweep did, and it
    # starts from that parent's weights (the four parents' final losses all differ)
    finals = {n: run_io.read_log(where / 'out' / n / 'log.jsonl')[-1]['val_loss'] for n in NAMES}
    assert len({round(v, 4) for v in finals.values()}) == 4
    folder = lines[3][-1].removeprefix('--out_dir=')
    assert folder.startswith('out/tiny_wd0.1_seed1_ft_')
    code, _, err = run_in(where, [a for a in lines[3] if not a.startswith('--out_dir=')])
    assert code == 0, err
    first = run_io.read_log(where / folder / 'log.jsonl')[0]
    assert first['iter'] == 0 and first['val_loss'] == pytest.approx(finals[NAMES[3]], rel=1e-4)


@pytest.mark.slow
def test_a_held_folder_is_refused_in_one_line_then_freed_by_sigkill_and_a_stale_log_moved_aside(tiny, direct):
    """A run killed before its first checkpoint left a log and no ckpt.pt; a process holds its folder's lock.
    The sweep refuses it in one line and touches nothing; once the holder is killed (SIGKILL: no chance to
    unlock), the sweep takes the folder, keeps the old log as log.jsonl.stale and runs the run afresh."""
    where, _ = direct
    folder = where / 'out' / 'tiny_wd0_seed0_iters10'
    folder.mkdir()
    first_line = (where / 'out' / NAMES[0] / 'log.jsonl').read_text().splitlines()[0] + '\n'  # iter 0's eval
    (folder / 'log.jsonl').write_text(first_line)
    hold = ('import fcntl, sys, time; f = open(sys.argv[1], "a"); fcntl.flock(f, fcntl.LOCK_EX); '
            'print("held", flush=True); time.sleep(300)')
    holder = subprocess.Popen([sys.executable, '-c', hold, str(folder / 'sweep.lock')], text=True,
                              stdout=subprocess.PIPE)
    command = sweep(tiny, '--weight_decay=0', '--seed=0', '--max_iters=10')
    try:
        assert holder.stdout.readline() == 'held\n'
        code, out, err = run_in(where, command)
        assert code == 1, out + err
        refusals = [line for line in out.splitlines() if folder.name in line]
        assert len(refusals) == 1 and 'busy' in refusals[0] and 'is in use by' in refusals[0], out
        assert sorted(p.name for p in folder.iterdir()) == ['log.jsonl', 'sweep.lock']
    finally:
        holder.kill()
        holder.wait()
    assert not lock_is_held(folder / 'sweep.lock')
    code, out, err = run_in(where, command)
    assert code == 0 and 'its log moved to log.jsonl.stale' in out, out + err
    assert (folder / 'log.jsonl.stale').read_text() == first_line
    assert run_io.read_log(folder / 'log.jsonl')[-1]['iter'] == 10 and (folder / 'ckpt.pt').is_file()


def test_a_failed_run_is_listed_at_the_end_with_its_last_lines_and_the_exit_status_is_1(tiny, tmp_path):
    code, out, err = run_in(tmp_path, sweep(tiny, f'--data_dir={tmp_path / "missing"}', '--seed=3'))
    assert code == 1, out + err
    assert '1 failed' in out and 'failed tiny_seed3 (exit 2' in out, out
    listing = out[out.index('failed: tiny_seed3; the last lines of out/tiny_seed3/output.txt:'):]
    assert 'error: ' in listing and str(tmp_path / 'missing') in listing, out  # the script's own one line


@pytest.mark.parametrize('args, message', [
    (['sample.py'], 'sweep.py runs train_gpt.py or train_resnet.py'),
    (['train_gpt.py', 'no_such_file.py'], 'cannot read config file no_such_file.py'),
    (['train_gpt.py', '--weight_decy=0,0.1'], "did you mean 'weight_decay'"),
    (['train_gpt.py', '--weight_decay=0,-1'], 'weight_decay must be >= 0'),
    (['train_gpt.py', '--jobs=0'], '--jobs must be a whole number, at least 1'),
    (['train_gpt.py', '--cluster=aws'], "unknown --cluster 'aws'"),
    (['train_gpt.py', '--gpus=1'], '--gpus, --time and --partition are for --cluster'),
    (['train_gpt.py', '--seed=0,1', '--init_from=out/a_seed{sed}/ckpt.pt'], '{sed} names no key'),
    (['train_gpt.py', '--eval_interval=10,20'], 'two runs would share'),
    (['train_gpt.py', '--seed=0,1', '--init_from=resume'], 'drop --init_from=resume'),
])
def test_bad_input_exits_2_with_one_line_and_runs_nothing(tmp_path, args, message):
    args = [str(ROOT / a) if a == 'train_gpt.py' else a for a in args]
    code, out, err = run_in(tmp_path, [sys.executable, str(ROOT / 'sweep.py'), *args])
    assert code == 2 and out == '', out
    assert err.startswith('error: ') and err.count('\n') == 1 and message in err, err
    assert not (tmp_path / 'out').exists()


@pytest.mark.skipif(shutil.which('sbatch') is not None, reason='a Slurm machine: the sweep would submit jobs')
def test_slurm_without_sbatch_is_one_line(tiny, tmp_path):
    code, out, err = run_in(tmp_path, sweep(tiny, '--seed=0,1', '--cluster=slurm', '--gpus=1', '--time=5'))
    assert code == 2 and err.count('\n') == 1 and "needs Slurm's sbatch" in err, err
    assert not (tmp_path / 'out').exists()


def test_the_cluster_path_without_submitit_is_one_line(tiny, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'submitit', None)  # `import submitit` then fails, as where it is missing
    code, out, err = run_in(tmp_path, sweep(tiny, '--seed=0,1', '--cluster=local'))
    assert code == 2 and err.count('\n') == 1 and 'needs submitit, which is not installed' in err, err
    assert not (tmp_path / 'out').exists()
