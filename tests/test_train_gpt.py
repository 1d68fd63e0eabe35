import json
import math
import os
import runpy
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import optim
import run_io
from model import GPT, GPTConfig
from conftest import HostReads, run_script, start_early, torch_scaler_reads_per_step

ROOT = Path(__file__).resolve().parent.parent
TINY = ['--dataset=shakespeare_char', '--device=cpu', '--n_layer=2', '--n_head=2', '--n_embd=32',
        '--block_size=32', '--batch_size=4', '--gradient_accumulation_steps=2', '--eval_iters=4',
        '--vocab_multiple=1', '--warmup_iters=5']
ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}  # tiny models: one thread is faster, above all on a busy CPU
TIMING = ('ms_per_iter', 'tokens_per_s', 'mfu', 'eval_s')
TRAIN_KEYS = {'iter', 'lr', 'wd', 'tokens', 'loss', 'grad_norm', 'weight_norm', 'decayed_norm', 'decayed_norms', 'clipped',
              'ms_per_iter', 'tokens_per_s'}
EVAL_KEYS = {'iter', 'lr', 'wd', 'tokens', 'eval', 'train_loss', 'val_loss', 'train_loss_ema', 'val_loss_ema',
             'train_err', 'val_err', 'train_err_ema', 'val_err_ema', 'adam_elr', 'adam_elr_all', 'angular_update',
             'angular_update_p10', 'angular_update_p90', 'angular_update_eq', 'weight_norm', 'decayed_norm',
             'diverged', 'eval_s', 'matrix_elr', 'decayed_norms', 'attn_logit_max', 'attn_logit_max_layers', 'output_logit_max',
             'attn_logit_bf16_err', 'attn_weight_bf16_tv'}
_cache = {}


def train(data, out_dir, *args, launcher=None):
    """train_gpt.py on the tiny model, in this process (conftest.run_script) or under a launcher."""
    if launcher is None:
        return run_script('train_gpt.py', *TINY, f'--data_dir={data}', f'--out_dir={out_dir}', *args)
    return subprocess.run([*launcher, str(ROOT / 'train_gpt.py'), *TINY, f'--data_dir={data}',
                           f'--out_dir={out_dir}', *args], cwd=ROOT, capture_output=True, text=True, env=ENV)


def ok(out):
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return out


def log_without_timing(run):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in run_io.read_log(Path(run) / 'log.jsonl')]


@pytest.fixture
def short_run(char_data, tmp_path_factory):
    """A 150-iteration run of a tiny GPT on tiny Shakespeare (shared by the tests that read it)."""
    if 'run' not in _cache:
        run = tmp_path_factory.mktemp('runs') / 'short'
        ok(train(char_data, run, '--max_iters=150', '--eval_interval=50', '--log_interval=25',
                 '--learning_rate=3e-3', '--min_lr=3e-4', '--weight_decay=0.1'))
        _cache['run'] = run
    return _cache['run']


def test_a_short_run_on_tiny_shakespeare_lowers_the_validation_loss(short_run):
    log = run_io.read_log(short_run / 'log.jsonl')
    evals = [r for r in log if r.get('eval')]
    assert [r['iter'] for r in evals] == [0, 50, 100, 150]
    assert abs(evals[0]['val_loss'] - math.log(65)) < 0.1  # the untrained model is uniform
    assert evals[-1]['val_loss'] < evals[0]['val_loss'] - 1.0
    assert evals[-1]['val_loss_ema'] < evals[0]['val_loss_ema'] - 0.5
    assert all(r['diverged'] is False for r in evals)


def test_log_lines_carry_the_design_metric_names(short_run):
    log = run_io.read_log(short_run / 'log.jsonl')
    train_lines = [r for r in log if not r.get('eval')]
    assert [r['iter'] for r in train_lines] == [25, 50, 75, 100, 125, 150]
    assert all(set(r) == TRAIN_KEYS for r in train_lines)
    assert all(set(r) == EVAL_KEYS for r in log if r.get('eval'))
    last = [r for r in log if r.get('eval')][-1]
    assert last['tokens'] == 150 * 2 * 4 * 32 and last['wd'] == 0.1
    assert 0 < last['angular_update'] < 1 and 0 < last['angular_update_eq'] < 1 and last['adam_elr'] > 0
    assert 0 < last['decayed_norm'] < last['weight_norm']  # LayerNorm gains are not decayed
    assert train_lines[0]['clipped'] <= train_lines[-1]['clipped'] <= 150
    config = json.loads((short_run / 'config.json').read_text())
    assert config['weight_decay'] == 0.1 and config['dtype'] == 'float32' and config['out_dir'] == str(short_run)


