"""Rewrite the README settings table from voice_core.settings: ./run.sh py scripts/update_readme_settings.py."""

from pathlib import Path

from voice_core.settings import settings_table

START, END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"

readme = Path(__file__).resolve().parents[1] / "README.md"
text = readme.read_text(encoding="utf-8")
head, rest = text.split(START, 1)
_, tail = rest.split(END, 1)
readme.write_text(f"{head}{START}\n{settings_table()}\n{END}{tail}", encoding="utf-8")
print(f"updated {readme}")
