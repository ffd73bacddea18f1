"""The cells and networks grubench measures, each described once.

Every layer reads these tables: the contract's validation and gate offsets, the weight
converters' gate orders, the harness's parameter counts, FLOPs and bytes, the report's
GRU-vs-LSTM pairs. Adding a cell (torch.nn.RNN's tanh cell, say) means one :class:`CellSpec`
in :data:`CELLS` plus its kernels.

Shapes (torch layout): w_ih (G*H, I), w_hh (G*H, H), b_ih and b_hh (G*H,), with the G gate
blocks of H rows each in :attr:`CellSpec.gates` order; every state (h, and c for LSTM) is
(B, H) per layer and direction.
"""
from __future__ import annotations

from dataclasses import dataclass

#: The name results use for the variant of a cell that has none.
NO_VARIANT = "-"


@dataclass(frozen=True)
class CellSpec:
    """One recurrent cell.

    ``gates`` is torch's gate order along the G*H axis; ``keras_gates`` and ``onnx_gates``
    are the same gates in those layouts' orders (one name per gate: Keras' and ONNX's
    candidate gate is torch's ``n``/``g``). ``states`` are the carried states, ``variants``
    the formulas a backend may be asked for (the first is the default; ``(NO_VARIANT,)`` when
    there is one formula).
    """

    name: str
    gates: tuple[str, ...]
    states: tuple[str, ...]
    variants: tuple[str, ...]
    keras_gates: tuple[str, ...]
    onnx_gates: tuple[str, ...]
    torch_class: str

    @property
    def n_gates(self) -> int:
        return len(self.gates)

    def gate(self, name: str) -> int:
        """The block index of gate ``name`` (multiply by H for its first row)."""
        return self.gates.index(name)

    @property
    def outputs(self) -> tuple[str, ...]:
        """Output names in contract order: y, then each final state (h_n, c_n)."""
        return ("y",) + tuple(f"{state}_n" for state in self.states)

    @property
    def initial_states(self) -> tuple[str, ...]:
        return tuple(f"{state}0" for state in self.states)

    def check_variant(self, variant: str) -> str:
        if variant not in self.variants:
            raise ValueError(f"unknown {self.name} variant {variant!r}; expected one of "
                             f"{', '.join(self.variants)}")
        return variant

    def reset_after(self, variant: str) -> bool:
        """The contract's ``reset_after`` flag for ``variant`` (True for cells without one)."""
        return self.check_variant(variant) != "reset_before"

    def variant_of(self, reset_after: bool) -> str:
        """The variant name of a contract call (inverse of :meth:`reset_after`)."""
        if self.variants == (NO_VARIANT,):
            return NO_VARIANT
        return "reset_after" if reset_after else "reset_before"

    def parameter_shapes(self, input_size: int, hidden_size: int) -> dict[str, tuple]:
        rows = self.n_gates * hidden_size
        return {"w_ih": (rows, input_size), "w_hh": (rows, hidden_size),
                "b_ih": (rows,), "b_hh": (rows,)}

    def parameter_count(self, input_size: int, hidden_size: int) -> int:
        """Weights and both biases: G*H*(I + H + 2)."""
        return self.n_gates * hidden_size * (input_size + hidden_size + 2)

    def flops(self, T: int, B: int, I: int, H: int, training: bool) -> float:  # noqa: E741
        """Matrix-product FLOPs, input projection included: 2*G*H*(I+H)*B*T forward.
        Backward costs two products per forward one (dX and dW), so training = 3x forward."""
        forward = 2.0 * self.n_gates * H * (I + H) * B * T
        return forward * (3 if training else 1)

    def recurrent_flops(self, T: int, B: int, H: int) -> float:
        """DeepBench's forward FLOPs: 2*G*H^2*B*T (input projection excluded)."""
        return 2.0 * self.n_gates * H ** 2 * B * T

    def input_elements(self, T: int, B: int, I: int, H: int, training: bool) -> int:  # noqa: E741
        """Elements of a call's inputs, which exist before it runs: parameters, x, the
        initial states and, in training, the upstream gradient dy."""
        elements = self.parameter_count(I, H) + T * B * I + len(self.states) * B * H
        return elements + (T * B * H if training else 0)

    def expected_elements(self, T: int, B: int, I: int, H: int, training: bool) -> int:  # noqa: E741
        """Analytic elements a call holds: parameters, x, y, initial and final states, plus
        in training the least state backward needs (per step the gate activations and the
        previous states), dy and the gradients."""
        states = len(self.states)
        elements = self.input_elements(T, B, I, H, False) + T * B * H + states * B * H
        if training:
            elements += T * B * self.n_gates * H + T * B * H * states       # saved for backward
            elements += self.parameter_count(I, H) + T * B * I + T * B * H + states * B * H
        return elements

