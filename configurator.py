"""
Typed overrides of a training script's config block.

A script defines its defaults as plain module-level variables, then calls
    config, overrides = configure(globals(), __doc__)
which applies, in command-line order, config files (`config/x.py`, ordinary Python files
whose top-level names are config keys) and `--key=value` arguments:
    python train_gpt.py config/gpt_cpu_demo.py --weight_decay=0 --device=cpu
Values are parsed with ast.literal_eval (strings may be bare: --init_from=resume), must
match the default's type (an int is accepted for a float, true/false for a bool), and a key
whose default is None takes any value. Mistakes exit with status 2 and one line, never a
traceback. `--help` lists every key with its default.
"""
import ast
import difflib
import sys
import types

CONFIG_TYPES = (bool, int, float, str, tuple, list, type(None))


class ConfigError(ValueError):
    pass


def _unknown_key(key, known, where):
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else "; see --help for the keys"
    return ConfigError(f"unknown config key {key!r} in {where}{hint}")


def coerce(key, value, default):
    """Return value converted to the type of default, or raise ConfigError."""
    if default is None:
        return value
    expected = type(default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected in (tuple, list) and isinstance(value, (tuple, list)):
        return expected(value)
    if expected is str and isinstance(value, bool):
        return str(value)  # keys like compile='auto' also take True/False, from files too
    if type(value) is expected:
        return value
    name = {bool: 'True or False', int: 'an integer', float: 'a number', str: 'a string',
            tuple: 'a tuple', list: 'a list'}[expected]
    raise ConfigError(f"{key}: expected {name} (the default is {default!r}), got {value!r}")


def parse_value(key, raw, default):
    """Parse the text of --key=raw against the default's type."""
    if isinstance(default, bool) and raw.lower() in ('true', 'false'):
        return raw.lower() == 'true'
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        value = raw  # a bare string: --init_from=resume, --device=cuda:0
    if isinstance(default, str) and not isinstance(value, str):
        value = raw  # --dataset=123 is still a string
    return coerce(key, value, default)


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
        config[key] = parse_value(key, raw, defaults[key])
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


def configure(namespace, doc=None, argv=None):
    """Apply sys.argv to a script's globals in place; return (config, overrides).

    config is every key with its resolved value (for config.json); overrides holds the keys
    whose value differs from the default (for the run's name)."""
    argv = sys.argv[1:] if argv is None else argv
    defaults = config_defaults(namespace)
    if any(a in ('-h', '--help') for a in argv):
        print(help_text(defaults, doc))
        sys.exit(0)
    try:
        config = apply_args(defaults, argv)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    namespace.update(config)
    overrides = {k: v for k, v in config.items() if v != defaults[k]}
    return config, overrides


SHORT_NAMES = {'weight_decay': 'wd', 'learning_rate': 'lr', 'wd_mode': 'wdmode',
               'batch_size': 'bs', 'optimizer': 'opt', 'max_iters': 'iters'}


def run_name(prefix, overrides, ignore=()):
    """A run folder name from the overrides: gpt_wd0.1_lr0.0006 (keys in `ignore` left out)."""
    parts = [prefix]
    for key, value in overrides.items():
        if key in ignore:
            continue
        text = f"{value:g}" if isinstance(value, float) else str(value)
        text = ''.join(c if c.isalnum() or c in '.-+' else '-' for c in text)
        parts.append(f"{SHORT_NAMES.get(key, key)}{text}")
    return '_'.join(parts)
