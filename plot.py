"""
Figures from run folders (out/RUN/config.json + log.jsonl), one panel per metric.

    python plot.py out/gpt_wd0 out/gpt_wd0.1 --y=train_loss,val_loss --out=loss.png
    python plot.py out/gpt_* --y=loss --smooth=20 --logy
    python plot.py out/resnet_* --x=epoch --y=test_err,train_loss
    python plot.py out/cosine_wd* --figure=rotation --out=rotation.png

Runs are told apart in the legend by the config values that differ between them
(`wd=0.1, lr=0.0006`); an `_ema` metric is drawn dashed beside its iterate. Runs that differ
only in `seed` (and in keys that do not change what is learned: out_dir, device, eval intervals)
are seeds of one setting, drawn as their mean with a band from the lowest to the highest seed,
"(n seeds)" in the legend. GPT runs (x: iter, tokens) and ResNet runs (x: epoch) go in separate
figures, unless --x and --y name metrics every run logs. A log that is empty or still being
written is read up to its last complete line.

Presets (--figure=NAME), one per figure of the paper:
    vision_grid   Fig. 1: test error and train loss over epochs, large / small LR, per wd (ResNet)
    weight_norm   Sec. 2.2: weight norm, effective LR, test error with its EMA (ResNet)
    sphere        Fig. 2: projected SGD on a sphere, loss, fine-tuned error and trace against the LR (ResNet)
    elr_replay    a run without wd that replays a wd run's effective LR (config elr_from) (ResNet)
    llm_cosine    Fig. 3 left: train and val loss per wd, cosine schedule, the end enlarged (GPT)
    llm_finetune  Fig. 3 right: constant-LR runs and their tiny-LR fine-tuning (GPT)
    bf16          Fig. 4: bfloat16 loss with and without wd, divergences marked (GPT)
    effective_lr  Sec. 3: Adam's effective LR, decayed norm, angular update and its equilibrium
    rotation      rotational equilibrium: per-tensor angles against the prediction, a panel per run
    appendix      the appendix: AdamW against WD on all parameters, Adam + L2, SGD (GPT)
"""
import json
import math
import os
import re
import sys
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt

from configurator import NOT_IN_NAMES, SHORT_NAMES, ConfigError, apply_args
from run_io import read_log

matplotlib.use('Agg')  # files only, no screen needed (pyplot picks its backend at the first figure)

OPTIONS = {
    'x': '',  # iter | tokens | epoch; default: epoch for vision runs, iter otherwise
    'y': '',  # comma-separated metrics; default: the main losses of the runs' kind
    'logy': False,
    'smooth': 1,  # moving average over this many logged points
    'out': 'plot.png',
    'figure': '',  # a preset laying out one of the paper's figures: see FIGURES
}
# config keys never shown in a legend: they do not change what is learned (the keys run names leave
# out, but init_from: a fine-tuning is not its parent), or are derived from others (the timescale)
IGNORED_KEYS = ({*NOT_IN_NAMES} - {'init_from'}) | {'always_save_checkpoint', 'hessian_every', 'wd_timescale_iters',
                                                   'wd_timescale_frac'}
LABELS = {
    'loss': 'training loss (minibatch mean)', 'train_loss': 'train loss (cross-entropy)',
    'val_loss': 'validation loss (cross-entropy)', 'test_loss': 'test loss (cross-entropy)',
    'train_err': 'train error (%)', 'test_err': 'test error (%)', 'lr': 'learning rate',
    'grad_norm': 'gradient norm (before clipping)', 'weight_norm': 'weight norm ||w||',
    'decayed_norm': 'norm of decayed weights', 'adam_elr': "Adam's effective LR",
    'eff_lr': 'effective LR lr/||w||^2', 'angular_update': 'angular update (rad/step)',
    'trace_hessian': 'trace of the Hessian', 'tokens_per_s': 'tokens / s',
    'ms_per_iter': 'ms / iteration', 'val_err': 'validation next-token error (%)',
    'heldout_err': 'held-out error (%)', 'heldout_loss': 'held-out loss (cross-entropy)',
    'adam_elr_all': "Adam's effective LR, all parameters", 'angular_update_eq': 'equilibrium angle (rad/step)',
}
X_LABELS = {'iter': 'iteration', 'tokens': 'tokens seen', 'epoch': 'epoch'}
SEED_NOTE = 'line: mean over seeds, band: lowest to highest'


class PlotError(Exception):
    pass


