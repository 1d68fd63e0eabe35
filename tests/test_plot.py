import json
import subprocess
import sys
from pathlib import Path

import pytest

import plot
import run_io

ROOT = Path(__file__).resolve().parent.parent


def run_plot(*args):
    return subprocess.run([sys.executable, str(ROOT / 'plot.py'), *args], capture_output=True,
                          text=True, cwd=ROOT)


def fake_run(folder, config, records):
    """A run folder as the training scripts write it (for the bad-input paths only)."""
    folder.mkdir(parents=True)
    (folder / 'config.json').write_text(json.dumps(config))
    (folder / 'log.jsonl').touch()
    for r in records:
        run_io.append_log(folder / 'log.jsonl', r)
    return folder


def test_legend_shows_only_the_config_values_that_differ(tmp_path):
    runs = [dict(name='a', config=dict(weight_decay=0.0, learning_rate=6e-4, device='cpu'), records=[]),
            dict(name='b', config=dict(weight_decay=0.1, learning_rate=6e-4, device='cuda'), records=[])]
    assert plot.legend_labels(runs) == ['wd=0.0', 'wd=0.1']


def test_smoothing_is_a_trailing_moving_average():
    run = dict(records=[{'iter': i, 'loss': v} for i, v in enumerate([1.0, 3.0, 5.0, 7.0])])
    assert plot.series(run, 'iter', 'loss', smooth=2) == ([0, 1, 2, 3], [1.0, 2.0, 4.0, 6.0])


@pytest.mark.parametrize('make_args,fragment', [
    (lambda d: [str(d / 'missing')], 'is not a run folder'),
    (lambda d: [str(d / 'nolog')], 'has no log.jsonl'),
    (lambda d: [str(d / 'empty')], 'no run has any logged line'),
    (lambda d: [str(d / 'ok'), '--y=val_loss'], "none of the runs logged val_loss"),
    (lambda d: [str(d / 'ok'), '--smooth=0'], '--smooth must be >= 1'),
    (lambda d: [str(d / 'ok'), '--smoth=3'], "did you mean 'smooth'"),
    (lambda d: [], 'no run folders given'),
])
def test_bad_input_exits_2_with_one_line(tmp_path, make_args, fragment):
    (tmp_path / 'nolog').mkdir()
    fake_run(tmp_path / 'empty', {}, [])
    fake_run(tmp_path / 'ok', {'weight_decay': 0.1}, [{'iter': 0, 'loss': 3.0}])
    out = run_plot(*make_args(tmp_path), f'--out={tmp_path}/f.png')
    assert out.returncode == 2, out.stderr
    assert fragment in out.stderr and 'Traceback' not in out.stderr
    assert not (tmp_path / 'f.png').exists()


def test_a_torn_last_line_of_a_running_log_is_ignored(tmp_path):
    run = fake_run(tmp_path / 'live', {}, [{'iter': 0, 'loss': 3.0}, {'iter': 10, 'loss': 2.5}])
    with open(run / 'log.jsonl', 'a') as f:
        f.write('{"iter": 20, "loss": 2.')
    out = run_plot(str(run), '--y=loss', f'--out={tmp_path}/f.png')
    assert out.returncode == 0, out.stderr
    assert (tmp_path / 'f.png').stat().st_size > 0


# -----------------------------------------------------------------------------
# the presets, on logs written by short real runs of both training scripts

GPT_TINY = ['--dataset=shakespeare_char', '--device=cpu', '--n_layer=1', '--n_head=2', '--n_embd=16',
            '--block_size=16', '--batch_size=4', '--gradient_accumulation_steps=1', '--eval_iters=2',
            '--vocab_multiple=1', '--warmup_iters=2', '--eval_interval=5', '--log_interval=5']
RESNET_TINY = ['--width=4', '--n_train=100', '--batch_size=50', '--eval_batch_size=500', '--device=cpu',
               '--compile=False', '--dtype=float32', '--epochs=4', '--eval_every=2', '--ema_coef=0.9']


def train(script, *args):
    env = {**__import__('os').environ, 'OMP_NUM_THREADS': '1'}
    out = subprocess.run([sys.executable, str(ROOT / script), *args], capture_output=True, text=True,
                         cwd=ROOT, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]


