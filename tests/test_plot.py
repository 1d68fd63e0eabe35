import csv
import io
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

import figures
import plot
import run_io
from conftest import run_script

ROOT = Path(__file__).resolve().parent.parent


def run_plot(*args):
    return run_script('plot.py', *args)  # in this process (conftest.py)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plot.plt.close('all')  # pyplot keeps every figure open, and warns past 20


def fake_run(folder, config, records):
    """A run folder as the training scripts write it, from hand-made lines (bad input, and the
    arithmetic of seed groups, checked against numbers the test computes)."""
    folder.mkdir(parents=True)
    (folder / 'config.json').write_text(json.dumps(config))
    (folder / 'log.jsonl').touch()
    for r in records:
        run_io.append_log(folder / 'log.jsonl', r)
    return folder


def test_legend_shows_only_the_config_values_that_differ(tmp_path):
    runs = [{'name': 'a', 'config': {'weight_decay': 0.0, 'learning_rate': 6e-4, 'device': 'cpu'}, 'records': []},
            {'name': 'b', 'config': {'weight_decay': 0.1, 'learning_rate': 6e-4, 'device': 'cuda'}, 'records': []}]
    assert plot.legend_labels(runs) == ['wd=0.0', 'wd=0.1']


def test_smoothing_is_a_trailing_moving_average():
    run = {'records': [{'iter': i, 'loss': v} for i, v in enumerate([1.0, 3.0, 5.0, 7.0])]}
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


def band_limits(band, xs):
    """The lower and upper edges at xs of a band drawn by fill_between, read back from its polygon."""
    vertices = band.get_paths()[0].vertices
    at = [[y for vx, y in vertices if vx == x] for x in xs]
    return [min(ys) for ys in at], [max(ys) for ys in at]


def test_the_appendix_preset_names_each_optimizer_and_decay():
    label = lambda **c: figures.optimizer_label({'config': c})
    assert label(optimizer='adamw', wd_mode='decoupled', weight_decay=0.1, wd_params='all') == 'AdamW, wd 0.1 on all'
    assert label(optimizer='adamw', wd_mode='l2', weight_decay=1e-4) == 'Adam + L2 0.0001 on matrices'
    assert label(optimizer='sgd', wd_mode='l2', weight_decay=1e-4) == 'SGD + L2 0.0001 on matrices'


def test_seeds_of_one_setting_are_drawn_as_their_mean_and_band(tmp_path, capsys):
    losses = {0: [2.0, 1.5, 1.2, 1.0], 1: [2.2, 1.4, 1.3, 0.9], 2: [2.9, 1.9, 1.1, 0.8, 0.7]}  # seed 2 is ahead
    setting = {'weight_decay': 0.1, 'lr': 0.1, 'epochs': 5}
    paths = [fake_run(tmp_path / f'wd0.1_seed{s}', {**setting, 'seed': s, 'out_dir': f'out/wd0.1_seed{s}'},
                      [{'iter': 10 * e, 'epoch': e, 'train_loss': v} for e, v in enumerate(vals, 1)])
             for s, vals in losses.items()]
    alone = [2.5, 2.0, 1.8, 1.7]
    paths.append(fake_run(tmp_path / 'wd0', {**setting, 'weight_decay': 0.0, 'seed': 0, 'out_dir': 'out/wd0'},
                          [{'iter': 10 * e, 'epoch': e, 'train_loss': v} for e, v in enumerate(alone, 1)]))
    ax = plot.plot_runs(plot.load_runs(paths), 'epoch', ['train_loss']).axes[0]
    mean, single = ax.get_lines()
    assert (mean.get_label(), single.get_label()) == ('wd=0.1 (3 seeds)', 'wd=0.0')
    columns = list(zip(*(vals[:4] for vals in losses.values())))  # the epochs all three seeds logged
    assert list(mean.get_xdata()) == [1, 2, 3, 4]
    assert list(mean.get_ydata()) == pytest.approx([sum(c) / 3 for c in columns])
    band, = ax.collections  # one band: the single run is drawn as before, without one
    lows, highs = band_limits(band, [1, 2, 3, 4])
    assert lows == pytest.approx([min(c) for c in columns]) and highs == pytest.approx([max(c) for c in columns])
    assert list(single.get_ydata()) == alone
    assert ax.get_legend().get_title().get_text() == plot.SEED_NOTE
    assert 'the seeds of wd0.1 logged different iterations' in capsys.readouterr().err


def hand_made_line(metric_names, step, lr, seed):
    """Every metric a preset reads, a different positive value per metric, LR, seed and step."""
    return {'iter': 10 * step, 'epoch': step, 'eval': True,
            **{m: (1 + 0.3 * seed) * (1 + 10 * lr) * (1 + i / 10) / step for i, m in enumerate(metric_names)}}


