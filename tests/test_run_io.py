import json
import os
from pathlib import Path

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


def test_auto_device_is_concrete_and_a_missing_gpu_is_one_line(capsys):
    device, dtype, use_compile = run_io.resolve_device('auto', 'auto', 'auto')
    assert device in ('cpu', 'cuda', 'mps') and dtype in ('float32', 'bfloat16')
    assert use_compile == (device == 'cuda')
    assert run_io.resolve_device('cpu', 'float16', 'false') == ('cpu', 'float16', False)
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit) as info:
            run_io.resolve_device('cuda:1', 'auto', 'auto')
        assert info.value.code == 2 and 'no CUDA GPU' in capsys.readouterr().err


def test_the_shape_of_a_checkpoint_wins_unless_an_override_contradicts_it(capsys):
    checkpoint = {'config': {'n_layer': 2, 'n_embd': 32, 'lr': 0.1}}
    config = {'n_layer': 12, 'n_embd': 32, 'lr': 0.5}
    assert run_io.shape_from(checkpoint, config, ('n_layer', 'n_embd'), overrides={}) == \
        {'n_layer': 2, 'n_embd': 32}
    with pytest.raises(SystemExit):
        run_io.shape_from(checkpoint, config, ('n_layer', 'n_embd'), overrides={'n_layer': 12})
    assert 'the checkpoint has n_layer=2, this run asks for n_layer=12' in capsys.readouterr().err


def test_the_start_line_names_every_value_that_differs_from_the_checkpoints_run():
    checkpoint = {'config': {'weight_decay': 0.1, 'lr': 0.1, 'seed': 0, 'out_dir': 'a'}, 'iter': 600}
    config = {'weight_decay': 0.0, 'lr': 0.1, 'seed': 0, 'out_dir': 'out/x', 'init_from': 'resume'}
    line = run_io.start_message(checkpoint, config, resumed=True)
    assert line == "resuming out/x/ckpt.pt at iteration 600 (weight_decay 0.1 -> 0.0)"


@pytest.mark.parametrize('state, init_from, fragment', [
    ('empty', 'resume', 'cannot resume: '),
    ('log only', 'resume', 'was stopped before its first checkpoint'),
    ('a run', 'scratch', 'already holds a run'),
    ('a file', 'scratch', 'is not a folder'),
])
def test_a_run_folder_that_cannot_take_the_run_is_one_line(tmp_path, capsys, state, init_from, fragment):
    out = tmp_path / 'run'
    if state in ('log only', 'a run'):
        out.mkdir()
        (out / 'log.jsonl').write_text('{"iter": 0}\n')
    if state == 'a run':
        (out / 'ckpt.pt').write_bytes(b'x')
    if state == 'a file':
        out.write_text('not a folder')
        out = out / 'run'
    with pytest.raises(SystemExit) as info:
        run_io.check_run_dir(out, init_from)
    err = capsys.readouterr().err
    assert info.value.code == 2 and fragment in err and err.count('\n') == 1


class Collective(Exception):
    pass


def test_every_collective_takes_its_tensor_on_the_device_the_run_trains_on(monkeypatch, tmp_path):
    # NCCL serves CUDA tensors only; gloo, the CPU tests' backend, serves any. A flag built on the CPU of a
    # GPU run passes every CPU test and crashes the first GPU run at its first collective. Here the run's
    # device is 'meta', standing for the GPU: a collective handed a tensor anywhere else is that bug.
    import torch.distributed as dist
    dist.init_process_group('gloo', store=dist.FileStore(str(tmp_path / 'store'), 1), rank=0, world_size=1)
    try:
        monkeypatch.setattr(run_io, 'run_device', 'meta')
        devices = []

        def recording(tensor, op=None):
            devices.append(tensor.device.type)
            raise Collective  # a meta tensor holds no value to read back: stop here
        monkeypatch.setattr(dist, 'all_reduce', recording)
        line_at = lambda it: {'iter': it}
        stop = run_io.GracefulStop()
        calls = {
            'any_process(bool)': lambda: run_io.any_process(True),
            'any_process(tensor)': lambda: run_io.any_process(torch.ones((), dtype=torch.bool)),
            'stop_if_diverged, nothing pending (every eval)': lambda: run_io.stop_if_diverged(
                [], 10, tmp_path / 'log.jsonl', line_at),
            'stop_if_diverged, losses': lambda: run_io.stop_if_diverged(
                [torch.ones((), device='meta')], 10, tmp_path / 'log.jsonl', line_at),
            'GracefulStop.requested': lambda: stop.requested(),
            'mean_over_processes': lambda: run_io.mean_over_processes(torch.ones(())),
        }
        for name, call in calls.items():
            with pytest.raises(Collective):
                call()
            assert devices[-1] == 'meta', name
    finally:
        dist.destroy_process_group()


