"""
The paper's figures, one preset each: `python plot.py RUNS --figure=NAME` (`--help` lists them).

A preset is a function of the runs (and the smoothing) that returns a matplotlib figure: it picks
its metrics and lays out the panels; seeds of one setting are one line (their mean) with a band
(lowest to highest seed). `@figure(kind, help)` above it registers it under its name less `figure_`,
with the kind of run it draws (plot.check_kinds) and its line in --help. Reading runs, seed groups,
legend labels and panels are plot.py's; each preset's labels go through plot.distinct_labels, so
that no legend names two settings alike.
"""
import json
import math

import matplotlib

from plot import (
    LABELS,
    X_LABELS,
    PlotError,
    add_legend,
    distinct_labels,
    draw_band,
    draw_metric,
    group_series,
    legend_labels,
    no_data,
    plt,
    run_folder,
    seed_groups,
    seed_label,
    series,
    setting,
    strip_seed,
)
from run_io import read_log

FIGURES = {}  # name -> {'draw': function(runs, smooth) -> figure, 'kind': ..., 'help': its line in --help}


def figure(kind, help):
    """Register the preset below. kind: the runs it draws, 'GPT' or 'ResNet'; None for either kind, one
    at a time; 'both' for GPT and ResNet runs together (a panel per run)."""
    def register(draw):
        FIGURES[draw.__name__.removeprefix('figure_')] = {'draw': draw, 'kind': kind, 'help': help}
        return draw
    return register


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


@figure('ResNet', "Fig. 1: test error and train loss over epochs, large / small LR, per wd")
def figure_vision_grid(runs, smooth):
    """Figure 1: test error and train cross-entropy over epochs; columns large / small LR,
    one line per weight decay, the EMA dashed, the LR drop marked."""
    groups = seed_groups(runs)
    lrs = sorted({lr_of(g) for g in groups}, reverse=True)
    fig, axes = new_figure(len(lrs), 2, sharey='row')  # one scale per metric: LRs compare across
    for col, lr in enumerate(lrs):
        column = sorted([g for g in groups if lr_of(g) == lr], key=lambda g: -g['config'].get('weight_decay', 0))
        labels = distinct_labels(column, [wd_label(g) for g in column])
        configs = [g['config'] for g in column]
        drops = {c['first_decay'] * c['epochs'] for c in configs if c.get('first_decay', 1) < 1}
        for row, y in enumerate(('test_err', 'train_loss')):
            ax = axes[row, col]
            draw_metric(ax, column, labels, 'epoch', y, smooth, logy=(y == 'train_loss'))
            for drop in sorted(drops):
                ax.axvline(drop, color='gray', linestyle=':', linewidth=1)
            kind = ('large LR' if lr == lrs[0] else 'small LR') if len(lrs) == 2 else ''
            ax.set_title(f"lr={lr}" + (f" ({kind})" if kind else ''))
        add_legend(axes[0, col], column)
    return fig


@figure('ResNet', "Sec. 2.2: weight norm, effective LR, test error with its EMA")
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


@figure('ResNet', "Fig. 2: projected SGD on a sphere, loss, fine-tuned error and trace against the LR")
def figure_sphere(runs, smooth):
    """Figure 2: projected SGD on a sphere. Training loss over epochs per LR, then against the LR
    (log axis): the level the loss stabilises at, the fine-tuned test error, the Hessian trace.
    A point is the mean over seeds, its bar the lowest to highest seed (one run: the trace's
    standard error)."""
    groups = sorted(seed_groups(runs), key=lr_of)
    labels = distinct_labels(groups, [f"lr={lr_of(g)}" for g in groups])
    fig, axes = new_figure(4, width=4.4)
    draw_metric(axes[0, 0], groups, labels, 'epoch', 'loss', smooth, logy=True, with_ema=False)
    add_legend(axes[0, 0], groups)
    draw_against_lr(groups, sphere_value, ((axes[0, 1], 'loss', 'training loss, last fifth of the run'),
                                           (axes[0, 2], 'flow_test_err', 'test error after fine-tuning (%)'),
                                           (axes[0, 3], 'flow_trace_hessian', 'Hessian trace after fine-tuning')))
    return fig