def test_checkpoint_has_plain_parameter_names_and_sample_prints_text(short_run):
    ckpt = run_io.load_checkpoint(short_run / 'ckpt.pt')
    assert ckpt['iter'] == 150 and set(ckpt['model']) == set(ckpt['ema'])
    assert 'transformer.wte.weight' in ckpt['model']
    assert not any(k.startswith(('_orig_mod.', 'module.')) for k in ckpt['model'])
    out = ok(run_script('sample.py', f'--out_dir={short_run}', '--num_samples=1', '--max_new_tokens=200',
                        '--start=ROMEO:'))
    text = out.stdout.split('---------------')[0]
    assert text.startswith('ROMEO:') and len(text.strip()) >= 150
    assert sum(c.isalpha() or c.isspace() for c in text) > 0.8 * len(text)  # letters, not noise


@pytest.mark.parametrize('damage', ['truncated', 'resnet'])
def test_sample_with_a_bad_checkpoint_exits_2_with_one_line(short_run, tmp_path, damage):
    (tmp_path / 'run').mkdir()
    data = (short_run / 'ckpt.pt').read_bytes()
    if damage == 'truncated':
        (tmp_path / 'run' / 'ckpt.pt').write_bytes(data[:len(data) // 2])
    else:  # a checkpoint of the other script: no GPT model_args
        torch.save({'model': {}, 'config': {}}, tmp_path / 'run' / 'ckpt.pt')
    out = run_script('sample.py', f'--out_dir={tmp_path / "run"}')
    assert out.returncode == 2 and out.stderr.startswith('error: ') and out.stderr.count('\n') == 1
    assert 'Traceback' not in out.stderr


def test_finetuning_from_a_checkpoint_is_one_override(char_data, short_run, tmp_path):
    ft = tmp_path / 'ft'
    ok(train(char_data, ft, f'--init_from={short_run / "ckpt.pt"}', '--learning_rate=1e-5',
             '--decay_lr=False', '--warmup_iters=0', '--max_iters=20', '--eval_interval=10',
             '--log_interval=10'))
    parent_last = [r for r in run_io.read_log(short_run / 'log.jsonl') if r.get('eval')][-1]
    log = run_io.read_log(ft / 'log.jsonl')
    first = log[0]
    assert first['iter'] == 0 and first['eval']
    # the same weights on the same eval batches: the fine-tuning run starts where its parent ended
    assert first['val_loss'] == parent_last['val_loss']
    assert first['val_loss_ema'] == parent_last['val_loss_ema']
    assert all(r['lr'] == 1e-5 for r in log) and log[-1]['iter'] == 20
    assert abs(log[-1]['val_loss'] - first['val_loss']) < 0.05  # a tiny LR moves the loss a little


def test_resume_continues_exactly(char_data, tmp_path):
    args = ['--eval_interval=10', '--log_interval=4', '--dropout=0.1', '--lr_decay_iters=30',
            '--weight_decay=0.1', '--learning_rate=2e-3']
    ok(train(char_data, tmp_path / 'a', '--max_iters=30', *args))
    ok(train(char_data, tmp_path / 'b', '--max_iters=10', *args))
    ok(train(char_data, tmp_path / 'b', '--max_iters=30', '--init_from=resume', *args))
    a, b = (run_io.load_checkpoint(tmp_path / r / 'ckpt.pt') for r in 'ab')
    for part in ('model', 'ema'):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part])
    state_a, state_b = a['optimizer']['state'], b['optimizer']['state']
    assert all(torch.equal(state_a[i]['exp_avg_sq'], state_b[i]['exp_avg_sq']) for i in state_a)
    # the log has no line twice, and every number but the timings is identical
    assert log_without_timing(tmp_path / 'a') == log_without_timing(tmp_path / 'b')