def test_the_training_scripts_make_their_collectives_through_run_io():
    # what the test above checks is then every collective the scripts make, besides DDP's own gradients
    from pathlib import Path
    root = Path(run_io.__file__).parent
    for script in ('train_gpt.py', 'train_resnet.py'):
        text = (root / script).read_text()
        assert 'torch.distributed' not in text and 'dist.' not in text, script


def wandb_history(run_dir):
    """{step: {key: value}} of every offline W&B run under run_dir: the rows the real library wrote to its
    run-*.wandb file (LevelDB-style 32 KiB blocks of protobuf records after a 7-byte header)."""
    import struct
    from wandb.proto import wandb_internal_pb2
    rows = {}
    for path in Path(run_dir).glob('wandb/offline-run-*/run-*.wandb'):
        data, pos, parts = path.read_bytes(), 7, b''
        while pos + 7 <= len(data):
            left = 32768 - pos % 32768
            _, length, kind = struct.unpack('<IHB', data[pos:pos + 7]) if left >= 7 else (0, 0, 0)
            if length == 0 and kind == 0:  # the rest of a block is padding
                pos += left
                continue
            parts, pos = parts + data[pos + 7:pos + 7 + length], pos + 7 + length
            if kind in (1, 4):  # a whole record, or the last piece of one
                record = wandb_internal_pb2.Record()
                record.ParseFromString(parts)
                parts = b''
                if record.WhichOneof('record_type') == 'history':
                    items = {i.nested_key[0]: json.loads(i.value_json) for i in record.history.item}
                    rows[record.history.step.num] = items
    return rows


def test_wandb_log_sends_every_log_record_to_weights_and_biases(char_data, tmp_path):
    pytest.importorskip('wandb', reason="wandb is an optional dependency (CI installs it)")
    import subprocess
    import sys
    root = Path(run_io.__file__).parent
    env = {**os.environ, 'WANDB_MODE': 'offline', 'WANDB_DIR': str(tmp_path), 'WANDB_SILENT': 'true',
           'OMP_NUM_THREADS': '1'}
    run = tmp_path / 'run'
    out = subprocess.run([sys.executable, str(root / 'train_gpt.py'), '--dataset=shakespeare_char',
                          f'--data_dir={char_data}', f'--out_dir={run}', '--device=cpu', '--n_layer=1',
                          '--n_head=2', '--n_embd=16', '--block_size=16', '--batch_size=4',
                          '--gradient_accumulation_steps=1', '--vocab_multiple=1', '--eval_iters=2',
                          '--max_iters=12', '--warmup_iters=2', '--log_interval=3', '--eval_interval=6',
                          '--wandb_log=True'], cwd=root, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = wandb_history(tmp_path)
    log = run_io.read_log(run / 'log.jsonl')
    assert sorted(rows) == sorted({r['iter'] for r in log}) == [0, 3, 6, 9, 12]
    for record in log:  # an eval line and a training line of one iteration share its row
        row = rows[record['iter']]
        assert {k: row[k] for k in record} == record


def test_wandb_log_without_wandb_is_one_line_before_the_run_folder_exists(tmp_path, monkeypatch, capsys):
    import sys
    monkeypatch.setitem(sys.modules, 'wandb', None)  # as if not installed: importing it fails
    with pytest.raises(SystemExit) as stop:
        run_io.prepare_run_dir(tmp_path / 'run', {'wandb_log': True, 'wandb_project': 'p'})
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith('error: wandb_log=True needs the wandb package')
    assert not (tmp_path / 'run').exists()
