"""``grubench model FACTORY``: time a user's torch model as written, and again with every
torch.nn.GRU/LSTM inside swapped for grubench.nn's (same weights), and compare the two.

The factory contract
--------------------
FACTORY is ``package.module:callable`` (imported from the current folder too). The
callable takes keyword arguments (``--param NAME=VALUE``, values read as Python literals)
and returns ``(module, example_inputs)``: a ``torch.nn.Module`` and the positional
arguments of one forward call (a tuple, or a single tensor). The module's outputs may be
a tensor or tuples/lists/dicts of them. ``grubench.examples:tagger`` is one.

What is timed
-------------
``--mode training`` (default): forward, then backward of every floating output that
needs a gradient with a fixed random upstream gradient (seeded, the same for both), with
the module in the mode the factory left it. ``--mode inference``: forward under
``torch.no_grad()`` in eval mode. Each version runs in its own worker process with its
thread pools pinned to ``--threads`` (grubench.worker), the grubench.nn one first: it
builds the model (torch seeded with ``--seed``), swaps, and saves the weights and inputs
that the torch.nn worker then loads, so both time the same numbers.

The outputs and every gradient (each parameter's, and each input's that needs one) are
compared on one extra call in eval mode (dropout off), within grubench.tolerances'
forward and gradient tolerances for the parameters' dtype. ``--overhead`` also times, in
the grubench.nn worker, the swapped modules' bare networks (grubench.kernels.network.
Network on the NumPy arrays the modules saw) in ABBA-ordered pairs with the model's call
(grubench.timing.interleaved_ratios): "outside the networks" is 1 - the median of
bare/model, the share of the model's time not spent in grubench's networks (for a model
that is one GRU, grubench.nn's own overhead).

Results: ``model.json`` (rows with the machine context and commit) and ``model.md``
in ``--out``. A user's mistake (a bad dotted path, a factory that raises or returns
something else, a model with no GRU/LSTM inside, an argument grubench.nn does not run
such as LSTM ``proj_size``) is one line and exit status 2.
"""
from __future__ import annotations

import ast
import json
import sys
import tempfile
from pathlib import Path

from grubench.tables import TIME_UNITS, Table, pick_unit, render_markdown, render_text

STEM = "model"
VARIANTS = ("grubench.nn", "torch.nn")
#: A worker that has not answered after this long is stopped.
WORKER_TIMEOUT_S = 1800.0


class ModelError(ValueError):
    """The user's model or factory cannot be measured; the message says why."""


# ---------------------------------------------------------------------- the factory

def parse_factory(text: str) -> tuple[str, str]:
    """('package.module', 'callable') from 'package.module:callable'."""
    module_name, colon, attribute = text.partition(":")
    names = module_name.split(".") + attribute.split(".")
    if not colon or not all(name.isidentifier() for name in names):
        raise ModelError(f"FACTORY must be a dotted path 'package.module:callable', "
                         f"got {text!r}")
    return module_name, attribute


def parse_param(text: str) -> tuple[str, object]:
    """--param NAME=VALUE: VALUE as a Python literal (32, 0.5, True, 'gru'), else text."""
    name, equals, value = text.partition("=")
    if not equals or not name.isidentifier():
        raise ModelError(f"--param must be NAME=VALUE, got {text!r}")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value


def load_factory(text: str):
    import importlib

    module_name, attribute = parse_factory(text)
    try:
        found = importlib.import_module(module_name)
    except ImportError as error:
        raise ModelError(f"cannot import {module_name!r} (FACTORY {text}): {error}") from None
    except Exception as error:
        raise ModelError(f"importing {module_name!r} raised {type(error).__name__}: "
                         f"{error}") from None
    for name in attribute.split("."):
        if not hasattr(found, name):
            raise ModelError(f"{module_name!r} has no {attribute!r} (FACTORY {text})")
        found = getattr(found, name)
    if not callable(found):
        raise ModelError(f"FACTORY {text} is a {type(found).__name__}, not a callable")
    return found


def build(text: str, params: dict, seed: int):
    """(module, inputs) from the factory, with torch seeded by ``seed``."""
    import torch

    factory = load_factory(text)
    torch.manual_seed(seed)
    try:
        made = factory(**params)
    except Exception as error:
        raise ModelError(f"the factory {text} raised {type(error).__name__}: {error}") from None
    if not (isinstance(made, tuple) and len(made) == 2
            and isinstance(made[0], torch.nn.Module)):
        raise ModelError(f"the factory {text} must return (module, example_inputs) with a "
                         f"torch.nn.Module first; it returned {type(made).__name__}")
    module, inputs = made
    return module, inputs if isinstance(inputs, tuple) else (inputs,)


