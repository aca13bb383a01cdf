"""Transfer learning through the workflow: a StyleGAN2-ADA run starts from a network pickle in
the official format, fetched by the local rule fetch_pretrained_gan, read without running the
file's code, and its kimg-0 snapshot is exactly the imported generator."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import torch

from cxrlib.jobs.resume import ResumeRefused
from cxrlib.snapshot import read_snapshot, save_snapshot
from cxrlib.stylegan2ada import trainer as tr
from cxrlib.stylegan2ada.official import import_official
from cxrlib.stylegan2ada.pretrained import fetch_pretrained
from cxrlib.stylegan2ada.settings import stylegan_settings
from cxrlib.weights import WeightsError
from tests import official_format as off
from tests.conftest import run_snakemake

pytestmark = pytest.mark.slow
TEST_CONFIG = ("--configfile", "tests/config/test.yaml")
# tests/config/test.yaml's StyleGAN2-ADA sizes, in the official constructors' terms
SIZES = {"resolution": 32, "channel_base": 512, "channel_max": 32}


def _official_rgb_pickle(path: Path, marker: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An RGB network pickle in the official format, sized for the test study's 1-channel run."""
    off.install(monkeypatch, marker)
    g = off.official_generator(img_channels=3, z_dim=32, w_dim=32, mapping_layers=2, **SIZES)
    d = off.official_discriminator(img_channels=3, mbstd_group=4, **SIZES)
    return off.write_official_pickle(path, G=g, G_ema=g, D=d)