def run_kind(run):
    """'ResNet' (train_resnet.py logs epochs), 'GPT' (train_gpt.py logs tokens), or None."""
    if any('epoch' in r for r in run['records']) or 'epochs' in run['config']:
        return 'ResNet'
    if any('tokens' in r for r in run['records']) or 'max_iters' in run['config']:
        return 'GPT'
    return None


def load_run(path):
    path = Path(path)
    if not path.is_dir():
        raise PlotError(f"{path} is not a run folder (expected out/RUN with log.jsonl)")
    if not (path / 'log.jsonl').exists():
        raise PlotError(f"{path} has no log.jsonl: the run has not logged anything yet")
    try:
        config = json.loads((path / 'config.json').read_text())
    except (OSError, json.JSONDecodeError):
        print(f"warning: {path}/config.json is missing or unreadable: its legend shows the folder name",
              file=sys.stderr)
        config = {}
    run = {'name': path.name, 'path': str(path), 'config': config, 'records': read_log(path / 'log.jsonl')}
    run['kind'] = run_kind(run)
    return run


def load_runs(paths):
    runs = [load_run(p) for p in paths]
    for run in runs:
        if not run['records']:
            print(f"warning: {run['name']}: log.jsonl is empty, skipped", file=sys.stderr)
    runs = [r for r in runs if r['records']]
    if not runs:
        raise PlotError("no run has any logged line yet")
    return runs


def legend_labels(runs):
    """Each run's (or seed group's) label: the config values that differ between them, else its
    folder name. GPT and ResNet configs share few keys, so each kind is compared within itself."""
    kinds = [run.get('kind') for run in runs]
    if len(set(kinds)) > 1:
        labels = [''] * len(runs)
        for kind in set(kinds):
            same = [i for i, k in enumerate(kinds) if k == kind]
            for i, label in zip(same, legend_labels([runs[i] for i in same])):
                labels[i] = f"{kind or 'other'}: {label}"
        return labels
    keys = sorted({k for r in runs for k in r['config']} - IGNORED_KEYS - {'seed'})
    differing = [k for k in keys if len({json.dumps(r['config'].get(k)) for r in runs}) > 1]
    labels = []
    for run in runs:
        parts = [f"{SHORT_NAMES.get(k, k)}={run['config'].get(k)}" for k in differing]
        labels.append(', '.join(parts) if parts else run['name'])
    return labels


def moving_average(ys, smooth):
    if smooth <= 1:
        return list(ys)
    return [sum(ys[max(0, i - smooth + 1):i + 1]) / (i + 1 - max(0, i - smooth + 1)) for i in range(len(ys))]


def series(run, x, y, smooth=1):
    """(xs, ys) of the records that have both keys with a finite value, moving-averaged."""
    pts = [(r[x], r[y]) for r in run['records']
           if isinstance(r.get(x), (int, float)) and isinstance(r.get(y), (int, float))
           and math.isfinite(r[y])]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    if y.endswith('_err') or '_err_' in y:
        ys = [100 * v for v in ys]  # errors are fractions in the log, percent on the figure
    return xs, moving_average(ys, smooth)


# -----------------------------------------------------------------------------
# seeds: runs that differ only in seed are one group, drawn as mean and band

def run_folder(value):
    """The run folder a config path names (init_from is a ckpt.pt inside it, elr_from the folder)."""
    path = Path(str(value))
    return path.parent if path.name.endswith('.pt') else path


def setting(config, depth=0):
    """What a run learns, as a string: its config less the seed and IGNORED_KEYS. A run started
    from another (init_from, elr_from) counts by that run's setting, so the fine-tunings of two
    seeds are two seeds too."""
    key = {}
    for k, v in config.items():
        if k in IGNORED_KEYS or k == 'seed':
            continue
        if k in ('init_from', 'elr_from') and v not in ('', 'scratch', 'resume') and depth < 3:
            try:
                v = setting(json.loads((run_folder(v) / 'config.json').read_text()), depth + 1)
            except (OSError, json.JSONDecodeError):
                pass  # the parent is gone: its path stands for it
        key[k] = v
    return json.dumps(key, sort_keys=True, default=str)


def strip_seed(name):
    """A folder name without its seed part (gpt_wd0.1_seed1 -> gpt_wd0.1)."""
    return re.sub(r'[_-]?seed=?\d+', '', name) or name


