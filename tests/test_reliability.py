"""The README's catalogue of bad inputs and faults, one test (or one parametrized case) per entry.

Bad input: exit status 2, one line `error: ...` naming the problem and the fix, no traceback,
no run folder or dataset folder left behind. Faults: SIGINT / SIGTERM checkpoint and exit
130 / 143; SIGKILL at seeded points (one inside a checkpoint write, slowed by the
RUN_IO_SLOW_WRITE hook) loses at most the last interval; every interrupted run, resumed,
ends with the same weights, optimizer state and log as an uninterrupted one.
"""
import json
import os
import random
import runpy
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import optim
import run_io
from conftest import run_script

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONWARNINGS': 'ignore'}
GPT = ['--dataset=shakespeare_char', '--device=cpu', '--n_layer=2', '--n_head=2', '--n_embd=32',
       '--block_size=32', '--batch_size=4', '--gradient_accumulation_steps=2', '--eval_iters=4',
       '--vocab_multiple=1', '--warmup_iters=5']
# the fault-injection runs: a log line and a checkpoint every 2 iterations, dropout and weight decay on
GPT_RUN = [*GPT, '--max_iters=48', '--eval_interval=8', '--log_interval=2', '--ckpt_minutes=0', '--lr_decay_iters=48',
           '--weight_decay=0.1', '--dropout=0.1', '--learning_rate=2e-3']
RESNET = ['--width=4', '--n_train=200', '--batch_size=50', '--eval_batch_size=500', '--device=cpu',
          '--compile=False', '--dtype=float32']
TIMING = ('ms_per_iter', 'tokens_per_s', 'mfu', 'eval_s', 'bn_s')  # wall-clock figures differ between runs
_cache = {}


def in_process(monkeypatch, capsys, script, args):
    """Run a script in this process (no interpreter start-up); return (exit status, stderr)."""
    monkeypatch.setattr(sys, 'argv', [script, *args])
    monkeypatch.chdir(ROOT)
    try:
        runpy.run_path(str(ROOT / script), run_name='__main__')
        status = 0
    except SystemExit as e:
        status = e.code
    return status, capsys.readouterr().err


def one_line_error(status, err, fragment, expected_status=2):
    assert status == expected_status, err
    assert err.startswith('error: ') and err.count('\n') == 1 and 'Traceback' not in err, err
    assert fragment in err, err


def run(script, *args, env=None, **kw):
    """A script in a process of its own when env is given (signals, test hooks), else in this one."""
    if env is None and not kw:
        return run_script(script, *args)
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=ROOT, capture_output=True,
                          text=True, env=env or ENV, **kw)


def log_without_timing(run_dir):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in run_io.read_log(Path(run_dir) / 'log.jsonl')]


def assert_same_state(a_dir, b_dir):
    """The two runs' checkpoints and logs are identical (timings aside)."""
    a, b = (run_io.load_checkpoint(Path(d) / 'ckpt.pt') for d in (a_dir, b_dir))
    assert a['iter'] == b['iter']
    for part in ('model', 'ema'):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    for i, s in a['optimizer']['state'].items():
        for k, v in s.items():
            w = b['optimizer']['state'][i][k]
            assert torch.equal(v, w) if torch.is_tensor(v) else v == w, (i, k)
    assert log_without_timing(a_dir) == log_without_timing(b_dir)


def a_file(tmp_path):
    """A regular file, so that tmp_path/file/anything cannot be created (the tests run as root,
    for whom permission bits do not stop a write)."""
    f = tmp_path / 'file'
    f.write_text('not a folder')
    return f


# =============================================================================
# bad input
# =============================================================================

def write(path, text):
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize('script', ['train_gpt.py', 'train_resnet.py', 'bench.py'])
@pytest.mark.parametrize('case', ['missing file', 'syntax error', 'error while running', 'unknown key',
                                  'wrong type'])
