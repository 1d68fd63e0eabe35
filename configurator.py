"""
Typed overrides of a training script's config block.

A script defines its defaults as plain module-level variables, then calls
    config, overrides = configure(globals(), __doc__)
which applies, in command-line order, config files (`config/x.py`, ordinary Python files
whose top-level names are config keys) and `--key=value` arguments:
    python train_gpt.py config/gpt_cpu_demo.py --weight_decay=0 --device=cpu
Values are parsed with ast.literal_eval (strings may be bare: --init_from=resume), must
match the default's type (an int is accepted for a float, true/false for a bool), and a key
whose default is None takes any value. Each value is then checked against its declared bounds
(BOUNDS and RELATIONS below, one table for every script). Mistakes exit with status 2 and one
line, never a traceback. `--help` lists every key with its default.
"""
import ast
import difflib
import os
import sys
import types
from pathlib import Path

CONFIG_TYPES = (bool, int, float, str, tuple, list, type(None))

# What each config value may be, for every script that has the key. A string is a range
# ('>=1', '>=0', '>0', '[0,1)', '[0,1]'); a tuple lists the allowed values.
BOUNDS = dict(
    # counts and sizes
    batch_size='>=1', gradient_accumulation_steps='>=1', block_size='>=1', n_layer='>=1', n_head='>=1',
    n_embd='>=1', vocab_multiple='>=1', width='>=1', epochs='>=1', eval_interval='>=1', eval_iters='>=1',
    log_interval='>=1', eval_batch_size='>=1', hessian_n='>=1', hessian_probes='>=1', flow_epochs='>=1',
    max_iters='>=0', warmup_iters='>=0', lr_decay_iters='>=0', n_train='>=0', eval_every='>=0',
    hessian_every='>=0', flow_every='>=0', ckpt_every='>=0', micro_batch_size='>=0', ckpt_minutes='>=0',
    # optimisation
    learning_rate='>=0', lr='>=0', lr_flow='>=0', min_lr='>=0', weight_decay='>=0', grad_clip='>=0',
    radius='>=0', beta1='[0,1)', beta2='[0,1)', momentum='[0,1)', ema_coef='[0,1)', dropout='[0,1)',
    first_decay='[0,1]', optimizer=('adamw', 'sgd'), project_every=('step', 'epoch'),
    # system
    dtype=('auto', 'float32', 'bfloat16', 'float16'), compile=('auto', 'true', 'false'),
    # sample.py and bench.py
    num_samples='>=1', max_new_tokens='>=1', top_k='>=1', temperature='>0', steps='>=1', warmup='>=0',
)
RANGES = {  # the range names BOUNDS uses, and how an error states each
    '>=1': (lambda v: v >= 1, 'at least 1'), '>=0': (lambda v: v >= 0, '>= 0'),
    '>0': (lambda v: v > 0, '> 0'), '[0,1)': (lambda v: 0 <= v < 1, 'in [0, 1)'),
    '[0,1]': (lambda v: 0 <= v <= 1, 'in [0, 1]'),
}
# Checks between keys, for the scripts that have all of them: (keys, holds(config), message).
RELATIONS = [
    (('n_embd', 'n_head'), lambda c: c['n_embd'] % c['n_head'] == 0,
     "n_embd ({n_embd}) must be a multiple of n_head ({n_head})"),
    (('warmup_iters', 'max_iters'), lambda c: not 0 < c['max_iters'] < c['warmup_iters'],
     "warmup_iters ({warmup_iters}) is longer than training (max_iters {max_iters}); lower --warmup_iters"),
    (('decay_lr', 'lr_decay_iters', 'warmup_iters'),
     lambda c: not (c['decay_lr'] and 0 < c['lr_decay_iters'] < c['warmup_iters']),
     "lr_decay_iters ({lr_decay_iters}) ends before the warmup ({warmup_iters} iterations)"),
    (('decay_lr', 'min_lr', 'learning_rate'),
     lambda c: not (c['decay_lr'] and c['min_lr'] > c['learning_rate']),
     "min_lr ({min_lr}) is above learning_rate ({learning_rate}): the cosine would rise"),
    (('scale_inv', 'arch'), lambda c: not (c['scale_inv'] and c['arch'] == 'vgg16'),
     "vgg16 has no scale-invariant variant (use resnet18 or resnet34preact)"),
    (('scale_inv', 'batch_norm'), lambda c: c['batch_norm'] or not c['scale_inv'],
     "scale_inv needs batch_norm=True"),
    (('heldout', 'n_train'), lambda c: c['n_train'] > 0 or not c['heldout'],
     "heldout needs n_train > 0: the held-out images are the training images outside the subset"),
    (('elr_from', 'weight_decay'), lambda c: not (c['elr_from'] and c['weight_decay'] > 0),
     "elr_from replays a run's effective LR without weight decay: add --weight_decay=0"),
    (('elr_from', 'optimizer'), lambda c: not (c['elr_from'] and c['optimizer'] != 'adamw'),
     "elr_from replays AdamW's per-matrix lr/||w||: it needs optimizer='adamw'"),
    (('elr_from', 'scale_inv'), lambda c: c['scale_inv'] or not c['elr_from'],
     "elr_from needs scale_inv=True: lr/||w||^2 is the whole net's effective LR only when every trained "
     "weight is scale-invariant"),
]


