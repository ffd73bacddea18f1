"""Suites: built-in cases, DeepBench scaling, size parsing, TOML user suites, overrides."""
import pytest

from grubench import suites
from grubench.case import Case


def test_builtin_names_and_unknown_suite():
    assert suites.names() == ["quick", "default", "deepbench", "gpu"]
    with pytest.raises(ValueError, match="unknown suite 'nope'; valid names: quick, default"):
        suites.get("nope")


def test_default_suite_cases():
    cases = suites.get("default").cases()
    single = [c for c in cases if not c.is_network and not c.variable_lengths]
    # 3 sizes x (GRU reset_after + LSTM) x 2 modes, and the full-length twin of the
    # variable-length case
    assert len(single) == 13
    assert {c.cell for c in cases} == {"gru", "lstm"}
    assert {c.variant for c in cases if c.cell == "lstm"} == {"-"}
    assert {c.mode for c in cases} == {"inference", "training"}
    # one stacked bidirectional case, one variable-length case beside its twin
    assert [c.key for c in cases if c.is_network] == [
        "gru/reset_after/layers2/bidirectional/training/50,16,128,128/float32"]
    varied = [c for c in cases if c.variable_lengths]
    assert [c.key for c in varied] == [
        "gru/reset_after/lengths-uniform/inference/100,64,128,128/float32"]
    assert Case("gru", 100, 64, 128, 128) in cases


def test_variants_multiply_gru_cases_only():
    suite = suites.get("quick").with_overrides(variants=suites.VARIANTS)
    cases = suite.cases()
    assert sum(c.cell == "gru" for c in cases) == 2 * sum(c.cell == "lstm" for c in cases)


def test_deepbench_sizes_and_scale():
    full = suites.get("deepbench")
    gru_train = full.groups[0]
    assert (1500, 32, 2816, 2816) in gru_train.sizes and (1, 32, 512, 512) in gru_train.sizes
    assert len(gru_train.sizes) == 19 and len(full.groups[1].sizes) == 54
    scaled = suites.get("deepbench", scale=0.01)
    assert (15, 32, 2816, 2816) in scaled.groups[0].sizes
    assert (1, 32, 512, 512) in scaled.groups[0].sizes      # T never drops below 1
    for bad in (0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="--scale must be a finite number > 0"):
            suites.get("deepbench", scale=bad)


def test_overrides_replace_sizes_and_settings():
    suite = suites.get("default").with_overrides(sizes=[(5, 1, 2, 3)], cells=["gru"],
                                                 modes=["training"], threads=(1, 2),
                                                 min_runs=None)
    # the extras (the network and lengths sample) are left out: the run asked for sizes
    assert [c.key for c in suite.cases()] == ["gru/reset_after/training/5,1,2,3/float32"]
    assert suite.threads == (1, 2) and suite.min_runs == 5
    # other overrides reach the extras too
    inference = suites.get("default").with_overrides(modes=["inference"], dtype="float64")
    assert sum(c.is_network for c in inference.cases()) == 1
    assert {(c.mode, c.dtype) for c in inference.cases()} == {("inference", "float64")}
    assert suites.get("default").with_overrides(cells=["gru"]).extras == ()


def test_network_overrides_apply_to_every_group():
    suite = suites.get("quick").with_overrides(layers=3, directions=2, lengths="sorted",
                                               cells=["lstm"], modes=["inference"])
    cases = suite.cases()
    assert len(cases) == 2
    assert all((c.layers, c.directions, c.lengths) == (3, 2, "sorted") for c in cases)
    unchanged = suites.get("quick").with_overrides(layers=None, lengths=None)
    assert unchanged.cases() == suites.get("quick").cases()


@pytest.mark.parametrize("given, message", [
    (dict(layers=0), "layers must be a positive integer, got 0"),
    (dict(directions=3), "directions must be 1 or 2"),
    (dict(lengths="ragged"), "unknown lengths 'ragged'; valid names: full, uniform"),
])
def test_check_network(given, message):
    with pytest.raises(ValueError, match=message):
        suites.check_network(**given)
    suites.check_network(layers=2, directions=2, lengths="short-tail")