def test_config_mistakes_exit_2_with_file_and_line(monkeypatch, capsys, tmp_path, script, case):
    key = 'steps' if script == 'bench.py' else 'seed'  # an integer key of each script
    args, fragment = {
        'missing file': ([str(tmp_path / 'nope.py')], 'cannot read config file'),
        'syntax error': ([write(tmp_path / 'c.py', f'{key} = 1\n{key} = (\n')], f"{tmp_path / 'c.py'}, line 2"),
        'error while running': ([write(tmp_path / 'c.py', f'{key} = 1\n{key} = 1 / 0\n')],
                                f"{tmp_path / 'c.py'}, line 2: ZeroDivisionError"),
        'unknown key': ([f'--{key}x=3'], f"unknown config key '{key}x'"),
        'wrong type': ([f'--{key}=abc'], f"{key}: expected an integer"),
    }[case]
    prefix = ['optim'] if script == 'bench.py' else []
    one_line_error(*in_process(monkeypatch, capsys, script, [*prefix, *args]), fragment)


def gpt_error(monkeypatch, capsys, tmp_path, args, data=None):
    out = tmp_path / 'run'
    data_args = [f'--data_dir={data}'] if data else []
    status, err = in_process(monkeypatch, capsys, 'train_gpt.py',
                             [*GPT, '--max_iters=5', *data_args, f'--out_dir={out}', *args])
    return status, err


@pytest.mark.parametrize('args, fragment', [
    (['--max_iters=10', '--warmup_iters=20'], 'warmup_iters (20) is longer than training (max_iters 10)'),
    (['--lr_decay_iters=3'], 'lr_decay_iters (3) ends before the warmup'),
    (['--min_lr=0.1', '--learning_rate=0.01'], 'min_lr (0.1) is above learning_rate'),
    (['--gradient_accumulation_steps=0'], 'gradient_accumulation_steps must be at least 1'),
    (['--dropout=1.0'], 'dropout must be in [0, 1)'),
    (['--compile=maybe'], 'unknown compile'),
    (['--dataset=nosuchset', '--data_dir='], "unknown dataset 'nosuchset'"),
])
def test_gpt_out_of_range_values(char_data, tmp_path, monkeypatch, capsys, args, fragment):
    one_line_error(*gpt_error(monkeypatch, capsys, tmp_path, args, char_data), fragment)
    assert not (tmp_path / 'run').exists()


@pytest.mark.parametrize('args, fragment', [
    (['--epochs=0'], 'epochs must be at least 1'),
    (['--momentum=1.0'], 'momentum must be in [0, 1)'),
    (['--first_decay=1.5'], 'first_decay must be in [0, 1]'),
    (['--compile=maybe'], 'unknown compile'),
    (['--scale_inv=True', '--batch_norm=False'], 'scale_inv needs batch_norm=True'),
    (['--n_train=0', '--batch_size=100000'], 'larger than the training set'),  # shorter than one batch
])
def test_resnet_out_of_range_values(cifar_dir, tmp_path, monkeypatch, capsys, args, fragment):
    status, err = in_process(monkeypatch, capsys, 'train_resnet.py',
                             [*RESNET, f'--data_dir={cifar_dir}', f'--out_dir={tmp_path / "run"}', *args])
    one_line_error(status, err, fragment)
    assert not (tmp_path / 'run').exists()


@pytest.mark.parametrize('script', ['train_gpt.py', 'train_resnet.py'])
def test_compile_where_the_platform_cannot_compile(char_data, cifar_dir, tmp_path, monkeypatch, capsys,
                                                   script):
    import torch._inductor.config
    args = [*GPT, f'--data_dir={char_data}'] if script == 'train_gpt.py' else [*RESNET, f'--data_dir={cifar_dir}']
    with torch._inductor.config.patch({'cpp.cxx': (None, str(tmp_path / 'no-such-c++'))}):
        status, err = in_process(monkeypatch, capsys, script, [*args, f'--out_dir={tmp_path / "run"}',
                                                               '--compile=True'])
    one_line_error(status, err, 'torch.compile on the CPU needs a working C++ compiler')
    assert '--compile=False' in err and not (tmp_path / 'run').exists()


