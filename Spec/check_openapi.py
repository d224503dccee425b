#!/usr/bin/env python3
"""Validates Spec/openapi.yaml and Spec/openapi-directory.yaml and checks each names every route
its server registers (Routes.swift for v1 logs, Directory/DirectoryAPI.swift for key directories)."""
import pathlib, re, sys
import yaml
from openapi_spec_validator import validate

root = pathlib.Path(__file__).resolve().parent.parent
def check(spec_path, source_path, least, aliases):
    spec = yaml.safe_load((root / spec_path).read_text())
    validate(spec)
    documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    source = (root / source_path).read_text()
    missing = []
    routes = [(m, p if kind == "exact" else p + "**")
              for m, kind, p in re.findall(r'Route\(method: \.(get|post), match: \.(exact|under)\("([^"]+)"\)', source)]
    if len(routes) < least:
        sys.exit(f"Spec/check_openapi.py found only {len(routes)} routes in {source_path}: the route table's form changed")
    for method, path in routes:
        wanted = aliases.get(path, [path])
        missing += [f"{method.upper()} {w}" for w in wanted if (method.upper(), w) not in documented]
    if missing:
        sys.exit(f"{spec_path} does not describe: " + ", ".join(missing))
    print(f"{spec_path} is valid OpenAPI and describes all {len(documented)} operations the server routes")

tiles = {"/tile/**": ["/tile/{level}/{index}", "/tile/entries/{index}"]}
# "/tile/**" is documented as its two tile forms, "/v1/keys/**" as /v1/keys/{identity}, and so on.
check("Spec/openapi.yaml", "Sources/KeyglassServer/Routes.swift", 9, {**tiles, "/v1/keys/**": ["/v1/keys/{identity}"]})
check("Spec/openapi-directory.yaml", "Sources/KeyglassServer/Directory/DirectoryAPI.swift", 8,
      {**tiles, "/v2/lookup/**": ["/v2/lookup/{identity}"], "/v2/history/**": ["/v2/history/{identity}"]})
