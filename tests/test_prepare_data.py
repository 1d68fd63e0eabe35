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


# =============================================================================
# end of text datasets
# =============================================================================


# =============================================================================
# CIFAR
# =============================================================================


# =============================================================================
# end of CIFAR
# =============================================================================
