"""Record (or check) the size and sha256 of every packaged file in ``flyvis_study/package_data.json``.

The package verifies its shipped configs, presets, notebooks and built-in flyvis network
against this manifest at load (``flyvis_study.resources``). Run it after an intended edit of
one of them; ``tools/block_notebooks.py`` runs it after rewriting the block notebooks.

    python tools/package_manifest.py          # write the manifest
    python tools/package_manifest.py --check  # exit 1 naming each file that differs

``tests/test_packaging.py`` checks that the committed manifest matches the committed files.
"""

from __future__ import annotations

import json
import sys

from flyvis_study.integrity import compare_entry
from flyvis_study.resources import PACKAGE_MANIFEST, packaged_files, write_package_manifest


def stale() -> list[str]:
    """Each packaged file that differs from (or is missing in) the manifest, and each entry without a file."""
    recorded = json.loads(PACKAGE_MANIFEST.read_text()) if PACKAGE_MANIFEST.is_file() else {}
    files = packaged_files()
    out = [f"{key}: {compare_entry(path, recorded[key]) if key in recorded else 'not in the manifest'}"
           for key, path in files.items() if key not in recorded or compare_entry(path, recorded[key])]
    return out + [f"{key}: in the manifest, no such file" for key in recorded if key not in files]


if __name__ == "__main__":
    if "--check" in sys.argv[1:]:
        differ = stale()
        for line in differ:
            print(line)
        sys.exit(1 if differ else 0)
    print(write_package_manifest())