# ---------------------------------------------------------------------- the swap

def swap_recurrent(module, backend: str = "numba-cpu"):
    """(module, swapped paths): every torch.nn.GRU/LSTM inside ``module`` (at any depth, the
    module itself included) replaced in place by grubench.nn's ``from_torch`` copy on
    ``backend``. A module reached by two paths becomes one copy, so shared weights stay
    shared. ModelError when there is none, or one grubench.nn cannot run."""
    from torch import nn

    import grubench.nn

    found = [(path, child) for path, child in module.named_modules(remove_duplicate=False)
             if isinstance(child, (nn.GRU, nn.LSTM))]
    if not found:
        raise ModelError(f"the model ({type(module).__name__}) has no torch.nn.GRU or "
                         f"torch.nn.LSTM inside: nothing to swap")
    copies: dict[int, nn.Module] = {}
    for path, child in found:
        where = path or "the model itself"
        if type(child) not in (nn.GRU, nn.LSTM):
            raise ModelError(f"{where} is a {type(child).__name__}, a subclass of "
                             f"torch.nn.{type(child).__mro__[1].__name__}: its forward may "
                             f"differ, so it is not swapped")
        if id(child) not in copies:
            ours = getattr(grubench.nn, type(child).__name__)
            try:
                copies[id(child)] = ours.from_torch(child, backend=backend)
            except (ValueError, TypeError) as error:
                raise ModelError(f"{where}: {error}") from None
        if not path:
            return copies[id(child)], [""]
        parent, _, name = path.rpartition(".")
        setattr(module.get_submodule(parent), name, copies[id(child)])
    return module, [path for path, _ in found]


# ---------------------------------------------------------------------- in the worker

def _tensors(value) -> list:
    """The tensors in a forward's result (tuples, lists, dicts; PackedSequence is a tuple)."""
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in _tensors(item)]
    return []


class _Runner:
    """One version of the model and its calls, in the worker."""

    def __init__(self, module, inputs, seed: int):
        import torch

        self.module, self.inputs = module, inputs
        self.grad_inputs = [t for t in _tensors(inputs) if t.requires_grad]
        self._generator = torch.Generator().manual_seed(seed)
        self._upstream = None

    def _outputs(self):
        return [t for t in _tensors(self.module(*self.inputs))
                if t.is_floating_point() and t.requires_grad]

    def training_step(self) -> list:
        import torch

        self.module.zero_grad(set_to_none=True)
        for tensor in self.grad_inputs:
            tensor.grad = None
        outputs = self._outputs()
        if not outputs:
            raise ModelError("the model's outputs need no gradient: nothing to backpropagate "
                             "(use --mode inference)")
        if self._upstream is None:
            self._upstream = [torch.randn(o.shape, dtype=o.dtype, generator=self._generator)
                              for o in outputs]
        torch.autograd.backward(outputs, self._upstream)
        return outputs

    def inference(self) -> list:
        import torch

        with torch.no_grad():
            return [t for t in _tensors(self.module(*self.inputs)) if t.is_floating_point()]

    def results(self, training: bool) -> dict:
        """Outputs and gradients of one call in eval mode, as NumPy arrays by name."""
        was_training = self.module.training
        self.module.eval()
        try:
            outputs = self.training_step() if training else self.inference()
        finally:
            self.module.train(was_training)
        arrays = {f"output {i}": o.detach().numpy() for i, o in enumerate(outputs)}
        if training:
            arrays.update({f"grad {name}": p.grad.numpy()
                           for name, p in self.module.named_parameters() if p.grad is not None})
            arrays.update({f"grad input {i}": t.grad.numpy()
                           for i, t in enumerate(self.grad_inputs)})
        return arrays