PRESET_METRICS = {'vision_grid': 'test_err', 'weight_norm': 'weight_norm', 'sphere': 'loss', 'elr_replay': 'eff_lr',
                  'llm_cosine': 'train_loss', 'llm_finetune': 'train_loss', 'bf16': 'loss',
                  'effective_lr': 'adam_elr'}  # the metric of each preset's first panel


@pytest.mark.parametrize('figure', PRESET_METRICS)
def test_every_preset_draws_seeds_as_their_mean_and_band(tmp_path, figure):
    names = sorted(set(PRESET_METRICS.values()) | {'test_err_ema', 'val_loss', 'lr', 'decayed_norm',
                                                   'angular_update', 'angular_update_eq'})
    paths, expected = [], []
    for lr, wd in ((0.1, 0.1), (0.01, 0.0)):
        lines = {seed: [hand_made_line(names, step, lr, seed) for step in (1, 2, 3)] for seed in (0, 1)}
        for seed, records in lines.items():
            paths.append(fake_run(tmp_path / f'lr{lr}_seed{seed}', {'lr': lr, 'weight_decay': wd, 'seed': seed}, records))
        metric = PRESET_METRICS[figure]
        scale = 100 if metric.endswith('_err') else 1  # errors are drawn in percent
        expected.append([scale * (a[metric] + b[metric]) / 2 for a, b in zip(lines[0], lines[1])])
    fig = figures.FIGURES[figure]['draw'](plot.load_runs(paths), 1)
    solid = [line for line in fig.axes[0].get_lines() if line.get_linestyle() == '-']
    assert solid and all(line.get_label().endswith('(2 seeds)') for line in solid)  # one line per setting
    for line in solid:
        assert any(list(line.get_ydata()) == pytest.approx(mean) for mean in expected), figure
    assert len(fig.axes[0].collections) >= len(solid)  # each with its band
    titles = [ax.get_legend().get_title().get_text() for ax in fig.axes if ax.get_legend()]
    assert titles and set(titles) == {plot.SEED_NOTE}


def test_finetunings_of_two_seeds_are_seeds_of_one_setting(tmp_path):
    line = [{'iter': 0, 'loss': 3.0}]
    parents = [fake_run(tmp_path / f'const_wd{wd}_seed{s}', {'weight_decay': wd, 'seed': s}, line)
               for wd, s in ((0.1, 0), (0.1, 1), (0.3, 0))]
    tunes = [fake_run(tmp_path / f'ft_{p.name}', {'weight_decay': 0.1, 'seed': 0, 'init_from': str(p / 'ckpt.pt'),
                                                  'out_dir': str(tmp_path / f'ft_{p.name}')}, line) for p in parents]
    groups = plot.seed_groups(plot.load_runs([*parents, *tunes]))
    assert [[r['name'] for r in g['runs']] for g in groups] == [
        ['const_wd0.1_seed0', 'const_wd0.1_seed1'], ['const_wd0.3_seed0'],
        ['ft_const_wd0.1_seed0', 'ft_const_wd0.1_seed1'], ['ft_const_wd0.3_seed0']]


def test_gpt_and_resnet_runs_together_exit_2_saying_how_to_split_them(tmp_path, capsys):
    gpt = [fake_run(tmp_path / f'gpt{i}', {'max_iters': 20, 'weight_decay': 0.1 * i},
                    [{'iter': 10 * s, 'tokens': 640 * s, 'val_loss': 3.0 - s, 'weight_norm': 5.0 + s}
                     for s in range(3)]) for i in (0, 1)]
    vision = fake_run(tmp_path / 'resnet', {'epochs': 2, 'weight_decay': 0.05},
                      [{'iter': 10 * e, 'epoch': e, 'train_loss': 2.0 / e, 'weight_norm': 9.0 + e} for e in (1, 2)])
    paths = [str(p) for p in (*gpt, vision)]
    out = run_plot(*paths, f'--out={tmp_path}/f.png')
    assert out.returncode == 2 and out.stderr.startswith('error: ') and out.stderr.count('\n') == 1, out.stderr
    assert f"plot the GPT runs ({gpt[0]}, {gpt[1]}) and the ResNet runs ({vision}) separately" in out.stderr
    assert 'Traceback' not in out.stderr and not (tmp_path / 'f.png').exists()
    with pytest.raises(plot.PlotError, match=f"draws ResNet runs, but {gpt[0]} is a GPT run"):
        plot.main([str(gpt[0]), '--figure=vision_grid', f'--out={tmp_path}/f.png'])
    with pytest.raises(plot.PlotError, match=f"{vision} has no 'val_loss' against 'iter'"):
        plot.main([*paths, '--x=iter', '--y=weight_norm,val_loss', f'--out={tmp_path}/f.png'])
    # --x and --y that every run logs: all three drawn, each labelled within its kind, without a warning
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert plot.main([*paths, '--x=iter', '--y=weight_norm', f'--out={tmp_path}/f.png']) == 0
    assert capsys.readouterr().err == '' and (tmp_path / 'f.png').exists()
    lines = plot.plot_runs(plot.load_runs(paths), 'iter', ['weight_norm']).axes[0].get_lines()
    assert [line.get_label() for line in lines] == ['GPT: wd=0.0', 'GPT: wd=0.1', 'ResNet: resnet']
    # the preset's kind, registered beside it: rotation gives each run a panel and an x axis of its own
    runs = plot.load_runs(paths)
    plot.check_kinds(runs, 'rotation', figures.FIGURES['rotation']['kind'])
    with pytest.raises(plot.PlotError, match='--figure=effective_lr draws one kind of run, GPT or ResNet'):
        plot.check_kinds(runs, 'effective_lr', figures.FIGURES['effective_lr']['kind'])