@pytest.mark.slow
def test_two_process_ddp_gives_the_same_update_as_one_process(char_data, tmp_path):
    args = ['--max_iters=6', '--eval_interval=6', '--log_interval=3', '--weight_decay=0.1',
            '--gradient_accumulation_steps=4']
    ok(train(char_data, tmp_path / 'one', *args))
    ok(train(char_data, tmp_path / 'two', *args, launcher=(sys.executable, '-m', 'torch.distributed.run',
                                                           '--standalone', '--nproc_per_node=2')))
    one, two = (run_io.load_checkpoint(tmp_path / r / 'ckpt.pt')['model'] for r in ('one', 'two'))
    for k in one:
        torch.testing.assert_close(one[k], two[k], rtol=0, atol=1e-6)
    log_one, log_two = log_without_timing(tmp_path / 'one'), log_without_timing(tmp_path / 'two')
    assert [r['iter'] for r in log_one] == [r['iter'] for r in log_two]
    for r1, r2 in zip(log_one, log_two):
        for k in ('loss', 'val_loss', 'grad_norm'):
            if k in r1:
                assert r1[k] == pytest.approx(r2[k], rel=1e-5)


def test_a_non_finite_loss_is_logged_and_the_last_good_checkpoint_kept(char_data, tmp_path):
    # an absurd LR makes the weights overflow within two steps: a real divergence, no test hook
    out = train(char_data, tmp_path / 'run', '--learning_rate=1e30', '--decay_lr=False', '--warmup_iters=0',
                '--max_iters=50', '--eval_interval=10', '--log_interval=5')
    assert out.returncode == 1 and 'Traceback' not in out.stderr
    assert out.stderr.strip().startswith('diverged: the loss is not finite at iteration ')
    log = run_io.read_log(tmp_path / 'run' / 'log.jsonl')
    assert log[-1]['diverged'] is True and log[-1]['loss'] is None and 1 <= log[-1]['iter'] <= 5
    ckpt = run_io.load_checkpoint(tmp_path / 'run' / 'ckpt.pt')
    assert ckpt['iter'] == 0 and all(torch.isfinite(v).all() for v in ckpt['model'].values())


def run_in_process(monkeypatch, capsys, args, first=('--max_iters=5',)):
    """Run train_gpt.py in this process (no interpreter start-up); return (exit status, stderr).
    max_iters=5 first (TINY's warmup), so that a check that does not fire ends in a short run."""
    monkeypatch.setattr(sys, 'argv', ['train_gpt.py', *first, *args])
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as info:
        runpy.run_path(str(ROOT / 'train_gpt.py'), run_name='__main__')
    return info.value.code, capsys.readouterr().err


@pytest.mark.parametrize('args, message', [
    (['--batch_size=0'], 'batch_size must be at least 1'),
    (['--learning_rate=-1'], 'learning_rate must be >= 0'),
    (['--weight_decay=-0.1'], 'weight_decay must be >= 0'),
    (['--beta2=1.0'], 'beta2 must be in [0, 1)'),
    (['--momentum=1.0'], 'momentum must be in [0, 1)'),
    (['--dtype=float8'], 'unknown dtype'),
    (['--optimizer=lion'], 'unknown optimizer'),
    (['--wd_mode=coupled'], 'unknown wd_mode'),
    (['--device=tpu'], 'unknown device'),
    (['--n_embd=33'], 'must be a multiple of n_head'),
    (['--wd_params=nosuchlayer'], 'matches no parameter name'),
    (['--init_from=resume'], 'cannot resume'),
    (['--init_from=no/such/ckpt.pt'], 'init_from must be'),
    (['--block_size=200000'], 'not more than one block of 200000'),
    (['--weight_decy=0.1'], "did you mean 'weight_decay'"),
])
def test_bad_config_exits_2_with_one_line(char_data, tmp_path, monkeypatch, capsys, args, message):
    status, err = run_in_process(monkeypatch, capsys, [*TINY, f'--data_dir={char_data}',
                                                       f'--out_dir={tmp_path / "run"}', *args])
    assert status == 2 and err.startswith('error: ') and err.count('\n') == 1
    assert message in err
    assert not (tmp_path / 'run' / 'log.jsonl').exists()


