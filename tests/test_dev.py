"""./dev's decisions, without installing anything: the torch it picks (fake nvidia-smi on
PATH), the stamp that makes a repeat install nothing, the install steps (a fake venv python
whose pip records its arguments), and the one-line errors a newcomer gets."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: The extras ./dev installs for both commands (the one line that lists them).
TEST_EXTRAS = re.search(r'^TEST_EXTRAS="([^"]+)"', (REPO / "dev").read_text(), re.M).group(1)
NO_GPU = "echo 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.'; exit 9"
H200 = "echo 'GPU 0: NVIDIA H200 (UUID: GPU-0c1d2e3f-aaaa-bbbb-cccc-000000000000)'"
# A venv python that records each call, answers `-m pip` as FAKE_PIP says and `-m pytest`
# or `-m grubench` with success, and hands anything else (-c probes) to the real Python.
FAKE_VENV_PYTHON = f"""#!/bin/sh
echo "$*" >> "$(dirname "$0")/calls"
case "$1 $2" in
  "-m pip")
    case "$FAKE_PIP" in
      ok) exit 0 ;;
      no-local) case "$*" in *"-q torch"*) echo 'ERROR: No matching distribution'; exit 1 ;; esac; exit 0 ;;
      nospace) echo 'OSError: [Errno 28] No space left on device'; exit 1 ;;
      *) echo 'ERROR: Could not find a version that satisfies the requirement'; exit 1 ;;
    esac ;;
  "-m pytest"|"-m grubench") exit 0 ;;
esac
exec {sys.executable} "$@"
"""


def write_exe(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture
def clone(tmp_path):
    """A directory holding copies of ./dev and pyproject.toml, and a bin/ first on PATH
    with an nvidia-smi that finds no GPU; .venv inside it starts missing."""
    root = tmp_path / "clone"
    root.mkdir()
    shutil.copy(REPO / "dev", root / "dev")
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    write_exe(tmp_path / "bin" / "nvidia-smi", f"#!/bin/sh\n{NO_GPU}\n")
    return root


def dev(clone, *args, **env):
    """(exit status, stdout lines, stderr lines) of ./dev ARGS in the clone."""
    bin_dir = clone.parent / "bin"
    full_env = {"PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin", "PYTHON": sys.executable,
                "HOME": str(clone.parent), **env}
    done = subprocess.run([str(clone / "dev"), *args], env=full_env, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    return done.returncode, done.stdout.splitlines(), done.stderr.splitlines()


def plan(clone, command="test", **env):
    """The dry run's `dev: key: value` lines as a dict."""
    status, out, err = dev(clone, "--dry-run", command, **env)
    assert status == 0, err
    return dict(line[len("dev: "):].split(": ", 1) for line in out)