def test_rotation_figure_draws_the_tensor_spread_the_mean_and_the_prediction(tmp_path):
    def lines(seed=0, percentiles=True, eq=0.015):
        return [{'iter': 10 * s, 'tokens': 640 * s, 'eval': True, 'angular_update': 0.02 * (1 + 0.5 * seed) / s,
                 'angular_update_eq': eq,
                 **({'angular_update_p10': 0.01 * (1 + seed) / s, 'angular_update_p90': 0.04 * (1 + seed / 4) / s}
                    if percentiles else {})} for s in (1, 2, 3)]
    adamw = {'optimizer': 'adamw', 'wd_mode': 'decoupled', 'weight_decay': 0.1, 'max_iters': 30}
    paths = [fake_run(tmp_path / f'adamw_seed{s}', {**adamw, 'seed': s}, lines(s)) for s in (0, 1)]
    paths.append(fake_run(tmp_path / 'adam_l2', {**adamw, 'wd_mode': 'l2'}, lines(eq=None)))
    paths.append(fake_run(tmp_path / 'old', {**adamw, 'weight_decay': 0.3}, lines(percentiles=False)))  # no p10/p90
    paths.append(fake_run(tmp_path / 'resnet', {'weight_decay': 0.05, 'wd_mode': 'decoupled', 'epochs': 3},
                          [{'iter': 10 * e, 'epoch': e, 'eval': True, 'angular_update': 0.1 / e, 'angular_update_p10':
                            0.05 / e, 'angular_update_p90': 0.2 / e, 'angular_update_eq': 0.08} for e in (1, 2, 3)]))
    seeds, l2, old, resnet = [ax for ax in figures.figure_rotation(plot.load_runs(paths), 1).axes if ax.get_visible()]
    assert 'adamw (2 seeds)' in seeds.get_title() and 'adamw, wd_mode=decoupled, wd=0.1' in seeds.get_title()
    assert 'wd_mode=l2' in l2.get_title() and 'wd=0.3' in old.get_title()
    assert 'sgd, wd_mode=decoupled, wd=0.05' in resnet.get_title() and resnet.get_xlabel() == 'epoch'
    assert {ax.get_yscale() for ax in (seeds, l2, old, resnet)} == {'log'}
    # seeds: the mean over seeds of each logged curve; the band from the mean p10 to the mean p90
    a, b = lines(0), lines(1)
    mean, prediction = seeds.get_lines()
    assert list(mean.get_ydata()) == pytest.approx([(x['angular_update'] + y['angular_update']) / 2 for x, y in zip(a, b)])
    lows, highs = band_limits(seeds.collections[0], [10, 20, 30])
    assert lows == pytest.approx([(x['angular_update_p10'] + y['angular_update_p10']) / 2 for x, y in zip(a, b)])
    assert highs == pytest.approx([(x['angular_update_p90'] + y['angular_update_p90']) / 2 for x, y in zip(a, b)])
    assert prediction.get_linestyle() == '--' and list(prediction.get_ydata()) == [0.015] * 3
    # Adam + L2: the band, no prediction; an older log: the mean and prediction, no band
    assert len(l2.collections) == 1 and [line.get_linestyle() for line in l2.get_lines()] == ['-']
    assert 'no equilibrium predicted' in [t.get_text() for t in l2.texts]
    assert not old.collections and [line.get_linestyle() for line in old.get_lines()] == ['-', '--']


