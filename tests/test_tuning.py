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