def seed_groups(runs):
    """The runs as groups of seeds of one setting, in the order first met: dicts with name,
    config, kind (those of the first run) and runs. A run without a config is its own group."""
    members = {}
    for run in runs:
        members.setdefault(setting(run['config']) if run['config'] else run['path'], []).append(run)
    groups = []
    for same in members.values():
        name = same[0]['name'] if len(same) == 1 else strip_seed(same[0]['name'])
        if len({tuple(r.get('iter') for r in run['records']) for run in same}) > 1:
            print(f"warning: the seeds of {name} logged different iterations (one still running or diverged?):"
                  f" their mean and band cover only the points all of them logged", file=sys.stderr)
        groups.append({'name': name, 'path': same[0]['path'], 'config': same[0]['config'],
                       'kind': same[0].get('kind'), 'runs': same})
    return groups


def seed_label(label, group):
    """The legend label, with the number of seeds behind a mean."""
    n = len(group['runs'])
    if n == 1 or label.startswith('_'):
        return label
    distinct = len({json.dumps(r['config'].get('seed')) for r in group['runs']}) == n
    return f"{label} ({n} {'seeds' if distinct else 'runs'})"


def group_series(group, x, y, smooth=1):
    """(xs, mean, lo, hi) of y over a group's seeds at the x values all of them logged, each seed
    moving-averaged first; lo and hi (lowest and highest seed) are None for a single run."""
    if len(group['runs']) == 1:
        return (*series(group['runs'][0], x, y, smooth), None, None)
    per_seed = [dict(zip(*series(run, x, y))) for run in group['runs']]
    xs = sorted(set.intersection(*(set(d) for d in per_seed)))
    columns = list(zip(*(moving_average([d[v] for v in xs], smooth) for d in per_seed)))
    return (xs, [sum(c) / len(c) for c in columns], [min(c) for c in columns],
            [max(c) for c in columns])


def draw_band(ax, xs, lo, hi, color, alpha=0.2, **kwargs):
    if lo is not None and xs:
        ax.fill_between(xs, lo, hi, color=color, alpha=alpha, linewidth=0, **kwargs)


def add_legend(ax, groups, fontsize='small'):
    """The panel's legend (when it has labelled lines), titled with what line and band mean when
    seeds were averaged."""
    if ax.get_legend_handles_labels()[0]:
        seeded = any(len(g['runs']) > 1 for g in groups)
        ax.legend(fontsize=fontsize, title=SEED_NOTE if seeded else None, title_fontsize=fontsize)


# -----------------------------------------------------------------------------
# a panel of one metric, and the free-form figure of such panels

def divergence_point(run, x):
    """The x at which the run logged diverged=true, or None."""
    for r in run['records']:
        if r.get('diverged'):
            return r.get(x)
    return None


def colors_and_labels(labels):
    """One color per distinct label; repeated labels (runs a preset's label does not tell apart) share
    it, named once."""
    palette = {}
    colors = [palette.setdefault(label, f"C{len(palette) % 10}") for label in labels]
    shown = [label if labels.index(label) == i else '_nolegend_' for i, label in enumerate(labels)]
    return colors, shown


def draw_metric(ax, groups, labels, x, y, smooth=1, logy=False, with_ema=True):
    """One panel: metric y of every seed group (the mean, the seeds' band), its EMA dashed; groups
    with the same label share a color. Returns whether anything was drawn."""
    drawn = False
    colors, shown = colors_and_labels(labels)
    for group, label, color in zip(groups, shown, colors):
        for suffix, style in (('', '-'), ('_ema', '--'))[:2 if with_ema else 1]:
            xs, ys, lo, hi = group_series(group, x, y + suffix, smooth)
            if xs:
                name = f"{label} (EMA)" if suffix and label != '_nolegend_' else label
                ax.plot(xs, ys, color=color, linestyle=style, label=seed_label(name, group))
                draw_band(ax, xs, lo, hi, color, alpha=0.1 if suffix else 0.2)
                drawn = True
        for run in group['runs']:
            xd, ys = divergence_point(run, x), series(run, x, y, smooth)[1]
            if xd is not None and ys:
                ax.plot([xd], [ys[-1]], marker='x', color=color, markersize=10, linestyle='none')
                ax.annotate('diverged', (xd, ys[-1]), textcoords='offset points', xytext=(4, 4),
                            fontsize=8, color=color)
    ax.set_xlabel(X_LABELS.get(x, x))
    ax.set_ylabel(LABELS.get(y, y))
    if logy and drawn:
        ax.set_yscale('log')
    ax.grid(alpha=0.3)
    return drawn


