"""`plan` starts fast: a warm plan imports neither apply's stack nor the YAML parser."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from testing.tree import gen

# A warm plan (every file cached) needs none of these; each costs tens of milliseconds.
NOT_IMPORTED_BY_A_WARM_PLAN = (
    "asyncio",
    "httpx",
    "starlette",
    "sqlite_utils",
    "ruamel",
    "ltx_reconcile.api",
    "ltx_reconcile.emulator",
    "ltx_reconcile.executor",
    "ltx_reconcile.plan.document",
    "ltx_reconcile.plan.planfile",
    "ltx_reconcile.spec.parse",
    "ltx_reconcile.cli.apply",
    # Only an `s3://` store needs the AWS client; a plan on the local store never loads it.
    "boto3",
    "botocore",
    "ltx_reconcile.s3store",
)

_PROBE = textwrap.dedent(
    """
    import json, sys
    from ltx_reconcile.cli.main import main
    code = main(["-C", sys.argv[1], "plan"])
    print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
    """
)


def _plan_modules(root):
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, str(root)], capture_output=True, text=True, check=False
    )
    report = json.loads(result.stderr.strip().splitlines()[-1])
    assert report["code"] == 0
    return set(report["modules"])


def test_a_warm_plan_imports_nothing_only_apply_or_parsing_needs(tmp_path):
    """The second plan of unchanged specs loads neither the HTTP stack nor ruamel.yaml."""
    gen(tmp_path, {"specs/a.yaml": "images:\n  hero:\n    prompt: a knight\n    seed: 1\n"})
    cold = _plan_modules(tmp_path)
    assert "ltx_reconcile.spec.parse" in cold  # the probe does see lazy imports
    warm = _plan_modules(tmp_path)
    loaded = [
        name
        for name in NOT_IMPORTED_BY_A_WARM_PLAN
        if any(m == name or m.startswith(name + ".") for m in warm)
    ]
    assert loaded == []
