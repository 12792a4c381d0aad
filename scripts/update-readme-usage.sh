#!/usr/bin/env bash
# Rewrites the --help blocks in README.md from the binary itself, so README "Usage" and the real
# flags cannot drift apart (tests/readme.rs fails when they do). Each block sits between
# `<!-- usage:CMD -->` and `<!-- /usage:CMD -->`; CMD "main" is `earshot --help`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q
python3 - <<'PY'
import re, subprocess
readme = open("README.md").read()
def block(cmd):
    args = ["target/debug/earshot"] + ([] if cmd == "main" else [cmd]) + ["--help"]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return f"<!-- usage:{cmd} -->\n```text\n{out.rstrip()}\n```\n<!-- /usage:{cmd} -->"
readme = re.sub(r"<!-- usage:(\w+) -->.*?<!-- /usage:\1 -->",
                lambda m: block(m.group(1)), readme, flags=re.S)
open("README.md", "w").write(readme)
PY
echo "README.md usage blocks updated"