@pytest.mark.parametrize("text, message", [
    ("1,2,3", "must be four comma-separated integers"),
    ("1,2,x,4", "I='x' is not an integer"),
    ("1,0,3,4", "B='0' must be >= 1"),
    ("10,2,3,4.5", "H='4.5' is not an integer"),
])
def test_parse_size_names_the_bad_token(text, message):
    with pytest.raises(ValueError, match=message):
        suites.parse_size(text)


def test_parse_size():
    assert suites.parse_size("100,16,256,512") == (100, 16, 256, 512)


def test_toml_suite(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text("""
name = "mine"
threads = [1, 2]
min_runs = 3
[[group]]
cells = ["gru"]
variants = ["reset_after", "reset_before"]
modes = ["inference"]
sizes = [[10, 2, 4, 8]]
[[group]]
cells = ["lstm"]
sizes = [[20, 1, 4, 4]]
[[group]]
cells = ["gru"]
modes = ["training"]
sizes = [[20, 1, 4, 4]]
layers = 2
directions = 2
lengths = "short-tail"
""")
    suite = suites.get(str(path))
    assert suite.name == "mine" and suite.threads == (1, 2) and suite.min_runs == 3
    cases = suite.cases()
    assert [(c.cell, c.variant, c.mode, c.size) for c in cases] == [
        ("gru", "reset_after", "inference", (10, 2, 4, 8)),
        ("gru", "reset_before", "inference", (10, 2, 4, 8)),
        ("lstm", "-", "inference", (20, 1, 4, 4)),
        ("lstm", "-", "training", (20, 1, 4, 4)),
        ("gru", "reset_after", "training", (20, 1, 4, 4)),
    ]
    assert [(c.layers, c.directions, c.lengths) for c in cases] == [(1, 1, "full")] * 4 + [
        (2, 2, "short-tail")]


@pytest.mark.parametrize("text, message", [
    ("sizes = [[1, 2, 3]]", "four comma-separated"),
    ("cells = ['gru']", "every group needs sizes"),
    ("sizes = [[1, 2, 3, 4]]\ncells = ['rnn']", "unknown cell 'rnn'; valid names: gru, lstm"),
    ("sizes = [[1, 2, 3, 4]]\ndtype = 'float16'", "unknown dtype 'float16'"),
    ("sizes = [[1, 2, 3, 4]]\nmin_runs = 0", "min_runs must be a positive integer"),
    ("sizes = [[1, 2, 3, 4", "not valid TOML"),
    ("group = {sizes=[[2,1,4,4]]}", "group must be a list of tables"),
    ("group = [1, 2]", "group must be a list of tables"),
    ("sizes = [[2,1,4,4]]\nthreads = 2", "threads must be a list of positive integers"),
    ("sizes = [[2,1,4,4]]\nmin_time = -1", r"min_time must be seconds in \(0, 3600\]"),
    ("sizes = [[2,1,4,4]]\nmin_time = 'fast'", "min_time must be seconds"),
    ("sizes = [[2,1,4,4]]\ndevice = 'tpu'", "unknown device 'tpu'"),
    ("sizes = [[2,1,4,4]]\nbackends = 3", "backends must be a list of names"),
    ("sizes = 5", "every group needs sizes"),
    ("sizes = [[2,1,4,4]]\nthreads = [99999]", r"threads \[99999\] exceed this machine's"),
    ("sizes = [[2,1,4,4]]\nmin_tme = 0.5", "unknown key 'min_tme' in the suite; valid keys: name"),
    ("[[group]]\nsizes = [[2,1,4,4]]\nvariant = ['reset_before']",
     "unknown key 'variant' in a \\[\\[group\\]\\]"),
    ("name = 'x'\nsizes = [[2,1,4,4]]\n[[group]]\nsizes = [[2,1,4,4]]", "unknown key 'sizes' in the suite"),
    ("sizes = [[2,1,4,4]]\ncase_timeout = 0", r"case_timeout must be seconds in \(0, 86400\]"),
    ("sizes = [[2,1,4,4]]\nseed = -1", "seed must be an integer >= 0"),
    ("sizes = [[2,1,4,4]]\nlayers = 0", "layers must be a positive integer, got 0"),
    ("sizes = [[2,1,4,4]]\nlayers = '2'", "layers must be a positive integer"),
    ("sizes = [[2,1,4,4]]\ndirections = 3", "directions must be 1 or 2"),
    ("sizes = [[2,1,4,4]]\nlengths = 'ragged'", "unknown lengths 'ragged'"),
])
def test_bad_toml_suites_are_named_errors(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text + "\n")
    with pytest.raises(ValueError, match=message):
        suites.load_toml(path)


def test_missing_toml_file():
    with pytest.raises(ValueError, match="cannot read suite file"):
        suites.get("/nonexistent/suite.toml")


def test_a_single_name_in_toml_is_one_name_not_its_letters(tmp_path):
    path = tmp_path / "one.toml"
    path.write_text("sizes = [[2,1,4,4]]\ncells = 'gru'\nmodes = 'inference'\n")
    suite = suites.load_toml(path)
    assert suite.groups[0].cells == ("gru",) and suite.groups[0].modes == ("inference",)


def test_toml_case_timeout_and_seed_are_read(tmp_path):
    path = tmp_path / "timed.toml"
    path.write_text("sizes = [[2,1,4,4]]\ncase_timeout = 12.5\nseed = 7\n")
    suite = suites.load_toml(path)
    assert suite.case_timeout == 12.5 and suite.seed == 7


def test_deepbench_holds_the_published_sizes():
    """DeepBench's GRU training (19 sizes, N = 32 but two), GRU inference (54, N = 1, 2, 4)
    and LSTM (22) sizes, (T, N, I = H, H); sums by hand from DeepBench's tables."""
    training, inference, lstm = suites.get("deepbench").groups

    def sums(group):
        return (len(group.sizes), *(sum(size[i] for size in group.sizes) for i in range(4)))
    assert sums(training) == (19, 14249, 640, 38400, 38400)
    assert sums(inference) == (54, 38247, 126, 112128, 112128)
    assert sums(lstm) == (22, 1000, 1128, 36096, 36096)
    assert [(g.cells, g.modes) for g in (training, inference, lstm)] == [
        (("gru",), ("training",)), (("gru",), ("inference",)),
        (("lstm",), ("inference", "training"))]       # one LSTM size set for both modes
    deepbench = suites.get("deepbench", scale=0.5)
    assert (deepbench.name, deepbench.description) == (
        "deepbench", "DeepBench GRU/LSTM sizes, I = H, T x 0.5")
    # large cases: 3 runs, no minimum time, half an hour each, any device's backends
    assert (deepbench.min_runs, deepbench.min_time, deepbench.case_timeout,
            deepbench.device) == (3, 0.0, 1800.0, None)
    # T scaled and rounded, at least 1: 1500, 750, 375, 187 -> 150, 75, 38, 19; 1 -> 1
    scaled = suites.get("deepbench", scale=0.1).groups[0]
    assert sum(size[0] for size in scaled.sizes) == 4 * (150 + 75 + 38 + 19) + 1 + 150 + 150


def test_a_suites_dtype_reaches_every_case_and_a_cell_without_the_variants_gets_its_default():
    suite = suites.get("quick").with_overrides(dtype="float64")
    assert {case.dtype for case in suite.cases()} == {"float64"}
    assert suites.cell_variants("gru", ("-",)) == ("reset_after",)
    assert suites.cell_variants("lstm", ("reset_after", "reset_before")) == ("-",)
