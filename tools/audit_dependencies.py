"""Known vulnerabilities of the portal's dependencies, as part of ./run_tests.sh.

Runs pip-audit on the test environment (.venv), which holds every pin of requirements.txt
(checked here first) and the test tools, against the PyPI vulnerability data. Exit 1 when a
pin differs from what is installed or a dependency has a known vulnerability; every finding
is listed with its identifier and the release that fixes it.

Where PyPI's per-release data cannot be reached (an air-gapped or filtered network), nothing
can be audited: that is said on one line, loudly, and is not a failure of the test run;
`--strict` makes it one (for release builds on a connected machine).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins_installed() -> list[str]:
    """The pins of requirements.txt whose installed version differs (empty when all match)."""
    wrong = []
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        match = PIN.match(line.strip())
        if not match:
            continue
        name, wanted = match.groups()
        try:
            found = metadata.version(name)
        except metadata.PackageNotFoundError:
            found = "not installed"
        if found != wanted:
            wrong.append(f"{name}: requirements.txt pins {wanted}, installed {found}")
    return wrong


def main(argv: list[str]) -> int:
    """Audit; the exit status of the test run's step."""
    strict = "--strict" in argv
    wrong = pins_installed()
    if wrong:
        print("pip-audit: the environment does not match requirements.txt:", *wrong, sep="\n  ")
        return 1
    result = subprocess.run(  # noqa: S603 - our own interpreter and a fixed command
        [sys.executable, "-m", "pip_audit", "--format", "json", "--progress-spinner", "off"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        print(f"pip-audit failed: {(result.stderr or result.stdout).strip()[-500:]}")
        return 1
    dependencies = report.get("dependencies", [])
    found = [(d, v) for d in dependencies for v in d.get("vulns", [])]
    skipped = [d for d in dependencies if d.get("skip_reason")]
    for dependency, vuln in found:
        fixed = ", ".join(vuln.get("fix_versions") or []) or "no fixed release yet"
        print(f"VULNERABLE {dependency['name']} {dependency['version']}: {vuln['id']} ({fixed})")
    audited = len(dependencies) - len(skipped)
    if found:
        return 1
    if dependencies and not audited:
        print(
            f"pip-audit: NOT AUDITED: PyPI's vulnerability data cannot be reached from this "
            f"machine; none of the {len(dependencies)} installed packages was checked"
        )
        return 1 if strict else 0
    names = ", ".join(sorted(_normal(d["name"]) for d in skipped))
    print(
        f"pip-audit: no known vulnerability in {audited} packages"
        + (f"; not checked: {names}" if skipped else "")
    )
    return 1 if strict and skipped else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
