"""What validating one 50-number change request costs the web:
`python -m bench.validation [ITERATIONS] [ROUNDS]`.

In one process, interleaved (A, B, C, A, B, C, ...), the median over the rounds of CPU
time per body: the service's validation (api/body.change_request: JSON, the shape, 50
numbers through shared.phones, duplicates by number), and, to see what a typed model
would change, decoding the same body into api.models.ChangeRequest with msgspec (and
with pydantic v2 when it is installed; it is no dependency of the project). The
numbers are the parts a model cannot do (phonenumbers' validity, uniqueness by number)
and so cost the same on every path; the shape is what differs. Two bodies: numbers
written as the load generator writes them (national, the NANP fast path of
shared/phones.py) and international numbers phonenumbers parses in full.
"""

from __future__ import annotations

import importlib
import json
import statistics
import time
from collections.abc import Callable
from typing import Annotated, Any

import msgspec

from api.body import change_request
from api.models import ChangeRequest
from bench.arguments import counts
from shared.events import MAX_NUMBERS, REASON_MAX
from shared.phones import MAX_INPUT_LENGTH, to_e164

REGION = "US"
NATIONAL = [f"(509) {200 + n // 100:03d}-{n % 100:04d}" for n in range(MAX_NUMBERS)]
INTERNATIONAL = [f"+44 20 7946 {n:04d}" for n in range(MAX_NUMBERS)]


def _body(numbers: list[str]) -> bytes:
    return json.dumps({"phoneNumberList": numbers, "reason": "the lead asked by SMS"}).encode()


def _phones(entries: list[str]) -> list[str]:
    """What every path still does after the shape: each number's validity and E.164,
    unique by number."""
    numbers = [to_e164(entry, REGION) for entry in entries]
    assert len(set(numbers)) == len(numbers)
    return numbers


def _msgspec_shape(raw: bytes) -> list[str]:
    return msgspec.json.decode(raw, type=ChangeRequest).phone_number_list


def _pydantic_shape() -> Callable[[bytes], list[str]] | None:
    """The same body as a pydantic v2 model, when pydantic is installed."""
    try:
        pydantic: Any = importlib.import_module("pydantic")
    except ImportError:
        return None
    model = pydantic.create_model(
        "ChangeRequest",
        phoneNumberList=(
            Annotated[
                list[Annotated[str, pydantic.Field(max_length=MAX_INPUT_LENGTH)]],
                pydantic.Field(min_length=1, max_length=MAX_NUMBERS),
            ],
            ...,
        ),
        reason=(Annotated[str | None, pydantic.Field(max_length=REASON_MAX)], None),
    )

    def shape(raw: bytes) -> list[str]:
        return list(model.model_validate_json(raw).phoneNumberList)

    return shape


def _json_shape(raw: bytes) -> list[str]:
    """The stdlib parse alone (the service's first step): the floor of the shape."""
    document = json.loads(raw)
    return list(document["phoneNumberList"])


def paths() -> dict[str, Callable[[bytes], object]]:
    found: dict[str, Callable[[bytes], object]] = {
        "service (api/body.py)": lambda raw: change_request(raw, REGION),
        "json.loads alone": _json_shape,
        "msgspec model, shape": _msgspec_shape,
        "msgspec model + numbers": lambda raw: _phones(_msgspec_shape(raw)),
        "json.loads + numbers": lambda raw: _phones(_json_shape(raw)),
    }
    pydantic = _pydantic_shape()
    if pydantic is not None:
        found["pydantic model, shape"] = pydantic
        found["pydantic model + numbers"] = lambda raw: _phones(pydantic(raw))
    return found


def _round(path: Callable[[bytes], object], raw: bytes, iterations: int) -> float:
    start = time.process_time()
    for _ in range(iterations):
        path(raw)
    return (time.process_time() - start) / iterations * 1e6


def measure(iterations: int, rounds: int) -> dict[str, dict[str, float]]:
    """Median µs of CPU per body, by body and path."""
    found = paths()
    table: dict[str, dict[str, float]] = {}
    for body_name, numbers in (("national", NATIONAL), ("international", INTERNATIONAL)):
        raw = _body(numbers)
        for path in found.values():  # equal results, and warm
            assert path(raw)
        samples: dict[str, list[float]] = {name: [] for name in found}
        for _ in range(rounds):
            for name, path in found.items():
                samples[name].append(_round(path, raw, iterations))
        table[body_name] = {name: statistics.median(times) for name, times in samples.items()}
    return table


def main() -> None:
    iterations, rounds = counts(__doc__, [200, 11])
    table = measure(iterations, rounds)
    bodies = list(table)
    print(f"µs of CPU per {MAX_NUMBERS}-number body, median of {rounds} rounds of {iterations}")
    print(f"{'path':<28}" + "".join(f"{name:>15}" for name in bodies))
    for path in table[bodies[0]]:
        print(f"{path:<28}" + "".join(f"{table[body][path]:>15.1f}" for body in bodies))
    print(
        f"msgspec {msgspec.__version__}; pydantic "
        + ("not installed" if "pydantic model, shape" not in table[bodies[0]] else "installed")
    )


if __name__ == "__main__":
    main()