def default_axes(runs):
    vision = any('epoch' in r for run in runs for r in run['records'])
    if vision:
        return 'epoch', ['test_err', 'train_loss']
    return 'iter', ['train_loss', 'val_loss']


def plot_runs(runs, x, ys, smooth=1, logy=False):
    """The free-form figure: one panel per metric in ys, one line (and seed band) per setting."""
    groups = seed_groups(runs)
    labels = legend_labels(groups)
    ncols = min(len(ys), 3)
    nrows = math.ceil(len(ys) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.8 * nrows), squeeze=False,
                             layout='constrained')
    missing = []
    for ax, y in zip(axes.flat, ys):
        if not draw_metric(ax, groups, labels, x, y, smooth, logy):
            missing.append(y)
            ax.text(0.5, 0.5, f"no '{y}' logged", ha='center', va='center', transform=ax.transAxes)
    for ax in list(axes.flat)[len(ys):]:
        ax.set_visible(False)
    if len(missing) == len(ys):
        plt.close(fig)
        raise PlotError(f"none of the runs logged {', '.join(ys)} against {x!r}")
    for y in missing:
        print(f"warning: no run logged {y!r}", file=sys.stderr)
    add_legend(next(ax for ax, y in zip(axes.flat, ys) if y not in missing), groups)
    return fig


def check_kinds(runs, figure='', x='', ys=()):
    """Raise PlotError where GPT runs (x: iter, tokens) and ResNet runs (x: epoch) meet in a figure
    that cannot show both, or a preset gets the other kind: never draw less than asked, silently."""
    gpt = [r['path'] for r in runs if r.get('kind') == 'GPT']
    vision = [r['path'] for r in runs if r.get('kind') == 'ResNet']
    split = f"plot the GPT runs ({', '.join(gpt)}) and the ResNet runs ({', '.join(vision)}) separately"
    wanted = FIGURE_KINDS.get(figure)
    if wanted:
        other = vision if wanted == 'GPT' else gpt
        if other:
            what = ('ResNet' if wanted == 'GPT' else 'GPT') + (' runs' if len(other) > 1 else ' run')
            raise PlotError(f"--figure={figure} draws {wanted} runs, but {', '.join(other)} "
                            f"{'are' if len(other) > 1 else 'is a'} {what}" + (f": {split}" if gpt and vision else ''))
        return
    if not (gpt and vision) or figure == 'rotation':  # rotation: each run its own panel and x axis
        return
    if figure:
        raise PlotError(f"--figure={figure} draws one kind of run, GPT or ResNet: {split}")
    if x and ys:  # the user named what to draw: fine if every run has it
        lacking = [(r['path'], y) for r in runs for y in ys if not series(r, x, y)[0]]
        if not lacking:
            return
        raise PlotError(f"GPT and ResNet runs log different metrics ({lacking[0][0]} has no {lacking[0][1]!r} "
                        f"against {x!r}): {split}, or give --x and --y that every run logs")
    raise PlotError(f"GPT runs (x: iter, tokens) and ResNet runs (x: epoch) go in separate figures: {split}, "
                    f"or give --x and --y that every run logs (e.g. --x=iter --y=weight_norm)")


# -----------------------------------------------------------------------------
# the paper's figures: each preset picks its metrics and lays out the panels; seeds of one setting
# are one line (their mean) with a band (lowest to highest seed)

def lr_of(run):
    return run['config'].get('learning_rate', run['config'].get('lr'))


def wd_label(run):
    return f"wd={run['config'].get('weight_decay', 0)}"


def new_figure(ncols, nrows=1, width=5.0, height=3.8, **kwargs):
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False,
                        layout='constrained', **kwargs)


def last_value(run, y):
    """The last finite logged value of y, or None."""
    vals = [r[y] for r in run['records'] if isinstance(r.get(y), (int, float)) and math.isfinite(r[y])]
    return vals[-1] if vals else None