def test_missing_data_and_an_existing_run_are_clear_errors(char_data, tmp_path, monkeypatch, capsys):
    status, err = run_in_process(monkeypatch, capsys, [*TINY, f'--data_dir={tmp_path / "none"}'])
    assert status == 2 and 'python prepare_data.py shakespeare_char' in err and err.count('\n') == 1
    (tmp_path / 'run').mkdir()
    (tmp_path / 'run' / 'log.jsonl').write_text('{"iter": 0}\n')
    status, err = run_in_process(monkeypatch, capsys, [*TINY, f'--data_dir={char_data}',
                                                       f'--out_dir={tmp_path / "run"}'])
    assert status == 2 and 'already holds a run' in err
    assert (tmp_path / 'run' / 'log.jsonl').read_text() == '{"iter": 0}\n'  # nothing lost
    # both at once: the missing data first, which the user fixes before choosing a folder
    status, err = run_in_process(monkeypatch, capsys, [*TINY, f'--data_dir={tmp_path / "none"}',
                                                       f'--out_dir={tmp_path / "run"}'])
    assert status == 2 and 'python prepare_data.py shakespeare_char' in err, err


def test_the_command_line_gives_no_traceback(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / 'train_gpt.py'), '--batch_size=0'], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, 'PYTHONWARNINGS': 'ignore'})
    assert out.returncode == 2 and out.stderr == 'error: batch_size must be at least 1, got 0\n'


@pytest.mark.parametrize('config_file', sorted(p.name for p in (ROOT / 'config').glob('gpt_*.py')
                                              if p.name != 'gpt_cpu_demo.py'))
def test_every_paper_config_is_accepted(tmp_path, monkeypatch, capsys, config_file):
    # accepted means it gets as far as looking for its data (openwebtext is not here)
    status, err = run_in_process(monkeypatch, capsys, [f'config/{config_file}', '--device=cpu',
                                                       f'--data_dir={tmp_path / "none"}'], first=())
    assert status == 2 and 'run: python prepare_data.py openwebtext' in err, err


# the GPU path on a CPU: compiled model and optimizer step, evals in between that must not recompile,
# the first one (16 sequences a batch) before training (micro-batches of 8, larger than batch_size)
COMPILED = ['--max_iters=20', '--eval_interval=5', '--log_interval=5', '--weight_decay=0.1',
            '--micro_batch_size=8', '--eval_batch_size=16']


@pytest.fixture(scope='module', autouse=True)
def compiled_run(request):
    """The compiled run of the test below, started with this module (conftest.start_early)."""
    return start_early(request, 'test_compiled_run_matches_eager_and_compiles_train_and_eval_once',
                       'train_gpt.py', [*TINY, *COMPILED, '--compile=True'],
                       {**ENV, 'TORCH_LOGS': 'recompiles,graph_breaks,dynamic'}, 'char_data')


@pytest.mark.slow
def test_compiled_run_matches_eager_and_compiles_train_and_eval_once(char_data, tmp_path, compiled_run):
    eager = ok(train(char_data, tmp_path / 'eager', *COMPILED, '--compile=False'))
    result, compiled_dir = compiled_run
    compiled = ok(result())
    assert eager.returncode == 0 and 'Graph break' not in compiled.stderr
    # one graph more for eval (no_grad) and one for the second parameter group; nothing after that
    assert compiled.stderr.count('Recompiling function forward') == 1, compiled.stderr[-3000:]
    assert compiled.stderr.count('Recompiling function adamw_update') == 1, compiled.stderr[-3000:]
    # static shapes: a second batch size is a second graph, never one graph with a symbolic batch size
    assert 'create_symbol' not in compiled.stderr, compiled.stderr[-3000:]
    a, b = log_without_timing(tmp_path / 'eager'), log_without_timing(compiled_dir)
    assert len(a) == len(b) == 9
    for ra, rb in zip(a, b):
        for key in ('loss', 'train_loss', 'val_loss', 'train_loss_ema'):
            if key in ra:
                assert rb[key] == pytest.approx(ra[key], rel=1e-3), key