def test_a_run_starts_from_a_fetched_official_pickle(
    workflow_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "module_src_ran"
    published = _official_rgb_pickle(tmp_path / "net.pkl", marker, monkeypatch)
    (workflow_copy / "transfer.yaml").write_text(
        "stylegan2ada:\n"
        "  pretrained:\n"
        f"    tiny: {{url: {published.as_uri()}}}\n"  # no sha256: fetched, logged, to pin
        "  runs:\n"
        "    ada: {resume_from: tiny}\n"
        "metrics:\n  weights_dir: resources/weights\n"
    )
    target = "results/stylegan2ada/ada/train_log.csv"
    run_snakemake(workflow_copy, target, "--cores", "2", *TEST_CONFIG, "transfer.yaml")

    fetched = workflow_copy / "resources/weights/stylegan2ada/tiny.pkl"
    assert fetched.read_bytes() == published.read_bytes()
    digest = hashlib.sha256(published.read_bytes()).hexdigest()
    fetch_log = (workflow_copy / "logs/fetch_pretrained_gan/tiny.log").read_text()
    assert f"sha256: {digest}" in fetch_log  # the config line that pins it
    assert not marker.exists(), "the pickle's module_src was run"

    log = (workflow_copy / "logs/train_stylegan2ada/ada.log").read_text()
    assert "official networks from tiny.pkl" in log and "starting from" in log
    assert "luminance" in log.lower() or "luma" in log.lower()  # RGB -> gray, said
    # the run's initial generator (kimg 0) is the imported G_ema, exactly
    settings = stylegan_settings(
        {"preset": "auto", "resolution": 32, "batch_size": 4, "channel_base": 512,
         "channel_max": 32, "mapping_layers": 2, "z_dim": 32, "w_dim": 32}
    )  # fmt: skip
    want = import_official(fetched, settings.generator_kwargs(), settings.discriminator_kwargs())
    snap = read_snapshot(workflow_copy / "results/stylegan2ada/ada/snapshots/kimg000000.pt")
    got = snap["generator"]
    assert set(got) == set(want.G_ema)
    assert all(torch.equal(got[k], want.G_ema[k]) for k in got)

    # Starting that run from another file now would change its trajectory: refused at DAG
    # build, naming the key, before any job runs.
    other = workflow_copy / "other.yaml"
    other.write_text("stylegan2ada:\n  runs:\n    ada: {resume_from: null}\n")
    proc = run_snakemake(
        workflow_copy, "-n", target, "--cores", "1", *TEST_CONFIG, "transfer.yaml",
        "other.yaml", check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "resume_from" in proc.stdout + proc.stderr


def test_a_hand_placed_network_that_is_not_the_pinned_one_is_refused_in_the_job(
    workflow_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file put where fetch_pretrained_gan would write it (so nothing is fetched) is checked
    against the configured sha256 by the training job before it is read."""
    published = _official_rgb_pickle(tmp_path / "net.pkl", tmp_path / "ran", monkeypatch)
    placed = workflow_copy / "resources/weights/stylegan2ada/odd.pkl"
    placed.parent.mkdir(parents=True)
    placed.write_bytes(published.read_bytes())
    (workflow_copy / "odd.yaml").write_text(
        "stylegan2ada:\n"
        "  pretrained:\n"
        "    odd: {url: 'http://example.invalid/odd.pkl', sha256: deadbeefdeadbeef}\n"
        "  runs:\n"
        "    ada: {resume_from: odd}\n"
        "metrics:\n  weights_dir: resources/weights\n"
    )
    target = "results/stylegan2ada/ada/train_log.csv"
    proc = run_snakemake(
        workflow_copy, target, "--cores", "2", *TEST_CONFIG, "odd.yaml", check=False
    )
    assert proc.returncode != 0
    assert "fetch_pretrained_gan" not in proc.stdout + proc.stderr  # the file was there
    log = (workflow_copy / "logs/train_stylegan2ada/ada.log").read_text()
    digest = hashlib.sha256(placed.read_bytes()).hexdigest()
    assert f"has sha256 {digest}, but stylegan2ada.pretrained.odd.sha256 pins deadbeef" in log
    assert "starting from" not in log  # refused before it was read


def test_a_missing_start_file_fails_at_dag_build_naming_it(workflow_copy: Path) -> None:
    (workflow_copy / "missing.yaml").write_text(
        "stylegan2ada:\n  runs:\n    ada: {resume_from: nets/nothere.pkl}\n"
    )
    proc = run_snakemake(
        workflow_copy, "-n", "--cores", "1", *TEST_CONFIG, "missing.yaml", check=False
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "resume_from nets/nothere.pkl is neither a file nor a name in" in text


# -- the start file: bad files, a replaced file, a bad fetch (from a break-it review) ---------


def _tiny(**overrides: object) -> tr.StyleGanSettings:
    from tests.test_stylegan2 import tiny_settings

    return tiny_settings(**{"total_kimg": 0.008, "snapshot_kimg": 0.008, **overrides})


class _Opaque:
    """An object torch's weights_only loader refuses (its message suggests weights_only=False,
    advice that would run code from a file)."""


def _torch_file_of_objects(path: Path) -> None:
    torch.save({"model": _Opaque()}, path)


def _png(path: Path) -> None:
    from PIL import Image

    Image.new("L", (8, 8)).save(path, format="PNG")


# (what the file holds, what the refusal must say): files people hand over as resume_from
START_FILES = {
    "empty": (b"", "is an empty file (a failed download?), not a network file"),
    "folder": (None, "is a directory, not a network file"),
    "png": (_png, "is a PNG image, not a network file"),
    "text": (b"epoch,loss\n1,0.5\n", "is a text file (it starts 'epoch,loss"),
    "page": (b"<!DOCTYPE html><html>Sign in</html>", "is an HTML/XML page"),
    "zip": (None, "a damaged zip archive or one that torch.save did not write"),
    "objects": (_torch_file_of_objects, "holds objects other than tensors and plain data"),
}


def _write_start(path: Path, kind: str) -> None:
    content = START_FILES[kind][0]
    if kind == "folder":
        path.mkdir()
    elif kind == "zip":
        import zipfile

        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("images/a.txt", "not a network")
    elif callable(content):
        content(path)
    else:
        path.write_bytes(content)


@pytest.mark.parametrize("kind", sorted(START_FILES))
def test_a_start_file_that_is_no_network_fails_saying_what_it_is(tmp_path: Path, kind: str) -> None:
    start = tmp_path / "start.pkl"
    _write_start(start, kind)
    images = torch.zeros(4, 1, 32, 32)
    with pytest.raises(ValueError) as refused:
        tr.StyleGan2AdaTrainer(images, _tiny(resume_from=str(start)))
    text = str(refused.value)
    assert START_FILES[kind][1] in text and str(start) in text
    assert "weights_only=False" not in text  # never the advice to run the file's code
    assert kind in ("objects", "folder") or "give one of this project's" in text


@pytest.mark.parametrize("kind", ["png", "text", "folder"])
def test_a_start_file_that_is_no_network_fails_at_dag_build(workflow_copy: Path, kind: str) -> None:
    """Found before any job is submitted (on a cluster each retry would be a new GPU job)."""
    _write_start(workflow_copy / "start.pkl", kind)
    (workflow_copy / "start.yaml").write_text(
        "stylegan2ada:\n  runs:\n    ada: {resume_from: start.pkl}\n"
    )
    proc = run_snakemake(workflow_copy, "-n", *TEST_CONFIG, "start.yaml", check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"stylegan2ada.runs.ada: resume_from: start.pkl {START_FILES[kind][1]}" in text


def test_a_start_from_another_runs_snapshot_depends_on_that_run(workflow_copy: Path) -> None:
    """A snapshot of run ada as the start of run ft: ada's training is a dependency of ft's
    (so ada finishes or reruns first); a run cannot start from a file of its own."""
    snapshot = workflow_copy / "results/stylegan2ada/ada/snapshots/kimg000000.pt"
    snapshot.parent.mkdir(parents=True)
    torch.save({"model": "stylegan2ada"}, snapshot)  # only its kind is read at DAG build
    (workflow_copy / "ft.yaml").write_text(
        "stylegan2ada:\n  runs:\n    ada: {}\n"
        "    ft: {resume_from: results/stylegan2ada/ada/snapshots/kimg000000.pt}\n"
    )
    target = "results/stylegan2ada/ft/train_log.csv"
    dry = run_snakemake(workflow_copy, "-n", target, *TEST_CONFIG, "ft.yaml")
    planned = re.findall(r"^rule train_stylegan2ada:\n(?:    .*\n)*?    wildcards: run=(\w+)",
                         dry.stdout, flags=re.M)  # fmt: skip
    assert sorted(planned) == ["ada", "ft"], dry.stdout[-3000:]
    (workflow_copy / "self.yaml").write_text(
        "stylegan2ada:\n  runs:\n    ada: {resume_from: results/stylegan2ada/ada/snapshots/"
        "kimg000000.pt}\n"
    )
    proc = run_snakemake(workflow_copy, "-n", *TEST_CONFIG, "self.yaml", check=False)
    assert proc.returncode != 0
    assert "is a file of this run itself" in proc.stdout + proc.stderr


def test_a_published_network_of_another_resolution_fails_at_dag_build(
    workflow_copy: Path,
) -> None:
    """ffhq256 (config.yaml: resolution 256) for the test study's 32 px run: refused before the
    download, naming both sizes."""
    (workflow_copy / "ffhq.yaml").write_text(
        "stylegan2ada:\n  runs:\n    ada: {resume_from: ffhq256}\n"
    )
    proc = run_snakemake(workflow_copy, "-n", *TEST_CONFIG, "ffhq.yaml", check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "resume_from ffhq256 is a 256 px network" in text
    assert "the run has resolution 32: set resolution: 256" in text


def test_an_own_snapshot_of_other_sizes_names_the_sizes_that_differ(tmp_path: Path) -> None:
    wider = tr.StyleGan2AdaTrainer(torch.zeros(4, 1, 32, 32), _tiny(channel_max=16))
    start = tmp_path / "kimg000008.pt"
    kwargs = _tiny(channel_max=16).generator_kwargs()
    save_snapshot(start, "stylegan2ada", kwargs, wider.G_ema, {"kimg": 0}, "x", 0)
    with pytest.raises(ValueError) as refused:
        tr.StyleGan2AdaTrainer(torch.zeros(4, 1, 32, 32), _tiny(resume_from=str(start)))
    text = str(refused.value)
    ours = _tiny().channel_max
    assert f"(channel_max 16 in the file, {ours} in this run)" in text
    assert "resolution" not in text.split("(", 1)[1].split(")", 1)[0]  # only what differs


def test_a_diverged_snapshot_is_refused_naming_the_tensor(tmp_path: Path) -> None:
    trainer = tr.StyleGan2AdaTrainer(torch.zeros(4, 1, 32, 32), _tiny())
    name, first = next(iter(trainer.G_ema.state_dict().items()))
    first.fill_(float("nan"))  # the state dict shares the tensors
    start = tmp_path / "kimg000008.pt"
    save_snapshot(start, "stylegan2ada", _tiny().generator_kwargs(), trainer.G_ema, {}, "x", 0)
    with pytest.raises(ValueError, match=rf"G\.{re.escape(name)} holds NaN or infinite"):
        tr.StyleGan2AdaTrainer(torch.zeros(4, 1, 32, 32), _tiny(resume_from=str(start)))


def test_a_dcgan_snapshot_as_start_is_named_as_one(tmp_path: Path) -> None:
    from cxrlib.dcgan.networks import Generator as DcganGenerator

    start = tmp_path / "epoch0010.pt"
    kwargs = {"nz": 8, "ngf": 8, "channels": 1, "image_size": 64}
    save_snapshot(start, "dcgan", kwargs, DcganGenerator(**kwargs), {"epoch": 10}, "x", 0)
    with pytest.raises(ValueError, match=r"is a dcgan snapshot, neither a stylegan2ada"):
        tr.StyleGan2AdaTrainer(torch.zeros(4, 1, 32, 32), _tiny(resume_from=str(start)))


def test_a_networks_file_without_its_discriminator_is_refused_naming_it(tmp_path: Path) -> None:
    start = tmp_path / "networks.pt"
    torch.save({"networks_format": tr.NETWORKS_FORMAT, "G": {}, "G_ema": {}}, start)
    with pytest.raises(ValueError, match=r"networks.pt is without the state of D"):
        tr.StyleGan2AdaTrainer(torch.zeros(4, 1, 32, 32), _tiny(resume_from=str(start)))


def test_a_start_file_replaced_after_the_run_began_is_refused_on_resume(tmp_path: Path) -> None:
    """The settings hold the start file's path only: its sha256 goes into the resume record,
    so an extended run whose start file was replaced in place is refused, not silently
    continued as if it had started from the new file."""
    from tests.test_stylegan2 import tiny_images

    first = tr.StyleGan2AdaTrainer(torch.zeros(4, 1, 32, 32), _tiny())
    start = tmp_path / "start.pt"
    kw = _tiny().generator_kwargs()
    save_snapshot(start, "stylegan2ada", kw, first.G_ema, {"kimg": 0}, "x", 0)
    out, state = tmp_path / "out", tmp_path / "state"
    tr.train_stylegan2ada(tiny_images(), _tiny(resume_from=str(start)), "ft", out, state)
    other = tr.StyleGan2AdaTrainer(torch.zeros(4, 1, 32, 32), _tiny(seed=9))
    save_snapshot(start, "stylegan2ada", kw, other.G_ema, {"kimg": 0}, "x", 0)
    longer = _tiny(resume_from=str(start), total_kimg=0.016, snapshot_kimg=0.008)
    with pytest.raises(ResumeRefused, match="the file was replaced after the run began"):
        tr.train_stylegan2ada(tiny_images(), longer, "ft", out, state)


def test_fetching_a_page_that_is_not_a_network_fails_and_keeps_nothing(tmp_path: Path) -> None:
    page = tmp_path / "moved.html"
    page.write_text("<!DOCTYPE html><html><body>Sign in</body></html>")
    target = tmp_path / "weights/stylegan2ada/ffhq256.pkl"
    with pytest.raises(WeightsError, match=r"gave an HTML/XML page .*, not a network pickle"):
        fetch_pretrained("ffhq256", page.as_uri(), target)
    assert not target.exists()


def test_a_wrong_pinned_sha256_names_the_target_and_an_offline_fetch_the_fix(
    tmp_path: Path,
) -> None:
    source = tmp_path / "net.pkl"
    source.write_bytes(b"\x80\x03" + b"\x00" * 64)
    target = tmp_path / "weights/net.pkl"
    with pytest.raises(WeightsError) as wrong:
        fetch_pretrained("tiny", source.as_uri(), target, sha256="0" * 64)
    assert f"{target} (downloaded) has sha256" in str(wrong.value)
    assert ".tmp" not in str(wrong.value) and not target.exists()
    with pytest.raises(WeightsError) as offline:
        fetch_pretrained("tiny", (tmp_path / "gone.pkl").as_uri(), target)
    text = str(offline.value)
    assert "stylegan2ada.pretrained.tiny.url" in text and "inception" not in text


def test_pretrained_names_that_are_paths_are_refused_by_the_schema(workflow_copy: Path) -> None:
    (workflow_copy / "evil.yaml").write_text(
        "stylegan2ada:\n  pretrained:\n    ../../evil: {url: 'file:///x.pkl'}\n"
    )
    proc = run_snakemake(
        workflow_copy, "-n", "--cores", "1", *TEST_CONFIG, "evil.yaml", check=False
    )
    assert proc.returncode != 0
    assert "../../evil" in proc.stdout + proc.stderr


def test_fetch_targets_without_the_data_set_say_what_to_do(workflow_copy: Path) -> None:
    """config.yaml as shipped, data.root not there yet: the weights fetch, like every
    command, stops at once with the path and the fixes (docs/troubleshooting.md: every command
    needs data.root or the demo overlay), and with the demo overlay it plans the download."""
    target = "resources/weights/stylegan2ada/ffhq256.pkl"
    proc = run_snakemake(workflow_copy, "--cores", "1", "-n", target, check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in text
    assert "data.root data/chest_xray does not exist" in text
    assert "--configfile overlays/demo.yaml" in text
    dry = run_snakemake(workflow_copy, "--cores", "1", "-n", target, "--configfile",
                        "overlays/demo.yaml")  # fmt: skip
    assert "fetch_pretrained_gan" in dry.stdout
