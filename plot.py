"""
Figures and tables from run folders (out/RUN/config.json + log.jsonl): a panel per metric, or a
row per setting.

    python plot.py out/gpt_wd0 out/gpt_wd0.1 --y=train_loss,val_loss --out=loss.png
    python plot.py out/gpt_* --y=loss --smooth=20 --logy
    python plot.py out/resnet_* --x=epoch --y=test_err,train_loss
    python plot.py out/cosine_wd* --figure=rotation --out=rotation.png
    python plot.py out/mini_llm_cosine_* --table=train_loss,val_loss --at=1200 --baseline=wd=0

Runs are told apart in the legend by the config values that differ between them
(`wd=0.1, lr=0.0006`); where a preset's own label (`wd=0.1`) would name two settings, the values
that tell those apart are added (`wd=0.1, wd_params=all`). An `_ema` metric is drawn dashed beside
its iterate. Runs that differ only in `seed` (and in keys that do not change what is learned:
out_dir, device, eval intervals) are seeds of one setting, drawn as their mean with a band from the
lowest to the highest seed, "(n seeds)" in the legend. GPT runs (x: iter, tokens) and ResNet runs
(x: epoch) go in separate figures, unless --x and --y name metrics every run logs. A log that is
empty or still being written is read up to its last complete line.

Tables (--table=METRICS) have a row per setting, the settings and labels of the figures: each
metric's mean ± sample standard deviation (ddof=1) over the seeds, and how many seeds. Eval metrics
(train_loss, val_loss, test_err, ..._ema) come from eval lines, `loss` from training lines. --at
picks the line of each run, with no interpolation:
    --at=last   the last logged value (the default); a run that has not finished or has diverged has none
    --at=N      the line with iter == N (GPT) or epoch == N (ResNet)
    --at=drop   the LR drop: the last eval before the LR falls to its final value (GPT: min_lr, the
                eval before the cosine ends; ResNet: lr_flow, the epoch before it, when evaluated)
--baseline=KEY=VALUE[,KEY=VALUE] names one setting (keys as in config.json or the legend: wd, lr);
every other row then gets its difference to it, paired by seed, as mean ± standard error
(sd/sqrt(n)). A seed with no value there (diverged, not finished, not logged) is left out and named
in the row's notes. --format=markdown (a caption line and a table to paste; the default), csv or
json; the table goes to stdout.
"""
import csv
import difflib
import io
import json
import math
import os
import re
import statistics
import sys
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt

from configurator import NOT_IN_NAMES, SHORT_NAMES, ConfigError, apply_args, parse_value
from run_io import read_log

matplotlib.use('Agg')  # files only, no screen needed (pyplot picks its backend at the first figure)

OPTIONS = {
    'x': '',  # iter | tokens | epoch; default: epoch for vision runs, iter otherwise
    'y': '',  # comma-separated metrics; default: the main losses of the runs' kind
    'logy': False,
    'smooth': 1,  # moving average over this many logged points
    'out': 'plot.png',
    'figure': '',  # a preset laying out one of the paper's figures (figures.py; --help lists them)
    'table': '',  # comma-separated metrics: a table of them, printed, instead of a figure
    'at': 'last',  # the table's line of each run: last | drop | an iteration (GPT) / epoch (ResNet)
    'baseline': '',  # key=value[,key=value]: the setting the table's paired differences are taken to
    'format': 'markdown',  # the table's: markdown | csv | json
}
FIGURE_OPTIONS = ('figure', 'x', 'y', 'logy', 'smooth', 'out')
TABLE_OPTIONS = ('at', 'baseline', 'format')
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
    'attn_logit_max': 'largest attention logit |q.k|/sqrt(d)', 'output_logit_max': 'largest output logit',
    'attn_logit_bf16_err': 'bf16 relative error of the attention logits',
    'attn_weight_bf16_tv': 'bf16 error of the attention weights (TV)',
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
        parts = [f"{SHORT_NAMES.get(k, k)}={shown_value(k, run['config'].get(k))}" for k in differing]
        labels.append(', '.join(parts) if parts else run['name'])
    return labels


def shown_value(key, value):
    """A config value as a legend shows it: a run a run starts from (init_from, elr_from) by its folder
    without the seed, which names the parents of every seed at once; none for ''."""
    if key in ('init_from', 'elr_from') and value not in ('', 'scratch', 'resume', None):
        return strip_seed(run_folder(value).name)
    return 'none' if value == '' else value