def draw_against_lr(groups, value, panels):
    """On each panel (ax, y, y label) the value(run, y) of every run against its LR (log axis): a point
    is the mean over seeds, its bar the lowest to highest seed (one run: y's logged standard error, if
    any). One line of points per sweep, runs alike but for their LR: runs that differ in more (radius,
    wd, dtype) get a line and a legend entry each, not one zigzag line."""
    lrs = [lr_of(g) for g in groups]
    bare = [{**g, 'config': {k: v for k, v in g['config'].items() if k not in ('lr', 'learning_rate')}}
            for g in groups]
    others = [setting(g['config']) for g in bare]
    sweeps = list(dict.fromkeys(others))
    names = legend_labels([bare[others.index(s)] for s in sweeps]) if len(sweeps) > 1 else [None]
    for ax, y, label in panels:
        for i, (sweep, name) in enumerate(zip(sweeps, names)):
            points = []
            for lr, group in ((lr, g) for lr, g, s in zip(lrs, groups, others) if s == sweep):
                values = [v for v in (value(run, y) for run in group['runs']) if v is not None]
                if not values:
                    continue
                mean = sum(values) / len(values)
                se = last_value(group['runs'][0], y + '_se') or 0.0  # e.g. the trace's standard error
                points.append((lr, mean, mean - min(values), max(values) - mean) if len(values) > 1
                              else (lr, mean, se, se))
            if points:
                xs, ys, below, above = zip(*points)
                ax.errorbar(xs, ys, yerr=[below, above] if any(below + above) else None, marker='o',
                            capsize=3, color=f"C{i % 10}", label=name)
        if not ax.get_lines():
            no_data(ax, y)
        elif names[0] is not None:
            add_legend(ax, groups)
        ax.set_xscale('log')
        ax.set_xticks(sorted(set(lrs)), [f"{lr:g}" for lr in sorted(set(lrs))])  # the LRs run
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel('learning rate')
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)


@figure('GPT', "claim 6's mechanism: attention logits and their bfloat16 error against the LR, per wd")
def figure_logits(runs, smooth):
    """The attention-logit growth of an LR sweep (config/mini_llm_logits.py): at the end of each run,
    against the LR, the largest attention logit, the error bfloat16 makes in the attention weights,
    the relative error of the logits themselves, and the training loss; a line per weight decay and
    dtype (the mean over seeds, bars from the lowest to the highest)."""
    groups = sorted(seed_groups(runs), key=lr_of)
    fig, axes = new_figure(4, width=4.4)
    draw_against_lr(groups, last_value, (
        (axes[0, 0], 'attn_logit_max', LABELS['attn_logit_max']),
        (axes[0, 1], 'attn_weight_bf16_tv', LABELS['attn_weight_bf16_tv']),
        (axes[0, 2], 'attn_logit_bf16_err', LABELS['attn_logit_bf16_err']),
        (axes[0, 3], 'train_loss', LABELS['train_loss'])))
    for ax in axes[0, :2]:
        ax.set_yscale('log')
    axes[0, 2].set_ylim(0, 2 * axes[0, 2].get_ylim()[1])  # from 0: it hardly moves (about 2^-9)
    return fig


def source_name(group):
    """The folder name of the run a replay follows (config elr_from)."""
    name = run_folder(group['config']['elr_from']).name
    return strip_seed(name) if len(group['runs']) > 1 else name


