"""Runs inside the sandbox, in both harnesses (`_sandbox_harness.py` for the solution,
`_test_harness.py` for assert-style tests): limits and the drop from root. Concatenated into each
harness's source by `sandbox.harness_source`, after the value codec; imports only what the
harnesses import anyway."""

import os
import resource


def _limit(kind, value):
    try:
        resource.setrlimit(kind, (value, value))
    except (ValueError, OSError):
        pass


def _drop_root(uid):
    """Become `uid` with no groups; setresuid from root to non-root clears every capability."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    with open("/proc/self/status", encoding="ascii") as handle:
        status = dict(line.split(":", 1) for line in handle.read().splitlines() if ":" in line)
    for key in ("CapPrm", "CapEff", "CapAmb"):
        if int(status[key], 16) != 0:
            raise SystemExit(f"sandbox: capabilities left after dropping root: {key} {status[key].strip()}")
    if os.getuid() != uid or os.geteuid() != uid or os.getgroups():
        raise SystemExit("sandbox: could not drop root")
