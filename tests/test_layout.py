import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_platform_from_repo_root_is_the_standard_library():
    result = subprocess.run(
        [sys.executable, "-c", "import platform, kindstride; print(platform.python_version(), platform.__file__)"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    version, path = result.stdout.split()
    assert version == ".".join(map(str, sys.version_info[:3]))
    assert not path.startswith(str(ROOT))
    assert not (ROOT / "platform" / "__init__.py").exists()