def figure_vision_grid(runs, smooth):
    """Figure 1: test error and train cross-entropy over epochs; columns large / small LR,
    one line per weight decay, the EMA dashed, the LR drop marked."""
    groups = seed_groups(runs)
    lrs = sorted({lr_of(g) for g in groups}, reverse=True)
    fig, axes = new_figure(len(lrs), 2, sharey='row')  # one scale per metric: LRs compare across
    for col, lr in enumerate(lrs):
        column = sorted([g for g in groups if lr_of(g) == lr], key=lambda g: -g['config'].get('weight_decay', 0))
        labels = [wd_label(g) for g in column]
        for row, y in enumerate(('test_err', 'train_loss')):
            ax = axes[row, col]
            draw_metric(ax, column, labels, 'epoch', y, smooth, logy=(y == 'train_loss'))
            cfg = column[0]['config']
            if cfg.get('first_decay', 1) < 1:
                ax.axvline(cfg['first_decay'] * cfg['epochs'], color='gray', linestyle=':', linewidth=1)
            kind = ('large LR' if lr == lrs[0] else 'small LR') if len(lrs) == 2 else ''
            ax.set_title(f"lr={lr}" + (f" ({kind})" if kind else ''))
        add_legend(axes[0, col], column)
    return fig


def figure_weight_norm(runs, smooth):
    """Weight norm, effective LR and test error of iterate and EMA over epochs (Section 2.2)."""
    groups = seed_groups(runs)
    labels = legend_labels(groups)
    fig, axes = new_figure(3)
    draw_metric(axes[0, 0], groups, labels, 'epoch', 'weight_norm', smooth, with_ema=False)
    draw_metric(axes[0, 1], groups, labels, 'epoch', 'eff_lr', smooth, logy=True)
    draw_metric(axes[0, 2], groups, labels, 'epoch', 'test_err', smooth)
    add_legend(axes[0, 2], groups)
    return fig