def distinct_labels(groups, labels):
    """A preset's labels (wd=0.1), each naming one setting: where one label stands for several, each of
    those gets the config values that tell them apart (wd=0.1, wd_params=all), so that no figure draws
    two settings under one name."""
    labels = list(labels)
    for label in dict.fromkeys(labels):
        same = [i for i, other in enumerate(labels) if other == label]
        if len(same) > 1:
            for i, extra in zip(same, legend_labels([groups[i] for i in same])):
                labels[i] = f"{label}, {extra}"
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
# seeds: runs that differ only in seed are one group, drawn as mean and band, and one row of a table

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


def warn_missing_keys(runs):
    """Say which runs lack config keys that other runs of their kind have: written by an older version,
    they count as key=None and make settings of their own, apart from the same setting run since."""
    for kind in dict.fromkeys(run.get('kind') for run in runs):
        same = [run for run in runs if run['config'] and run.get('kind') == kind]
        keys = [set(run['config']) - IGNORED_KEYS for run in same]
        missing = sorted(set().union(*keys) - set.intersection(*keys)) if keys else []
        if missing:
            older = [run['name'] for run in same if not set(missing) <= set(run['config'])]
            print(f"warning: {', '.join(older[:3])}{' ...' if len(older) > 3 else ''} lack the config "
                  f"keys {', '.join(missing)} that other runs have (an older version wrote them?): they "
                  f"count as {missing[0]}=None, a setting apart; rerun them to compare", file=sys.stderr)


def seed_groups(runs, warn=True):
    """The runs as groups of seeds of one setting, in the order first met: dicts with name,
    config, kind (those of the first run) and runs. A run without a config is its own group.
    warn: say where seeds logged different iterations (a figure's mean covers only those all logged)."""
    members = {}
    for run in runs:
        members.setdefault(setting(run['config']) if run['config'] else run['path'], []).append(run)
    warn_missing_keys(runs)
    groups = []
    for same in members.values():
        name = same[0]['name'] if len(same) == 1 else strip_seed(same[0]['name'])
        if warn and len({tuple(r.get('iter') for r in run['records']) for run in same}) > 1:
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
    return f"{label} ({n} {'seeds' if distinct_seeds(group) else 'runs'})"


def distinct_seeds(group):
    return len({json.dumps(r['config'].get('seed')) for r in group['runs']}) == len(group['runs'])


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


# -----------------------------------------------------------------------------
# a panel of one metric, and the free-form figure of such panels

def draw_band(ax, xs, lo, hi, color, alpha=0.2, **kwargs):
    if lo is not None and xs:
        ax.fill_between(xs, lo, hi, color=color, alpha=alpha, linewidth=0, **kwargs)


def add_legend(ax, groups, fontsize='small'):
    """The panel's legend (when it has labelled lines), titled with what line and band mean when
    seeds were averaged."""
    if ax.get_legend_handles_labels()[0]:
        seeded = any(len(g['runs']) > 1 for g in groups)
        ax.legend(fontsize=fontsize, title=SEED_NOTE if seeded else None, title_fontsize=fontsize)


def no_data(ax, y):
    """Say so on a panel that has nothing to draw, rather than leave it blank."""
    ax.text(0.5, 0.5, f"no '{y}' logged", ha='center', va='center', transform=ax.transAxes)


def divergence_point(run, x):
    """The x at which the run logged diverged=true, or None."""
    for r in run['records']:
        if r.get('diverged'):
            return r.get(x)
    return None


def draw_metric(ax, groups, labels, x, y, smooth=1, logy=False, with_ema=True):
    """One panel: metric y of every seed group (the mean, the seeds' band), its EMA dashed, a color
    per group in order. labels name one setting each (distinct_labels). Returns whether anything was
    drawn."""
    drawn = False
    for i, (group, label) in enumerate(zip(groups, labels)):
        color = f"C{i % 10}"
        for suffix, style in (('', '-'), ('_ema', '--'))[:2 if with_ema else 1]:
            xs, ys, lo, hi = group_series(group, x, y + suffix, smooth)
            if xs:
                name = f"{label} (EMA)" if suffix else label
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
    if not drawn:
        no_data(ax, y)
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
    missing = [y for ax, y in zip(axes.flat, ys) if not draw_metric(ax, groups, labels, x, y, smooth, logy)]
    for ax in list(axes.flat)[len(ys):]:
        ax.set_visible(False)
    if len(missing) == len(ys):
        plt.close(fig)
        raise PlotError(f"none of the runs logged {', '.join(ys)} against {x!r}")
    for y in missing:
        print(f"warning: no run logged {y!r}", file=sys.stderr)
    add_legend(next(ax for ax, y in zip(axes.flat, ys) if y not in missing), groups)
    return fig


