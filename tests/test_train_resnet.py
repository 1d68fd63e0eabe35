"""train_resnet.py end to end, on a real CIFAR-10 subset prepared into a temporary folder."""
import math
import os
import shutil
from pathlib import Path

import pytest
import torch

import optim
import run_io
from conftest import HostReads, run_script, start_early, torch_scaler_reads_per_step

ROOT = Path(__file__).resolve().parent.parent
TINY = ['--width=4', '--n_train=200', '--batch_size=50', '--eval_batch_size=500', '--device=cpu',
        '--compile=False', '--dtype=float32']
def train(*args, check=True):
    out = run_script('train_resnet.py', *args)  # in this process, on one thread (conftest.py)
    if check:
        assert out.returncode == 0, out.stdout + out.stderr
    return out


def lines(run_dir, evals):
    return [r for r in run_io.read_log(run_dir / 'log.jsonl') if bool(r.get('eval')) == evals]


def test_short_run_lowers_the_training_loss_and_logs_every_metric(cifar_dir, tmp_path):
    train(*TINY, f'--data_dir={cifar_dir}', f'--out_dir={tmp_path}/run', '--epochs=4', '--eval_every=2',
          '--lr=0.05', '--first_decay=1.0', '--ema_coef=0.9')
    steps, evals = lines(tmp_path / 'run', False), lines(tmp_path / 'run', True)
    assert [r['epoch'] for r in steps] == [1, 2, 3, 4] and [r['iter'] for r in steps] == [4, 8, 12, 16]
    assert steps[-1]['loss'] < steps[0]['loss']
    assert [r['epoch'] for r in evals] == [2, 4]
    keys = ('train_loss', 'train_err', 'test_loss', 'test_err', 'train_loss_ema', 'train_err_ema',
            'test_loss_ema', 'test_err_ema', 'eff_lr', 'angular_update', 'angular_update_eq', 'reg_objective')
    for r in evals:
        assert all(math.isfinite(r[k]) for k in keys), r
        assert all(0 <= r[k] <= 1 for k in ('train_err', 'test_err', 'train_err_ema', 'test_err_ema'))
        assert r['angular_update'] > 0 and r['diverged'] is False
    last = evals[-1]
    assert last['reg_objective'] == pytest.approx(last['train_loss'] + 0.0125 / 2 * steps[-1]['decayed_norm'] ** 2)
    assert last['angular_update_eq'] == pytest.approx(math.sqrt(2 * 0.05 * 0.0125))
    for r in steps:
        assert {'lr', 'wd', 'loss', 'grad_norm', 'weight_norm', 'decayed_norm', 'ms_per_iter'} <= r.keys()


def test_lr_drops_to_lr_flow_exactly_at_first_decay_and_weight_decay_is_kept(cifar_dir, tmp_path):
    train(*TINY, '--n_train=100', f'--data_dir={cifar_dir}', f'--out_dir={tmp_path}/run', '--epochs=4',
          '--eval_every=0', '--lr=0.05', '--lr_flow=0.00123', '--first_decay=0.5', '--ema_coef=0')
    steps = lines(tmp_path / 'run', False)
    assert [r['lr'] for r in steps] == [0.05, 0.05, 0.00123, 0.00123]
    assert [r['wd'] for r in steps] == [0.0125] * 4


@pytest.mark.slow
def test_resume_continues_exactly_like_an_uninterrupted_run(cifar_dir, tmp_path):
    # augmentation, momentum and the EMA put every saved state to use; the drop comes after the break
    common = [*TINY, f'--data_dir={cifar_dir}', '--eval_every=2', '--first_decay=0.75', '--augment=True',
              '--momentum=0.9', '--lr=0.02', '--ema_coef=0.9']
    train(*common, f'--out_dir={tmp_path}/whole', '--epochs=4')
    train(*common, f'--out_dir={tmp_path}/split', '--epochs=2')
    train(*common, f'--out_dir={tmp_path}/split', '--epochs=4', '--init_from=resume')
    a, b = (run_io.load_checkpoint(tmp_path / d / 'ckpt.pt') for d in ('whole', 'split'))
    for key in ('model', 'ema'):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
    for sa, sb in zip(a['optimizer']['state'].values(), b['optimizer']['state'].values()):
        assert torch.equal(sa['momentum_buffer'], sb['momentum_buffer'])
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ('ms_per_iter', 'eval_s', 'bn_s')} for r in rs]  # timings
    whole, split = (run_io.read_log(tmp_path / d / 'log.jsonl') for d in ('whole', 'split'))
    assert strip(whole) == strip(split) and len(whole) == 6  # 4 training lines, 2 eval lines, none twice