def sphere_value(run, y):
    """A run's point on a sphere panel: the training loss it stabilised at (mean over the last
    fifth of the epochs), else the last logged y (errors in percent)."""
    if y == 'loss':
        vals = series(run, 'epoch', 'loss')[1]
        tail = vals[-max(1, len(vals) // 5):]
        return sum(tail) / len(tail) if tail else None
    value = last_value(run, y)
    return 100 * value if value is not None and y.endswith('_err') else value


def figure_sphere(runs, smooth):
    """Figure 2: projected SGD on a sphere. Training loss over epochs per LR, then against the LR
    (log axis): the level the loss stabilises at, the fine-tuned test error, the Hessian trace.
    A point is the mean over seeds, its bar the lowest to highest seed (one run: the trace's
    standard error)."""
    groups = sorted(seed_groups(runs), key=lr_of)
    labels = [f"lr={lr_of(g)}" for g in groups]
    fig, axes = new_figure(4, width=4.4)
    draw_metric(axes[0, 0], groups, labels, 'epoch', 'loss', smooth, logy=True, with_ema=False)
    add_legend(axes[0, 0], groups)
    lrs = [lr_of(g) for g in groups]
    for ax, y, label in ((axes[0, 1], 'loss', 'training loss, last fifth of the run'),
                         (axes[0, 2], 'flow_test_err', 'test error after fine-tuning (%)'),
                         (axes[0, 3], 'flow_trace_hessian', 'Hessian trace after fine-tuning')):
        points = []
        for lr, group in zip(lrs, groups):
            values = [v for v in (sphere_value(run, y) for run in group['runs']) if v is not None]
            if not values:
                continue
            mean = sum(values) / len(values)
            se = last_value(group['runs'][0], y + '_se') or 0.0  # the trace's standard error
            points.append((lr, mean, mean - min(values), max(values) - mean) if len(values) > 1
                          else (lr, mean, se, se))
        if points:
            xs, ys, below, above = zip(*points)
            ax.errorbar(xs, ys, yerr=[below, above] if any(below + above) else None, marker='o', capsize=3)
        else:
            ax.text(0.5, 0.5, f"no '{y}' logged", ha='center', va='center', transform=ax.transAxes)
        ax.set_xscale('log')
        ax.set_xticks(lrs, [f"{lr:g}" for lr in lrs])  # the LRs run, not crowded log-scale minor labels
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel('learning rate')
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    return fig


def source_name(group):
    """The folder name of the run a replay follows (config elr_from)."""
    name = run_folder(group['config']['elr_from']).name
    return strip_seed(name) if len(group['runs']) > 1 else name


def figure_elr_replay(runs, smooth):
    """The effective-LR replay: a run with weight decay, one without, and one without weight decay
    (config elr_from = the first's folder) that sets its LR every step so that its effective LR
    lr/||w||^2 follows the first's. If the replay matches the wd run, weight decay acted through
    the effective LR. Panels: effective LR, LR (the replay's grows with ||w||^2), weight norm,
    training loss, test error (EMA dashed)."""
    replay = lambda g: bool(g['config'].get('elr_from'))
    groups = sorted(seed_groups(runs), key=lambda g: (replay(g), -g['config'].get('weight_decay', 0)))
    labels = [f"replay of {source_name(g)}" if replay(g) else wd_label(g) for g in groups]
    loss = 'train_loss' if any(group_series(g, 'epoch', 'train_loss')[0] for g in groups) else 'loss'
    panels = (('eff_lr', True), ('lr', True), ('weight_norm', False), (loss, False), ('test_err', False))
    fig, axes = new_figure(len(panels), width=4.0)
    for ax, (y, logy) in zip(axes.flat, panels):
        if not draw_metric(ax, groups, labels, 'epoch', y, smooth, logy=logy, with_ema=(y == 'test_err')):
            ax.text(0.5, 0.5, f"no '{y}' logged", ha='center', va='center', transform=ax.transAxes)
    add_legend(axes[0, 0], groups)
    return fig


def figure_llm_cosine(runs, smooth):
    """Figure 3 left: train loss for each weight decay, the last quarter enlarged, and the
    validation loss there."""
    groups = sorted(seed_groups(runs), key=lambda g: g['config'].get('weight_decay', 0))
    labels = [wd_label(g) for g in groups]
    fig, axes = new_figure(3)
    end = max(r['config'].get('max_iters', 0) for r in runs) or max(
        r.get('iter', 0) for run in runs for r in run['records'])
    for ax, y, start, title in ((axes[0, 0], 'train_loss', 0.1, 'after the first 10% of training'),
                                (axes[0, 1], 'train_loss', 0.75, 'last quarter of training'),
                                (axes[0, 2], 'val_loss', 0.75, 'last quarter of training')):
        draw_metric(ax, groups, labels, 'iter', y, smooth, with_ema=False)
        zoom(ax, start * end, end)  # the first steps' drop would flatten everything else
        ax.set_title(title)
    add_legend(axes[0, 0], groups)
    return fig


def zoom(ax, x0, x1):
    """Limit a panel to x0..x1 and fit the y range to the lines and seed bands drawn there."""
    points = [p for line in ax.get_lines() for p in zip(line.get_xdata(), line.get_ydata())]
    points += [tuple(v) for band in ax.collections for path in band.get_paths() for v in path.vertices]
    ys = [y for x, y in points if x0 <= x <= x1]
    ax.set_xlim(x0, x1)
    if ys:
        pad = 0.05 * (max(ys) - min(ys) or 1e-3)
        ax.set_ylim(min(ys) - pad, max(ys) + pad)


def parent_iter(run):
    """For a fine-tuning run (init_from=out/PARENT/ckpt.pt): the parent's last logged iteration."""
    init = run['config'].get('init_from', 'scratch')
    if init in ('scratch', 'resume'):
        return None
    records = read_log(Path(init).parent / 'log.jsonl')
    return max((r['iter'] for r in records if 'iter' in r), default=None)


def figure_llm_finetune(runs, smooth):
    """Figure 3 right: constant-LR runs, each followed by its tiny-LR fine-tuning (drawn from the
    parent's last iteration on); the fine-tuning enlarged on the right."""
    groups = sorted(seed_groups(runs), key=lambda g: g['config'].get('weight_decay', 0))  # colors in wd order
    offsets = [parent_iter(g['runs'][0]) for g in groups]
    labels = [f"{wd_label(g)}, " + ('fine-tuned at tiny LR' if off is not None else 'constant LR')
              for g, off in zip(groups, offsets)]
    colors, _ = colors_and_labels([wd_label(g) for g in groups])  # a run and its fine-tuning share a color
    _, shown = colors_and_labels(labels)
    fig, axes = new_figure(2)
    for group, offset, color, label in zip(groups, offsets, colors, shown):
        xs, ys, lo, hi = group_series(group, 'iter', 'train_loss', smooth)
        xs = [x + (offset or 0) for x in xs]
        for ax in axes.flat:
            ax.plot(xs, ys, color=color, linestyle='--' if offset is not None else '-',
                    label=seed_label(label, group))
            draw_band(ax, xs, lo, hi, color)
    for ax in axes.flat:
        ax.set_xlabel(X_LABELS['iter'])
        ax.set_ylabel(LABELS['train_loss'])
        ax.grid(alpha=0.3)
    add_legend(axes[0, 0], groups)
    starts = [o for o in offsets if o is not None]
    if starts:
        end = max(x for line in axes[0, 1].get_lines() for x in line.get_xdata())
        zoom(axes[0, 1], min(starts) - 0.1 * (end - min(starts)), end)
        axes[0, 1].set_title('the fine-tuning, enlarged')
    return fig


def figure_bf16(runs, smooth):
    """Figure 4: training loss in bfloat16 with and without weight decay (and float32); a cross
    marks a divergence."""
    groups = seed_groups(runs)
    labels = [f"{g['config'].get('dtype', '?')}, {wd_label(g)}" for g in groups]
    fig, axes = new_figure(1, width=6.5)
    draw_metric(axes[0, 0], groups, labels, 'iter', 'loss', smooth, with_ema=False)
    add_legend(axes[0, 0], groups)
    return fig


def optimizer_label(group):
    """'AdamW, wd 0.1 on matrices', 'Adam + L2 0.0001', 'SGD + L2 0.0001': the appendix's variants."""
    c = group['config']
    name = 'SGD' if c.get('optimizer') == 'sgd' else 'Adam' if c.get('wd_mode') == 'l2' else 'AdamW'
    decay = f"L2 {c.get('weight_decay')}" if c.get('wd_mode') == 'l2' else f"wd {c.get('weight_decay')}"
    return f"{name}{' + ' if c.get('wd_mode') == 'l2' else ', '}{decay} on {c.get('wd_params', 'matrices')}"


def figure_appendix(runs, smooth):
    """Appendix: decayed parameters, coupled L2 and SGD against AdamW: train and val loss, token error."""
    groups = seed_groups(runs)
    labels = [optimizer_label(g) for g in groups]
    fig, axes = new_figure(3)
    for ax, y in zip(axes[0], ('train_loss', 'val_loss', 'val_err')):
        draw_metric(ax, groups, labels, 'iter', y, smooth, with_ema=False)
    add_legend(axes[0, 0], groups)
    return fig


def figure_effective_lr(runs, smooth):
    """Section 3: Adam's effective LR, the weight norm, and the angular update against its
    rotational-equilibrium prediction (dotted)."""
    groups = seed_groups(runs)
    labels = legend_labels(groups)
    fig, axes = new_figure(3)
    draw_metric(axes[0, 0], groups, labels, 'iter', 'adam_elr', smooth, logy=True, with_ema=False)
    draw_metric(axes[0, 1], groups, labels, 'iter', 'decayed_norm', smooth, with_ema=False)
    draw_metric(axes[0, 2], groups, labels, 'iter', 'angular_update', smooth, logy=True, with_ema=False)
    colors, shown = colors_and_labels(labels)
    for group, color, label in zip(groups, colors, shown):
        xs, ys = group_series(group, 'iter', 'angular_update_eq')[:2]
        name = f"{label} (equilibrium)" if label != '_nolegend_' else label
        axes[0, 2].plot(xs, ys, color=color, linestyle=':', label=seed_label(name, group))
    add_legend(axes[0, 2], groups)
    return fig


def optimizer_title(group):
    """'adamw, wd_mode=l2, wd=0.1' from a run's config (train_resnet.py has no optimizer key: SGD)."""
    cfg = group['config']
    optimizer = cfg.get('optimizer') or ('sgd' if group.get('kind') == 'ResNet' else '?')
    return f"{optimizer}, wd_mode={cfg.get('wd_mode', 'decoupled')}, wd={cfg.get('weight_decay', 0)}"


def figure_rotation(runs, smooth):
    """Rotational equilibrium, one panel per run (or seed group): the angle each decayed tensor
    turns in one step, its 10th-90th percentile over the tensors shaded, the mean a line, the
    equilibrium prediction dashed (averaged over seeds). With AdamW every matrix settles at the
    predicted angle (a narrow band on the dashed line); Adam + L2 has no prediction and leaves
    the layers at different angles (a wide band)."""
    groups = seed_groups(runs)
    ncols = min(len(groups), 3)
    fig, axes = new_figure(ncols, math.ceil(len(groups) / ncols), width=4.6, sharey=True)
    drawn = []
    for ax, group in zip(axes.flat, groups):
        x = 'epoch' if group.get('kind') == 'ResNet' else 'iter'
        xs, mean = group_series(group, x, 'angular_update', smooth)[:2]
        p10, p90 = (dict(zip(*group_series(group, x, f'angular_update_{p}', smooth)[:2])) for p in ('p10', 'p90'))
        xb = [v for v in p10 if v in p90]  # older logs have neither: the mean alone
        draw_band(ax, xb, [p10[v] for v in xb], [p90[v] for v in xb], 'C0', alpha=0.25,
                  label='10th-90th percentile of the tensors')
        if xs:
            ax.plot(xs, mean, color='C0', label='mean over the tensors')
            ax.set_yscale('log')
            drawn.append(group)
        else:
            ax.text(0.5, 0.5, "no 'angular_update' logged", ha='center', va='center', transform=ax.transAxes)
        eq = [(v, y) for v, y in zip(*group_series(group, x, 'angular_update_eq', smooth)[:2]) if y > 0]
        if eq:  # none for Adam + L2; 0 without weight decay
            ax.plot(*zip(*eq), color='k', linestyle='--', label='equilibrium prediction')
        elif xs:
            ax.text(0.03, 0.03, 'no equilibrium predicted', transform=ax.transAxes, fontsize=8, color='gray')
        ax.set_title(f"{seed_label(group['name'], group)}\n{optimizer_title(group)}", fontsize='medium')
        ax.set_xlabel(X_LABELS[x])
        ax.set_ylabel('angle per step (rad)')
        ax.grid(alpha=0.3)
        add_legend(ax, [], fontsize='x-small')
    for ax in list(axes.flat)[len(groups):]:
        ax.set_visible(False)
    if not drawn:
        plt.close(fig)
        raise PlotError("none of the runs logged angular_update")
    return fig


FIGURES = {'vision_grid': figure_vision_grid, 'weight_norm': figure_weight_norm,
           'sphere': figure_sphere, 'elr_replay': figure_elr_replay, 'llm_cosine': figure_llm_cosine,
           'llm_finetune': figure_llm_finetune, 'bf16': figure_bf16, 'effective_lr': figure_effective_lr,
           'rotation': figure_rotation, 'appendix': figure_appendix}
# the kind of run each preset is made for (check_kinds); absent: either kind
FIGURE_KINDS = {'vision_grid': 'ResNet', 'weight_norm': 'ResNet', 'sphere': 'ResNet', 'elr_replay': 'ResNet',
                'llm_cosine': 'GPT', 'llm_finetune': 'GPT', 'bf16': 'GPT', 'appendix': 'GPT'}


def check_output(out):
    """Raise PlotError unless the figure can be written to out (a known format, a writable folder)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    formats = FigureCanvasAgg.get_supported_filetypes()
    if out.suffix[1:].lower() not in formats:
        raise PlotError(f"--out={out}: unknown image format {out.suffix or '(none)'!r}; use one of "
                        f"{', '.join('.' + f for f in sorted(formats))}")
    folder = out.absolute().parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise PlotError(f"--out={out}: {folder} is not a writable folder")


def main(argv):
    if any(a in ('-h', '--help') for a in argv):
        print(__doc__.strip() + '\n\noptions: ' + ', '.join(f"--{k}={v!r}" for k, v in OPTIONS.items()))
        return 0
    paths = [a for a in argv if not a.startswith('-')]
    try:
        opts = apply_args(OPTIONS, [a for a in argv if a.startswith('-')])
    except ConfigError as e:
        raise PlotError(str(e)) from None
    if not paths:
        raise PlotError("no run folders given: python plot.py out/RUN_A out/RUN_B ... [--out=FILE.png]")
    if opts['smooth'] < 1:
        raise PlotError(f"--smooth must be >= 1, got {opts['smooth']}")
    if opts['figure'] and opts['figure'] not in FIGURES:
        raise PlotError(f"unknown figure {opts['figure']!r}: expected one of {', '.join(FIGURES)}")
    check_output(Path(opts['out']))
    runs = load_runs(paths)
    ys = [y for y in opts['y'].split(',') if y]
    check_kinds(runs, opts['figure'], opts['x'], ys)
    if opts['figure']:
        fig = FIGURES[opts['figure']](runs, opts['smooth'])
    else:
        x, default_ys = default_axes(runs)
        fig = plot_runs(runs, opts['x'] or x, ys or default_ys, opts['smooth'], opts['logy'])
    out = Path(opts['out'])
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out}")
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main(sys.argv[1:]))
    except PlotError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:  # met while writing (disk full, ...): a fault, not bad input
        print(f"error: cannot write {e.filename or 'the figure'}: {e.strerror}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