@pytest.fixture(scope='module')
def real_runs(char_data, cifar_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp('plot_runs')
    gpt = [*GPT_TINY, f'--data_dir={char_data}', '--max_iters=20']
    for wd in (0.0, 0.5):
        train('train_gpt.py', *gpt, f'--weight_decay={wd}', f'--out_dir={root}/gpt_wd{wd}')
    train('train_gpt.py', *gpt, '--weight_decay=0.5', '--max_iters=10', '--learning_rate=1e-5', '--decay_lr=False',
          '--warmup_iters=0', f'--init_from={root}/gpt_wd0.5/ckpt.pt', f'--out_dir={root}/gpt_wd0.5_ft')
    vision = [*RESNET_TINY, f'--data_dir={cifar_dir}', '--first_decay=0.5', '--lr_flow=1e-3']
    for lr, wd in ((0.1, 0.05), (0.1, 0.0), (0.01, 0.0)):
        train('train_resnet.py', *vision, f'--lr={lr}', f'--weight_decay={wd}', f'--out_dir={root}/resnet_lr{lr}_wd{wd}')
    sphere = [*RESNET_TINY, f'--data_dir={cifar_dir}', '--scale_inv=True', '--radius=1.0', '--weight_decay=0',
              '--first_decay=1.0', '--flow_every=2', '--flow_epochs=1', '--hessian_every=2', '--hessian_n=20',
              '--hessian_probes=2']
    for lr in (0.003, 0.03):
        train('train_resnet.py', *sphere, f'--lr={lr}', f'--out_dir={root}/sphere_lr{lr}')
    return root


def panels_with_lines(fig):
    return [ax for ax in fig.axes if ax.get_visible() and ax.get_lines()]


@pytest.mark.slow
@pytest.mark.parametrize('figure,runs,n_panels', [
    ('llm_cosine', ['gpt_wd0.0', 'gpt_wd0.5'], 3),
    ('llm_finetune', ['gpt_wd0.0', 'gpt_wd0.5', 'gpt_wd0.5_ft'], 2),
    ('effective_lr', ['gpt_wd0.0', 'gpt_wd0.5'], 3),
    ('bf16', ['gpt_wd0.0', 'gpt_wd0.5'], 1),
    ('vision_grid', ['resnet_lr0.1_wd0.05', 'resnet_lr0.1_wd0.0', 'resnet_lr0.01_wd0.0'], 4),
    ('weight_norm', ['resnet_lr0.1_wd0.05', 'resnet_lr0.1_wd0.0'], 3),
    ('sphere', ['sphere_lr0.003', 'sphere_lr0.03'], 4),
])
def test_each_preset_draws_all_its_panels_from_real_runs(real_runs, figure, runs, n_panels):
    fig = plot.FIGURES[figure](plot.load_runs([real_runs / r for r in runs]), 1)
    assert len(panels_with_lines(fig)) == n_panels


def test_finetune_preset_starts_the_finetuning_where_its_parent_ended(real_runs):
    fig = plot.figure_llm_finetune(plot.load_runs([real_runs / 'gpt_wd0.5', real_runs / 'gpt_wd0.5_ft']), 1)
    parent, child = fig.axes[0].get_lines()[:2]
    assert child.get_linestyle() == '--' and min(child.get_xdata()) == max(parent.get_xdata()) == 20


def test_vision_errors_are_drawn_in_percent_and_ema_dashed(real_runs):
    run = plot.load_run(real_runs / 'resnet_lr0.1_wd0.05')
    fig = plot.plot_runs([run], 'epoch', ['test_err'])
    iterate, ema = fig.axes[0].get_lines()
    logged = [100 * r['test_err'] for r in run['records'] if 'test_err' in r]
    assert list(iterate.get_ydata()) == pytest.approx(logged) and ema.get_linestyle() == '--'


@pytest.mark.slow
def test_command_line_writes_the_figure(real_runs, tmp_path):
    out = run_plot(str(real_runs / 'sphere_lr0.003'), str(real_runs / 'sphere_lr0.03'), '--figure=sphere',
                   f'--out={tmp_path}/sphere.png')
    assert out.returncode == 0, out.stderr
    assert (tmp_path / 'sphere.png').read_bytes()[:4] == b'\x89PNG'
    out = run_plot(str(real_runs / 'sphere_lr0.003'), '--figure=nope', f'--out={tmp_path}/x.png')
    assert out.returncode == 2 and "unknown figure 'nope'" in out.stderr


@pytest.mark.slow
def test_each_miniature_config_runs_a_few_iterations_and_logs_what_its_figure_needs(char_data, cifar_dir, tmp_path):
    gpt = [f'--data_dir={char_data}', '--max_iters=4', '--warmup_iters=2', '--eval_interval=2',
           '--eval_iters=2', '--log_interval=2']
    train('train_gpt.py', 'config/mini_llm_cosine.py', *gpt, '--weight_decay=0.1', f'--out_dir={tmp_path}/cosine')
    train('train_gpt.py', 'config/mini_llm_constant.py', *gpt, '--weight_decay=0.1', f'--out_dir={tmp_path}/const')
    train('train_gpt.py', 'config/mini_llm_finetune.py', *gpt, '--weight_decay=0.1', '--max_iters=2',
          f'--init_from={tmp_path}/const/ckpt.pt', f'--out_dir={tmp_path}/const_ft')
    train('train_resnet.py', 'config/mini_vision_grid.py', f'--data_dir={cifar_dir}', '--epochs=2', '--eval_every=1',
          f'--out_dir={tmp_path}/grid')
    train('train_resnet.py', 'config/mini_sphere.py', f'--data_dir={cifar_dir}', '--epochs=1', '--flow_every=1',
          '--flow_epochs=1', '--hessian_every=1', '--hessian_n=20', '--hessian_probes=2', f'--out_dir={tmp_path}/sphere')
    needs = {'cosine': ('train_loss', 'val_loss'), 'const': ('train_loss',), 'const_ft': ('train_loss',),
             'grid': ('test_err', 'test_err_ema', 'train_loss', 'weight_norm', 'eff_lr'),
             'sphere': ('flow_test_err', 'flow_trace_hessian', 'flow_trace_hessian_se')}
    for run, keys in needs.items():
        evals = [r for r in run_io.read_log(tmp_path / run / 'log.jsonl') if r.get('eval')]
        assert evals and all(isinstance(evals[-1].get(k), float) for k in keys), (run, evals[-1:])
    assert plot.parent_iter(plot.load_run(tmp_path / 'const_ft')) == 4  # the fine-tuning continues at 4
