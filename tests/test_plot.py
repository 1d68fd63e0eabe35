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
