"""README's settings table is the settings table: every setting has a row naming its
variable and flag, with its default (as datasette's test_settings_are_documented)."""
from __future__ import annotations

import pathlib
import re

import pytest

from kubemonitor.config import SETTINGS

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"
# how README writes a default that is not a plain value
SPOKEN = {None: ("empty", "random", "unset", "none"), "": ("empty", "none", "all interfaces"), "true": ("on",),
          "false": ("off",)}


def table() -> list[list[str]]:
    text = README.read_text(encoding="utf-8")
    start = text.index("| variable | flag | default | meaning |")
    rows = []
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def row_of(env: str) -> list[str]:
    found = [r for r in table() if re.search(rf"`{re.escape(env)}`", r[0])]
    assert found, f"README's settings table has no row for {env}: add one (variable, flag, default, meaning)"
    return found[0]


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.env)
def test_every_setting_is_in_readme_with_its_flag_and_default(setting):
    variable, flag, default = row_of(setting.env)[:3]
    assert f"`{setting.flag}`" in flag, f"README gives {setting.env} the flag {flag!r}, not {setting.flag}"
    # a row of two settings ("`A` / `B`") gives their defaults in the same order
    names = re.findall(r"`([A-Z_]+)`", variable)
    parts = [p.strip() for p in re.split(r" / |, ", default)] if len(names) > 1 else [default]
    shown = (parts[names.index(setting.env)] if len(parts) == len(names) else default).strip("`").lower()
    spoken = SPOKEN.get(setting.default if setting.default is None else setting.default.lower(), ())
    assert shown == (setting.default or "").lower() or any(w in shown for w in spoken) or \
        shown.replace(" ", "") == (setting.default or "").lower().replace(" ", ""), \
        f"README says {setting.env} defaults to {shown!r}; the code's default is {setting.default!r}"