def test_elr_replay_figure_labels_the_wd_run_the_run_without_and_the_replay(tmp_path):
    def lines(lr_growth, test_err):
        return [{'iter': 10 * e, 'epoch': e, 'eval': True, 'lr': 0.1 * lr_growth ** e, 'eff_lr': 0.01 / e,
                 'weight_norm': 10.0 * lr_growth ** (e / 2), 'train_loss': 2.0 / e, 'test_err': test_err / e,
                 'test_err_ema': 0.9 * test_err / e} for e in (1, 2, 3)]
    base = {'lr': 0.1, 'epochs': 3, 'seed': 0, 'elr_from': ''}
    source = fake_run(tmp_path / 'src', {**base, 'weight_decay': 0.05}, lines(1.0, 0.3))
    nowd = fake_run(tmp_path / 'nowd', {**base, 'weight_decay': 0}, lines(1.0, 0.4))
    replay = fake_run(tmp_path / 'replay', {**base, 'weight_decay': 0, 'elr_from': str(source)}, lines(1.5, 0.31))
    fig = figures.figure_elr_replay(plot.load_runs([replay, nowd, source]), 1)
    panels = [ax for ax in fig.axes if ax.get_lines()]
    assert [ax.get_ylabel() for ax in panels] == [plot.LABELS[k] for k in ('eff_lr', 'lr', 'weight_norm',
                                                                          'train_loss', 'test_err')]
    assert [t.get_text() for t in panels[0].get_legend().get_texts()] == ['wd=0.05', 'wd=0', 'replay of src']
    assert panels[0].get_yscale() == panels[1].get_yscale() == 'log'
    assert list(panels[1].get_lines()[2].get_ydata()) == pytest.approx([0.1 * 1.5 ** e for e in (1, 2, 3)])
    assert [line.get_linestyle() for line in panels[4].get_lines()] == ['-', '--'] * 3  # the EMA dashed
    # a replay whose source is not among the runs (or is gone) still plots, under the source's name
    gone = fake_run(tmp_path / 'replay2', {**base, 'weight_decay': 0, 'elr_from': str(tmp_path / 'gone')},
                    lines(1.5, 0.31))
    fig = figures.figure_elr_replay(plot.load_runs([nowd, gone]), 1)
    assert len([ax for ax in fig.axes if ax.get_lines()]) == 5
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ['wd=0', 'replay of gone']


# -----------------------------------------------------------------------------
# the presets, on logs written by short real runs of both training scripts

GPT_TINY = ['--dataset=shakespeare_char', '--device=cpu', '--n_layer=1', '--n_head=2', '--n_embd=16',
            '--block_size=16', '--batch_size=4', '--gradient_accumulation_steps=1', '--eval_iters=2',
            '--vocab_multiple=1', '--warmup_iters=2', '--eval_interval=5', '--log_interval=5']
RESNET_TINY = ['--width=4', '--n_train=100', '--batch_size=50', '--eval_batch_size=500', '--device=cpu',
               '--compile=False', '--dtype=float32', '--epochs=4', '--eval_every=2', '--ema_coef=0.9']


def train(script, *args):
    out = run_script(script, *args)  # in this process, on one thread (conftest.py)
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
    ('elr_replay', ['resnet_lr0.1_wd0.05', 'resnet_lr0.1_wd0.0'], 5),
    ('rotation', ['gpt_wd0.0', 'gpt_wd0.5', 'resnet_lr0.1_wd0.05'], 3),
    ('appendix', ['gpt_wd0.0', 'gpt_wd0.5'], 3),
])
def test_each_preset_draws_all_its_panels_from_real_runs(real_runs, figure, runs, n_panels):
    with warnings.catch_warnings():  # no matplotlib warning (constrained layout, empty legend) on normal use
        warnings.simplefilter('error')
        fig = figures.FIGURES[figure]['draw'](plot.load_runs([real_runs / r for r in runs]), 1)
        fig.savefig(io.BytesIO(), format='png')
    assert len(panels_with_lines(fig)) == n_panels


def test_finetune_preset_starts_the_finetuning_where_its_parent_ended(real_runs):
    fig = figures.figure_llm_finetune(plot.load_runs([real_runs / 'gpt_wd0.5', real_runs / 'gpt_wd0.5_ft']), 1)
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
    assert out.returncode == 0 and out.stderr == '', out.stderr  # no warning on normal use
    assert (tmp_path / 'sphere.png').read_bytes()[:4] == b'\x89PNG'
    out = run_plot(str(real_runs / 'sphere_lr0.003'), '--figure=nope', f'--out={tmp_path}/x.png')
    assert out.returncode == 2 and "unknown figure 'nope'" in out.stderr


def test_runs_written_before_a_config_key_existed_are_named_in_a_warning(real_runs, tmp_path):
    # an older version's run lacks a key the newer runs have: it makes a setting of its own, said once
    old = tmp_path / 'old_wd0.5'
    shutil.copytree(real_runs / 'gpt_wd0.5', old)
    config = json.loads((old / 'config.json').read_text())
    del config['eval_whole_val']
    (old / 'config.json').write_text(json.dumps(config))
    out = run_plot(str(real_runs / 'gpt_wd0.0'), str(old), '--table=train_loss')
    assert out.returncode == 0 and out.stderr.count('\n') == 1, out.stderr
    assert 'old_wd0.5 lack the config keys eval_whole_val' in out.stderr and 'eval_whole_val=None' in out.stdout
    out = run_plot(str(real_runs / 'gpt_wd0.0'), str(real_runs / 'gpt_wd0.5'), '--table=train_loss')
    assert out.returncode == 0 and out.stderr == ''


