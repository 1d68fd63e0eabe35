"""
Prepare a dataset under data/NAME/, from the network or from a local copy.

    python prepare_data.py shakespeare_char --source=../shared/data/tinyshakespeare/input.txt
    python prepare_data.py shakespeare          # GPT-2 BPE through tiktoken
    python prepare_data.py openwebtext          # the paper's LLM corpus (needs `datasets`)
    python prepare_data.py cifar10 --source=../shared/data/cifar10_mini/cifar-10-python.tar.gz
    python prepare_data.py cifar100

Text datasets become data/NAME/{train,val}.bin (uint16 token ids) and meta.json; CIFAR
becomes uint8 images (N, 32, 32, 3) and int64 labels. Downloads are checked and written
under a temporary name, then renamed, so an interrupted run never leaves a half file that
looks complete; if preparing fails or is interrupted, the files it wrote are removed again.
Exit status: 0 done, 2 bad input, 1 a fault met while working (no network), 130 interrupted.
"""
import hashlib
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent
DOWNLOADED = set()  # archives fetched and checked: kept even when preparing them fails later


class DataError(Exception):
    """A problem the user can fix; main() prints it as one line."""

    def __init__(self, message, status=2):
        super().__init__(message)
        self.status = status


def file_digest(path, algorithm):
    h = hashlib.new(algorithm)
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def check_file(path, size=None, md5=None, sha256=None):
    """Raise DataError unless the file has the expected size and digests."""
    if size is not None and os.path.getsize(path) != size:
        raise DataError(f"{path}: expected {size:,} bytes, found {os.path.getsize(path):,} "
                        f"(truncated or a different file)")
    for algorithm, expected in (('md5', md5), ('sha256', sha256)):
        if expected is not None and file_digest(path, algorithm) != expected:
            raise DataError(f"{path}: {algorithm} checksum does not match the published one "
                            f"(corrupted or a different file); delete it and download again")


def download(url, dest, size=None, md5=None, sha256=None, what=None):
    """Download url to dest (kept if already there and valid), checked, with a progress line."""
    dest = Path(dest)
    if dest.exists():
        check_file(dest, size, md5, sha256)
        DOWNLOADED.add(dest)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + '.part')
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, 'wb') as f:
            total = int(response.headers.get('Content-Length') or 0)
            done, t0 = 0, time.time()
            for chunk in iter(lambda: response.read(1 << 20), b''):
                f.write(chunk)
                done += len(chunk)
                if total:
                    rate = done / max(time.time() - t0, 1e-9)
                    print(f"\rdownloading {dest.name}: {done / total:6.1%} of {total / 1e6:.0f} MB, "
                          f"eta {(total - done) / rate:.0f}s", end='', flush=True)
        print()
        check_file(tmp, size, md5, sha256)
        os.replace(tmp, dest)
        DOWNLOADED.add(dest)
    except (urllib.error.URLError, OSError) as e:
        raise DataError(f"cannot download {url} ({getattr(e, 'reason', e)}); download "
                        f"{what or 'it'} yourself and pass --source=PATH", status=1) from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def write_atomic(path, data):
    """Write bytes (or a numpy array's bytes) to path through a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(path.name + '.tmp')
    with open(tmp, 'wb') as f:
        f.write(data if isinstance(data, bytes) else data.tobytes())
    os.replace(tmp, path)


# =============================================================================
# text datasets (GPT track)
# =============================================================================

SHAKESPEARE_URL = 'https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt'
SHAKESPEARE_SIZE = 1_115_394
SHAKESPEARE_SHA256 = '86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed'


def write_json_atomic(path, obj):
    import json
    write_atomic(path, (json.dumps(obj, indent=1) + '\n').encode())


def write_split(out_dir, train_ids, val_ids, meta):
    """train.bin / val.bin as uint16 token ids, then meta.json last: its presence means complete."""
    import numpy as np
    if meta['vocab_size'] > 65536:
        raise DataError(f"vocabulary of {meta['vocab_size']} does not fit uint16 ids")
    for split, ids in (('train', train_ids), ('val', val_ids)):
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) and not 0 <= ids.min() <= ids.max() < meta['vocab_size']:  # every id checked once, here
            raise DataError(f"{split} has token ids outside the vocabulary of {meta['vocab_size']}")
        write_atomic(out_dir / f'{split}.bin', ids.astype(np.uint16))
    write_json_atomic(out_dir / 'meta.json', meta)
    print(f"wrote {out_dir}: train {len(train_ids):,} tokens, val {len(val_ids):,} tokens, "
          f"vocabulary {meta['vocab_size']:,} ({meta['tokenizer']})")


def shakespeare_text(source, out_dir):
    if source is None:
        source = download(SHAKESPEARE_URL, out_dir / 'input.txt', size=SHAKESPEARE_SIZE,
                          sha256=SHAKESPEARE_SHA256, what=f"tiny Shakespeare ({SHAKESPEARE_URL})")
    if Path(source).is_dir():
        raise DataError(f"--source {source} is a folder; pass the text file (input.txt)")
    try:
        return Path(source).read_text(encoding='utf-8')
    except UnicodeDecodeError as e:
        raise DataError(f"--source {source} is not UTF-8 text (byte {e.start:,}); pass the text file "
                        f"(input.txt)") from None


def gpt2_encoding():
    """tiktoken's GPT-2 BPE; it downloads two files once, or reads them from TIKTOKEN_CACHE_DIR."""
    import tiktoken
    try:
        return tiktoken.get_encoding('gpt2')
    except Exception as e:  # tiktoken raises requests' or its own errors when offline
        raise DataError(f"cannot load the GPT-2 BPE files for tiktoken ({type(e).__name__}); put "
                        f"encoder.json and vocab.bpe in tiktoken's cache and set TIKTOKEN_CACHE_DIR "
                        f"(see ../shared/data/tiktoken_cache/README.md)", status=1) from None


