"""The README's "From Python" lines, run as printed: its shell block makes a fresh virtual environment and installs
the package offline (PEP 668: Debian's own packages, no PyPI), then its Python block runs in that environment
against the server.

Environment: as test_client.py (EMBCACHE_ADDRESS, EMBCACHE_ARTIFACTS, EMBCACHE_REPO).

    /usr/bin/python3 -m unittest -v test_readme
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

from test_client import ADDRESS, ARTIFACTS, REPO, require_artifacts

SECTION = "## From Python"


def readme_blocks():
    """The first ```bash and ```python blocks of the README's "From Python" section."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = f.read()
    section = text[text.index(SECTION):]
    section = section[:section.index("\n## ", len(SECTION))]
    return (re.search(r"```bash\n(.*?)```", section, re.S).group(1),
            re.search(r"```python\n(.*?)```", section, re.S).group(1))


def run(command, cwd, env, shell=False):
    result = subprocess.run(command, cwd=cwd, env=env, shell=shell, capture_output=True, text=True, timeout=600)
    if result.returncode:
        raise AssertionError(f"{command} failed with exit code {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result.stdout


class ReadmeTests(unittest.TestCase):
    def setUp(self):
        require_artifacts(self)

    def test_readme_python_lines_install_and_run_in_a_fresh_virtual_environment(self):
        shell, snippet = readme_blocks()
        lines = [line for line in shell.splitlines() if line.strip() and not line.startswith("#")]
        apt = [line for line in lines if "apt-get install" in line]
        self.assertEqual(len(apt), 1, "the README names the Debian packages in one apt-get line")
        # The test does not run apt-get (tests/run.sh installs the same packages); it checks they are there.
        for package in apt[0].split("#")[0].split("install", 1)[1].split():
            if not package.startswith("-"):
                status = run(["dpkg-query", "-W", "-f=${Status}", package], None, None)
                self.assertIn("install ok installed", status, package)

        env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}  # nothing from the source tree
        env["EMBCACHE_ADDRESS"] = ADDRESS
        env["PATH"] = "/usr/bin:/bin"  # python3 is Debian's, as on a fresh Debian 12 (not a pyenv or conda one)
        with tempfile.TemporaryDirectory() as root:
            # The commands run from a copy of the repository's Python package, as from a fresh clone.
            shutil.copytree(os.path.join(REPO, "src", "python"), os.path.join(root, "src", "python"),
                            ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
            for line in lines:
                if line not in apt:
                    run(line, root, env, shell=True)
            python = os.path.join(root, ".venv", "bin", "python")
            where = run([python, "-c", "import embedding_cache, sys; print(embedding_cache.__file__); print(sys.prefix)"], root, env)
            module, prefix = where.split()
            self.assertTrue(module.startswith(os.path.join(root, ".venv")), module)  # installed into the venv
            self.assertEqual(os.path.realpath(prefix), os.path.realpath(os.path.join(root, ".venv")))

            os.symlink(ARTIFACTS, os.path.join(root, "artifacts"))  # the server's ./artifacts, as in the README
            with open(os.path.join(root, "snippet.py"), "w", encoding="utf-8") as f:
                f.write(snippet)
            output = run([python, "snippet.py"], root, env)
        self.assertTrue(output.strip(), "the snippet prints what it found")
        print(output, file=sys.stderr)


if __name__ == "__main__":
    unittest.main()