GRU = CellSpec("gru", gates=("r", "z", "n"), states=("h",),
               variants=("reset_after", "reset_before"),
               keras_gates=("z", "r", "n"), onnx_gates=("z", "r", "n"), torch_class="GRU")
LSTM = CellSpec("lstm", gates=("i", "f", "g", "o"), states=("h", "c"), variants=(NO_VARIANT,),
                keras_gates=("i", "f", "g", "o"), onnx_gates=("i", "o", "f", "g"),
                torch_class="LSTM")

#: Every cell, by name.
CELLS: dict[str, CellSpec] = {spec.name: spec for spec in (GRU, LSTM)}


def cell(name: str) -> CellSpec:
    """The spec of cell ``name``; ValueError listing the known cells otherwise."""
    try:
        return CELLS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown cell {name!r}; expected one of {', '.join(CELLS)}") from None


#: torch.nn.GRU/LSTM's parameter name, less its ``_l{k}[_reverse]`` suffix, of each of a
#: cell's parameters (the names :meth:`CellSpec.parameter_shapes` uses).
TORCH_PARAMETER_PREFIXES = {"w_ih": "weight_ih", "w_hh": "weight_hh",
                            "b_ih": "bias_ih", "b_hh": "bias_hh"}


@dataclass(frozen=True)
class NetworkSpec:
    """A recurrent network as torch.nn.GRU/LSTM builds it: ``num_layers`` layers, each in one
    or two directions; layer k > 0 reads the concatenated outputs of layer k-1 (width
    directions*H). ``batch_first`` changes only the layout of x and y ((B, T, .) instead of
    (T, B, .)); states are (num_layers*directions, B, H) either way."""

    cell: str
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    batch_first: bool = False
    bias: bool = True

    def __post_init__(self):
        cell(self.cell)
        for name in ("input_size", "hidden_size", "num_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    @property
    def spec(self) -> CellSpec:
        return cell(self.cell)

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        return self.directions * self.hidden_size

    def layer_input_size(self, layer: int) -> int:
        return self.input_size if layer == 0 else self.output_size

    def state_shape(self, batch: int) -> tuple[int, int, int]:
        """The shape of h0/h_n (and c0/c_n): (num_layers*directions, B, H)."""
        return (self.num_layers * self.directions, batch, self.hidden_size)

    def layers(self):
        """(layer, direction, suffix) for every layer and direction, in torch's order
        (state index = layer*directions + direction); suffix is torch's parameter-name
        suffix, e.g. ``_l1_reverse``."""
        for layer in range(self.num_layers):
            for direction in range(self.directions):
                yield layer, direction, _suffix(layer, direction)

    def parameter_names(self, layer: int, direction: int) -> dict[str, str]:
        """torch's names of one layer and direction's parameters, by the cell's names:
        ``{"w_ih": "weight_ih_l1_reverse", ...}``. The biases are named even without
        ``bias`` (the network then runs them as zeros)."""
        return {name: prefix + _suffix(layer, direction)
                for name, prefix in TORCH_PARAMETER_PREFIXES.items()}

    def parameter_shapes(self) -> dict[str, tuple]:
        """torch.nn.GRU/LSTM's parameters, in its order: ``weight_ih_l{k}[_reverse]``,
        ``weight_hh_...``, and with bias ``bias_ih_...``, ``bias_hh_...``."""
        shapes = {}
        for layer, direction, _suffix in self.layers():
            layer_shapes = self.spec.parameter_shapes(self.layer_input_size(layer),
                                                      self.hidden_size)
            names = self.parameter_names(layer, direction)
            for name, shape in layer_shapes.items():
                if self.bias or name.startswith("w_"):
                    shapes[names[name]] = shape
        return shapes

    def parameter_count(self) -> int:
        return sum(_product(shape) for shape in self.parameter_shapes().values())


def _suffix(layer: int, direction: int) -> str:
    """torch's parameter-name suffix of a layer and direction: ``_l1``, ``_l1_reverse``."""
    return f"_l{layer}" + ("_reverse" if direction else "")


def _product(shape: tuple) -> int:
    count = 1
    for size in shape:
        count *= size
    return count