def prepare_shakespeare_char(source, out_dir):
    """Characters of tiny Shakespeare; the first 90% of the text is train, the rest val."""
    text = shakespeare_text(source, out_dir)
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    ids = [stoi[c] for c in text]
    n = int(0.9 * len(ids))
    write_split(out_dir, ids[:n], ids[n:], dict(vocab_size=len(chars), tokenizer='char',
                                                 chars=''.join(chars)))


def prepare_shakespeare(source, out_dir):
    """Tiny Shakespeare in GPT-2 BPE: the text is split 90/10 first, then each part encoded."""
    text = shakespeare_text(source, out_dir)
    enc = gpt2_encoding()
    n = int(0.9 * len(text))
    write_split(out_dir, enc.encode_ordinary(text[:n]), enc.encode_ordinary(text[n:]),
                dict(vocab_size=enc.n_vocab, tokenizer='gpt2', eot_token=enc.eot_token))


def openwebtext_documents(source):
    """(number of documents, iterator of their texts): from --source or through `datasets`."""
    if source is not None and Path(source).is_dir() and not any(Path(source).glob('*.arrow')):
        files = sorted(p for p in Path(source).rglob('*.txt') if p.is_file())
        if not files:
            raise DataError(f"--source {source} holds no .txt documents (nor a saved `datasets` dataset)")
        return len(files), (p.read_text(encoding='utf-8', errors='replace') for p in files)
    try:
        import datasets  # only this dataset needs it; recent releases dropped script-based datasets
    except ImportError:
        raise DataError("openwebtext needs the `datasets` library (pip install 'datasets<4'), or pass "
                        "--source=DIR, a folder of .txt documents (the extracted OpenWebText archive) "
                        "or a dataset saved with save_to_disk") from None
    try:
        if source is not None:
            ds = datasets.load_from_disk(source)
            ds = ds['train'] if isinstance(ds, datasets.DatasetDict) else ds
        else:
            ds = datasets.load_dataset('openwebtext', split='train', trust_remote_code=True)
    except Exception as e:
        raise DataError(f"cannot load openwebtext through `datasets` ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}); download the OpenWebText archive "
                        f"(https://skylion007.github.io/OpenWebTextCorpus/), extract its .txt documents "
                        f"and pass --source=DIR", status=1) from None
    return len(ds), (row['text'] for row in ds)