def test_a_resumed_run_uses_the_weight_decay_it_is_given_now(char_data, tmp_path):
    args = ['--eval_interval=10', '--log_interval=5', '--learning_rate=3e-3', '--decay_lr=False', '--warmup_iters=0']
    ok(train(char_data, tmp_path / 'a', '--max_iters=10', '--weight_decay=0.5', *args))
    shutil.copytree(tmp_path / 'a', tmp_path / 'b')
    ok(train(char_data, tmp_path / 'a', '--max_iters=20', '--init_from=resume', '--weight_decay=0.5', *args))
    out = ok(train(char_data, tmp_path / 'b', '--max_iters=20', '--init_from=resume', '--weight_decay=0', *args))
    assert 'weight_decay 0.5 -> 0.0' in out.stdout  # said at the start
    assert json.loads((tmp_path / 'b' / 'config.json').read_text())['dtype'] == 'float32'  # still resolved
    a, b = (run_io.load_checkpoint(tmp_path / r / 'ckpt.pt') for r in 'ab')
    assert [g['weight_decay'] for g in b['optimizer']['param_groups']] == [0.0, 0.0]
    assert [r['wd'] for r in run_io.read_log(tmp_path / 'b' / 'log.jsonl') if r['iter'] > 10] == [0.0] * 3
    # the same start, the same batches: only the decay differs, and it shrank a's matrices more
    norm = lambda ckpt: sum(v.norm() ** 2 for k, v in ckpt['model'].items() if v.dim() >= 2) ** 0.5
    assert norm(b) > norm(a) * 1.001


def test_a_larger_micro_batch_trains_on_the_same_sequences_with_the_same_update(char_data, tmp_path):
    # 16 sequences an iteration: four micro-batches of 4 (the default split), or one of 16, or eight of 2
    args = ['--max_iters=6', '--eval_interval=6', '--log_interval=3', '--weight_decay=0.1',
            '--gradient_accumulation_steps=4', '--learning_rate=3e-3']
    for name, micro in (('four', 0), ('one', 16), ('eight', 2)):
        out = ok(train(char_data, tmp_path / name, *args, f'--micro_batch_size={micro}'))
        assert f"16 sequences of 32, {16 // (micro or 4)} micro-batch(es) of {micro or 4}" in out.stdout
    four, one, eight = (run_io.load_checkpoint(tmp_path / r / 'ckpt.pt') for r in ('four', 'one', 'eight'))
    for other in (one, eight):
        for k in four['model']:
            torch.testing.assert_close(other['model'][k], four['model'][k], rtol=1e-4, atol=1e-6)
    logs = [log_without_timing(tmp_path / r) for r in ('four', 'one', 'eight')]
    for r0, r1, r2 in zip(*logs):
        for k in ('loss', 'train_loss', 'val_loss', 'grad_norm'):
            if k in r0:
                assert r1[k] == pytest.approx(r0[k], rel=1e-5) and r2[k] == pytest.approx(r0[k], rel=1e-5)
    out = train(char_data, tmp_path / 'bad', *args, '--micro_batch_size=5')
    assert out.returncode == 2 and 'does not split into micro-batches of 5' in out.stderr


def test_snapshots_are_kept_and_a_run_fine_tunes_from_any_of_them(char_data, tmp_path):
    args = ['--max_iters=30', '--eval_interval=30', '--log_interval=10', '--weight_decay=0.1',
            '--learning_rate=3e-3', '--decay_lr=False', '--warmup_iters=0']
    ok(train(char_data, tmp_path / 'run', *args, '--ckpt_every=10'))
    assert sorted(p.name for p in (tmp_path / 'run').glob('ckpt*.pt')) == \
        ['ckpt.pt', 'ckpt_10.pt', 'ckpt_20.pt', 'ckpt_30.pt']
    evals = {r['iter']: r for r in run_io.read_log(tmp_path / 'run' / 'log.jsonl') if r.get('eval')}
    assert sorted(evals) == [0, 10, 20, 30]  # every snapshot is an evaluated checkpoint
    snapshot = run_io.load_checkpoint(tmp_path / 'run' / 'ckpt_10.pt')
    assert snapshot['iter'] == 10 and snapshot['config']['weight_decay'] == 0.1
    # the timescale of the weight decay, at the peak LR, in iterations and as a share of the run
    config = json.loads((tmp_path / 'run' / 'config.json').read_text())
    assert config['wd_timescale_iters'] == pytest.approx(1 / (3e-3 * 0.1))
    assert config['wd_timescale_frac'] == pytest.approx(1 / (3e-3 * 0.1) / 30)
    out = ok(train(char_data, tmp_path / 'ft', f"--init_from={tmp_path / 'run' / 'ckpt_10.pt'}", '--max_iters=0',
                   '--learning_rate=1e-5', '--decay_lr=False', '--warmup_iters=0'))
    assert 'fine-tuning from' in out.stdout and 'at iteration 10' in out.stdout
    (first,) = run_io.read_log(tmp_path / 'ft' / 'log.jsonl')
    assert first['val_loss'] == evals[10]['val_loss']  # it starts from the snapshot's weights