def check_kinds(runs, figure='', kind=None, x='', ys=()):
    """Raise PlotError where GPT runs (x: iter, tokens) and ResNet runs (x: epoch) meet in a figure
    that cannot show both, or a preset gets the other kind: never draw less than asked, silently.
    kind: what the preset draws ('GPT', 'ResNet'; None: either, one at a time; 'both': a panel per run)."""
    gpt = [r['path'] for r in runs if r.get('kind') == 'GPT']
    vision = [r['path'] for r in runs if r.get('kind') == 'ResNet']
    split = f"plot the GPT runs ({', '.join(gpt)}) and the ResNet runs ({', '.join(vision)}) separately"
    if kind in ('GPT', 'ResNet'):
        other = vision if kind == 'GPT' else gpt
        if other:
            what = ('ResNet' if kind == 'GPT' else 'GPT') + (' runs' if len(other) > 1 else ' run')
            raise PlotError(f"--figure={figure} draws {kind} runs, but {', '.join(other)} "
                            f"{'are' if len(other) > 1 else 'is a'} {what}" + (f": {split}" if gpt and vision else ''))
        return
    if not (gpt and vision) or kind == 'both':
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
# tables: a row per setting (the figures' seed groups and labels), each metric over its seeds at one line

def finite(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def step_key(run):
    """What --at=N counts: epochs for a ResNet run, iterations for a GPT run."""
    return 'epoch' if run.get('kind') == 'ResNet' else 'iter'


def last_step(run):
    return max((r[step_key(run)] for r in run['records'] if finite(r.get(step_key(run)))), default=None)


def run_status(run):
    """Why a run's last values are not its final ones ('diverged at iter 340', 'not finished: iter 340
    of 1200': still running, or stopped), or None for a run that finished."""
    key = step_key(run)
    for r in run['records']:
        if r.get('diverged'):
            return f"diverged at {key} {r.get(key)}"
    end, last = run['config'].get('epochs' if key == 'epoch' else 'max_iters'), last_step(run)
    if isinstance(end, int) and (last is None or last < end):
        return f"not finished: {key} {last} of {end}"
    return None


def final_lr(run):
    """The LR a run's schedule ends at (GPT: min_lr after a cosine; ResNet: lr_flow after its drop),
    or its last logged LR where the config does not say."""
    c = run['config']
    if run.get('kind') == 'ResNet':
        lr = c.get('lr_flow') if c.get('first_decay', 1) < 1 else c.get('lr')
    else:
        lr = c.get('min_lr') if c.get('decay_lr', True) else c.get('learning_rate')
    logged = [r['lr'] for r in run['records'] if finite(r.get('lr'))]
    return lr if finite(lr) else logged[-1] if logged else None


def drop_point(run):
    """The iteration (GPT) / epoch (ResNet) of the last eval before the LR falls to its final value; None
    where it does not fall (a constant LR) or has not fallen yet."""
    key, final, point = step_key(run), final_lr(run), None
    for r in run['records']:
        if final is None or not finite(r.get('lr')):
            continue
        if r['lr'] > final:
            point = r.get(key) if r.get('eval') else point
        elif point is not None:
            return point  # a line at the final LR after it: the LR has fallen
    return None


def value_at(run, metric, at):
    """(value, where, None), or (None, None, why there is none): the metric at `at` ('last', 'drop' or an
    iteration / epoch), from eval lines where the run's eval lines log it, else from training lines."""
    key, status = step_key(run), run_status(run)
    evals = [r for r in run['records'] if r.get('eval')]
    lines = [r for r in (evals if any(metric in r for r in evals) else run['records']) if metric in r]
    if at == 'last' and status:
        return None, None, status  # its last value is not its final one
    if not lines:
        return None, None, status or f"no {metric} logged"
    point = lines[-1].get(key) if at == 'last' else drop_point(run) if at == 'drop' else at
    if point is None:
        return None, None, status or "no LR drop (its LR never falls)"
    line = next((r for r in reversed(lines) if r.get(key) == point), None)
    if line is None:  # a run that has not got there says so; one that went past did not log it there
        not_yet = status and point > (last_step(run) or 0)
        return None, None, status if not_yet else f"no {metric} at {key} {point}"
    if not finite(line[metric]):
        return None, None, f"{metric} not finite at {key} {point}"
    return line[metric], f"{key} {point}", None


def summary(pairs):
    """Mean, sample standard deviation (ddof=1; None for one value) and number of (seed, value) pairs."""
    values = [v for _, v in pairs]
    return {'mean': statistics.fmean(values) if values else None,
            'sd': statistics.stdev(values) if len(values) > 1 else None, 'n': len(values), 'values': pairs}


def seed_name(run, group):
    return f"seed {run['config'].get('seed')}" if distinct_seeds(group) else run['name']


def baseline_index(groups, labels, spec):
    """The one setting --baseline=KEY=VALUE[,KEY=VALUE] names: keys as in config.json or as the legend
    shortens them (wd, lr), values read as the training scripts read them (wd_params=all, wd=0)."""
    long = {short: k for k, short in SHORT_NAMES.items()}
    wanted = []
    for part in spec.split(','):
        key, _, raw = (s.strip() for s in part.partition('='))
        if not (key and raw):
            raise PlotError(f"--baseline={spec}: expected key=value[,key=value] (--baseline=weight_decay=0)")
        wanted.append((key, parse_value(key, raw, None)))

    def holds(config, key, value):
        key = key if key in config else long.get(key, key)
        numbers = finite(value) and finite(config.get(key))
        return key in config and (config[key] == value if numbers else str(config[key]) == str(value))
    named = [i for i, g in enumerate(groups) if all(holds(g['config'], k, v) for k, v in wanted)]
    if len(named) != 1:
        which = f"{len(named)} settings ({'; '.join(labels[i] for i in named)})" if named else 'no setting'
        raise PlotError(f"--baseline={spec} names {which}; the settings: {' | '.join(labels)}")
    return named[0]


def table_rows(runs, metrics, at, baseline=''):
    """A row per setting, grouped and labelled as the figures are (seed_groups, legend_labels): each
    metric's values per seed with their mean, sd and n, the lines they were read at, notes on the seeds
    left out; with a baseline, each metric's differences to it paired by seed (mean, se, n)."""
    groups = seed_groups(runs, warn=False)
    labels = legend_labels(groups)
    rows = []
    for group, label in zip(groups, labels):
        row = {'setting': label, 'runs': [r['name'] for r in group['runs']], 'at': [], 'metrics': {},
               'seeds': [r['config'].get('seed') for r in group['runs']], 'notes': []}
        row['notes'] += [f"{seed_name(r, group)} {run_status(r)}" for r in group['runs'] if run_status(r)]
        for m in metrics:
            pairs = []
            for run in group['runs']:
                value, where, why = value_at(run, m, at)
                if value is not None:
                    pairs.append((run['config'].get('seed'), value))
                    row['at'] += [where] * (where not in row['at'])
                elif why != run_status(run):  # a status is noted once, above
                    row['notes'].append(f"{seed_name(run, group)}: {why}")
            row['metrics'][m] = summary(pairs)
        row['notes'] = list(dict.fromkeys(row['notes']))  # a run without an LR drop lacks every metric there
        rows.append(row)
    if baseline:
        pair_by_seed(rows, groups, metrics, baseline_index(groups, labels, baseline), baseline)
    return rows


def pair_by_seed(rows, groups, metrics, b, spec):
    """Each row's differences to row b, seed by seed: their mean and standard error sd/sqrt(n)."""
    base = rows[b]
    base['baseline'] = True
    for row, group in zip(rows, groups):
        if not distinct_seeds(group):
            raise PlotError(f"--baseline pairs runs by seed, but {', '.join(row['runs'])} share a seed")
        lacking = [s for s in row['seeds'] if s not in base['seeds']]
        if lacking:
            raise PlotError(f"--baseline={spec} ({base['setting']}) has no run of seed {lacking[0]}, which "
                            f"{row['setting']} has: run that seed of the baseline, or leave those runs out")
        if row is base:
            continue
        row['diff'] = {}
        for m in metrics:
            base_values = dict(base['metrics'][m]['values'])
            pairs = [(s, v - base_values[s]) for s, v in row['metrics'][m]['values'] if s in base_values]
            row['notes'] += [f"seed {s}: no baseline {m}" for s, _ in row['metrics'][m]['values']
                             if s not in base_values]  # the baseline's row says why
            d = summary(pairs)
            d['se'] = d.pop('sd') / math.sqrt(d['n']) if d['sd'] is not None else None
            row['diff'][m] = d


def table_caption(runs, metrics, at, rows):
    steps = ' or '.join(dict.fromkeys('epoch' if step_key(r) == 'epoch' else 'iteration' for r in runs))
    where = {'last': "at each run's last logged value",
             'drop': "at the LR drop (each run's last eval before its LR falls to its final value)"}
    base = next((r['setting'] for r in rows if r.get('baseline')), None)
    paired = f"; Δ: minus {base}, paired by seed, mean ± se (sd/√n)" if base else ''
    stats = 'mean ± sd over seeds (sample sd, ddof=1)'
    return f"{', '.join(metrics)} {where.get(at, f'at {steps} {at}')}: {stats}{paired}."


def plus_minus(mean, spread):
    """'1.721 ± 0.012': the mean to the decimals that show the spread to two significant digits."""
    if spread is None or not spread > 0:
        return f"{mean:.4g}"
    decimals = 1 - math.floor(math.log10(spread))
    if decimals > 5 and abs(mean) < 0.01:  # 2.3e-05 ± 1.5e-06 reads better than 0.0000230 ± 0.0000015
        return f"{mean:.2g} ± {spread:.2g}"
    return f"{mean:.{max(0, decimals)}f} ± {spread:.{max(0, decimals)}f}"


def markdown_table(rows, metrics, at, caption):
    """The caption, then a row per setting: mean ± sd, '(2 of 3)' where some seeds have no value."""
    def cell(s, spread, of):
        more = f" ({s['n']} of {of})" if s['n'] < of else ''
        return plus_minus(s['mean'], s[spread]) + more if s['n'] else '–'
    # where each run's line is its own (last, drop), an `at` column says which it was
    where = at in ('last', 'drop')
    paired, notes = any(r.get('baseline') for r in rows), any(r['notes'] for r in rows)
    head = ['setting', 'seeds'] + ['at'] * where + metrics + [f"Δ {m}" for m in metrics if paired]
    head += ['notes'] * notes
    lines = [caption, '', '| ' + ' | '.join(head) + ' |', '|' + ' --- |' * len(head)]
    for r in rows:
        cells = [r['setting'], str(len(r['runs']))] + [', '.join(r['at']) or '–'] * where
        cells += [cell(r['metrics'][m], 'sd', len(r['runs'])) for m in metrics]
        if paired:
            cells += [cell(r['diff'][m], 'se', r['metrics'][m]['n']) if 'diff' in r else 'baseline'
                      for m in metrics]
        cells += ['; '.join(r['notes'])] * notes
        lines.append('| ' + ' | '.join(c.replace('|', '\\|') for c in cells) + ' |')
    return '\n'.join(lines)


def csv_table(rows, metrics):
    """A header line, then a row per setting: full-precision numbers, empty where there is none."""
    paired = any(r.get('baseline') for r in rows)
    head = ['setting', 'seeds', 'at', *[m + s for m in metrics for s in ('', '_sd', '_n')]]
    head += [f"d_{m}{s}" for m in metrics for s in ('', '_se', '_n')] if paired else []
    out = io.StringIO()
    writer = csv.writer(out, lineterminator='\n')
    writer.writerow(head + ['notes'])
    for r in rows:
        cells = [r['setting'], len(r['runs']), ' '.join(r['at'])]
        cells += [r['metrics'][m][k] for m in metrics for k in ('mean', 'sd', 'n')]
        if paired:  # none in the baseline's row
            cells += [r.get('diff', {}).get(m, {}).get(k) for m in metrics for k in ('mean', 'se', 'n')]
        cells = ['' if c is None else repr(c) if isinstance(c, float) else c for c in cells]
        writer.writerow(cells + ['; '.join(['baseline'] * bool(r.get('baseline')) + r['notes'])])
    return out.getvalue().rstrip('\n')


def print_table(paths, opts, given):
    """--table: check the table's options, read the runs, print the table (stdout)."""
    drawing = [k for k in FIGURE_OPTIONS if k in given]
    if drawing:
        raise PlotError(f"--table prints a table and --{drawing[0]} is for figures: give one or the other "
                        f"(send the table to a file with > FILE)")
    at = int(opts['at']) if opts['at'].isdigit() else opts['at']
    if at not in ('last', 'drop') and not isinstance(at, int):
        raise PlotError(f"--at={opts['at']}: expected an iteration (GPT) / epoch (ResNet), last or drop")
    fmt = {'md': 'markdown'}.get(opts['format'], opts['format'])
    if fmt not in ('markdown', 'csv', 'json'):
        raise PlotError(f"--format={opts['format']}: expected markdown, csv or json")
    metrics = [m for m in opts['table'].split(',') if m]
    if not metrics:
        raise PlotError("--table= names no metric: e.g. --table=train_loss,val_loss")
    runs = load_runs(paths)
    logged = {k for run in runs for r in run['records'] for k in r}
    for m in metrics:
        if m not in logged:
            close = difflib.get_close_matches(m, logged, n=1)
            raise PlotError(f"no run logged {m!r}" + (f"; did you mean {close[0]!r}?" if close else ''))
    rows = table_rows(runs, metrics, at, opts['baseline'])
    caption = table_caption(runs, metrics, at, rows)
    if fmt == 'json':
        print(json.dumps({'caption': caption, 'metrics': metrics, 'at': at, 'rows': rows}, indent=1))
    else:
        print(csv_table(rows, metrics) if fmt == 'csv' else markdown_table(rows, metrics, at, caption))
    return 0


# -----------------------------------------------------------------------------
# the command line

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


def help_text():
    """The docstring, then every preset of figures.py with its line, then the options."""
    from figures import FIGURES
    width = max(map(len, FIGURES))
    kinds = {'GPT': ' (GPT)', 'ResNet': ' (ResNet)'}
    presets = [f"    {name:<{width}}  {p['help']}{kinds.get(p['kind'], '')}" for name, p in FIGURES.items()]
    options = 'options: ' + ', '.join(f"--{k}={v!r}" for k, v in OPTIONS.items())
    head = 'Presets (--figure=NAME, in figures.py), one per figure of the paper:'
    return '\n'.join([__doc__.strip(), '', head, *presets, '', options])


def main(argv):
    if any(a in ('-h', '--help') for a in argv):
        print(help_text())
        return 0
    from figures import FIGURES  # the presets build on this file: imported once it is whole
    paths = [a for a in argv if not a.startswith('-')]
    try:
        opts = apply_args(OPTIONS, [a for a in argv if a.startswith('-')])
    except ConfigError as e:
        raise PlotError(str(e)) from None
    given = {a[2:].split('=', 1)[0] for a in argv if a.startswith('--')}
    if not paths:
        raise PlotError("no run folders given: python plot.py out/RUN_A out/RUN_B ... [--out=FILE.png]")
    if opts['table']:
        return print_table(paths, opts, given)
    if given & set(TABLE_OPTIONS):
        raise PlotError(f"--{min(given & set(TABLE_OPTIONS))} is an option of tables: add --table=METRICS")
    if opts['smooth'] < 1:
        raise PlotError(f"--smooth must be >= 1, got {opts['smooth']}")
    if opts['figure'] and opts['figure'] not in FIGURES:
        raise PlotError(f"unknown figure {opts['figure']!r}: expected one of {', '.join(FIGURES)}")
    check_output(Path(opts['out']))
    runs = load_runs(paths)
    ys = [y for y in opts['y'].split(',') if y]
    preset = FIGURES.get(opts['figure'])
    check_kinds(runs, opts['figure'], preset['kind'] if preset else None, opts['x'], ys)
    if preset:
        fig = preset['draw'](runs, opts['smooth'])
    else:
        x, default_ys = default_axes(runs)
        fig = plot_runs(runs, opts['x'] or x, ys or default_ys, opts['smooth'], opts['logy'])
    out = Path(opts['out'])
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out}")
    return 0


def cli(argv):
    """main(argv) as a command: bad input is one line on stderr and exit status 2."""
    try:
        return main(argv)
    except PlotError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # met while writing (disk full, ...): a fault, not bad input
        print(f"error: cannot write {e.filename or 'the output'}: {e.strerror}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == '__main__':
    # figures.py imports this file as the module `plot`; run that module, so that its presets and its
    # PlotError are the ones main() sees (this file run as a script is a second copy, named __main__)
    import plot
    sys.exit(plot.cli(sys.argv[1:]))
