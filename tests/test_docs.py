"""Published figures are written by the commands that measured them: a table that appears in several
files (between ``<!-- name -->`` markers, see benchmarks/report.py write_section) is the same everywhere
and says what produced it."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECTION = re.compile(r"<!-- ([\w-]+) -->\n(.*?)\n<!-- /\1 -->", re.S)


def _sections():
    found = {}
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for name, text in SECTION.findall(path.read_text()):
            found.setdefault(name, []).append((path.relative_to(ROOT), text))
    return found


def test_generated_tables_agree_between_files_and_name_their_source():
    sections = _sections()
    assert "bench-sim" in sections
    for name, places in sections.items():
        texts = {text for _, text in places}
        assert len(texts) == 1, f"section {name} differs between {[str(p) for p, _ in places]}"
        text = texts.pop()
        assert "tridsa " in text, f"section {name} does not name the command that wrote it"