def test_cautious_weight_decay_is_accepted_and_has_no_equilibrium_prediction(char_data, tmp_path):
    ok(train(char_data, tmp_path / 'run', '--max_iters=5', '--eval_interval=5', '--weight_decay=0.1',
             '--wd_mode=cautious'))
    last = [r for r in run_io.read_log(tmp_path / 'run' / 'log.jsonl') if r.get('eval')][-1]
    assert last['angular_update'] > 0 and last['angular_update_eq'] is None


@pytest.mark.parametrize('dtype', ['float32', 'bfloat16', 'float16'])
def test_iterations_that_neither_log_nor_evaluate_read_nothing_back_from_the_device(
        char_data, tmp_path, monkeypatch, dtype):
    # on a GPU a read of a device value (.item(), bool(), .tolist(), ...) waits for the whole queue: one
    # per step leaves the GPU idle between steps. Logging and evaluation may read; nothing else may.
    expected = torch_scaler_reads_per_step(monkeypatch) if dtype == 'float16' else 0
    with HostReads(monkeypatch, optim.AdamW) as reads:
        ok(train(char_data, tmp_path / 'run', '--max_iters=18', '--log_interval=6', '--eval_interval=6',
                 '--weight_decay=0.1', f'--dtype={dtype}'))
    assert len(reads.per_step) == 18
    # entry k: the end of iteration k-1 (a log line after it when k % 6 == 0), the start of iteration k
    # (an eval at k % 6 == 0) and its forward, backward and step
    quiet = [n for k, n in enumerate(reads.per_step) if k % 6 != 0]
    assert quiet == [expected] * len(quiet), reads.per_step
    assert all(n > expected for n in reads.per_step[6::6]), reads.per_step  # the log lines' reads are seen


def test_checkpoints_have_their_own_cadence_not_the_evals(char_data, tmp_path, monkeypatch):
    saved = []
    save = run_io.save_checkpoint
    monkeypatch.setattr(run_io, 'save_checkpoint', lambda ckpt, *a, **k: (saved.append(ckpt['iter']),
                                                                             save(ckpt, *a, **k)))
    args = ['--max_iters=24', '--eval_interval=4', '--log_interval=4']
    ok(train(char_data, tmp_path / 'a', *args))  # the default: every 10 minutes, far beyond this run
    assert saved == [0, 24]
    saved.clear()
    ok(train(char_data, tmp_path / 'b', *args, '--ckpt_minutes=0', '--ckpt_every=10'))  # every log line
    assert saved == [0, 4, 8, 10, 12, 16, 20, 24]
    assert sorted(p.name for p in (tmp_path / 'b').glob('ckpt_*.pt')) == ['ckpt_10.pt', 'ckpt_20.pt']
    saved.clear()
    ok(train(char_data, tmp_path / 'a', *args[1:], '--max_iters=30', '--init_from=resume'))
    assert saved == [30]  # not again at the iteration it resumed from


def test_eval_batches_of_any_size_give_the_same_losses(char_data, tmp_path):
    results = []
    for size in (16, 3):  # 3 leaves a last, smaller batch of 2 of the 32 sequences
        ok(train(char_data, tmp_path / f'b{size}', '--max_iters=0', '--eval_iters=8', f'--eval_batch_size={size}'))
        results.append(run_io.read_log(tmp_path / f'b{size}' / 'log.jsonl')[0])
    for key in ('train_loss', 'val_loss', 'train_err', 'val_err', 'val_loss_ema'):
        assert results[0][key] == pytest.approx(results[1][key], rel=1e-6), key


