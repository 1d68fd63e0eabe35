import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import prepare_data

ROOT = Path(__file__).resolve().parent.parent


def run_prepare(*args):
    return subprocess.run([sys.executable, str(ROOT / 'prepare_data.py'), *args],
                          capture_output=True, text=True)


def test_unknown_dataset_and_malformed_arguments_exit_2_with_one_line(tmp_path):
    for args in (['imagenet'], ['cifar10', '--sorce=x'], ['cifar10', f'--source={tmp_path}/none']):
        out = run_prepare(*args)
        assert out.returncode == 2 and 'Traceback' not in out.stderr
        assert out.stderr.startswith('error: ') and out.stderr.count('\n') == 1


def test_download_failure_says_what_to_download_and_leaves_no_file(tmp_path):
    dest = tmp_path / 'x.tar.gz'
    with pytest.raises(prepare_data.DataError, match='--source') as info:
        prepare_data.download('http://127.0.0.1:9/x.tar.gz', dest, what='the archive')
    assert info.value.status == 1 and list(tmp_path.iterdir()) == []


def test_check_file_rejects_a_wrong_size_or_checksum(tmp_path):
    f = tmp_path / 'f.bin'
    f.write_bytes(b'hello')
    prepare_data.check_file(f, size=5, md5='5d41402abc4b2a76b9719d911017c592')
    with pytest.raises(prepare_data.DataError, match='expected 6 bytes'):
        prepare_data.check_file(f, size=6)
    with pytest.raises(prepare_data.DataError, match='md5 checksum'):
        prepare_data.check_file(f, md5='0' * 32)

# =============================================================================
# text datasets
# =============================================================================


def read_bin(path):
    return np.fromfile(path, dtype=np.uint16).tolist()


def read_meta(folder):
    import json
    return json.loads((folder / 'meta.json').read_text())


def test_shakespeare_char_from_a_local_file(shared_data, tmp_path):
    source = shared_data / 'tinyshakespeare' / 'input.txt'
    out = run_prepare('shakespeare_char', f'--source={source}', f'--out={tmp_path}')
    assert out.returncode == 0, out.stderr
    folder = tmp_path / 'shakespeare_char'
    meta = read_meta(folder)
    assert meta['tokenizer'] == 'char' and meta['vocab_size'] == len(meta['chars']) == 65
    train, val = read_bin(folder / 'train.bin'), read_bin(folder / 'val.bin')
    assert (len(train), len(val)) == (1_003_854, 111_540)  # 90/10 of 1,115,394 characters
    text = source.read_text()
    assert ''.join(meta['chars'][i] for i in train + val) == text
    assert sorted(p.name for p in folder.iterdir()) == ['meta.json', 'train.bin', 'val.bin']


def test_shakespeare_in_gpt2_bpe_through_tiktoken(shared_data, tmp_path):
    tiktoken = pytest.importorskip('tiktoken')
    source = shared_data / 'tinyshakespeare' / 'input.txt'
    prepare_data.prepare_shakespeare(source, tmp_path)
    meta = read_meta(tmp_path)
    assert meta == {'vocab_size': 50257, 'tokenizer': 'gpt2', 'eot_token': 50256}
    train, val = read_bin(tmp_path / 'train.bin'), read_bin(tmp_path / 'val.bin')
    assert len(train) + len(val) == 338_025  # the count in the fixture's README
    text = source.read_text()
    enc = tiktoken.get_encoding('gpt2')
    assert enc.decode(train) == text[:int(0.9 * len(text))] and enc.decode(val) == text[int(0.9 * len(text)):]


def test_openwebtext_from_a_folder_of_documents(shared_data, tmp_path):
    tiktoken = pytest.importorskip('tiktoken')
    docs = [f"Document {i}: the quick brown fox, {'jumps ' * i}over the lazy dog." for i in range(40)]
    (tmp_path / 'src' / 'sub').mkdir(parents=True)
    for i, d in enumerate(docs):
        (tmp_path / 'src' / ('sub' if i % 2 else '') / f'doc{i:03d}.txt').write_text(d)
    out = run_prepare('openwebtext', f"--source={tmp_path / 'src'}", f"--out={tmp_path / 'data'}")
    assert out.returncode == 0, out.stderr
    folder = tmp_path / 'data' / 'openwebtext'
    enc = tiktoken.get_encoding('gpt2')
    train, val = read_bin(folder / 'train.bin'), read_bin(folder / 'val.bin')
    assert train.count(enc.eot_token) == 39 and val.count(enc.eot_token) == 1  # one document is val
    assert train[-1] == val[-1] == enc.eot_token  # every document ends with <|endoftext|>
    pieces = enc.decode(train + val).split('<|endoftext|>')[:-1]
    assert sorted(pieces) == sorted(docs)
    assert sorted(p.name for p in folder.iterdir()) == ['meta.json', 'train.bin', 'val.bin']  # no .tmp left


def test_openwebtext_without_a_source_says_what_to_do(tmp_path):
    try:
        import datasets  # noqa: F401
        pytest.skip('`datasets` is installed: this would try the network')
    except ImportError:
        pass
    out = run_prepare('openwebtext', f'--out={tmp_path}')
    assert out.returncode == 2 and 'Traceback' not in out.stderr and out.stderr.count('\n') == 1
    assert '--source=DIR' in out.stderr and 'datasets' in out.stderr



# =============================================================================
# end of text datasets
# =============================================================================


# =============================================================================
# CIFAR
# =============================================================================


# =============================================================================
# end of CIFAR
# =============================================================================