class ConfigError(ValueError):
    pass


def fail(message):
    """Bad input: one line on stderr and exit status 2, never a traceback (every script's errors)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def or_fail(function, *args, prefix=''):
    """function(*args), where a ValueError it raises is bad input: one line (after prefix), exit 2."""
    try:
        return function(*args)
    except ValueError as e:
        fail(f"{prefix}{e}")


def check_bounds(config, choices=None):
    """Raise ConfigError for the first value outside its declared bounds (choices: extra allowed values
    by key, for lists that live elsewhere, such as the vision nets)."""
    bounds = {**BOUNDS, **{k: tuple(v) for k, v in (choices or {}).items()}}
    for key, value in config.items():
        bound = bounds.get(key)
        if bound is None or value is None:
            continue
        if isinstance(bound, tuple) and value not in bound:
            raise ConfigError(f"unknown {key} {value!r}: expected one of {', '.join(map(str, bound))}")
        if isinstance(bound, str) and not RANGES[bound][0](value):  # nan fails every range
            raise ConfigError(f"{key} must be {RANGES[bound][1]}, got {value}")
    for keys, holds, message in RELATIONS:
        if all(k in config for k in keys) and not holds(config):
            raise ConfigError(message.format(**config))


def _unknown_key(key, known, where):
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else "; see --help for the keys"
    return ConfigError(f"unknown config key {key!r} in {where}{hint}")


def coerce(key, value, default, current=None):
    """Return value converted to the type of default, or raise ConfigError (naming the value in
    force, current, where a config file changed it from the default)."""
    if default is None:
        return value
    expected = type(default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected in (tuple, list) and isinstance(value, (tuple, list)):
        return expected(value)
    if expected is str and isinstance(value, bool):
        return str(value).lower()  # keys like compile='auto' also take True/False, from files too
    if type(value) is expected:
        return value
    name = {bool: 'True or False', int: 'an integer', float: 'a number', str: 'a string',
            tuple: 'a tuple', list: 'a list'}[expected]
    now = (f"the value in force is {current!r}, the default {default!r}" if current not in (None, default)
           else f"the default is {default!r}")
    raise ConfigError(f"{key}: expected {name} ({now}), got {value!r}")


def parse_value(key, raw, default, current=None):
    """Parse the text of --key=raw against the default's type."""
    if isinstance(default, bool) and raw.lower() in ('true', 'false'):
        return raw.lower() == 'true'
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        value = raw  # a bare string: --init_from=resume, --device=cuda:0
    if isinstance(default, str) and not isinstance(value, str):
        value = raw.lower() if raw.lower() in ('true', 'false') else raw  # --dataset=123 is still a string
    return coerce(key, value, default, current)


def read_config_file(path, defaults):
    """Execute a config file and return its config keys, type-checked."""
    try:
        with open(path) as f:
            source = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    try:
        code = compile(source, path, 'exec')
    except SyntaxError as e:
        raise ConfigError(f"{path}, line {e.lineno}: syntax error: {e.msg}") from None
    namespace = {}
    try:
        exec(code, namespace)
    except Exception as e:
        tb, line = e.__traceback__, '?'
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == path:
                line = tb.tb_lineno
            tb = tb.tb_next
        raise ConfigError(f"{path}, line {line}: {type(e).__name__}: {e}") from None
    values = {}
    for key, value in namespace.items():
        if key.startswith('_') or isinstance(value, (types.ModuleType, types.FunctionType, type)):
            continue
        if key not in defaults:
            raise _unknown_key(key, defaults, path)
        try:
            values[key] = coerce(key, value, defaults[key])
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
    return values