def test_eval_whole_val_is_the_mean_loss_over_every_block_of_the_validation_split(char_data, tmp_path):
    # claim 5's paired differences are measured on it: every token of val, in consecutive blocks
    ok(train(char_data, tmp_path / 'run', '--max_iters=6', '--eval_interval=6', '--eval_whole_val=True',
             '--eval_batch_size=50'))  # 50 does not divide the number of blocks: a last, smaller batch
    logged = [r for r in run_io.read_log(tmp_path / 'run' / 'log.jsonl') if r.get('eval')][-1]
    ckpt = run_io.load_checkpoint(tmp_path / 'run' / 'ckpt.pt')
    model = GPT(GPTConfig(**ckpt['model_args']))
    run_io.load_weights(model, ckpt['model'])
    model.eval()
    val = torch.from_numpy(np.fromfile(char_data / 'val.bin', dtype=np.uint16).astype(np.int64))
    block = ckpt['model_args']['block_size']
    n_blocks = (len(val) - 1) // block  # each block's targets, shifted by one, still inside the file
    x = val[:n_blocks * block].view(n_blocks, block)
    y = val[1:n_blocks * block + 1].view(n_blocks, block)
    with torch.no_grad():
        logits = torch.cat([model(xb)[0] for xb in x.split(500)]).double()
    nll = -logits.log_softmax(-1).gather(-1, y[..., None]).squeeze(-1)
    assert n_blocks > 1000 and logged['val_loss'] == pytest.approx(nll.mean().item(), rel=1e-5)
    assert logged['val_err'] == pytest.approx((logits.argmax(-1) != y).double().mean().item(), abs=1e-6)


def test_speed_on_the_first_log_line_after_a_resume_counts_only_the_iterations_it_timed(
        char_data, tmp_path, monkeypatch):
    # a clock that moves one second per optimizer step and never otherwise: every line must say 1000 ms
    clock = [0.0]
    step = optim.AdamW.step
    monkeypatch.setattr(optim.AdamW, 'step', lambda *a, **k: (clock.__setitem__(0, clock[0] + 1), step(*a, **k))[1])
    monkeypatch.setattr(time, 'perf_counter', lambda: clock[0])
    args = ['--log_interval=4', '--eval_interval=100']
    ok(train(char_data, tmp_path / 'run', *args, '--max_iters=10'))  # stops between log lines, at 10
    ok(train(char_data, tmp_path / 'run', *args, '--max_iters=20', '--init_from=resume'))
    lines = [r for r in run_io.read_log(tmp_path / 'run' / 'log.jsonl') if not r.get('eval')]
    assert [r['iter'] for r in lines] == [4, 8, 12, 16, 20]
    assert [r['ms_per_iter'] for r in lines] == [1000.0] * 5
    assert lines[2]['tokens_per_s'] == 2 * 4 * 32  # one iteration of 8 sequences of 32 tokens a second


def test_the_adamw_replay_follows_each_matrix_lr_over_norm_of_its_source_without_weight_decay(char_data, tmp_path):
    args = ['--max_iters=32', '--log_interval=2', '--eval_interval=2', '--learning_rate=1e-2', '--min_lr=1e-3']
    ok(train(char_data, tmp_path / 'source', *args, '--weight_decay=0.5'))
    ok(train(char_data, tmp_path / 'replay', *args, '--weight_decay=0', f'--elr_from={tmp_path / "source"}'))
    evals = lambda run: {r['iter']: r for r in run_io.read_log(tmp_path / run / 'log.jsonl') if r.get('eval')}
    src, rep = evals('source'), evals('replay')
    assert sorted(src) == sorted(rep) == list(range(0, 33, 2))
    for it in src:  # every matrix steps with the source's lr/||w||: the LR is set at every step
        assert rep[it]['matrix_elr'] == pytest.approx(src[it]['matrix_elr'], rel=1e-6), it
    # with other weights (no weight decay: their norms grow more) the matrices still turn about as
    # fast per step as the source's, which is what an effective LR is meant to fix
    assert rep[32]['decayed_norm'] > src[32]['decayed_norm'] * 1.01
    for it in range(2, 33, 2):
        assert rep[it]['angular_update'] == pytest.approx(src[it]['angular_update'], rel=0.25), it


def test_an_adamw_replay_needs_a_source_with_per_matrix_values(char_data, tmp_path, monkeypatch, capsys):
    (tmp_path / 'old').mkdir()
    run_io.append_log(tmp_path / 'old' / 'log.jsonl', {'iter': 0, 'lr': 1e-3, 'eval': True})
    status, err = run_in_process(monkeypatch, capsys, [*TINY, f'--data_dir={char_data}', '--weight_decay=0',
                                                       f'--out_dir={tmp_path / "run"}', f'--elr_from={tmp_path / "old"}'])
    assert status == 2 and err.startswith('error: elr_from=') and 'decayed_norms' in err and err.count('\n') == 1
