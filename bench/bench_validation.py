"""Per-frame cost of the compiled schema check against one-shot validation.

Prints one JSON line. Run: ``python bench/bench_validation.py``.
"""

import json
import timeit

import jsonschema

from iii_sync import _validation

FRAME = {
    "type": "invokefunction",
    "function_id": "math::add",
    "invocation_id": "2f1c1b9a-1111-4222-8333-444455556666",
    "data": {"a": 1, "b": 2},
}


def main():
    schema = _validation.validators("to_worker")["invokefunction"].schema
    compiled = min(
        timeit.repeat(
            lambda: _validation.find_error(FRAME, "to_worker"), number=5000, repeat=3
        )
    )
    one_shot = min(
        timeit.repeat(lambda: jsonschema.validate(FRAME, schema), number=200, repeat=3)
    )
    print(
        json.dumps(
            {
                "benchmark": "validation",
                "compiled_us_per_frame": round(compiled / 5000 * 1e6, 2),
                "one_shot_us_per_frame": round(one_shot / 200 * 1e6, 2),
                "speedup": round((one_shot / 200) / (compiled / 5000), 1),
            }
        )
    )


if __name__ == "__main__":
    main()