def _bare_networks(module, paths: list[str], inputs: tuple, training: bool):
    """A call running the swapped modules' networks alone, one after the other: each
    grubench.kernels.network.Network on the NumPy arrays its module received from
    ``inputs`` (forward_train and backward with a random upstream gradient in training)."""
    import numpy as np
    import torch
    from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

    from grubench import backends
    from grubench.kernels.network import Network

    seen = {}

    def record(child, args):
        x, *state = args
        lengths = None
        if isinstance(x, PackedSequence):
            x, lengths = pad_packed_sequence(x, batch_first=child.batch_first)
            lengths = lengths.numpy()
        states = state[0] if state and isinstance(state[0], tuple) else tuple(state)
        seen[id(child)] = (x.detach().numpy(), [s.detach().numpy() for s in states
                                                if s is not None], lengths)

    children = {id(c): c for c in (module.get_submodule(p) for p in paths)}
    hooks = [c.register_forward_pre_hook(record) for c in children.values()]
    try:
        with torch.no_grad():
            module(*inputs)
    finally:
        for hook in hooks:
            hook.remove()
    calls = []
    for key, child in children.items():
        x, states, lengths = seen[key]
        network = Network(backends.get(child.backend_name), child.spec,
                          reset_after=child.reset_after, dropout=child.dropout)
        params = {name: p.detach().numpy() for name, p in child.named_parameters()}
        seed = 0 if child.training and child.dropout > 0 else None
        y = network.forward(x, params, *states, lengths=lengths)[0]
        dy = np.random.default_rng(0).standard_normal(y.shape).astype(y.dtype)

        def call(network=network, x=x, params=params, states=states, lengths=lengths, dy=dy):
            if not training:
                return network.forward(x, params, *states, lengths=lengths)
            _outputs, saved = network.forward_train(x, params, *states, lengths=lengths,
                                                    dropout_seed=seed)
            return network.backward(saved, dy)
        calls.append(call)
    return lambda: [call() for call in calls]


def run_request(_backend, request: dict, _state: dict) -> dict:
    """A worker's answer to a "model" request (grubench.handlers): one version timed, its
    outputs and gradients saved to request["arrays"]; status "invalid" with the reason
    for a user's mistake."""
    try:
        return _measure(request)
    except ModelError as error:
        return dict(status="invalid", reason=str(error))


def _measure(request: dict) -> dict:
    import statistics

    import numpy as np
    import torch

    from grubench import backends, timing
    from grubench.threads import pin_threads

    pin_threads(request["threads"])
    variant, training = request["variant"], request["mode"] == "training"
    module, inputs = build(request["factory"], request["params"], request["seed"])
    shared = Path(request["weights"])
    if shared.exists():          # the first worker's weights and inputs: the same numbers
        saved = torch.load(shared, weights_only=False)
        module.load_state_dict(saved["state"])
        inputs = saved["inputs"]
    else:
        torch.save({"state": module.state_dict(), "inputs": inputs}, shared)
    swapped, version = [], f"torch {torch.__version__}"
    if variant == "grubench.nn":
        backends.load_plugins()
        module, swapped = swap_recurrent(module, request["backend"])
        version = f"{request['backend']} {backends.get(request['backend']).version}"
    runner = _Runner(module, inputs, request["seed"])
    try:
        arrays = runner.results(training)
    except ModelError:
        raise                                # already says what is wrong
    except Exception as error:
        raise ModelError(f"the model's forward{'+backward' * training} with {variant} "
                         f"raised {type(error).__name__}: {error}") from None
    np.savez(request["arrays"], **arrays)
    if training:
        call = runner.training_step
    else:
        module.eval()
        call = runner.inference
    first_s, _ = timing.time_call(call, lambda: None)
    samples = timing.measure(call, lambda: None, min_runs=request["min_runs"],
                             min_time=request["min_time"])
    stats = timing.summarize(samples)
    row = dict(status="ok", variant=variant, backend_version=version,
               recurrent=swapped or None,
               dtype=str(next(module.parameters()).dtype).removeprefix("torch."),
               parameters=sum(p.numel() for p in module.parameters()),
               inputs=[list(t.shape) for t in _tensors(inputs)],
               first_call_s=first_s, median_s=stats.median_s, iqr_s=stats.iqr_s,
               min_s=stats.min_s, runs=stats.runs, unstable=stats.unstable,
               samples_s=samples, networks_share=None)
    if request["overhead"] and swapped:
        # Pairs of calls in ABBA order in this worker, so that both see the same load.
        ratios = timing.interleaved_ratios(_bare_networks(module, swapped, inputs, training),
                                           call, pairs=max(request["min_runs"], 8))
        row.update(networks_share=statistics.median(ratios), networks_ratios=ratios)
    return row


