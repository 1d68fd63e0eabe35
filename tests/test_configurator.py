import re
import subprocess
import sys
import textwrap

import pytest

from configurator import BOUNDS, ConfigError, apply_args, check_bounds, config_defaults, run_name

DEFAULTS = dict(learning_rate=6e-4, weight_decay=0.0, max_iters=100, compile=True,
                init_from='scratch', wd_params='matrices', betas=(0.9, 0.95), seed=None,
                note='')


def test_int_is_accepted_for_a_float_key_and_becomes_a_float():
    config = apply_args(DEFAULTS, ['--weight_decay=0', '--learning_rate=1e-3'])
    assert config['weight_decay'] == 0.0 and type(config['weight_decay']) is float
    assert config['learning_rate'] == 1e-3


@pytest.mark.parametrize('raw,value', [('false', False), ('True', True), ('FALSE', False)])
def test_bools_accept_python_and_lowercase_spellings(raw, value):
    assert apply_args(DEFAULTS, [f'--compile={raw}'])['compile'] is value


def test_bare_strings_and_values_containing_equals_are_kept_whole():
    config = apply_args(DEFAULTS, ['--init_from=resume', '--wd_params=wte wpe mlp',
                                   '--note=a=b=c', '--seed=7'])
    assert config['init_from'] == 'resume' and config['wd_params'] == 'wte wpe mlp'
    assert config['note'] == 'a=b=c'
    assert config['seed'] == 7  # a key whose default is None takes any value


def test_string_key_keeps_digits_as_text_and_tuples_parse():
    config = apply_args(DEFAULTS, ['--note=123', '--betas=(0.9,0.99)'])
    assert config['note'] == '123' and config['betas'] == (0.9, 0.99)


def test_a_string_key_takes_a_bool_as_its_text_from_files_and_command_line(tmp_path):
    cfg = tmp_path / 'c.py'
    cfg.write_text('init_from = False\n')
    assert apply_args(DEFAULTS, [str(cfg)])['init_from'] == 'false'  # compile=True and --compile=true alike
    assert apply_args(DEFAULTS, ['--init_from=True'])['init_from'] == 'true'


def test_defaults_are_not_modified():
    apply_args(DEFAULTS, ['--max_iters=5'])
    assert DEFAULTS['max_iters'] == 100


@pytest.mark.parametrize('arg,fragment', [
    ('--weight_decy=0.1', "did you mean 'weight_decay'"),
    ('--max_iters=1.5', 'max_iters: expected an integer'),
    ('--max_iters=abc', 'max_iters: expected an integer'),
    ('--compile=1', 'compile: expected True or False'),
    ('--learning_rate=fast', 'learning_rate: expected a number'),
    ('--weight_decay', 'expected --key=value'),
    ('-lr=3', 'expected --key=value'),
])
def test_bad_overrides_raise_one_clear_config_error(arg, fragment):
    with pytest.raises(ConfigError, match=fragment.replace('(', r'\(')):
        apply_args(DEFAULTS, [arg])


def test_config_file_then_command_line_in_order(tmp_path):
    cfg = tmp_path / 'exp.py'
    cfg.write_text('import math\nweight_decay = 0.1\nmax_iters = 10 * 3\n_helper = math.pi\n')
    config = apply_args(DEFAULTS, [str(cfg), '--max_iters=7'])
    assert config['weight_decay'] == 0.1 and config['max_iters'] == 7
    assert apply_args(DEFAULTS, ['--max_iters=7', str(cfg)])['max_iters'] == 30


@pytest.mark.parametrize('text,fragment', [
    ('weight_decay = 0.1\nmax_iters = (\n', 'line 2: syntax error'),
    ('x = 1\nweigth_decay = 0.1\n', "unknown config key 'weigth_decay'"),
    ('x = 1\ncompile = 1 / 0\n', 'line 2: ZeroDivisionError'),
    ('max_iters = "ten"\n', 'max_iters: expected an integer'),
])
def test_bad_config_files_name_file_line_and_problem(tmp_path, text, fragment):
    cfg = tmp_path / 'bad.py'
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=fragment) as info:
        apply_args(dict(DEFAULTS, x=0), [str(cfg)])
    assert 'bad.py' in str(info.value)


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match='cannot read config file .*nope.py'):
        apply_args(DEFAULTS, [str(tmp_path / 'nope.py')])


def test_config_defaults_take_simple_module_level_values_only():
    namespace = dict(lr=0.1, name='x', _private=1, sys=sys, f=lambda: 0, obj=object())
    assert config_defaults(namespace) == dict(lr=0.1, name='x')