def test_projected_sgd_keeps_the_norm_at_radius_and_logs_hessian_and_flow(cifar_dir, tmp_path):
    # Figure 2 in miniature: scale-invariant net on a sphere, fine-tuned copies, Hessian traces
    train(*TINY, f'--data_dir={cifar_dir}', f'--out_dir={tmp_path}/run', '--epochs=2', '--scale_inv=True',
          '--radius=3.0', '--weight_decay=0', '--lr=0.1', '--first_decay=1.0', '--eval_every=0',
          '--hessian_every=2', '--hessian_n=20', '--hessian_probes=3', '--flow_every=2', '--flow_epochs=1')
    steps, evals = lines(tmp_path / 'run', False), lines(tmp_path / 'run', True)
    assert [r['weight_norm'] for r in steps] == pytest.approx([3.0, 3.0], rel=1e-5)
    ckpt = run_io.load_checkpoint(tmp_path / 'run' / 'ckpt.pt')
    trainable = [v for k, v in ckpt['model'].items() if k.endswith('weight') and not k.startswith('linear')]
    assert torch.linalg.vector_norm(torch.stack([v.norm() for v in trainable])) == pytest.approx(3.0, rel=1e-5)
    (ev,) = evals
    for key in ('trace_hessian', 'trace_hessian_se', 'flow_train_loss', 'flow_test_err',
                'flow_trace_hessian', 'flow_trace_hessian_se'):
        assert math.isfinite(ev[key]), key
    assert ev['trace_hessian_se'] > 0 and ev['eff_lr'] == pytest.approx(0.1 / 9, rel=1e-4)


def test_a_non_finite_loss_is_logged_as_divergence_and_the_run_stops_cleanly(cifar_dir, tmp_path):
    out = train(*TINY, '--n_train=100', f'--data_dir={cifar_dir}', f'--out_dir={tmp_path}/run', '--epochs=3',
                '--batch_norm=False', '--lr=1e30', '--first_decay=1.0', '--ema_coef=0', check=False)
    assert out.returncode == 1 and out.stderr.startswith('diverged: the training loss is nan in epoch ')
    (last,) = [r for r in run_io.read_log(tmp_path / 'run' / 'log.jsonl') if r.get('diverged')]
    assert last['loss'] is None  # NaN is written as null


@pytest.mark.parametrize('args, message', [
    (['--batch_size=0'], 'batch_size must be at least 1'),
    (['--lr=-0.1'], 'lr must be >= 0'),
    (['--weight_decay=-1'], 'weight_decay must be >= 0'),
    (['--arch=resnet50'], 'unknown arch'),
    (['--dataset=mnist'], 'unknown dataset'),
    (['--dtype=float8'], 'unknown dtype'),
    (['--wd_mode=l1'], 'unknown wd_mode'),
    (['--device=tpu'], 'unknown device'),
    (['--arch=vgg16', '--scale_inv=True'], 'no scale-invariant variant'),
    (['--n_train=15'], 'balanced subset of 15'),
    (['--init_from=resume'], 'cannot resume'),
])
def test_bad_input_exits_2_with_one_line(cifar_dir, tmp_path, args, message):
    out = train(*TINY, f'--data_dir={cifar_dir}', f'--out_dir={tmp_path}/run', *args, check=False)
    assert out.returncode == 2 and 'Traceback' not in out.stderr
    assert out.stderr.startswith('error: ') and out.stderr.count('\n') == 1 and message in out.stderr


def test_a_dataset_never_prepared_names_the_command_that_prepares_it(tmp_path):
    out = train(f'--data_dir={tmp_path}', '--dataset=cifar100', f'--out_dir={tmp_path}/run', check=False)
    assert out.returncode == 2 and out.stderr.count('\n') == 1
    assert 'python prepare_data.py cifar100' in out.stderr