def apply_args(defaults, args):
    """Return a new config dict: defaults updated by config files and --key=value args, in order."""
    config = dict(defaults)
    for arg in args:
        if not arg.startswith('-'):
            config.update(read_config_file(arg, defaults))
            continue
        if not arg.startswith('--') or '=' not in arg:
            raise ConfigError(f"malformed argument {arg!r}: expected --key=value or a config file")
        key, raw = arg[2:].split('=', 1)  # a value may itself contain '='
        if key not in defaults:
            raise _unknown_key(key, defaults, 'the command line')
        config[key] = parse_value(key, raw, defaults[key], config[key])
    return config


def config_defaults(namespace):
    """The config block of a script: its public module-level values of simple types."""
    return {k: v for k, v in namespace.items()
            if not k.startswith('_') and isinstance(v, CONFIG_TYPES)}


def help_text(defaults, doc=None):
    width = max(map(len, defaults), default=0)
    lines = [doc.strip(), ''] if doc else []
    lines += ['config keys (--key=value) and their defaults:']
    lines += [f"  --{k:<{width}} = {v!r}" for k, v in defaults.items()]
    return '\n'.join(lines)


def configure(namespace, doc=None, argv=None, choices=None):
    """Apply sys.argv to a script's globals in place, check every value's bounds; return
    (config, overrides). config is every key with its resolved value (for config.json);
    overrides holds the keys whose value differs from the default (for the run's name)."""
    argv = sys.argv[1:] if argv is None else argv
    defaults = config_defaults(namespace)
    if any(a in ('-h', '--help') for a in argv):
        print(help_text(defaults, doc))
        sys.exit(0)
    try:
        config = apply_args(defaults, argv)
        check_bounds(config, choices)
    except ConfigError as e:
        fail(e)
    namespace.update(config)
    overrides = {k: v for k, v in config.items() if v != defaults[k]}
    return config, overrides


SHORT_NAMES = {'weight_decay': 'wd', 'learning_rate': 'lr', 'wd_mode': 'wdmode',
               'batch_size': 'bs', 'optimizer': 'opt', 'max_iters': 'iters'}
# keys that change where and how fast a run goes, not what it learns: left out of run names
NOT_IN_NAMES = ('out_dir', 'data_dir', 'init_from', 'device', 'compile', 'eval_interval', 'eval_iters',
                'log_interval', 'eval_every', 'eval_batch_size', 'ckpt_every', 'ckpt_minutes', 'wandb_log',
                'wandb_project', 'wandb_run_name')


def default_out_dir(prefix, config, argv=None):
    """out/ + the run's name (run_name): the config files' names, or prefix, and the overrides; a
    fine-tuning run, whose init_from is a checkpoint, after its parent's folder + '_ft'."""
    if config.get('init_from', 'scratch') not in ('scratch', 'resume'):
        parent = Path(config['init_from']).parent.name
        return os.path.join('out', run_name(f"{parent}_ft", config, argv, files=False))
    return os.path.join('out', run_name(prefix, config, argv))


def name_text(value):
    """A value as a run name writes it: 0.0 -> '0', 1e-05 -> '1e-05', out/x/ckpt.pt -> 'out-x-ckpt.pt'."""
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return ''.join(c if c.isalnum() or c in '.-+' else '-' for c in text)


def run_name(prefix, config, argv=None, files=True):
    """A run folder name: the config files' names (or prefix), then the command-line overrides:
    `config/gpt_cpu_demo.py --weight_decay=0.3` -> gpt_cpu_demo_wd0.3; `--weight_decay=0.1` alone ->
    gpt_wd0.1. files=False names the run by prefix alone (a fine-tuning run, after its parent)."""
    argv = sys.argv[1:] if argv is None else argv
    stems = [Path(a).stem for a in argv if not a.startswith('-')] if files else []
    given = [a[2:].split('=', 1)[0] for a in argv if a.startswith('--') and '=' in a]
    parts = stems or [prefix]
    for key in dict.fromkeys(k for k in given if k in config and k not in NOT_IN_NAMES):  # in order, once
        parts.append(f"{SHORT_NAMES.get(key, key)}{name_text(config[key])}")
    return '_'.join(parts)
