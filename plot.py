"""
Figures from run folders (out/RUN/config.json + log.jsonl), one panel per metric.

    python plot.py out/gpt_wd0 out/gpt_wd0.1 --y=train_loss,val_loss --out=loss.png
    python plot.py out/gpt_* --y=loss --smooth=20 --logy
    python plot.py out/resnet_* --x=epoch --y=test_err,train_loss

Runs are told apart in the legend by the config values that differ between them
(`wd=0.1, lr=0.0006`); an `_ema` metric is drawn dashed beside its iterate. A log that is
empty or still being written is read up to its last complete line.
"""
import json
import math
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use('Agg')  # files only, no screen needed
import matplotlib.pyplot as plt  # noqa: E402

from configurator import SHORT_NAMES, ConfigError, apply_args  # noqa: E402
from run_io import read_log  # noqa: E402

OPTIONS = dict(
    x='',  # iter | tokens | epoch; default: epoch for vision runs, iter otherwise
    y='',  # comma-separated metrics; default: the main losses of the runs' kind
    logy=False,
    smooth=1,  # moving average over this many logged points
    out='plot.png',
    figure='',  # a preset laying out one of the paper's figures: see FIGURES
)
# config keys never shown in a legend: they do not change what is learned
IGNORED_KEYS = {'out_dir', 'device', 'compile', 'log_interval', 'eval_interval', 'eval_every',
                'eval_iters', 'always_save_checkpoint', 'data_dir', 'hessian_every'}
LABELS = {
    'loss': 'training loss (minibatch mean)', 'train_loss': 'train loss (cross-entropy)',
    'val_loss': 'validation loss (cross-entropy)', 'test_loss': 'test loss (cross-entropy)',
    'train_err': 'train error (%)', 'test_err': 'test error (%)', 'lr': 'learning rate',
    'grad_norm': 'gradient norm (before clipping)', 'weight_norm': 'weight norm ||w||',
    'decayed_norm': 'norm of decayed weights', 'adam_elr': "Adam's effective LR",
    'eff_lr': 'effective LR lr/||w||^2', 'angular_update': 'angular update (rad/step)',
    'trace_hessian': 'trace of the Hessian', 'tokens_per_s': 'tokens / s',
    'ms_per_iter': 'ms / iteration',
}
X_LABELS = {'iter': 'iteration', 'tokens': 'tokens seen', 'epoch': 'epoch'}


class PlotError(Exception):
    pass


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
    return dict(name=path.name, config=config, records=read_log(path / 'log.jsonl'))


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
    """Each run's label: the config values that differ between the runs, else its folder name."""
    keys = sorted({k for r in runs for k in r['config']} - IGNORED_KEYS)
    differing = [k for k in keys if len({json.dumps(r['config'].get(k)) for r in runs}) > 1]
    labels = []
    for run in runs:
        parts = [f"{SHORT_NAMES.get(k, k)}={run['config'].get(k)}" for k in differing]
        labels.append(', '.join(parts) if parts else run['name'])
    return labels


def series(run, x, y, smooth=1):
    """(xs, ys) of the records that have both keys with a finite value, moving-averaged."""
    pts = [(r[x], r[y]) for r in run['records']
           if isinstance(r.get(x), (int, float)) and isinstance(r.get(y), (int, float))
           and math.isfinite(r[y])]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    if y.endswith('_err') or '_err_' in y:
        ys = [100 * v for v in ys]  # errors are fractions in the log, percent on the figure
    if smooth > 1 and ys:
        ys = [sum(ys[max(0, i - smooth + 1):i + 1]) / (i + 1 - max(0, i - smooth + 1))
              for i in range(len(ys))]
    return xs, ys


def divergence_point(run, x):
    """The x at which the run logged diverged=true, or None."""
    for r in run['records']:
        if r.get('diverged'):
            return r.get(x)
    return None


def colors_and_labels(labels):
    """One color per distinct label; repeated labels (seeds of one setting) share it, named once."""
    palette = {}
    colors = [palette.setdefault(label, f"C{len(palette) % 10}") for label in labels]
    shown = [label if labels.index(label) == i else '_nolegend_' for i, label in enumerate(labels)]
    return colors, shown