def test_an_existing_run_is_not_overwritten_without_resume(cifar_dir, tmp_path):
    (tmp_path / 'run').mkdir()
    (tmp_path / 'run' / 'log.jsonl').write_text('{"iter": 1}\n')
    out = train(*TINY, f'--data_dir={cifar_dir}', f'--out_dir={tmp_path}/run', check=False)
    assert out.returncode == 2 and '--init_from=resume' in out.stderr
    assert (tmp_path / 'run' / 'log.jsonl').read_text() == '{"iter": 1}\n'
    # with the data missing too, the data first: what the user fixes before choosing a folder
    out = train(*TINY, f'--data_dir={tmp_path / "none"}', f'--out_dir={tmp_path}/run', check=False)
    assert out.returncode == 2 and 'python prepare_data.py cifar10' in out.stderr, out.stderr


# the GPU path on a CPU: compiled net and SGD step; two evals, the second of which must reuse the graphs
COMPILED = [*TINY[:-2], '--epochs=2', '--eval_every=1', '--lr=0.05', '--first_decay=1.0', '--ema_coef=0.9',
            '--dtype=float32', '--eval_batch_size=200']


@pytest.fixture(scope='module', autouse=True)
def compiled_run(request):
    """The compiled run of the test below, started with this module (conftest.start_early)."""
    return start_early(request, 'test_compiled_run_matches_eager_and_evaluation_does_not_recompile',
                       'train_resnet.py', [*COMPILED, '--compile=True'],
                       {**os.environ, 'OMP_NUM_THREADS': '1', 'TORCH_LOGS': 'recompiles,graph_breaks'},
                       'cifar_dir')


@pytest.mark.slow
def test_compiled_run_matches_eager_and_evaluation_does_not_recompile(cifar_dir, tmp_path, compiled_run):
    train(*COMPILED, f'--data_dir={cifar_dir}', f'--out_dir={tmp_path}/eager', '--compile=False')
    result, compiled_dir = compiled_run
    out = result()
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    assert 'Graph break' not in out.stderr
    # inference mode (every eval batch holds 200 images): one graph beside the training one, compiled at
    # the first eval and reused by the second
    assert out.stderr.count('Recompiling function forward') == 1, out.stderr[-3000:]
    a, b = lines(tmp_path / 'eager', True), lines(compiled_dir, True)
    assert len(a) == len(b) == 2
    for ra, rb in zip(a, b):
        for key in ('train_loss', 'test_loss', 'train_loss_ema'):
            assert rb[key] == pytest.approx(ra[key], rel=1e-3), key


def test_a_resumed_run_uses_the_weight_decay_it_is_given_now(cifar_dir, tmp_path):
    common = [*TINY, '--n_train=100', f'--data_dir={cifar_dir}', '--eval_every=1', '--lr=0.1', '--first_decay=1.0',
              '--ema_coef=0']
    train(*common, f'--out_dir={tmp_path}/a', '--epochs=1', '--weight_decay=0.5')
    shutil.copytree(tmp_path / 'a', tmp_path / 'b')
    train(*common, f'--out_dir={tmp_path}/a', '--epochs=3', '--weight_decay=0.5', '--init_from=resume')
    out = train(*common, f'--out_dir={tmp_path}/b', '--epochs=3', '--weight_decay=0', '--init_from=resume')
    assert 'weight_decay 0.5 -> 0.0' in out.stdout
    a, b = (run_io.load_checkpoint(tmp_path / r / 'ckpt.pt') for r in 'ab')
    assert [g['weight_decay'] for g in b['optimizer']['param_groups']] == [0.0]
    evals = lines(tmp_path / 'b', True)
    assert [r['wd'] for r in evals] == [0.5, 0.0, 0.0]
    assert evals[-1]['reg_objective'] == evals[-1]['train_loss']  # no penalty without weight decay
    norm = lambda ckpt: sum(v.norm() ** 2 for v in ckpt['model'].values() if v.dim() > 1) ** 0.5
    assert norm(b) > norm(a) * 1.01  # a's weights kept shrinking by lr*wd = 5% a step, b's did not