def test_run_name_from_the_config_file_and_the_command_line():
    config = {'weight_decay': 0.3, 'learning_rate': 6e-4, 'device': 'cpu', 'wd_params': 'wte wpe', 'seed': 0}
    assert run_name('gpt', config, ['config/gpt_cpu_demo.py', '--weight_decay=0.3', '--device=cpu']) == \
        'gpt_cpu_demo_wd0.3'
    assert run_name('gpt', config, ['--weight_decay=0.3', '--learning_rate=6e-4']) == 'gpt_wd0.3_lr0.0006'
    assert run_name('resnet', config, ['--wd_params=wte wpe']) == 'resnet_wd_paramswte-wpe'
    assert run_name('run_ft', config, ['config/gpt_finetune.py', '--seed=0'], files=False) == 'run_ft_seed0'


@pytest.mark.parametrize('key, bad, good, fragment', [
    ('batch_size', 0, 1, 'batch_size must be at least 1, got 0'),
    ('weight_decay', -0.1, 0.0, 'weight_decay must be >= 0'),
    ('weight_decay', float('nan'), 0.1, 'weight_decay must be >= 0, got nan'),
    ('beta2', 1.0, 0.999, 'beta2 must be in [0, 1)'),
    ('first_decay', 1.5, 1.0, 'first_decay must be in [0, 1]'),
    ('temperature', 0.0, 0.5, 'temperature must be > 0'),
    ('dtype', 'float8', 'bfloat16', "unknown dtype 'float8': expected one of auto, float32"),
])
def test_values_outside_their_declared_bounds_are_rejected(key, bad, good, fragment):
    check_bounds({key: good})
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        check_bounds({key: bad})


def test_checks_between_keys_apply_to_the_scripts_that_have_them():
    gpt = dict(warmup_iters=20, max_iters=10, decay_lr=True, lr_decay_iters=0, min_lr=0.0, learning_rate=1e-3)
    with pytest.raises(ConfigError, match=r'warmup_iters \(20\) is longer than training'):
        check_bounds(gpt)
    check_bounds({**gpt, 'max_iters': 0})  # max_iters=0: a run that only evaluates and saves
    check_bounds({'scale_inv': True})  # batch_norm is not a key of this script: the check does not apply
    with pytest.raises(ConfigError, match='scale_inv needs batch_norm=True'):
        check_bounds({'scale_inv': True, 'batch_norm': False})
    with pytest.raises(ConfigError, match="unknown model 'resnet50'"):
        check_bounds({'model': 'resnet50'}, choices={'model': ('resnet18', 'vgg16')})
    assert all(isinstance(b, tuple) or b in ('>=1', '>=0', '>0', '[0,1)', '[0,1]') for b in BOUNDS.values())


SCRIPT = textwrap.dedent('''
    """A toy training script."""
    import sys
    from configurator import configure
    batch_size = 12
    weight_decay = 0.0
    config, overrides = configure(globals(), __doc__)
    print(batch_size, weight_decay, sorted(overrides))
''')


def run_script(tmp_path, *args):
    script = tmp_path / 'toy.py'
    script.write_text(SCRIPT)
    root = str(__import__('pathlib').Path(__file__).resolve().parent.parent)
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                          env={'PYTHONPATH': root})


def test_script_applies_overrides_to_its_globals(tmp_path):
    out = run_script(tmp_path, '--weight_decay=0', '--batch_size=4')
    assert out.returncode == 0 and out.stdout.split() == ['4', '0.0', "['batch_size']"]


def test_script_exits_2_with_one_line_and_no_traceback(tmp_path):
    out = run_script(tmp_path, '--batch_sise=4')
    assert out.returncode == 2 and out.stdout == ''
    assert out.stderr.strip().count('\n') == 0 and 'Traceback' not in out.stderr
    assert "did you mean 'batch_size'" in out.stderr


def test_help_lists_every_key_with_its_default(tmp_path):
    out = run_script(tmp_path, '--help')
    assert out.returncode == 0 and 'A toy training script.' in out.stdout
    assert '--batch_size   = 12' in out.stdout and '--weight_decay = 0.0' in out.stdout


def test_a_bad_value_names_the_value_in_force_not_only_the_default(tmp_path):
    cfg = tmp_path / 'demo.py'
    cfg.write_text('max_iters = 1500\n')
    with pytest.raises(ConfigError, match=r"max_iters: expected an integer \(the value in force is 1500, "
                                          r"the default 100\), got 'abc'"):
        apply_args(DEFAULTS, [str(cfg), '--max_iters=abc'])
    with pytest.raises(ConfigError, match=r"\(the default is 100\)"):  # no config file changed it
        apply_args(DEFAULTS, ['--max_iters=abc'])