def prepare_openwebtext(source, out_dir, chunk=1024, val_fraction=0.0005):
    """GPT-2 BPE of every document, each followed by the end-of-text token; a random 0.05% of
    documents (at least one) is val, as nanoGPT. Tokens stream to temporary files, renamed at the end."""
    import numpy as np
    n_docs, docs = openwebtext_documents(source)
    if n_docs < 2:
        raise DataError("openwebtext needs at least two documents (one goes to val)")
    enc = gpt2_encoding()
    is_val = np.zeros(n_docs, dtype=bool)
    is_val[np.random.default_rng(2357).permutation(n_docs)[:max(1, round(val_fraction * n_docs))]] = True
    tmp = {s: out_dir / f'{s}.bin.tmp' for s in ('train', 'val')}
    files = {s: open(p, 'wb') for s, p in tmp.items()}
    counts, t0, done, batch = dict(train=0, val=0), time.time(), 0, []
    threads = os.cpu_count() or 1
    try:
        for doc in docs:
            batch.append(doc)
            if len(batch) == chunk or done + len(batch) == n_docs:
                # tiktoken encodes a batch on `threads` threads (its Rust core releases the GIL)
                for ids in enc.encode_ordinary_batch(batch, num_threads=threads):
                    split = 'val' if is_val[done] else 'train'
                    ids.append(enc.eot_token)  # documents are separated by <|endoftext|>
                    if max(ids) >= enc.n_vocab:  # every id checked once, here, not at each training start
                        raise DataError(f"tiktoken gave token id {max(ids)} >= its vocabulary {enc.n_vocab}")
                    files[split].write(np.array(ids, dtype=np.uint16).tobytes())
                    counts[split] += len(ids)
                    done += 1
                batch = []
                rate = done / max(time.time() - t0, 1e-9)
                print(f"\rtokenising: {done:,}/{n_docs:,} documents, {counts['train'] + counts['val']:,} "
                      f"tokens, eta {(n_docs - done) / rate:.0f}s", end='', flush=True)
        print()
        for s in files:
            files[s].close()
            os.replace(tmp[s], out_dir / f'{s}.bin')
    finally:
        for s in files:
            files[s].close()
            if tmp[s].exists():
                tmp[s].unlink()
    write_json_atomic(out_dir / 'meta.json', dict(vocab_size=enc.n_vocab, tokenizer='gpt2',
                                                  eot_token=enc.eot_token))
    print(f"wrote {out_dir}: train {counts['train']:,} tokens, val {counts['val']:,} tokens")


def read_sequences(path, starts, block_size, device):
    """x, y of shape starts.shape + (block_size,) on the device: the sequences of block_size tokens of
    the token file path (uint16) that begin at the indices starts (a CPU tensor), and the same shifted
    by one token, the targets. The file is memory-mapped anew each time: one kept open grows in memory
    as it is read. On a GPU the copy goes from pinned memory, without making the CPU wait."""
    import numpy as np
    import torch
    data = np.memmap(path, dtype=np.uint16, mode='r')
    buf = torch.from_numpy(data[starts.numpy()[..., None] + np.arange(block_size + 1)].astype(np.int64))
    buf = (buf.pin_memory() if str(device).startswith('cuda') else buf).to(device, non_blocking=True)
    return buf[..., :-1], buf[..., 1:]