@figure('ResNet', "a run without wd that replays a wd run's effective LR (config elr_from)")
def figure_elr_replay(runs, smooth):
    """The effective-LR replay: a run with weight decay, one without, and one without weight decay
    (config elr_from = the first's folder) that sets its LR every step so that its effective LR
    lr/||w||^2 follows the first's. If the replay matches the wd run, weight decay acted through
    the effective LR. Panels: effective LR, LR (the replay's grows with ||w||^2), weight norm,
    training loss, test error (EMA dashed)."""
    replay = lambda g: bool(g['config'].get('elr_from'))
    groups = sorted(seed_groups(runs), key=lambda g: (replay(g), -g['config'].get('weight_decay', 0)))
    labels = distinct_labels(groups, [f"replay of {source_name(g)}" if replay(g) else wd_label(g)
                                      for g in groups])
    loss = 'train_loss' if any(group_series(g, 'epoch', 'train_loss')[0] for g in groups) else 'loss'
    panels = (('eff_lr', True), ('lr', True), ('weight_norm', False), (loss, False), ('test_err', False))
    fig, axes = new_figure(len(panels), width=4.0)
    for ax, (y, logy) in zip(axes.flat, panels):
        draw_metric(ax, groups, labels, 'epoch', y, smooth, logy=logy, with_ema=(y == 'test_err'))
    add_legend(axes[0, 0], groups)
    return fig


@figure('GPT', "Fig. 3 left: train and val loss per wd, cosine schedule, the end enlarged")
def figure_llm_cosine(runs, smooth):
    """Figure 3 left: train loss for each weight decay, the last quarter enlarged, and the
    validation loss there."""
    groups = sorted(seed_groups(runs), key=lambda g: g['config'].get('weight_decay', 0))
    labels = distinct_labels(groups, [wd_label(g) for g in groups])
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