# ---------------------------------------------------------------------- comparing

def compare(ours_path: Path, theirs_path: Path) -> list[dict]:
    """Per output and gradient: max abs and relative error of grubench.nn's version
    against torch.nn's, and whether it is within grubench.tolerances for its dtype."""
    import numpy as np

    from grubench import tolerances

    ours, theirs = np.load(ours_path), np.load(theirs_path)
    if sorted(ours.files) != sorted(theirs.files):
        missing = sorted(set(theirs.files) ^ set(ours.files))
        raise RuntimeError(f"the two versions' results differ in what they hold: {missing}")
    rows = []
    for name in theirs.files:
        tolerance = (tolerances.forward_tolerance if name.startswith("output")
                     else tolerances.gradient_tolerance)(theirs[name].dtype)
        max_abs, rel = tolerances.errors(ours[name], theirs[name])
        within = (ours[name].shape == theirs[name].shape
                  and tolerance.allclose(ours[name], theirs[name].astype(np.float64)))
        rows.append(dict(name=name, shape=list(theirs[name].shape), max_abs_err=max_abs,
                         rel_err=rel, rtol=tolerance.rtol, atol=tolerance.atol,
                         within=within))
    return rows


# ---------------------------------------------------------------------- the report

def summary(rows: list[dict], settings: dict) -> Table:
    """Both versions' times and the speedup."""
    by_variant = {row["variant"]: row for row in rows}
    theirs = by_variant["torch.nn"]["median_s"]
    swapped = by_variant["grubench.nn"]["recurrent"]
    unit, scale = pick_unit([row["median_s"] for row in rows], TIME_UNITS)
    body = []
    for row in rows:
        share = row.get("networks_share")
        body.append([row["variant"], row["backend_version"],
                     f"{row['median_s'] / scale:.3g}", f"{row['iqr_s'] / scale:.3g}",
                     str(row["runs"]), f"{theirs / row['median_s']:.2f}x",
                     "-" if share is None else f"{1 - share:.1%}"])
    title = (f"grubench model {settings['factory']}: {settings['mode']}, "
             f"{rows[0]['dtype']}, {settings['threads']} thread"
             f"{'s' * (settings['threads'] > 1)}")
    return Table(title, ["recurrent layers", "backend", f"median ({unit})", f"IQR ({unit})",
                         "runs", "speedup vs torch.nn", "outside the networks"],
                 body, footer=f"swapped: {', '.join(p or '(the model itself)' for p in swapped)}; "
                              f"inputs {rows[0]['inputs']}; {rows[0]['parameters']:,} "
                              f"parameters", left=2)


def agreement(compared: list[dict]) -> Table:
    """The outputs and the gradients compared, worst first within each kind."""
    body = [[r["name"], "x".join(map(str, r["shape"])), f"{r['max_abs_err']:.2e}",
             f"{r['rel_err']:.2e}", f"{r['rtol']:g}/{r['atol']:g}",
             "yes" if r["within"] else "NO"]
            for r in sorted(compared, key=lambda r: (not r["name"].startswith("output"),
                                                     -r["rel_err"]))]
    bad = sum(not r["within"] for r in compared)
    return Table("grubench.nn against torch.nn: outputs and gradients (eval mode)",
                 ["what", "shape", "max abs err", "rel err", "rtol/atol", "within"], body,
                 footer=f"{len(compared) - bad} of {len(compared)} within tolerance", left=2)


def write_reports(document: dict, out: Path) -> list[Path]:
    from grubench.files import write_atomic

    tables = [summary(document["results"], document["settings"]),
              agreement(document["compared"])]
    context = document["context"]
    markdown = "\n\n".join(
        ["# grubench model", f"Machine: {context['cpu_model']}, {context['cores']} cores; "
                             f"{context['timestamp']}, commit {context['commit']}."]
        + [render_markdown(t) for t in tables]) + "\n"
    return [write_atomic(out / f"{STEM}.json", json.dumps(document, indent=2)),
            write_atomic(out / f"{STEM}.md", markdown)]


# ---------------------------------------------------------------------- the command