@pytest.mark.slow
def test_each_miniature_config_runs_a_few_iterations_and_logs_what_its_figure_needs(char_data, cifar_dir, tmp_path):
    gpt = [f'--data_dir={char_data}', '--max_iters=4', '--warmup_iters=2', '--eval_interval=2',
           '--eval_iters=2', '--log_interval=2']
    train('train_gpt.py', 'config/mini_llm_cosine.py', *gpt, '--weight_decay=0.1', f'--out_dir={tmp_path}/cosine')
    # their eval of all of val would be most of this test's time; test_train_gpt.py checks it
    whole = '--eval_whole_val=False'
    train('train_gpt.py', 'config/mini_llm_constant.py', *gpt, whole, '--weight_decay=0.1', f'--out_dir={tmp_path}/const')
    train('train_gpt.py', 'config/mini_llm_finetune.py', *gpt, whole, '--weight_decay=0.1', '--max_iters=2',
          f'--init_from={tmp_path}/const/ckpt.pt', f'--out_dir={tmp_path}/const_ft')
    train('train_resnet.py', 'config/mini_vision_grid.py', f'--data_dir={cifar_dir}', '--epochs=2', '--eval_every=1',
          '--n_train=200', f'--out_dir={tmp_path}/grid')
    train('train_resnet.py', 'config/mini_sphere.py', f'--data_dir={cifar_dir}', '--epochs=1', '--flow_every=1',
          '--flow_epochs=1', '--hessian_every=1', '--hessian_n=20', '--hessian_probes=2', f'--out_dir={tmp_path}/sphere')
    train('train_gpt.py', 'config/mini_llm_bf16.py', *gpt, '--weight_decay=0', f'--out_dir={tmp_path}/bf16')
    train('train_gpt.py', 'config/mini_llm_logits.py', *gpt, '--weight_decay=0', f'--out_dir={tmp_path}/logits')
    vision2 = [f'--data_dir={cifar_dir}', '--epochs=1', '--eval_every=1', '--n_train=200']  # 4,800 held out
    train('train_resnet.py', 'config/mini_vision_claim2.py', *vision2, '--weight_decay=0.05', f'--out_dir={tmp_path}/claim2')
    replay = [*vision2, '--ema_coef=0']  # its figure draws no EMA
    train('train_resnet.py', 'config/mini_vision_replay.py', *replay, '--weight_decay=0.05', f'--out_dir={tmp_path}/source')
    train('train_resnet.py', 'config/mini_vision_replay.py', *replay, '--weight_decay=0', f'--elr_from={tmp_path}/source',
          f'--out_dir={tmp_path}/replay')
    needs = {'cosine': ('train_loss', 'val_loss', 'val_err', 'angular_update_p10', 'angular_update_p90'),
             'const': ('train_loss',), 'const_ft': ('train_loss',),
             'grid': ('test_err', 'test_err_ema', 'train_loss', 'weight_norm', 'eff_lr'),
             'sphere': ('flow_test_err', 'flow_trace_hessian', 'flow_trace_hessian_se'),
             'bf16': ('train_loss', 'val_loss', 'weight_norm'),
             'logits': ('train_loss', 'attn_logit_max', 'output_logit_max', 'attn_weight_bf16_tv', 'attn_logit_bf16_err'),
             'claim2': ('heldout_err', 'test_err', 'test_err_ema', 'eff_lr'), 'replay': ('eff_lr', 'test_err')}
    for run, keys in needs.items():
        evals = [r for r in run_io.read_log(tmp_path / run / 'log.jsonl') if r.get('eval')]
        assert evals and all(isinstance(evals[-1].get(k), float) for k in keys), (run, evals[-1:])
    assert figures.parent_iter(plot.load_run(tmp_path / 'const_ft')) == 4  # the fine-tuning continues at 4


# -----------------------------------------------------------------------------
# a legend names every setting it draws; tables of the same settings, on seeds of short real GPT runs

