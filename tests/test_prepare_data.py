from pathlib import Path

import numpy as np
import pytest

import prepare_data
from conftest import run_script

ROOT = Path(__file__).resolve().parent.parent


def run_prepare(*args):
    return run_script('prepare_data.py', *args)  # in this process (conftest.py)


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

CIFAR10_CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']


def test_cifar10_from_the_real_subset_has_the_right_shapes_labels_and_channel_order(shared_data, tmp_path):
    import json
    import pickle
    import tarfile
    source = shared_data / 'cifar10_mini' / 'cifar-10-python.tar.gz'
    out = run_prepare('cifar10', f'--source={source}', f'--out={tmp_path}')
    assert out.returncode == 0, out.stderr
    assert 'not the official archive' in out.stdout  # the subset's md5 is not the published one
    d = tmp_path / 'cifar10'
    train_x, train_y = np.load(d / 'train_images.npy'), np.load(d / 'train_labels.npy')
    test_x, test_y = np.load(d / 'test_images.npy'), np.load(d / 'test_labels.npy')
    assert train_x.shape == (5000, 32, 32, 3) and train_x.dtype == np.uint8
    assert test_x.shape == (1000, 32, 32, 3) and train_y.dtype == np.int64
    assert np.bincount(train_y).tolist() == [500] * 10 and np.bincount(test_y).tolist() == [100] * 10
    meta = json.loads((d / 'meta.json').read_text())
    assert meta['classes'] == CIFAR10_CLASSES and meta['num_classes'] == 10
    with tarfile.open(source) as tar:  # the pickles themselves: row = 1024 R, then G, then B values
        batch = pickle.load(tar.extractfile('cifar-10-batches-py/data_batch_2'), encoding='bytes')
        test = pickle.load(tar.extractfile('cifar-10-batches-py/test_batch'), encoding='bytes')
    row = batch[b'data'][7]
    for c in range(3):
        assert np.array_equal(train_x[1007, :, :, c], row[1024 * c:1024 * (c + 1)].reshape(32, 32))
    assert train_y[1000:2000].tolist() == list(batch[b'labels'])
    assert np.array_equal(test_x[:, :, :, 2], test[b'data'][:, 2048:].reshape(-1, 32, 32))
    assert test_y.tolist() == list(test[b'labels'])


def write_fake_cifar100(path):
    """A tiny archive in the CIFAR-100 python layout: fine and coarse labels, 100 fine names."""
    import io
    import pickle
    import tarfile
    rng = np.random.default_rng(0)

    def add(tar, name, obj):
        data = pickle.dumps(obj, protocol=2)
        info = tarfile.TarInfo(f'cifar-100-python/{name}')
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with tarfile.open(path, 'w:gz') as tar:
        for split, n in (('train', 30), ('test', 10)):
            add(tar, split, {b'data': rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                             b'fine_labels': [(7 * i) % 100 for i in range(n)],
                             b'coarse_labels': [i % 20 for i in range(n)]})
        add(tar, 'meta', {b'fine_label_names': [f'class{i}'.encode() for i in range(100)],
                          b'coarse_label_names': [f'super{i}'.encode() for i in range(20)]})


def test_cifar100_uses_the_fine_labels_and_their_100_names(tmp_path):
    import json
    write_fake_cifar100(tmp_path / 'c100.tar.gz')
    out = run_prepare('cifar100', f'--source={tmp_path}/c100.tar.gz', f'--out={tmp_path}')
    assert out.returncode == 0, out.stderr
    d = tmp_path / 'cifar100'
    assert np.load(d / 'train_labels.npy').tolist() == [(7 * i) % 100 for i in range(30)]
    assert np.load(d / 'test_images.npy').shape == (10, 32, 32, 3)
    assert json.loads((d / 'meta.json').read_text())['num_classes'] == 100


def test_an_archive_that_is_not_cifar_exits_2_with_one_line(tmp_path):
    bad = tmp_path / 'bad.tar.gz'
    bad.write_bytes(b'not a tarball')
    write_fake_cifar100(tmp_path / 'c100.tar.gz')
    for name, source in (('cifar10', bad), ('cifar10', tmp_path / 'c100.tar.gz')):
        out = run_prepare(name, f'--source={source}', f'--out={tmp_path}')
        assert out.returncode == 2 and 'Traceback' not in out.stderr
        assert out.stderr.startswith('error: ') and out.stderr.count('\n') == 1
    assert not (tmp_path / 'cifar10' / 'train_images.npy').exists()


# =============================================================================
# end of CIFAR
# =============================================================================