def test_a_compile_that_fails_at_the_first_step_is_one_line_and_exit_1(char_data, tmp_path):
    # /bin/true passes inductor's compiler check but builds nothing: the failure comes at the first call
    out = run('train_gpt.py', *GPT, f'--data_dir={char_data}', f'--out_dir={tmp_path / "run"}',
              '--max_iters=5', '--compile=True', env={**ENV, 'CXX': shutil.which('true')}, timeout=300)
    one_line_error(out.returncode, out.stderr, 'torch.compile failed', expected_status=1)
    assert 'run again with --compile=False' in out.stderr
    assert not (tmp_path / 'run' / 'ckpt.pt').exists() and not (tmp_path / 'run' / 'log.jsonl').exists()


@pytest.mark.parametrize('script', ['train_gpt.py', 'train_resnet.py'])
def test_bfloat16_on_a_gpu_without_it(char_data, cifar_dir, tmp_path, monkeypatch, capsys, script):
    # no such GPU here: PyTorch is told it has a CUDA device without bfloat16 (a V100 or older)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda *a, **k: False)
    args = [*GPT, f'--data_dir={char_data}'] if script == 'train_gpt.py' else [*RESNET, f'--data_dir={cifar_dir}']
    status, err = in_process(monkeypatch, capsys, script, [*args, f'--out_dir={tmp_path / "run"}',
                                                           '--device=cuda', '--dtype=bfloat16'])
    one_line_error(status, err, 'this GPU does not support bfloat16; use --dtype=float16 or float32')


def copy_of(folder, tmp_path):
    return Path(shutil.copytree(folder, tmp_path / 'copy' / folder.name))


@pytest.mark.parametrize('damage, fragment', [
    ('truncate', 'is truncated (an odd number of bytes)'),
    ('corrupt', 'is corrupted: token id 65535'),
    ('meta', 'meta.json is unreadable'),
    ('empty', 'holds 0 tokens, not more than one block'),
])
def test_damaged_token_files(char_data, tmp_path, monkeypatch, capsys, damage, fragment):
    data = copy_of(char_data, tmp_path)
    if damage == 'truncate':
        with open(data / 'train.bin', 'r+b') as f:
            f.truncate(os.path.getsize(data / 'train.bin') - 1)
    elif damage == 'corrupt':
        with open(data / 'val.bin', 'r+b') as f:
            f.seek(2 * 50_000)
            f.write(b'\xff\xff')
    elif damage == 'meta':
        (data / 'meta.json').write_text('{"vocab_size": 6')
    else:
        (data / 'val.bin').write_bytes(b'')
    status, err = gpt_error(monkeypatch, capsys, tmp_path, [], data)
    one_line_error(status, err, fragment)
    assert damage == 'empty' or 'python prepare_data.py shakespeare_char' in err
    assert not (tmp_path / 'run').exists()