def test_the_effective_lr_replay_follows_the_source_run_without_weight_decay(cifar_dir, tmp_path):
    common = [*TINY, f'--data_dir={cifar_dir}', '--epochs=6', '--eval_every=1', '--lr=0.2', '--first_decay=0.5',
              '--lr_flow=0.01', '--ema_coef=0', '--scale_inv=True']
    train(*common, f'--out_dir={tmp_path}/source', '--weight_decay=0.05')
    train(*common, f'--out_dir={tmp_path}/replay', '--weight_decay=0', f'--elr_from={tmp_path}/source')
    source, replay = lines(tmp_path / 'source', True), lines(tmp_path / 'replay', True)
    errors = [abs(r['eff_lr'] / s['eff_lr'] - 1) for s, r in zip(source, replay)]
    assert len(errors) == 6 and max(errors) < 0.03, errors  # it tracks the source's lr/||w||^2, the drop too
    assert all(r['wd'] == 0 for r in replay) and replay[2]['lr'] > 0.2  # no decay: ||w|| grows, so must lr
    out = train(*common, f'--out_dir={tmp_path}/bad', f'--elr_from={tmp_path}/source', check=False)
    assert out.returncode == 2 and 'add --weight_decay=0' in out.stderr
    out = train(*common[:-1], '--weight_decay=0', f'--out_dir={tmp_path}/bad', f'--elr_from={tmp_path}/source',
                check=False)
    assert out.returncode == 2 and 'elr_from needs scale_inv=True' in out.stderr
    # it learns as the source does: every trained weight is scale-invariant, so an LR growing with ||w||^2
    # leaves the steps in the weights' directions as the source's
    assert replay[-1]['train_err'] <= source[-1]['train_err'] + 0.03


def test_snapshots_projection_schedule_and_cautious_decay(cifar_dir, tmp_path):
    common = [*TINY, '--n_train=100', f'--data_dir={cifar_dir}', '--epochs=2', '--eval_every=0', '--lr=0.1',
              '--first_decay=1.0', '--ema_coef=0']
    train(*common, f'--out_dir={tmp_path}/snap', '--ckpt_every=1')
    assert sorted(p.name for p in (tmp_path / 'snap').glob('ckpt*.pt')) == ['ckpt.pt', 'ckpt_2.pt', 'ckpt_4.pt']
    # the authors' schedule projects once per epoch: on the sphere at the end of each epoch, not between
    sphere = [*common, '--scale_inv=True', '--radius=3.0', '--weight_decay=0']
    train(*sphere, f'--out_dir={tmp_path}/epoch', '--project_every=epoch')
    train(*sphere, f'--out_dir={tmp_path}/step')
    assert [r['weight_norm'] for r in lines(tmp_path / 'epoch', False)] == pytest.approx([3.0, 3.0], rel=1e-5)
    assert lines(tmp_path / 'epoch', False)[-1]['loss'] != lines(tmp_path / 'step', False)[-1]['loss']
    train(*common, f'--out_dir={tmp_path}/cautious', '--wd_mode=cautious', '--momentum=0.9')
    (last,) = lines(tmp_path / 'cautious', True)
    assert last['angular_update'] > 0 and last['angular_update_eq'] is None and last['reg_objective'] is not None


@pytest.mark.parametrize('dtype', ['float32', 'bfloat16', 'float16'])
def test_steps_inside_an_epoch_read_nothing_back_from_the_device(cifar_dir, tmp_path, monkeypatch, dtype):
    # on a GPU a read of a device value (.item(), bool(), .tolist(), ...) waits for the whole queue; the
    # epoch's end may read (its log line, evaluation, checkpoint), its steps may not
    expected = torch_scaler_reads_per_step(monkeypatch) if dtype == 'float16' else 0
    with HostReads(monkeypatch, optim.SGD) as reads:
        train(*[a for a in TINY if not a.startswith('--dtype')], f'--dtype={dtype}', f'--data_dir={cifar_dir}',
              f'--out_dir={tmp_path / "run"}', '--epochs=3', '--eval_every=2', '--momentum=0.9', '--augment=True')
    per_epoch = 200 // 50
    assert len(reads.per_step) == 3 * per_epoch
    # entry k: the end of step k-1 and step k itself; an epoch's end lies in the entries at k % per_epoch == 0
    quiet = [n for k, n in enumerate(reads.per_step) if k % per_epoch != 0]
    assert quiet == [expected] * len(quiet), reads.per_step
    assert all(n > expected for n in reads.per_step[per_epoch::per_epoch]), reads.per_step