@pytest.fixture(scope='module')
def seed_runs(char_data, tmp_path_factory):
    """Real runs of 20 iterations (evals every 5, a cosine to min_lr at 20): wd 0 and 0.1 on three seeds;
    wd 0.1 on every parameter, two seeds (claim 7 beside claim 4: one wd, two settings); lr 15, three seeds,
    where some diverge; wd 0.3, two seeds, one of them cut at iteration 10 as a run still running is."""
    root = tmp_path_factory.mktemp('seed_runs')
    gpt = [*GPT_TINY, f'--data_dir={char_data}', '--max_iters=20']
    settings = {'wd0': ['--weight_decay=0'], 'wd0.1': ['--weight_decay=0.1'],
                'wd0.1_wd_paramsall': ['--weight_decay=0.1', '--wd_params=all'],
                'lr15': ['--learning_rate=15', '--min_lr=0'], 'wd0.3': ['--weight_decay=0.3']}
    for name, args in settings.items():
        for seed in (0, 1) if name in ('wd0.1_wd_paramsall', 'wd0.3') else (0, 1, 2):
            out = run_script('train_gpt.py', *gpt, *args, f'--seed={seed}',
                             f'--out_dir={root}/cos_{name}_seed{seed}')
            assert out.returncode == (1 if 'diverged' in out.stderr else 0), out.stderr[-2000:]
    run_io.trim_log(root / 'cos_wd0.3_seed1' / 'log.jsonl', 10)  # its log as it was at iteration 10
    return root


def runs_of(root, *settings):
    return plot.load_runs([p for s in settings for p in sorted(root.glob(f'cos_{s}_seed*'))])


def test_a_preset_labelled_by_wd_names_two_settings_of_one_wd_apart(seed_runs, tmp_path):
    # the docs' command `out/mini_llm_cosine_wd0* --figure=llm_cosine` also matches claim 7's runs on all
    # parameters: llm_cosine labels by wd, and drew both as one orange "wd=0.1"
    runs = runs_of(seed_runs, 'wd0.1', 'wd0.1_wd_paramsall')
    fig = figures.FIGURES['llm_cosine']['draw'](runs, 1)
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert texts == ['wd=0.1, wd_params=matrices (3 seeds)', 'wd=0.1, wd_params=all (2 seeds)']
    solid = [line for line in fig.axes[0].get_lines() if line.get_linestyle() == '-']
    assert len(solid) == 2 and solid[0].get_color() != solid[1].get_color()
    out = run_plot(*[r['path'] for r in runs], '--figure=llm_cosine', f'--out={tmp_path}/f.png')
    assert out.returncode == 0 and out.stderr == '', out.stderr


@pytest.mark.parametrize('name', figures.FIGURES)
def test_no_preset_draws_two_settings_under_one_label(tmp_path, name):
    # two settings that differ only in a key no preset labels by (beta2), two seeds each, in folders of
    # the same names (out_a/run_seed0, out_b/run_seed0, ...)
    names = sorted(set(PRESET_METRICS.values()) | {'val_loss', 'val_err', 'decayed_norm', 'angular_update',
                                                   'angular_update_eq', 'flow_test_err', 'test_err_ema', 'attn_logit_max'})
    paths = [fake_run(tmp_path / f'out_{ab}' / f'run_seed{seed}',
                      {'lr': 0.1, 'weight_decay': 0.1, 'beta2': beta2, 'seed': seed},
                      [hand_made_line(names, step, 0.1, seed) for step in (1, 2, 3)])
             for ab, beta2 in (('a', 0.95), ('b', 0.99)) for seed in (0, 1)]
    fig = figures.FIGURES[name]['draw'](plot.load_runs(paths), 1)
    if name == 'rotation':  # a panel per setting, named in its title
        titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
        assert len(titles) == 2 and 'beta2=0.95' in titles[0] and 'beta2=0.99' in titles[1], titles
        return
    legends = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes if ax.get_legend()]
    assert legends and all(len(texts) == len(set(texts)) for texts in legends), legends
    assert [t for t in legends[0] if 'beta2=0.95' in t] and [t for t in legends[0] if 'beta2=0.99' in t]
    solid = [line for line in fig.axes[0].get_lines() if line.get_linestyle() == '-']
    assert len({line.get_color() for line in solid}) == 2  # and two colors


def logged(run, metric, at, eval_line=True):
    """The metric at iteration (GPT) / epoch (ResNet) `at`, read from the log file itself."""
    key = 'epoch' if run['kind'] == 'ResNet' else 'iter'
    with open(Path(run['path']) / 'log.jsonl') as f:
        lines = [json.loads(line) for line in f]
    return next(r[metric] for r in lines if r.get(key) == at and bool(r.get('eval')) == eval_line and metric in r)