def draw_metric(ax, runs, labels, x, y, smooth=1, logy=False, with_ema=True):
    """One panel: metric y of every run, its EMA dashed; runs with the same label (seeds) share a
    color. Returns whether anything was drawn."""
    drawn = False
    colors, labels = colors_and_labels(labels)
    for run, label, color in zip(runs, labels, colors):
        xs, ys = series(run, x, y, smooth)
        if xs:
            ax.plot(xs, ys, color=color, label=label)
            drawn = True
        xe, ye = series(run, x, y + '_ema', smooth) if with_ema else ([], [])
        if xe:
            ax.plot(xe, ye, color=color, linestyle='--',
                    label=f"{label} (EMA)" if label != '_nolegend_' else label)
            drawn = True
        xd = divergence_point(run, x)
        if xd is not None and xs:
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
    """The free-form figure: one panel per metric in ys."""
    labels = legend_labels(runs)
    ncols = min(len(ys), 3)
    nrows = math.ceil(len(ys) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.8 * nrows), squeeze=False,
                             layout='constrained')
    missing = []
    for ax, y in zip(axes.flat, ys):
        if not draw_metric(ax, runs, labels, x, y, smooth, logy):
            missing.append(y)
            ax.text(0.5, 0.5, f"no '{y}' logged", ha='center', va='center', transform=ax.transAxes)
    for ax in list(axes.flat)[len(ys):]:
        ax.set_visible(False)
    if len(missing) == len(ys):
        plt.close(fig)
        raise PlotError(f"none of the runs logged {', '.join(ys)} against {x!r}")
    for y in missing:
        print(f"warning: no run logged {y!r}", file=sys.stderr)
    axes.flat[0].legend(fontsize='small')
    return fig


# -----------------------------------------------------------------------------
# the paper's figures: each preset picks its metrics and lays out the panels

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
    lrs = sorted({lr_of(r) for r in runs}, reverse=True)
    fig, axes = new_figure(len(lrs), 2, sharey='row')  # one scale per metric: LRs compare across
    for col, lr in enumerate(lrs):
        group = sorted([r for r in runs if lr_of(r) == lr], key=lambda r: -r['config'].get('weight_decay', 0))
        labels = [wd_label(r) for r in group]
        for row, y in enumerate(('test_err', 'train_loss')):
            ax = axes[row, col]
            draw_metric(ax, group, labels, 'epoch', y, smooth, logy=(y == 'train_loss'))
            cfg = group[0]['config']
            if cfg.get('first_decay', 1) < 1:
                ax.axvline(cfg['first_decay'] * cfg['epochs'], color='gray', linestyle=':', linewidth=1)
            kind = ('large LR' if lr == lrs[0] else 'small LR') if len(lrs) == 2 else ''
            ax.set_title(f"lr={lr}" + (f" ({kind})" if kind else ''))
        axes[0, col].legend(fontsize='small')
    return fig


def figure_weight_norm(runs, smooth):
    """Weight norm, effective LR and test error of iterate and EMA over epochs (Section 2.2)."""
    labels = legend_labels(runs)
    fig, axes = new_figure(3)
    draw_metric(axes[0, 0], runs, labels, 'epoch', 'weight_norm', smooth, with_ema=False)
    draw_metric(axes[0, 1], runs, labels, 'epoch', 'eff_lr', smooth, logy=True)
    draw_metric(axes[0, 2], runs, labels, 'epoch', 'test_err', smooth)
    axes[0, 2].legend(fontsize='small')
    return fig


