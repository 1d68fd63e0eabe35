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

from configurator import ConfigError, apply_args  # noqa: E402
from run_io import read_log  # noqa: E402

OPTIONS = dict(
    x='',  # iter | tokens | epoch; default: epoch for vision runs, iter otherwise
    y='',  # comma-separated metrics; default: the main losses of the runs' kind
    logy=False,
    smooth=1,  # moving average over this many logged points
    out='plot.png',
)
# config keys never shown in a legend: they do not change what is learned
IGNORED_KEYS = {'out_dir', 'device', 'compile', 'log_interval', 'eval_interval', 'eval_every',
                'eval_iters', 'always_save_checkpoint', 'data_dir', 'hessian_every'}
SHORT = {'weight_decay': 'wd', 'learning_rate': 'lr', 'wd_mode': 'mode', 'wd_params': 'decay',
         'batch_size': 'batch', 'optimizer': 'opt'}
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
        parts = [f"{SHORT.get(k, k)}={run['config'].get(k)}" for k in differing]
        labels.append(', '.join(parts) if parts else run['name'])
    return labels


def series(run, x, y, smooth=1):
    """(xs, ys) of the records that have both keys with a finite value, moving-averaged."""
    pts = [(r[x], r[y]) for r in run['records']
           if isinstance(r.get(x), (int, float)) and isinstance(r.get(y), (int, float))
           and math.isfinite(r[y])]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
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


def draw_metric(ax, runs, labels, x, y, smooth=1, logy=False, with_ema=True):
    """One panel: metric y of every run, its EMA dashed; returns whether anything was drawn."""
    drawn = False
    for i, (run, label) in enumerate(zip(runs, labels)):
        color = f"C{i % 10}"
        xs, ys = series(run, x, y, smooth)
        if xs:
            ax.plot(xs, ys, color=color, label=label)
            drawn = True
        xe, ye = series(run, x, y + '_ema', smooth) if with_ema else ([], [])
        if xe:
            ax.plot(xe, ye, color=color, linestyle='--', label=f"{label} (EMA)")
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
    check_output(Path(opts['out']))
    runs = load_runs(paths)
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
