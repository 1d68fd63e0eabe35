import json

import pytest
import torch

import run_io


def test_log_lines_are_strict_json_and_a_torn_last_line_is_skipped(tmp_path):
    log = tmp_path / 'log.jsonl'
    run_io.append_log(log, {'iter': 0, 'loss': 2.5})
    run_io.append_log(log, {'iter': 10, 'loss': float('nan'), 'diverged': True})
    with open(log, 'a') as f:
        f.write('{"iter": 20, "lo')  # killed in the middle of a write
    for line in log.read_text().splitlines()[:2]:
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert run_io.read_log(log) == [{'iter': 0, 'loss': 2.5},
                                    {'iter': 10, 'loss': None, 'diverged': True}]


def test_trim_log_drops_records_after_the_checkpoint(tmp_path):
    log = tmp_path / 'log.jsonl'
    for it in (0, 10, 20, 30):
        run_io.append_log(log, {'iter': it})
    run_io.trim_log(log, 20)
    assert [r['iter'] for r in run_io.read_log(log)] == [0, 10, 20]


def test_a_failed_checkpoint_write_keeps_the_previous_one(tmp_path):
    path = tmp_path / 'ckpt.pt'
    run_io.save_checkpoint({'iter': 1, 'w': torch.ones(3)}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError('disk full')
    with pytest.raises(RuntimeError, match='disk full'):
        run_io.save_checkpoint({'iter': 2, 'bad': Unpicklable()}, path)
    assert run_io.load_checkpoint(path)['iter'] == 1
    assert [p.name for p in tmp_path.iterdir()] == ['ckpt.pt']  # no temporary file left


def test_prepare_run_dir_writes_the_resolved_config(tmp_path):
    out = run_io.prepare_run_dir(tmp_path / 'out' / 'run', {'lr': 0.1, 'betas': (0.9, 0.95)})
    assert json.loads((out / 'config.json').read_text()) == {'lr': 0.1, 'betas': [0.9, 0.95]}


@pytest.mark.parametrize('seconds,text', [(42.4, '42s'), (185, '3m05s'), (4320, '1h12m'),
                                          (float('inf'), '?')])
def test_format_duration(seconds, text):
    assert run_io.format_duration(seconds) == text