def test_table_rows_are_the_figures_settings_with_their_seeds_statistics(seed_runs, monkeypatch):
    runs = runs_of(seed_runs, 'wd0', 'wd0.1', 'wd0.1_wd_paramsall')
    grouped = []
    seed_groups = plot.seed_groups
    monkeypatch.setattr(plot, 'seed_groups', lambda *a, **k: grouped.append(seed_groups(*a, **k)) or grouped[-1])
    rows = plot.table_rows(runs, ['train_loss', 'val_loss', 'loss'], 10, baseline='wd=0')
    # the settings of the figures: the groups seed_groups made, labelled as the generic figure's legend
    groups, = grouped
    assert [row['runs'] for row in rows] == [[r['name'] for r in g['runs']] for g in groups]
    assert [row['runs'] for row in rows] == [[f'cos_{s}_seed{i}' for i in range(n)]
                                             for s, n in (('wd0', 3), ('wd0.1', 3), ('wd0.1_wd_paramsall', 2))]
    lines = plot.plot_runs(runs, 'iter', ['train_loss']).axes[0].get_lines()
    assert [line.get_label() for line in lines if line.get_linestyle() == '-'] == [
        f"{row['setting']} ({len(row['runs'])} seeds)" for row in rows]
    # each metric at iteration 10 exactly, eval lines for the eval metrics and training lines for loss;
    # mean and sample sd over seeds, and differences to wd=0 paired by seed with their standard error
    base = {m: np.array([logged(r, m, 10, m != 'loss') for r in groups[0]['runs']]) for m in ('train_loss', 'loss')}
    for row, group in zip(rows, groups):
        assert row['at'] == ['iter 10'] and row['notes'] == []
        for m in ('train_loss', 'val_loss', 'loss'):
            values = np.array([logged(r, m, 10, m != 'loss') for r in group['runs']])
            stats = row['metrics'][m]
            assert stats['n'] == len(values) and stats['mean'] == pytest.approx(values.mean(), rel=1e-12)
            assert stats['sd'] == pytest.approx(values.std(ddof=1), rel=1e-9)
            if m in base and not row.get('baseline'):
                d = values - base[m][:len(values)]  # seeds 0, 1(, 2) against the baseline's seeds 0, 1(, 2)
                assert row['diff'][m]['mean'] == pytest.approx(d.mean(), rel=1e-9)
                assert row['diff'][m]['se'] == pytest.approx(d.std(ddof=1) / np.sqrt(len(d)), rel=1e-9)
    assert rows[0].get('baseline') and 'diff' not in rows[0]


def test_table_at_the_last_value_and_at_the_lr_drop(seed_runs, real_runs):
    runs = runs_of(seed_runs, 'wd0')
    last, = plot.table_rows(runs, ['val_loss', 'loss'], 'last')
    assert last['at'] == ['iter 20']
    assert last['metrics']['val_loss']['mean'] == pytest.approx(np.mean([logged(r, 'val_loss', 20) for r in runs]))
    # a cosine to min_lr at iteration 20, evals every 5: the last eval above min_lr is iteration 15
    drop, = plot.table_rows(runs, ['val_loss', 'loss'], 'drop')
    assert drop['at'] == ['iter 15']
    assert all(logged(r, 'lr', 15) > r['config']['min_lr'] == logged(r, 'lr', 20) for r in runs)
    assert drop['metrics']['loss']['mean'] == pytest.approx(np.mean([logged(r, 'loss', 15, False) for r in runs]))
    # ResNet: --at counts epochs; lr_flow from epoch 3 of 4 (first_decay=0.5), evals at 2 and 4: the drop is 2
    resnet = [plot.load_run(real_runs / 'resnet_lr0.1_wd0.05')]
    row, = plot.table_rows(resnet, ['test_err', 'loss'], 'drop')
    assert row['at'] == ['epoch 2'] and row['metrics']['test_err']['mean'] == logged(resnet[0], 'test_err', 2)
    row, = plot.table_rows(resnet, ['test_err', 'loss'], 3)  # no eval at epoch 3: said so, not interpolated
    assert row['metrics']['test_err']['n'] == 0 and row['notes'] == ['seed 0: no test_err at epoch 3']
    assert row['metrics']['loss']['mean'] == logged(resnet[0], 'loss', 3, False)
    row, = plot.table_rows([plot.load_run(real_runs / 'gpt_wd0.5_ft')], ['train_loss'], 'drop')  # constant LR
    assert row['metrics']['train_loss']['n'] == 0 and 'no LR drop' in row['notes'][0]


def test_table_names_the_seeds_that_diverged_or_have_not_finished_and_leaves_them_out(seed_runs):
    runs = runs_of(seed_runs, 'lr15', 'wd0.3')
    diverged = {r['config']['seed']: next(x['iter'] for x in r['records'] if x.get('diverged'))
                for r in runs if any(x.get('diverged') for x in r['records'])}
    assert 0 < len(diverged) < 3, "lr=15 no longer diverges on some seeds only: pick another learning rate"
    lr15, wd03 = plot.table_rows(runs, ['train_loss'], 'last')
    assert lr15['metrics']['train_loss']['n'] == 3 - len(diverged)
    assert lr15['notes'] == [f"seed {s} diverged at iter {i}" for s, i in sorted(diverged.items())]
    assert wd03['metrics']['train_loss']['n'] == 1 and wd03['notes'] == ['seed 1 not finished: iter 10 of 20']
    assert wd03['metrics']['train_loss']['mean'] == logged(runs[3], 'train_loss', 20)
    # at an iteration before the divergence every seed has its value, and the note stays
    lr15, wd03 = plot.table_rows(runs, ['train_loss'], 5)
    assert lr15['metrics']['train_loss']['n'] == 3 and len(lr15['notes']) == len(diverged)
    assert wd03['metrics']['train_loss']['n'] == 2
    table = run_plot(*[r['path'] for r in runs], '--table=train_loss').stdout
    assert f"({3 - len(diverged)} of 3) | seed {min(diverged)} diverged at iter {diverged[min(diverged)]}" in table
    assert '(1 of 2) | seed 1 not finished: iter 10 of 20 |' in table