def open_text_dataset(data_path, name, block_size):
    """(meta, {'train': n_tokens, 'val': n_tokens}) of a prepared text dataset, checked as far as is
    cheap at every start (sizes, meta.json, the ids at both ends of each file); exit 2 otherwise."""
    import json

    import numpy as np

    from configurator import fail
    again = f"prepare it again: python prepare_data.py {name}"
    if not all((data_path / f).is_file() for f in ('train.bin', 'val.bin', 'meta.json')):
        if name not in TEXT_DATASETS:
            fail(f"unknown dataset {name!r} ({data_path} has no train.bin, val.bin and meta.json): "
                 f"prepare_data.py prepares {', '.join(TEXT_DATASETS)}")
        fail(f"{data_path} has no train.bin, val.bin and meta.json; run: python prepare_data.py {name}")
    try:
        meta = json.loads((data_path / 'meta.json').read_text())
    except (OSError, ValueError):
        meta = None
    if not (isinstance(meta, dict) and isinstance(meta.get('vocab_size'), int) and meta['vocab_size'] > 0):
        fail(f"{data_path / 'meta.json'} is unreadable or has no vocab_size; {again}")
    n_tokens = {}
    for split in ('train', 'val'):
        path = data_path / f'{split}.bin'
        if path.stat().st_size % 2:
            fail(f"{path} is truncated (an odd number of bytes); {again}")
        n_tokens[split] = path.stat().st_size // 2
        if n_tokens[split] <= block_size:
            fail(f"{path} holds {n_tokens[split]:,} tokens, not more than one block of {block_size}; "
                 f"lower --block_size or prepare more data")
        tokens = np.memmap(path, dtype=np.uint16, mode='r')
        for start in (0, max(0, len(tokens) - (1 << 22))):  # all of a small file, the ends of a large one
            if (top := int(tokens[start:start + (1 << 22)].max())) >= meta['vocab_size']:
                fail(f"{path} is corrupted: token id {top} is outside the vocabulary of "
                     f"{meta['vocab_size']}; {again}")
    return meta, n_tokens


# =============================================================================
# end of text datasets
# =============================================================================


# =============================================================================
# CIFAR (vision track)
# =============================================================================
# The official python-version tarballs: pickled dicts of uint8 rows (1024 R, 1024 G, 1024 B
# values, row-major) and labels, read here with pickle directly (no torchvision).

CIFAR = {
    'cifar10': dict(url='https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz',
                    size=170498071, md5='c58f30108f718f92721af3b95e74349a',
                    train=[f'data_batch_{i}' for i in range(1, 6)], test=['test_batch'],
                    meta='batches.meta', names=b'label_names', labels=b'labels'),
    'cifar100': dict(url='https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz',
                     size=169001437, md5='eb9058c3a382ffc7106e4002c42a8d85',
                     train=['train'], test=['test'],
                     meta='meta', names=b'fine_label_names', labels=b'fine_labels'),
}


def read_cifar_tarball(path, spec):
    """{'train': (images, labels), 'test': (...), 'classes': [...]} from an official tarball;
    images are uint8 (N, 32, 32, 3) (height, width, RGB), labels int64."""
    import pickle
    import tarfile

    import numpy as np
    import zlib
    broken = (tarfile.TarError, OSError, EOFError, zlib.error, pickle.UnpicklingError, ValueError)
    try:
        tar = tarfile.open(path, 'r:gz')
        members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
    except broken as e:
        raise DataError(f"{path} is not a readable .tar.gz archive ({e or type(e).__name__}): "
                        f"truncated or corrupted; download it again") from None
    with tar:
        def load(name):
            if name not in members:
                raise DataError(f"{path} has no file {name!r}: not the python version of CIFAR")
            try:
                return pickle.load(tar.extractfile(members[name]), encoding='bytes')
            except broken as e:
                raise DataError(f"{path}: {name} cannot be read ({e or type(e).__name__}): the archive "
                                f"is truncated or corrupted; download it again") from None
        out = {'classes': [c.decode() for c in load(spec['meta'])[spec['names']]]}
        for split in ('train', 'test'):
            batches = [load(name) for name in spec[split]]
            rows = np.concatenate([np.asarray(b[b'data'], dtype=np.uint8) for b in batches])
            labels = np.concatenate([np.asarray(b[spec['labels']], dtype=np.int64) for b in batches])
            if rows.ndim != 2 or rows.shape[1] != 3072 or len(rows) != len(labels):
                raise DataError(f"{path}: {split} data has shape {rows.shape}, expected (N, 3072)")
            # each row is the R plane, then G, then B: to (N, 3, 32, 32), then channels last
            out[split] = (rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels)
    return out