def parent_config(run):
    """For a fine-tuning run (init_from=out/PARENT/ckpt.pt): the parent's config, or None."""
    init = run['config'].get('init_from', 'scratch')
    if init in ('scratch', 'resume'):
        return None
    try:
        return json.loads((run_folder(init) / 'config.json').read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def parent_iter(run):
    """For a fine-tuning run (init_from=out/PARENT/ckpt.pt): the parent's last logged iteration."""
    init = run['config'].get('init_from', 'scratch')
    if init in ('scratch', 'resume'):
        return None
    records = read_log(run_folder(init) / 'log.jsonl')
    return max((r['iter'] for r in records if 'iter' in r), default=None)


@figure('GPT', "Fig. 3 right: constant-LR runs and their tiny-LR fine-tuning")
def figure_llm_finetune(runs, smooth):
    """Figure 3 right: constant-LR runs, each followed by its tiny-LR fine-tuning (drawn from the
    parent's last iteration on, in the parent's color); the fine-tuning enlarged on the right."""
    groups = sorted(seed_groups(runs), key=lambda g: g['config'].get('weight_decay', 0))  # colors in wd order
    offsets = [parent_iter(g['runs'][0]) for g in groups]
    stage = lambda offset: 'fine-tuned at tiny LR' if offset is not None else 'constant LR'
    labels = distinct_labels(groups, [f"{wd_label(g)}, {stage(off)}" for g, off in zip(groups, offsets)])
    # a run and its fine-tuning share a color: the setting each continues (its own, or its parent's)
    lineage = [setting(parent_config(g) or g['config']) for g in groups]
    palette = {}
    colors = [palette.setdefault(key, f"C{len(palette) % 10}") for key in lineage]
    fig, axes = new_figure(2)
    for group, offset, color, label in zip(groups, offsets, colors, labels):
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


@figure('GPT', "Fig. 4: bfloat16 loss with and without wd, divergences marked")
def figure_bf16(runs, smooth):
    """Figure 4: training loss in bfloat16 with and without weight decay (and float32); a cross
    marks a divergence."""
    groups = seed_groups(runs)
    labels = distinct_labels(groups, [f"{g['config'].get('dtype', '?')}, {wd_label(g)}" for g in groups])
    fig, axes = new_figure(1, width=6.5)
    draw_metric(axes[0, 0], groups, labels, 'iter', 'loss', smooth, with_ema=False)
    add_legend(axes[0, 0], groups)
    return fig


@figure(None, "Sec. 3: Adam's effective LR, decayed norm, angular update and its equilibrium")
def figure_effective_lr(runs, smooth):
    """Section 3: Adam's effective LR, the weight norm, and the angular update against its
    rotational-equilibrium prediction (dotted)."""
    groups = seed_groups(runs)
    labels = legend_labels(groups)
    fig, axes = new_figure(3)
    draw_metric(axes[0, 0], groups, labels, 'iter', 'adam_elr', smooth, logy=True, with_ema=False)
    draw_metric(axes[0, 1], groups, labels, 'iter', 'decayed_norm', smooth, with_ema=False)
    draw_metric(axes[0, 2], groups, labels, 'iter', 'angular_update', smooth, logy=True, with_ema=False)
    for i, (group, label) in enumerate(zip(groups, labels)):
        xs, ys = group_series(group, 'iter', 'angular_update_eq')[:2]
        axes[0, 2].plot(xs, ys, color=f"C{i % 10}", linestyle=':',
                        label=seed_label(f"{label} (equilibrium)", group))
    add_legend(axes[0, 2], groups)
    return fig


def optimizer_title(group):
    """'adamw, wd_mode=l2, wd=0.1' from a run's config (train_resnet.py has no optimizer key: SGD)."""
    cfg = group['config']
    optimizer = cfg.get('optimizer') or ('sgd' if group.get('kind') == 'ResNet' else '?')
    return f"{optimizer}, wd_mode={cfg.get('wd_mode', 'decoupled')}, wd={cfg.get('weight_decay', 0)}"


@figure('both', "rotational equilibrium: per-tensor angles against the prediction, a panel per run")
def figure_rotation(runs, smooth):
    """Rotational equilibrium, one panel per run (or seed group): the angle each decayed tensor
    turns in one step, its 10th-90th percentile over the tensors shaded, the mean a line, the
    equilibrium prediction dashed (averaged over seeds). With AdamW every matrix settles at the
    predicted angle (a narrow band on the dashed line); Adam + L2 has no prediction and leaves
    the layers at different angles (a wide band)."""
    groups = seed_groups(runs)
    names = distinct_labels(groups, [g['name'] for g in groups])
    ncols = min(len(groups), 3)
    fig, axes = new_figure(ncols, math.ceil(len(groups) / ncols), width=4.6, sharey=True)
    drawn = []
    for ax, group, name in zip(axes.flat, groups, names):
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
            no_data(ax, 'angular_update')
        eq = [(v, y) for v, y in zip(*group_series(group, x, 'angular_update_eq', smooth)[:2]) if y > 0]
        if eq:  # none for Adam + L2; 0 without weight decay
            ax.plot(*zip(*eq), color='k', linestyle='--', label='equilibrium prediction')
        elif xs:
            ax.text(0.03, 0.03, 'no equilibrium predicted', transform=ax.transAxes, fontsize=8, color='gray')
        ax.set_title(f"{seed_label(name, group)}\n{optimizer_title(group)}", fontsize='medium')
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


def optimizer_label(group):
    """'AdamW, wd 0.1 on matrices', 'Adam + L2 0.0001', 'SGD + L2 0.0001': the appendix's variants."""
    c = group['config']
    name = 'SGD' if c.get('optimizer') == 'sgd' else 'Adam' if c.get('wd_mode') == 'l2' else 'AdamW'
    decay = f"L2 {c.get('weight_decay')}" if c.get('wd_mode') == 'l2' else f"wd {c.get('weight_decay')}"
    return f"{name}{' + ' if c.get('wd_mode') == 'l2' else ', '}{decay} on {c.get('wd_params', 'matrices')}"


@figure('GPT', "the appendix: AdamW against WD on all parameters, Adam + L2, SGD")
def figure_appendix(runs, smooth):
    """Appendix: decayed parameters, coupled L2 and SGD against AdamW: train and val loss, token error."""
    groups = seed_groups(runs)
    labels = distinct_labels(groups, [optimizer_label(g) for g in groups])
    fig, axes = new_figure(3)
    for ax, y in zip(axes[0], ('train_loss', 'val_loss', 'val_err')):
        draw_metric(ax, groups, labels, 'iter', y, smooth, with_ema=False)
    add_legend(axes[0, 0], groups)
    return fig
