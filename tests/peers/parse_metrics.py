#!/usr/bin/env python3
"""Parses a /metrics scrape with the Prometheus project's own parsers and prints the samples.

Reads the exposition from standard input; it must pass the strict OpenMetrics parser and the
classic text-format parser (prometheus_client). Prints one JSON object:
{"families": {name: type}, "samples": [[name, {labels}, value], ...]}. Exits 1 on a parse error.
"""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
from prometheus_client.parser import text_string_to_metric_families as classic

text = sys.stdin.read()
try:
    families = list(openmetrics(text))
    # The classic parser reads what Prometheus servers without OpenMetrics support see.
    list(classic(text.replace("# EOF\n", "")))
except Exception as e:  # noqa: BLE001 - report any parser complaint
    print(f"parse error: {e}", file=sys.stderr)
    sys.exit(1)
out = {"families": {}, "samples": []}
for f in families:
    out["families"][f.name] = f.type
    for s in f.samples:
        out["samples"].append([s.name, s.labels, s.value])
print(json.dumps(out))
