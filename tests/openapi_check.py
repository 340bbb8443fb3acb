"""Validates an OpenAPI document and real responses against it.

Usage: openapi_check.py DOCUMENT SAMPLES
SAMPLES is a JSON list of {"method", "path" (template), "status", "body"}. Exits non-zero with
a message on the first problem. Used by tests/api/openapi.rs.
"""
import json
import sys

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012


def main() -> int:
    spec = json.load(open(sys.argv[1]))
    samples = json.load(open(sys.argv[2]))
    validate(spec)
    registry = Registry().with_resource("urn:spec", Resource.from_contents(spec, default_specification=DRAFT202012))
    for sample in samples:
        method, path, status = sample["method"].lower(), sample["path"], str(sample["status"])
        operation = spec["paths"][path][method]
        response = operation["responses"].get(status)
        if response is None:
            print(f"{method.upper()} {path}: status {status} is not documented")
            return 1
        pointer = "/".join(["#", "paths", path.replace("~", "~0").replace("/", "~1"), method, "responses", status,
                            "content", "application~1json", "schema"])
        validator = Draft202012Validator({"$ref": "urn:spec" + pointer}, registry=registry)
        errors = sorted(validator.iter_errors(sample["body"]), key=lambda e: e.path)
        if errors:
            print(f"{method.upper()} {path} {status}: {errors[0].message} at {list(errors[0].path)}")
            return 1
    print(f"valid document, {len(samples)} responses match")
    return 0


if __name__ == "__main__":
    sys.exit(main())