def figure_sphere(runs, smooth):
    """Figure 2: projected SGD on a sphere. Training loss over epochs per LR, then against the LR
    (log axis): the level the loss stabilises at, the fine-tuned test error, the Hessian trace."""
    runs = sorted(runs, key=lr_of)
    labels = [f"lr={lr_of(r)}" for r in runs]
    fig, axes = new_figure(4, width=4.4)
    draw_metric(axes[0, 0], runs, labels, 'epoch', 'loss', smooth, logy=True, with_ema=False)
    axes[0, 0].legend(fontsize='small')
    lrs = [lr_of(r) for r in runs]
    for ax, y, label in ((axes[0, 1], 'loss', 'training loss, last fifth of the run'),
                         (axes[0, 2], 'flow_test_err', 'test error after fine-tuning (%)'),
                         (axes[0, 3], 'flow_trace_hessian', 'Hessian trace after fine-tuning')):
        points = []
        for lr, run in zip(lrs, runs):
            if y == 'loss':  # the stabilised level: mean over the last fifth of the epochs
                vals = series(run, 'epoch', 'loss')[1]
                tail = vals[-max(1, len(vals) // 5):]
                value = sum(tail) / len(tail) if tail else None
            else:
                value = last_value(run, y)
                value = 100 * value if value is not None and y.endswith('_err') else value
            if value is not None:
                points.append((lr, value, last_value(run, y + '_se') or 0.0))  # the trace's standard error
        if points:
            xs, ys, errs = zip(*points)
            ax.errorbar(xs, ys, yerr=errs if any(errs) else None, marker='o', capsize=3)
        else:
            ax.text(0.5, 0.5, f"no '{y}' logged", ha='center', va='center', transform=ax.transAxes)
        ax.set_xscale('log')
        ax.set_xticks(lrs, [f"{lr:g}" for lr in lrs])  # the LRs run, not crowded log-scale minor labels
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel('learning rate')
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    return fig


def figure_llm_cosine(runs, smooth):
    """Figure 3 left: train loss for each weight decay, the last quarter enlarged, and the
    validation loss there."""
    runs = sorted(runs, key=lambda r: r['config'].get('weight_decay', 0))
    labels = [wd_label(r) for r in runs]
    fig, axes = new_figure(3)
    end = max(r['config'].get('max_iters', 0) for r in runs) or max(
        r.get('iter', 0) for run in runs for r in run['records'])
    for ax, y, start, title in ((axes[0, 0], 'train_loss', 0.1, 'after the first 10% of training'),
                                (axes[0, 1], 'train_loss', 0.75, 'last quarter of training'),
                                (axes[0, 2], 'val_loss', 0.75, 'last quarter of training')):
        draw_metric(ax, runs, labels, 'iter', y, smooth, with_ema=False)
        zoom(ax, start * end, end)  # the first steps' drop would flatten everything else
        ax.set_title(title)
    axes[0, 0].legend(fontsize='small')
    return fig


def zoom(ax, x0, x1):
    """Limit a panel to x0..x1 and fit the y range to the lines drawn there."""
    ys = [y for line in ax.get_lines() for x, y in zip(line.get_xdata(), line.get_ydata()) if x0 <= x <= x1]
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
    runs = sorted(runs, key=lambda r: r['config'].get('weight_decay', 0))  # colors in order of wd
    offsets = [parent_iter(r) for r in runs]
    labels = [f"{wd_label(r)}, " + ('fine-tuned at tiny LR' if off is not None else 'constant LR')
              for r, off in zip(runs, offsets)]
    colors, _ = colors_and_labels([wd_label(r) for r in runs])  # a run and its fine-tuning share a color
    _, shown = colors_and_labels(labels)
    fig, axes = new_figure(2)
    for run, offset, color, label in zip(runs, offsets, colors, shown):
        xs, ys = series(run, 'iter', 'train_loss', smooth)
        xs = [x + (offset or 0) for x in xs]
        for ax in axes.flat:
            ax.plot(xs, ys, color=color, linestyle='--' if offset is not None else '-', label=label)
    for ax in axes.flat:
        ax.set_xlabel(X_LABELS['iter'])
        ax.set_ylabel(LABELS['train_loss'])
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize='small')
    starts = [o for o in offsets if o is not None]
    if starts:
        end = max(x for line in axes[0, 1].get_lines() for x in line.get_xdata())
        zoom(axes[0, 1], min(starts) - 0.1 * (end - min(starts)), end)
        axes[0, 1].set_title('the fine-tuning, enlarged')
    return fig


def figure_bf16(runs, smooth):
    """Figure 4: training loss in bfloat16 with and without weight decay (and float32); a cross
    marks a divergence."""
    labels = [f"{r['config'].get('dtype', '?')}, {wd_label(r)}" for r in runs]
    fig, axes = new_figure(1, width=6.5)
    draw_metric(axes[0, 0], runs, labels, 'iter', 'loss', smooth, with_ema=False)
    axes[0, 0].legend(fontsize='small')
    return fig


def figure_effective_lr(runs, smooth):
    """Section 3: Adam's effective LR, the weight norm, and the angular update against its
    rotational-equilibrium prediction (dotted)."""
    labels = legend_labels(runs)
    fig, axes = new_figure(3)
    draw_metric(axes[0, 0], runs, labels, 'iter', 'adam_elr', smooth, logy=True, with_ema=False)
    draw_metric(axes[0, 1], runs, labels, 'iter', 'decayed_norm', smooth, with_ema=False)
    draw_metric(axes[0, 2], runs, labels, 'iter', 'angular_update', smooth, logy=True, with_ema=False)
    colors, shown = colors_and_labels(labels)
    for run, color, label in zip(runs, colors, shown):
        xs, ys = series(run, 'iter', 'angular_update_eq')
        axes[0, 2].plot(xs, ys, color=color, linestyle=':',
                        label=f"{label} (equilibrium)" if label != '_nolegend_' else label)
    axes[0, 2].legend(fontsize='small')
    return fig


FIGURES = {'vision_grid': figure_vision_grid, 'weight_norm': figure_weight_norm,
           'sphere': figure_sphere, 'llm_cosine': figure_llm_cosine,
           'llm_finetune': figure_llm_finetune, 'bf16': figure_bf16, 'effective_lr': figure_effective_lr}


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
    if opts['figure']:
        fig = FIGURES[opts['figure']](runs, opts['smooth'])
    else:
        x, ys = default_axes(runs)
        x = opts['x'] or x
        ys = [y for y in opts['y'].split(',') if y] or ys
        fig = plot_runs(runs, x, ys, opts['smooth'], opts['logy'])
    out = Path(opts['out'])
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
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