def write_npy(path, array):
    import io

    import numpy as np
    buffer = io.BytesIO()
    np.save(buffer, array)
    write_atomic(path, buffer.getvalue())


def prepare_cifar(name, source, out_dir):
    import json
    spec = CIFAR[name]
    if source is None:
        source = download(spec['url'], Path(out_dir) / Path(spec['url']).name, size=spec['size'],
                          md5=spec['md5'], what=f"the python version of {name} ({spec['url']})")
        print(f"{source}: md5 matches the published {spec['md5']}")
    elif file_digest(source, 'md5') == spec['md5']:
        print(f"{source}: md5 matches the official archive")
    else:
        print(f"note: {source} is not the official archive (md5 differs); using it as given")
    data = read_cifar_tarball(source, spec)
    for split in ('train', 'test'):
        images, labels = data[split]
        if labels.min() < 0 or labels.max() >= len(data['classes']):
            raise DataError(f"{source}: {split} labels outside 0..{len(data['classes']) - 1}")
        write_npy(Path(out_dir) / f'{split}_images.npy', images)
        write_npy(Path(out_dir) / f'{split}_labels.npy', labels)
        print(f"{split}: {len(labels):,} images {tuple(images.shape[1:])} uint8, "
              f"{len(set(labels.tolist()))} classes")
    meta = dict(classes=data['classes'], num_classes=len(data['classes']),
                train_size=len(data['train'][1]), test_size=len(data['test'][1]),
                source=str(source), layout='images (N, 32, 32, 3) uint8 RGB, labels int64')
    write_atomic(Path(out_dir) / 'meta.json', json.dumps(meta, indent=1).encode())
    print(f"wrote {out_dir}/{{train,test}}_{{images,labels}}.npy and meta.json")


def load_image_dataset(data_path, name):
    """{'train': (images, labels), 'test': (...)} of a prepared CIFAR set, as numpy arrays: uint8
    (N, 32, 32, 3) and int64 labels; exit 2 if an array is missing, truncated or mis-shaped."""
    import numpy as np

    from configurator import fail
    again = f"prepare it again: python prepare_data.py {name}"
    arrays = [data_path / f'{s}_{a}.npy' for s in ('train', 'test') for a in ('images', 'labels')]
    if not all(a.exists() for a in arrays):
        fail(f"dataset {name} not found in {data_path}: run `python prepare_data.py {name}` "
             f"(or with --source=PATH to a local copy of the tarball)")
    splits = {}
    for split in ('train', 'test'):
        try:
            images, labels = (np.load(data_path / f'{split}_{a}.npy') for a in ('images', 'labels'))
        except (OSError, ValueError, EOFError) as e:
            fail(f"{data_path}/{split}_*.npy is truncated or corrupted ({str(e).splitlines()[0][:100]}); "
                 f"{again}")
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
            fail(f"{data_path}/{split}_images.npy holds {images.dtype} {images.shape}, not uint8 "
                 f"(N, 32, 32, 3); {again}")
        if labels.ndim != 1 or len(labels) != len(images) or labels.dtype.kind not in 'iu' \
                or (labels < 0).any():
            fail(f"{data_path}/{split}_labels.npy does not hold {len(images)} labels >= 0; {again}")
        splits[split] = images, labels.astype(np.int64)
    return splits


