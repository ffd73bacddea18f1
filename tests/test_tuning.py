"""The tuning cache: round trip, another machine's cache, a corrupt one, choosing."""
import json
import warnings

import pytest

from grubench import tuning

HERE = {"vendor": "GenuineIntel", "cpu_model": "Xeon", "isa": "avx512f", "cores": 2,
        "blas_coretype": "SkylakeX", "isa_env": {}}
ELSEWHERE = dict(HERE, isa="avx2", blas_coretype="Haswell")


def test_round_trip(tmp_path):
    cache = tuning.TuningCache.for_this_machine(tmp_path, HERE)
    choice = tuning.Choice("mkl", {"tiles": 2e-3, "mkl": 1e-3}, "2026-12-03T00:00:00+00:00")
    cache.put("numba-cpu", "product", "gru/32,384", choice)
    path = cache.save()
    assert path.name.startswith("tuning-genuineintel-xeon-avx512f-2c-skylakex")
    again = tuning.TuningCache.for_this_machine(tmp_path, HERE)
    assert again.get("numba-cpu", "product", "gru/32,384") == choice
    assert again.count("numba-cpu") == 1 and again.count("torch-cpu") == 0


def test_two_writers_keep_both_choices(tmp_path):
    first = tuning.TuningCache.for_this_machine(tmp_path, HERE)
    second = tuning.TuningCache.for_this_machine(tmp_path, HERE)
    first.put("numba-cpu", "product", "a", tuning.Choice("tiles", {"tiles": 1.0}, "t"))
    second.put("numba-cpu", "product", "b", tuning.Choice("mkl", {"mkl": 1.0}, "t"))
    first.save()
    second.save()
    stored = tuning.TuningCache.for_this_machine(tmp_path, HERE)
    assert {k for k in stored.choices["numba-cpu"]["product"]} == {"a", "b"}


def test_foreign_cache_is_ignored_with_a_warning(tmp_path):
    cache = tuning.TuningCache.for_this_machine(tmp_path, HERE)
    cache.put("numba-cpu", "product", "k", tuning.Choice("mkl", {"mkl": 1.0}, "t"))
    path = cache.save()
    # the same file name read as another machine's: e.g. copied from a different host
    foreign = json.loads(path.read_text())
    foreign["fingerprint"] = ELSEWHERE
    path.write_text(json.dumps(foreign))
    with pytest.warns(RuntimeWarning, match="made on another machine"):
        assert tuning.TuningCache.for_this_machine(tmp_path, HERE).choices == {}


@pytest.mark.parametrize("text", ["{not json", json.dumps({"schema": "other/9"}),
                                  json.dumps({"schema": tuning.SCHEMA, "fingerprint": HERE,
                                              "choices": {"numba-cpu": {"product": {
                                                  "k": {"value": "mkl"}}}}})])
def test_corrupt_cache_is_ignored_with_a_warning(tmp_path, text):
    path = tuning.TuningCache.for_this_machine(tmp_path, HERE).path
    path.write_text(text)
    with pytest.warns(RuntimeWarning, match="cannot be read"):
        cache = tuning.TuningCache.for_this_machine(tmp_path, HERE)
    assert cache.choices == {}
    cache.put("numba-cpu", "product", "k", tuning.Choice("tiles", {"tiles": 1.0}, "t"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # rewriting a corrupt file warns no more
        cache.save()
    assert tuning.TuningCache.for_this_machine(tmp_path, HERE).count("numba-cpu") == 1


def test_choose_measures_once_then_reads(tmp_path):
    calls = {"slow": 0, "fast": 0}

    def slow():
        calls["slow"] += 1
        sum(range(20000))

    def fast():
        calls["fast"] += 1

    cache = tuning.TuningCache.for_this_machine(tmp_path, HERE)
    assert tuning.choose(cache, "numba-cpu", "product", "k", {"slow": slow, "fast": fast}) == "fast"
    stored = cache.get("numba-cpu", "product", "k")
    assert stored.seconds["slow"] > stored.seconds["fast"]
    measured = dict(calls)
    fresh = tuning.TuningCache.for_this_machine(tmp_path, HERE)
    assert tuning.choose(fresh, "numba-cpu", "product", "k", {"slow": slow, "fast": fast}) == "fast"
    assert calls == measured                    # read back, not measured again
    # a stored value no longer among the candidates is measured afresh
    assert tuning.choose(fresh, "numba-cpu", "product", "k", {"slow": slow}) == "slow"


def test_off_takes_the_first_candidate_unmeasured(monkeypatch):
    monkeypatch.setenv(tuning.DIR_ENV, "off")
    assert not tuning.enabled()
    assert tuning.choose(None, "numba-cpu", "product", "k",
                         {"tiles": lambda: 1 / 0, "mkl": lambda: 1 / 0}) == "tiles"


@pytest.fixture
def machine_cache_in(tmp_path, monkeypatch):
    monkeypatch.setenv(tuning.DIR_ENV, str(tmp_path))
    tuning.machine_cache.cache_clear()
    yield tmp_path
    tuning.machine_cache.cache_clear()


def test_a_backend_tunes_on_first_use_then_reads_its_choice(machine_cache_in, monkeypatch):
    from grubench import backends
    from grubench.case import Case

    numba_cpu = backends.get("numba-cpu")
    args = Case("gru", 4, 8, 5, 16, mode="training").make_args(seed=1)
    values = numba_cpu.tunable(args).get("product")
    if values is None:
        pytest.skip("numba-cpu has one product here (no MKL)")
    prepared = numba_cpu.prepare(args)
    stored = tuning.machine_cache().get("numba-cpu", "product", tuning.case_key(args))
    assert prepared.product == stored.value and set(stored.seconds) == set(values)
    assert tuning.case_key(args) == "gru/reset_after/training/8,5,16/float32/tany"
    assert list(machine_cache_in.glob("tuning-*.json"))

    def no_measuring(*_args, **_kwargs):
        raise AssertionError("measured again")

    monkeypatch.setattr(tuning, "measure", no_measuring)
    tuning.machine_cache.cache_clear()            # a new process reads the file
    assert numba_cpu.prepare(args).product == stored.value
    assert numba_cpu.prepare(args, product="tiles").product == "tiles"   # asked for: kept
    big = Case("gru", 1000, 64, 512, 512).make_args(seed=1)
    assert numba_cpu.tuned(big) == {}             # over the first-use budget: the default


def test_tuning_off_leaves_the_default(monkeypatch):
    from grubench import backends
    from grubench.case import Case

    monkeypatch.setenv(tuning.DIR_ENV, "off")
    tuning.machine_cache.cache_clear()
    args = Case("lstm", 3, 8, 4, 16).make_args()
    assert backends.get("numba-cpu").tuned(args) == {}
    assert backends.get("numba-cpu").prepare(args).product == "tiles"
    tuning.machine_cache.cache_clear()