def test_table_csv_and_json_parse_back_to_the_same_numbers(seed_runs):
    paths = [r['path'] for r in runs_of(seed_runs, 'wd0', 'wd0.1', 'wd0.3')]
    args = [*paths, '--table=val_loss,loss', '--at=drop', '--baseline=weight_decay=0']
    rows = plot.table_rows(plot.load_runs(paths), ['val_loss', 'loss'], 'drop', 'weight_decay=0')
    as_csv = list(csv.DictReader(io.StringIO(run_plot(*args, '--format=csv').stdout)))
    as_json = json.loads(run_plot(*args, '--format=json').stdout)
    assert [r['setting'] for r in as_csv] == [r['setting'] for r in as_json['rows']] == [r['setting'] for r in rows]
    number = lambda text: float(text) if text else None
    for row, c, j in zip(rows, as_csv, as_json['rows']):
        for m in ('val_loss', 'loss'):
            s = row['metrics'][m]
            assert (number(c[m]), number(c[f'{m}_sd']), int(c[f'{m}_n'])) == (s['mean'], s['sd'], s['n'])
            assert j['metrics'][m] == {**s, 'values': [list(p) for p in s['values']]}
            if not row.get('baseline'):
                d = row['diff'][m]
                assert (number(c[f'd_{m}']), number(c[f'd_{m}_se']), int(c[f'd_{m}_n'])) == (d['mean'], d['se'], d['n'])
                assert j['diff'][m]['mean'] == d['mean'] and j['diff'][m]['se'] == d['se']
    # the markdown: a caption stating what and where, then a table of equal rows, a row per setting
    md = run_plot(*args).stdout.splitlines()
    assert md[0].startswith('val_loss, loss at the LR drop') and 'ddof=1' in md[0] and md[1] == ''
    assert len(md) == 4 + len(rows) and len({line.count(' | ') for line in md[2:]}) == 1
    assert md[4].startswith('| wd=0.0 | 3 | iter 15 | ') and md[4].count('baseline') == 2


def test_table_refuses_bad_input_with_one_line(seed_runs):
    runs = [r['path'] for r in runs_of(seed_runs, 'wd0', 'wd0.1', 'wd0.1_wd_paramsall')]
    for args, fragment in [
        (['--table=val_los'], "no run logged 'val_los'; did you mean 'val_loss'?"),
        (['--table=loss', '--at=12.5'], '--at=12.5: expected an iteration (GPT) / epoch (ResNet), last or drop'),
        (['--table=loss', '--at=end'], '--at=end: expected'),
        (['--table=loss', '--baseline=wd=0.2'], '--baseline=wd=0.2 names no setting; the settings: wd_params=matrices, wd=0.0 | '),
        (['--table=loss', '--baseline=wd=0.1'], '--baseline=wd=0.1 names 2 settings'),
        (['--table=loss', '--baseline=lr'], '--baseline=lr: expected key=value'),
        (['--table=loss', '--baseline=wd_params=all'], 'has no run of seed 2, which wd_params=matrices, wd=0.0 has'),
        (['--table=loss', '--figure=llm_cosine'], '--table prints a table and --figure is for figures'),
        (['--table=loss', '--format=xml'], '--format=xml: expected markdown, csv or json'),
        (['--at=drop'], '--at is an option of tables: add --table=METRICS'),
    ]:
        out = run_plot(*runs, *args)
        assert out.returncode == 2 and out.stdout == '', (args, out.stdout)
        assert out.stderr.startswith('error: ') and out.stderr.count('\n') == 1 and fragment in out.stderr, out.stderr
    # the baseline named by several keys, short or as in config.json
    rows = plot.table_rows(plot.load_runs(runs), ['loss'], 'last', 'weight_decay=0.1,wd_params=matrices')
    assert [bool(r.get('baseline')) for r in rows] == [False, True, False]


def test_help_lists_every_preset_with_its_line():
    out = run_plot('--help')
    assert out.returncode == 0 and 'python plot.py out/mini_llm_cosine_* --table=' in out.stdout
    lines = out.stdout.splitlines()
    for name, preset in figures.FIGURES.items():
        assert [line for line in lines if line.split()[:1] == [name] and preset['help'] in line], name