def measure(settings: dict, scratch: Path) -> tuple[list[dict], list[dict]]:
    """(rows, compared): each version in its own pinned worker, grubench.nn's first."""
    from grubench.worker import Worker, WorkerFailed

    rows = []
    for variant in VARIANTS:
        tag = variant.replace(".", "-")
        request = dict(kind="model", variant=variant, weights=str(scratch / "weights.pt"),
                       arrays=str(scratch / f"{tag}.npz"), **settings)
        print(f"timing {settings['factory']} with {variant} ...", flush=True)
        worker = Worker(None, settings["threads"], scratch / f"{tag}.log", WORKER_TIMEOUT_S)
        try:
            reply = worker.request(request, WORKER_TIMEOUT_S, doing=f"timing with {variant}")
        except WorkerFailed as failure:
            raise RuntimeError(f"{variant}: {failure.reason}") from None
        finally:
            worker.close(kill=True)
        if reply["status"] == "invalid":
            raise ModelError(reply["reason"])
        if reply["status"] != "ok":
            raise RuntimeError(f"{variant}: the worker failed: {reply['reason']}")
        rows.append(reply)
    compared = compare(scratch / "grubench-nn.npz", scratch / "torch-nn.npz")
    return rows, compared


def handle(args) -> int:
    from grubench import machine
    from grubench.files import check_writable_dir

    parse_factory(args.factory)
    settings = dict(factory=args.factory, params=dict(map(parse_param, args.param)),
                    mode=args.mode, backend=args.backend, threads=args.threads,
                    seed=args.seed, min_runs=args.min_runs, min_time=args.min_time,
                    overhead=args.overhead)
    out = check_writable_dir(args.out)
    with tempfile.TemporaryDirectory(prefix="grubench-model-") as scratch:
        try:
            rows, compared = measure(settings, Path(scratch))
        except RuntimeError as error:       # not the user's mistake: say so, exit 1
            print(f"grubench model: {error}", file=sys.stderr)
            return 1
    document = dict(context=machine.context(), settings=settings, results=rows,
                    compared=compared)
    print(render_text(summary(rows, settings)))
    print(render_text(agreement(compared)))
    for path in write_reports(document, out):
        print(f"wrote {path}")
    if not all(r["within"] for r in compared):
        print("grubench model: grubench.nn's results differ from torch.nn's beyond the "
              "tolerance (table above)", file=sys.stderr)
        return 1
    return 0


def add_subcommand(subparsers) -> None:
    from grubench.commands import DEFAULT_OUT, _positive
    from grubench.threads import cpu_count

    parser = subparsers.add_parser(
        "model", help="time your torch model with torch.nn's GRU/LSTM and with grubench.nn's",
        description="Time a torch model as written and with every torch.nn.GRU/LSTM inside "
                    "swapped for grubench.nn's (same weights), each in its own pinned "
                    "worker; compare outputs and gradients. FACTORY is "
                    "'package.module:callable' returning (module, example_inputs): the "
                    "module and the positional arguments of one forward call. Example: "
                    "grubench model grubench.examples:tagger --param batch=32")
    parser.add_argument("factory", metavar="FACTORY",
                        help="package.module:callable returning (module, example_inputs)")
    parser.add_argument("--param", "-p", action="append", default=[], metavar="NAME=VALUE",
                        help="a keyword argument of the factory (a Python literal or text); "
                             "repeat for more")
    parser.add_argument("--mode", choices=("training", "inference"), default="training",
                        help="training: forward+backward; inference: forward under no_grad "
                             "in eval mode (default: training)")
    parser.add_argument("--backend", default="numba-cpu",
                        help="grubench.nn's backend (default: numba-cpu)")
    parser.add_argument("--threads", type=_positive(int, cpu_count(), " (this machine's CPUs)"),
                        default=1, help="threads of each worker (default: 1)")
    parser.add_argument("--seed", type=int, default=0,
                        help="torch's seed for the factory and the upstream gradient "
                             "(default: 0)")
    parser.add_argument("--min-runs", type=_positive(int), default=5,
                        help="timed calls at least (default: 5)")
    parser.add_argument("--min-time", type=_positive(float), default=1.0,
                        help="seconds of timed calls at least (default: 1.0)")
    parser.add_argument("--overhead", action="store_true",
                        help="also time each swapped module's bare network on NumPy arrays: "
                             "what the model spends outside grubench's kernels")
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                        help=f"report folder (default: {DEFAULT_OUT})")
    parser.set_defaults(handler=handle)