def fake_venv(clone, stamp=None):
    write_exe(clone / ".venv" / "bin" / "python", FAKE_VENV_PYTHON)
    (clone / ".venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    if stamp is not None:
        (clone / ".venv" / ".grubench-stamp").write_text(stamp + "\n")


def calls(clone):
    path = clone / ".venv" / "bin" / "calls"
    return path.read_text().splitlines() if path.exists() else []


def test_no_gpu_gets_the_pinned_cpu_build(clone):
    p = plan(clone)
    assert re.fullmatch(r"torch==\d+\.\d+\.\d+\+cpu \(CPU build: nvidia-smi found no NVIDIA GPU\)",
                        p["torch"])
    assert p["extras"] == TEST_EXTRAS and TEST_EXTRAS.split(",")[0] == "test"


def test_a_gpu_gets_the_cuda_build_and_the_cuda_extra(clone):
    write_exe(clone.parent / "bin" / "nvidia-smi", f"#!/bin/sh\n{H200}\n")
    p = plan(clone)
    assert re.fullmatch(r"torch==\d+\.\d+\.\d+ \(CUDA build, with the cuda extra: "
                        r"nvidia-smi found NVIDIA H200\)", p["torch"])
    assert p["extras"] == f"{TEST_EXTRAS},cuda"


def test_the_override_wins_and_the_gpu_still_decides_the_extras(clone):
    write_exe(clone.parent / "bin" / "nvidia-smi", f"#!/bin/sh\n{H200}\n")
    p = plan(clone, GRUBENCH_TORCH="torch==2.5.1 --index-url https://example.org/cu121")
    assert p["torch"] == "torch==2.5.1 --index-url https://example.org/cu121 (set by GRUBENCH_TORCH)"
    assert p["extras"] == f"{TEST_EXTRAS},cuda"


def test_both_commands_run_in_the_environment_with_their_arguments(clone):
    assert plan(clone, "bench")["would run"] == ".venv/bin/python -m grubench "
    status, out, _ = dev(clone, "--dry-run", "test", "-x", "tests/test_cli.py")
    assert out[-1] == "dev: would run: .venv/bin/python -m pytest -x tests/test_cli.py"


def test_unknown_command_prints_usage_and_exits_2(clone):
    status, out, err = dev(clone, "benchmark")
    assert status == 2 and err[0].startswith("Set up grubench") and "./dev test" in "\n".join(err)


def test_the_stamp_follows_pyproject_and_the_plan(clone):
    first = plan(clone)["stamp"]
    stamp = first.split(";")[0]
    assert first.endswith(".venv is missing")
    fake_venv(clone, stamp)
    assert plan(clone)["stamp"] == f"{stamp}; .venv is ok"
    write_exe(clone.parent / "bin" / "nvidia-smi", f"#!/bin/sh\n{H200}\n")
    assert plan(clone)["stamp"].endswith(".venv is stale")      # a GPU appeared
    write_exe(clone.parent / "bin" / "nvidia-smi", f"#!/bin/sh\n{NO_GPU}\n")
    with (clone / "pyproject.toml").open("a") as toml:
        toml.write("\n# a new dependency\n")
    assert plan(clone)["stamp"].endswith(".venv is stale")
    (clone / ".venv" / "bin" / "python").unlink()
    assert plan(clone)["stamp"].endswith(".venv is broken")


def test_an_up_to_date_environment_installs_nothing(clone):
    stamp = plan(clone)["stamp"].split(";")[0]
    fake_venv(clone, stamp)
    status, out, _ = dev(clone, "test", "-q")
    assert status == 0
    assert out[-1] == "dev: .venv is up to date with pyproject.toml: nothing to install"
    assert [c for c in calls(clone) if c.startswith("-m")] == ["-m pytest -q"]


def test_a_stale_environment_installs_pinned_torch_first_then_the_project(clone):
    fake_venv(clone)
    status, _, err = dev(clone, "bench", FAKE_PIP="ok")
    assert status == 0, err
    pip = [c for c in calls(clone) if c.startswith("-m pip")]
    assert len(pip) == 2 and re.fullmatch(r"-m pip install -q torch==[\d.]+\+cpu", pip[0])
    assert pip[1] == f"-m pip install -e .[{TEST_EXTRAS}]"
    assert calls(clone)[-1] == "-m grubench"
    assert plan(clone)["stamp"].endswith(".venv is ok")         # so the repeat installs nothing


def test_the_override_reaches_pip_as_separate_arguments(clone):
    fake_venv(clone)
    (clone / "torchx==2.5.1").write_text("")  # what an unquoted torch[x]==2.5.1 would glob to
    status, _, err = dev(clone, "test", FAKE_PIP="ok",
                         GRUBENCH_TORCH="torch[x]==2.5.1 --index-url https://example.org/cu121")
    assert status == 0, err
    pip = [c for c in calls(clone) if c.startswith("-m pip")]
    assert pip[0] == "-m pip install torch[x]==2.5.1 --index-url https://example.org/cu121"


def test_no_local_cpu_wheel_falls_back_to_the_cpu_index(clone):
    fake_venv(clone)
    status, out, err = dev(clone, "test", FAKE_PIP="no-local")
    assert status == 0, err
    assert any("taking it from https://download.pytorch.org/whl/cpu" in line for line in out)
    pip = [c for c in calls(clone) if c.startswith("-m pip")]
    assert re.fullmatch(r"-m pip install --index-url https://download.pytorch.org/whl/cpu "
                        r"torch==[\d.]+\+cpu", pip[1])


@pytest.mark.parametrize("fake_pip, message", [
    ("offline", r"dev: error: pip could not install --index-url \S+ torch==\S+ \(its output is "
                r"above and in \.venv/pip\.log\): check the network connection, or point pip at "
                r"a mirror \(PIP_INDEX_URL\), and re-run \./dev"),
    ("nospace", r"dev: error: the disk filled up while pip installed .*: free some space "
                r"\(df -h \.\) and re-run \./dev"),
])
def test_pip_failures_say_what_to_do_and_leave_no_stamp(clone, fake_pip, message):
    fake_venv(clone)
    status, _, err = dev(clone, "test", FAKE_PIP=fake_pip)
    assert status == 1 and len(err) == 1 and re.fullmatch(message, err[0])
    assert not (clone / ".venv" / ".grubench-stamp").exists()
    assert "-m pytest" not in calls(clone)


def one_error(clone, **env):
    status, out, err = dev(clone, "--dry-run", "test", **env)
    assert status == 1 and len(err) == 1, (out, err)
    return err[0]


def test_an_old_python_says_how_to_get_a_new_one(clone, tmp_path):
    old = write_exe(tmp_path / "python3.9", f"""#!/bin/sh
[ "$1" = -c ] || exit 1
exec {sys.executable} -c "import sys; sys.version_info = (3, 9, 18, 'final', 0); sys.version = '3.9.18'
$2"
""")
    assert one_error(clone, PYTHON=str(old)) == (
        f"dev: error: grubench needs Python 3.10 or newer (found: {old}=3.9.18): install one "
        "(python.org, your package manager or pyenv) or set PYTHON=/path/to/python3.x")
    assert "(found: none)" in one_error(clone, PYTHON=str(tmp_path / "nothing"))


def test_a_missing_venv_module_names_the_package(clone, tmp_path):
    # Debian's python3 without python3.X-venv: ensurepip does not import.
    write_exe(tmp_path / "shadow" / "ensurepip.py", "raise ImportError('No module named ensurepip')\n")
    minor = "%d.%d" % sys.version_info[:2]
    assert one_error(clone, PYTHONPATH=str(tmp_path / "shadow")) == (
        f"dev: error: {sys.executable} has no working venv module: install it "
        f"(Debian/Ubuntu: apt install python{minor}-venv) and re-run ./dev")


def test_a_full_disk_is_caught_before_installing(clone):
    write_exe(clone.parent / "bin" / "df", "#!/bin/sh\n"
              "echo 'Filesystem 1024-blocks Used Available Capacity Mounted on'\n"
              "echo '/dev/vda 100000000 99000000 1000000 99% /'\n")
    assert one_error(clone) == (
        "dev: error: 0 GiB free on the disk of .venv and set-up needs about 4 GiB: free some "
        "space (or set GRUBENCH_VENV to a roomier disk) and re-run ./dev")


def test_a_directory_that_is_not_a_venv_is_left_alone(clone):
    (clone / "mine").mkdir()
    (clone / "mine" / "notes.txt").write_text("keep me")
    assert one_error(clone, GRUBENCH_VENV="mine") == (
        "dev: error: mine exists and is not a virtual environment: move it or set "
        "GRUBENCH_VENV to another directory")
    assert (clone / "mine" / "notes.txt").exists()