@pytest.mark.parametrize('damage, fragment', [
    ('truncate', 'is truncated or corrupted'),
    ('garbage', 'is truncated or corrupted'),
    ('shape', 'not uint8 (N, 32, 32, 3)'),
    ('labels', 'train_labels.npy does not hold 5000 labels'),
])
def test_damaged_image_arrays(cifar_dir, tmp_path, monkeypatch, capsys, damage, fragment):
    data = copy_of(cifar_dir / 'cifar10', tmp_path)
    images = data / 'train_images.npy'
    if damage == 'truncate':
        with open(images, 'r+b') as f:
            f.truncate(os.path.getsize(images) // 2)
    elif damage == 'garbage':
        images.write_bytes(os.urandom(4096))
    elif damage == 'shape':
        np.save(images, np.zeros((10, 32, 32), dtype=np.uint8))
    else:
        np.save(data / 'train_labels.npy', np.arange(7))
    status, err = in_process(monkeypatch, capsys, 'train_resnet.py',
                             [*RESNET, f'--data_dir={data.parent}', f'--out_dir={tmp_path / "run"}'])
    one_line_error(status, err, fragment)
    assert 'python prepare_data.py cifar10' in err and not (tmp_path / 'run').exists()


@pytest.fixture
def gpt_checkpoint(char_data, tmp_path_factory):
    """A train_gpt.py run of no iterations: its folder holds config.json, log.jsonl and ckpt.pt."""
    if 'gpt_ckpt' not in _cache:
        folder = tmp_path_factory.mktemp('gpt') / 'run'
        out = run('train_gpt.py', *GPT, f'--data_dir={char_data}', f'--out_dir={folder}', '--max_iters=0')
        assert out.returncode == 0, out.stderr
        _cache['gpt_ckpt'] = folder
    return _cache['gpt_ckpt']


@pytest.fixture
def resnet_checkpoint(cifar_dir, tmp_path_factory):
    if 'resnet_ckpt' not in _cache:
        folder = tmp_path_factory.mktemp('resnet') / 'run'
        out = run('train_resnet.py', *RESNET, f'--data_dir={cifar_dir}', f'--out_dir={folder}', '--epochs=1',
                  '--n_train=100')
        assert out.returncode == 0, out.stderr
        _cache['resnet_ckpt'] = folder
    return _cache['resnet_ckpt']


@pytest.mark.parametrize('case, fragment', [
    ('other shape', 'the checkpoint has n_layer=2, this run asks for n_layer=3'),
    ('other block', 'the checkpoint has block_size=32, this run asks for block_size=64'),
    ('resnet checkpoint', 'is not a train_gpt.py checkpoint'),
    ('truncated', 'cannot read the checkpoint'),
    ('not a checkpoint', 'cannot read the checkpoint'),
    ('killed before a checkpoint', 'was stopped before its first checkpoint'),
])
def test_gpt_checkpoints_that_cannot_be_used(char_data, gpt_checkpoint, resnet_checkpoint, tmp_path, monkeypatch,
                                             capsys, case, fragment):
    run_dir = copy_of(gpt_checkpoint, tmp_path)
    ckpt, args = run_dir / 'ckpt.pt', ['--init_from=resume']
    if case == 'other shape':
        args.append('--n_layer=3')
    elif case == 'other block':
        args.append('--block_size=64')
    elif case == 'resnet checkpoint':
        args = [f"--init_from={resnet_checkpoint / 'ckpt.pt'}", f"--out_dir={tmp_path / 'ft'}"]
    elif case == 'truncated':
        with open(ckpt, 'r+b') as f:
            f.truncate(os.path.getsize(ckpt) // 2)
    elif case == 'not a checkpoint':
        ckpt.write_bytes(b'\x00' * 1000)
    else:
        ckpt.unlink()
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    status, err = in_process(monkeypatch, capsys, 'train_gpt.py',
                             [*GPT, f'--data_dir={char_data}', f'--out_dir={run_dir}', '--max_iters=5', *args])
    one_line_error(status, err, fragment)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before  # nothing touched
    assert not (tmp_path / 'ft').exists()


@pytest.mark.parametrize('case, fragment', [
    ('other width', 'the checkpoint has width=4, this run asks for width=8'),
    ('truncated', 'cannot read the checkpoint'),
    ('gpt checkpoint', 'is not a train_resnet.py checkpoint'),
    ('killed before a checkpoint', 'was stopped before its first checkpoint'),
])
def test_resnet_checkpoints_that_cannot_be_used(cifar_dir, resnet_checkpoint, gpt_checkpoint, tmp_path,
                                                monkeypatch, capsys, case, fragment):
    run_dir = copy_of(resnet_checkpoint, tmp_path)
    ckpt, args = run_dir / 'ckpt.pt', ['--n_train=100', '--epochs=2']
    if case == 'other width':
        args.append('--width=8')
    elif case == 'truncated':
        with open(ckpt, 'r+b') as f:
            f.truncate(os.path.getsize(ckpt) - 100)
    elif case == 'gpt checkpoint':
        shutil.copy(gpt_checkpoint / 'ckpt.pt', ckpt)
    else:
        ckpt.unlink()
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    status, err = in_process(monkeypatch, capsys, 'train_resnet.py',
                             [*RESNET, f'--data_dir={cifar_dir}', f'--out_dir={run_dir}', '--init_from=resume', *args])
    one_line_error(status, err, fragment)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before


@pytest.mark.parametrize('script', ['train_gpt.py', 'train_resnet.py', 'prepare_data.py', 'plot.py', 'bench.py'])
def test_an_output_folder_that_cannot_be_written(char_data, cifar_dir, gpt_checkpoint, tmp_path, monkeypatch,
                                                  capsys, shared_data, script):
    blocked = a_file(tmp_path) / 'sub'
    args, fragment = {
        'train_gpt.py': ([*GPT, f'--data_dir={char_data}', f'--out_dir={blocked}'], 'cannot write the run folder'),
        'train_resnet.py': ([*RESNET, f'--data_dir={cifar_dir}', f'--out_dir={blocked}'],
                            'cannot write the run folder'),
        'prepare_data.py': (['shakespeare_char', f"--source={shared_data / 'tinyshakespeare' / 'input.txt'}",
                             f'--out={blocked}'], 'cannot create'),
        'plot.py': ([str(gpt_checkpoint), f'--out={blocked / "f.png"}'], 'is not a writable folder'),
        'bench.py': (['optim', f'--json={blocked / "b.json"}'], 'is not a writable folder'),
    }[script]
    if script in ('prepare_data.py', 'plot.py'):  # main() raises; the command line prints one line
        out = run(script, *args)
        status, err = out.returncode, out.stderr
    else:
        status, err = in_process(monkeypatch, capsys, script, args)
    one_line_error(status, err, fragment)
    assert (tmp_path / 'file').read_text() == 'not a folder'


def test_plot_rejects_an_unknown_image_format_before_reading_anything(gpt_checkpoint, tmp_path):
    out = run('plot.py', str(gpt_checkpoint), f'--out={tmp_path / "f.xyz"}')
    one_line_error(out.returncode, out.stderr, "unknown image format '.xyz'")
    assert not (tmp_path / 'f.xyz').exists()


@pytest.mark.parametrize('args, fragment', [
    (['optim', '--steps=0'], 'steps must be at least 1'),
    (['optim', '--device=tpu'], "unknown device 'tpu'"),
    (['optim', '--device=cuda'], 'PyTorch sees no CUDA GPU'),
    (['optimizer'], "unknown part 'optimizer'"),
])
def test_bench_bad_arguments_exit_2_before_timing_anything(monkeypatch, capsys, args, fragment):
    if 'cuda' in args[-1] and torch.cuda.is_available():
        pytest.skip('this machine has a GPU')
    one_line_error(*in_process(monkeypatch, capsys, 'bench.py', args), fragment)


def test_a_tarball_failing_its_checksum_is_refused_and_kept_for_the_user(tmp_path):
    # no --source: the archive already in data/cifar10/ is checked against the published size and md5
    (tmp_path / 'cifar10').mkdir()
    bad = tmp_path / 'cifar10' / 'cifar-10-python.tar.gz'
    bad.write_bytes(b'\x1f\x8b' + b'\x00' * 1000)
    out = run('prepare_data.py', 'cifar10', f'--out={tmp_path}')
    one_line_error(out.returncode, out.stderr, 'expected 170,498,071 bytes')
    assert [p.name for p in (tmp_path / 'cifar10').iterdir()] == [bad.name]  # nothing else written


@pytest.mark.parametrize('damage, fragment', [
    ('truncated', 'truncated or corrupted; download it again'),
    ('flipped', 'truncated or corrupted'),
])
def test_a_corrupted_source_tarball_leaves_no_dataset_folder(shared_data, tmp_path, damage, fragment):
    data = (shared_data / 'cifar10_mini' / 'cifar-10-python.tar.gz').read_bytes()
    if damage == 'truncated':
        data = data[:len(data) // 2]
    else:  # a block of garbage in the middle of the compressed stream
        data = data[:len(data) // 2] + bytes(4096) + data[len(data) // 2 + 4096:]
    (tmp_path / 'src.tar.gz').write_bytes(data)
    out = run('prepare_data.py', 'cifar10', f'--source={tmp_path / "src.tar.gz"}', f'--out={tmp_path / "data"}')
    one_line_error(out.returncode, out.stderr, fragment)
    assert not (tmp_path / 'data' / 'cifar10').exists()


def test_a_failed_preparation_removes_what_it_wrote(shared_data, tmp_path):
    # train.bin and val.bin are written, then the vocabulary check fails: neither may stay behind
    src = tmp_path / 'big.txt'
    src.write_text(''.join(chr(0x10000 + i) for i in range(70_000)))
    out = run('prepare_data.py', 'shakespeare_char', f'--source={src}', f'--out={tmp_path / "data"}')
    one_line_error(out.returncode, out.stderr, 'does not fit uint16 ids')
    assert not (tmp_path / 'data' / 'shakespeare_char').exists()
    src.write_bytes(b'\xff\xfe not text')
    out = run('prepare_data.py', 'shakespeare_char', f'--source={src}', f'--out={tmp_path / "data"}')
    one_line_error(out.returncode, out.stderr, 'is not UTF-8 text')
    assert not (tmp_path / 'data' / 'shakespeare_char').exists()


def test_plot_warns_about_an_unreadable_config_and_still_plots(tmp_path):
    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    (run_dir / 'config.json').write_text('{"weight_deca')
    run_io.append_log(run_dir / 'log.jsonl', {'iter': 0, 'loss': 3.0})
    out = run('plot.py', str(run_dir), '--y=loss', f'--out={tmp_path / "f.png"}')
    assert out.returncode == 0 and 'config.json is missing or unreadable' in out.stderr
    assert (tmp_path / 'f.png').stat().st_size > 0


# =============================================================================
# faults
# =============================================================================

def wait_for(predicate, proc, timeout=120):
    """Poll until predicate() is true; False if the process ended first."""
    t0 = time.time()
    while not predicate():
        if proc.poll() is not None:
            return False
        assert time.time() - t0 < timeout, 'the training process made no progress'
        time.sleep(0.01)
    return True


def last_iter(run_dir):
    return max((r['iter'] for r in run_io.read_log(run_dir / 'log.jsonl')), default=-1)


def start(script, args, env=ENV):
    return subprocess.Popen([sys.executable, str(ROOT / script), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def assert_log_is_json_lines_up_to_a_torn_last_line(log):
    lines = log.read_text().split('\n')
    complete, last = lines[:-1], lines[-1]
    for line in complete:
        json.loads(line)  # every complete line is strict JSON
    assert last == '' or not last.endswith('}'), 'a last line without a newline must be torn, or empty'


@pytest.fixture
def gpt_whole(char_data, tmp_path_factory):
    """The uninterrupted run every interrupted one is compared with."""
    if 'gpt_whole' not in _cache:
        folder = tmp_path_factory.mktemp('whole') / 'run'
        out = run('train_gpt.py', *GPT_RUN, f'--data_dir={char_data}', f'--out_dir={folder}')
        assert out.returncode == 0, out.stderr
        _cache['gpt_whole'] = folder
    return _cache['gpt_whole']


def test_sigkill_at_seeded_points_and_inside_a_checkpoint_write_loses_only_the_last_interval(
        char_data, gpt_whole, tmp_path):
    rng = random.Random(2310_04415)
    run_dir = tmp_path / 'run'
    args = [*GPT_RUN, f'--data_dir={char_data}', f'--out_dir={run_dir}']
    # four kills: after a random logged iteration, inside a slowed checkpoint write, and twice more at random
    plan = [('log', rng.randint(3, 12)), ('checkpoint', None), ('log', rng.randint(20, 30)), ('log', None)]
    kills = []
    for n, (where, point) in enumerate(plan):
        resume = ['--init_from=resume'] if n else []
        env = {**ENV, 'RUN_IO_SLOW_WRITE': '1.0'} if where == 'checkpoint' else ENV
        before = run_io.load_checkpoint(run_dir / 'ckpt.pt')['iter'] if n else None
        proc = start('train_gpt.py', [*args, *resume], env)
        if where == 'checkpoint':
            hit = wait_for(lambda: (run_dir / 'ckpt.pt.tmp').exists(), proc)
            time.sleep(rng.uniform(0.05, 0.5))  # inside the write's one-second pause
        else:
            target = point if point is not None else last_iter(run_dir) + rng.randint(2, 6)
            hit = wait_for(lambda: last_iter(run_dir) >= target, proc)
        if hit and proc.poll() is None:
            proc.kill()
            kills.append((where, last_iter(run_dir)))
        proc.communicate()
        # after any kill: the checkpoint loads, and the log is JSON lines up to a possibly torn last one
        ckpt = run_io.load_checkpoint(run_dir / 'ckpt.pt')
        if where == 'checkpoint' and hit:
            assert ckpt['iter'] == before, 'a kill inside the write must leave the previous checkpoint'
        assert ckpt['iter'] % 2 == 0 and ckpt['iter'] <= last_iter(run_dir)
        assert_log_is_json_lines_up_to_a_torn_last_line(run_dir / 'log.jsonl')
    assert len(kills) >= 3 and kills[1][0] == 'checkpoint', kills  # the faults were injected
    out = run('train_gpt.py', *args, '--init_from=resume')
    assert out.returncode == 0, out.stderr
    assert not (run_dir / 'ckpt.pt.tmp').exists()
    iters = [r['iter'] for r in run_io.read_log(run_dir / 'log.jsonl') if not r.get('eval')]
    assert iters == sorted(set(iters))  # appended without duplicating an iteration
    assert_same_state(gpt_whole, run_dir)


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_a_signal_checkpoints_the_current_step_and_resume_continues_exactly(char_data, gpt_whole, tmp_path, sig):
    run_dir = tmp_path / 'run'
    args = [*GPT_RUN, f'--data_dir={char_data}', f'--out_dir={run_dir}']
    proc = start('train_gpt.py', args)
    assert wait_for(lambda: last_iter(run_dir) >= 5, proc), 'the run ended before the signal'
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert f'{sig.name}: stopping after this step, with a checkpoint' in err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f'stopped by {sig.name}: checkpoint at iteration ') and 'Traceback' not in err
    stopped = int(line.split('iteration ')[1].split()[0])
    assert 5 <= stopped < 48 and run_io.load_checkpoint(run_dir / 'ckpt.pt')['iter'] == stopped
    out = run('train_gpt.py', *args, '--init_from=resume')
    assert out.returncode == 0, out.stderr
    assert_same_state(gpt_whole, run_dir)


def test_resnet_sigterm_checkpoints_the_epoch_and_resume_continues_exactly(cifar_dir, tmp_path):
    args = [*RESNET, f'--data_dir={cifar_dir}', '--epochs=6', '--eval_every=3', '--momentum=0.9',
            '--augment=True', '--lr=0.02', '--ema_coef=0.9', '--first_decay=0.7']
    out = run('train_resnet.py', *args, f'--out_dir={tmp_path / "whole"}')
    assert out.returncode == 0, out.stderr
    run_dir = tmp_path / 'split'
    proc = start('train_resnet.py', [*args, f'--out_dir={run_dir}'])
    assert wait_for(lambda: last_iter(run_dir) >= 4, proc), 'the run ended before the signal'  # epoch 1 logged
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert 'SIGTERM: stopping after this epoch, with a checkpoint' in err  # what it then does
    assert err.strip().splitlines()[-1].startswith('stopped by SIGTERM: checkpoint after epoch ')
    epoch = run_io.load_checkpoint(run_dir / 'ckpt.pt')['epoch']
    assert 1 <= epoch < 6
    out = run('train_resnet.py', *args, f'--out_dir={run_dir}', '--init_from=resume')
    assert out.returncode == 0, out.stderr
    a, b = (run_io.load_checkpoint(tmp_path / d / 'ckpt.pt') for d in ('whole', 'split'))
    for part in ('model', 'ema'):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part])
    assert log_without_timing(tmp_path / 'whole') == log_without_timing(tmp_path / 'split')


class OverflowingScaler(optim.GradScaler):
    """A loss scale of 2^24: float16 gradients overflow until it has backed off a few times."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, init_scale=2.0 ** 24, **kwargs)


def test_float16_skipped_steps_are_counted_not_fatal(char_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(optim, 'GradScaler', OverflowingScaler)
    status, err = in_process(monkeypatch, capsys, 'train_gpt.py',
                             [*GPT, f'--data_dir={char_data}', f'--out_dir={tmp_path / "run"}',
                              '--dtype=float16', '--max_iters=16', '--log_interval=4', '--eval_interval=8'])
    assert status == 0, err
    log = run_io.read_log(tmp_path / 'run' / 'log.jsonl')
    lines = [r for r in log if not r.get('eval')]
    skipped = [r['skipped'] for r in lines]
    assert skipped[0] >= 1 and skipped == sorted(skipped) and skipped[-1] < 16  # counted, then training goes on
    assert all(r['loss'] is not None for r in lines) and not any(r.get('diverged') for r in log)
    ckpt = run_io.load_checkpoint(tmp_path / 'run' / 'ckpt.pt')
    assert ckpt['iter'] == 16 and ckpt['scaler']['skipped'] == skipped[-1]


def test_a_disk_error_while_running_is_one_line_and_exit_1(tmp_path):
    code = (f"import run_io; run_io.report_faults(); "
            f"run_io.save_checkpoint({{'iter': 1}}, {str(tmp_path / 'gone' / 'ckpt.pt')!r})")
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, env=ENV)
    one_line_error(out.returncode, out.stderr, 'No such file or directory; the last checkpoint is kept',
                   expected_status=1)


@pytest.mark.slow
def test_a_failing_rank_under_torchrun_ends_the_whole_job(char_data, tmp_path):
    run_dir = tmp_path / 'run'
    launcher = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2']
    proc = subprocess.Popen([*launcher, str(ROOT / 'train_gpt.py'), *GPT, f'--data_dir={char_data}',
                             f'--out_dir={run_dir}', '--max_iters=100000', '--eval_interval=8',
                             '--log_interval=2'], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert wait_for(lambda: last_iter(run_dir) >= 10, proc), 'the job ended on its own'

    def rank_of(pid):
        try:
            env = Path(f'/proc/{pid}/environ').read_bytes().split(b'\0')
            return next((int(e[5:]) for e in env if e.startswith(b'RANK=')), None)
        except OSError:
            return None
    ranks = {rank_of(p.name): int(p.name) for p in Path('/proc').iterdir() if p.name.isdigit()
             and Path(f'/proc/{p.name}/cmdline').exists()  # this job's processes, not another test run's
             and str(run_dir).encode() in Path(f'/proc/{p.name}/cmdline').read_bytes()}
    os.kill(ranks[1], signal.SIGKILL)  # rank 1 dies as if out of memory
    try:
        out, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail('the job hangs after a rank died')
    assert proc.returncode != 0
    assert 'train_gpt.py FAILED' in out and 'Signal 9 (SIGKILL)' in out, out[-3000:]
    assert not any(Path(f'/proc/{pid}').exists() for pid in ranks.values())  # no process left behind
    assert run_io.load_checkpoint(run_dir / 'ckpt.pt')['iter'] % 8 == 0
