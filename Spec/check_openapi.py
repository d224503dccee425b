#!/usr/bin/env python3
"""Validates Spec/openapi.yaml and checks it names every route the server registers."""
import pathlib, re, sys
import yaml
from openapi_spec_validator import validate

root = pathlib.Path(__file__).resolve().parent.parent
spec = yaml.safe_load((root / "Spec/openapi.yaml").read_text())
validate(spec)
documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
source = (root / "Sources/KeyglassServer/Routes.swift").read_text()
missing = []
routes = [(m, p if kind == "exact" else p + "**")
          for m, kind, p in re.findall(r'Route\(method: \.(get|post), match: \.(exact|under)\("([^"]+)"\)', source)]
if len(routes) < 9:
    sys.exit(f"Spec/check_openapi.py found only {len(routes)} routes in Routes.swift: the route table's form changed")
for method, path in routes:
    # "/tile/**" is documented as its two tile forms, "/v1/keys/**" as /v1/keys/{identity}.
    wanted = {"/tile/**": ["/tile/{level}/{index}", "/tile/entries/{index}"], "/v1/keys/**": ["/v1/keys/{identity}"]}.get(path, [path])
    missing += [f"{method.upper()} {w}" for w in wanted if (method.upper(), w) not in documented]
if missing:
    sys.exit("Spec/openapi.yaml does not describe: " + ", ".join(missing))
print(f"Spec/openapi.yaml is valid OpenAPI and describes all {len(documented)} operations the server routes")
