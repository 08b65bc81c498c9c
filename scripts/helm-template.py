#!/usr/bin/env python3
"""Renders a Helm chart like `helm template`, with Helm's own engine: Helm v4's Go SDK as a
shared library, from the PyPI package helm-python-sdk (no helm binary is packaged for the
registries this project can reach). .ci/run installs it in a venv under
~/.cache/kepler-rs/helm-sdk; the deploy tests run this script with that venv's python.

Usage: helm-template.py CHART RELEASE NAMESPACE [VALUES_JSON]
       helm-template.py --lint CHART
Prints every rendered manifest as one multi-document YAML stream; a template error (a
`fail`, a bad value) goes to stderr with exit code 1. --lint prints `helm lint`'s findings
as JSON.
"""
import json
import sys

import helm_python as helm


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--lint":
        print(json.dumps(helm.lint(sys.argv[2])))
        return 0
    if len(sys.argv) not in (4, 5):
        print(__doc__, file=sys.stderr)
        return 2
    chart, release, namespace = sys.argv[1:4]
    values = json.loads(sys.argv[4]) if len(sys.argv) == 5 else {}
    try:
        with helm.Chart.load(chart) as c:
            rendered = c.render(values, name=release, namespace=namespace)
    except helm.HelmError as e:
        print(f"helm: {e}", file=sys.stderr)
        return 1
    for name in sorted(rendered):
        text = rendered[name]
        if not name.endswith(".yaml") or not text.strip():
            continue
        print(f"---\n# Source: {name}\n{text.rstrip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
