"""Checks that the README's embedding sample is the code that the build
compiles and runs (examples/embedding.cpp, between its README markers)."""
import pathlib
import sys
import textwrap

root = pathlib.Path(__file__).resolve().parents[2]
source = (root / "examples" / "embedding.cpp").read_text()
compiled = textwrap.dedent(source.split("// README:begin\n", 1)[1].split("  // README:end", 1)[0]).strip()
readme = (root / "README.md").read_text()
marker = "<!-- examples/embedding.cpp -->\n```cpp\n"
if marker not in readme:
    sys.exit("README.md has no embedding sample after %r" % marker.strip())
shown = readme.split(marker, 1)[1].split("```", 1)[0].strip()
if shown != compiled:
    sys.exit("README.md's embedding sample differs from examples/embedding.cpp:\n--- README\n%s\n--- compiled\n%s"
             % (shown, compiled))
print("README embedding sample matches examples/embedding.cpp")