def images_on_device(splits, device, n_train=0, heldout=False):
    """(splits, num_classes, mean, inv_std): the splits of load_image_dataset as tensors on the device,
    {'train': (x, y), 'test': (x, y)}, uint8 images (N, 3, 32, 32) and int64 labels. With n_train,
    'train' is a class-balanced subset (balanced_subset) and, with heldout, 'heldout' the rest of the
    training set: images the net never trains on, to choose settings with. mean and inv_std are the
    channel statistics of the full training set (channel_stats)."""
    import torch
    on_device = {s: (torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().to(device),
                     torch.from_numpy(y).to(device)) for s, (x, y) in splits.items()}
    (train_x, train_y), test_y = on_device['train'], on_device['test'][1]
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    mean, inv_std = channel_stats(train_x)
    if n_train:
        subset = torch.from_numpy(balanced_subset(splits['train'][1], n_train, num_classes)).to(device)
        if heldout:
            rest = torch.ones(len(train_y), dtype=torch.bool, device=device)
            rest[subset] = False
            on_device['heldout'] = (train_x[rest], train_y[rest])
        on_device['train'] = (train_x[subset], train_y[subset])
    return on_device, num_classes, mean, inv_std


def channel_stats(images):
    """(mean, 1/std) per channel of uint8 images (N, 3, H, W), in pixel units, shaped (1, 3, 1, 1) to
    normalise a batch; summed in float64 over chunks of 5,000 images, so no float copy of them all."""
    import torch
    sums = sum(torch.stack([c.double().sum((0, 2, 3)), c.double().square().sum((0, 2, 3))])
               for c in images.split(5000))
    mean, square = sums / (images.numel() // 3)
    return mean.float().view(1, 3, 1, 1), (square - mean ** 2).rsqrt().float().view(1, 3, 1, 1)


def balanced_subset(labels, n, num_classes):
    """Sorted indices of the first n/num_classes images of each class (numpy labels): a class-balanced
    subset in dataset order; exit 2 if the classes do not have that many."""
    import numpy as np

    from configurator import fail
    per_class, counts = n // num_classes, np.bincount(labels, minlength=num_classes)
    if n % num_classes or per_class > counts.min():
        fail(f"a balanced subset of {n} needs a multiple of {num_classes} and at most "
             f"{int(counts.min()) * num_classes} (the training set has {len(labels)} images)")
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(num_classes)]))


# =============================================================================
# end of CIFAR
# =============================================================================


TEXT_DATASETS = ('shakespeare_char', 'shakespeare', 'openwebtext')
DATASETS = {
    'shakespeare_char': prepare_shakespeare_char,
    'shakespeare': prepare_shakespeare,
    'openwebtext': prepare_openwebtext,
    'cifar10': lambda source, out_dir: prepare_cifar('cifar10', source, out_dir),
    'cifar100': lambda source, out_dir: prepare_cifar('cifar100', source, out_dir),
}


def main(argv):
    usage = f"usage: python prepare_data.py {{{'|'.join(DATASETS)}}} [--source=PATH] [--out=data]"
    if not argv or argv[0] in ('-h', '--help'):
        print(__doc__.strip() + '\n\n' + usage)
        return 0
    name, options = argv[0], {}
    for arg in argv[1:]:
        key, sep, value = arg.partition('=')
        if key not in ('--source', '--out') or not sep or not value:
            raise DataError(f"malformed argument {arg!r}; {usage}")
        options[key[2:]] = value
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; {usage}")
    source = options.get('source')
    if source is not None and not Path(source).exists():
        raise DataError(f"--source {source} does not exist")
    out_dir = Path(options.get('out', ROOT / 'data')) / name
    existed = out_dir.is_dir()
    before = {p: p.stat().st_mtime_ns for p in out_dir.iterdir()} if existed else {}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        why = e.strerror
        raise DataError(f"cannot create {out_dir} ({why}); pass --out=DIR, a writable folder") from None
    try:
        DATASETS[name](source, out_dir)
    except BaseException:  # failed or interrupted: remove what this run wrote (a checked download stays)
        for p in out_dir.iterdir():
            if p.is_file() and p not in DOWNLOADED and before.get(p) != p.stat().st_mtime_ns:
                p.unlink()
        if not existed and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main(sys.argv[1:]))
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.status)
    except PermissionError as e:  # root-owned data/, a read-only disk
        print(f"error: cannot write {e.filename} ({e.strerror}); pass --out=DIR, a writable folder",
              file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("\ninterrupted; the files this run had written are removed", file=sys.stderr)
        sys.exit(130)
