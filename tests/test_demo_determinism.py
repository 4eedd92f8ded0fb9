"""The committed demo is exactly what the seeded generator writes."""

from pathlib import Path

import numpy as np

from ipdpool.demo.generate import write_demo
from ipdpool.demo.simulate import simulate_latent


def relative_files(root: Path) -> set[str]:
    """The generated part of a demo folder: raw/ and ground_truth.yaml."""
    return {str(p.relative_to(root)) for p in root.glob("raw/**/*") if p.is_file()} | {"ground_truth.yaml"}


def test_regenerating_gives_byte_identical_files(tmp_path, demo_dir):
    write_demo(tmp_path)
    assert relative_files(tmp_path) == relative_files(demo_dir)
    differing = [
        name
        for name in sorted(relative_files(tmp_path))
        if (tmp_path / name).read_bytes() != (demo_dir / name).read_bytes()
    ]
    assert differing == [], f"regenerated files differ from the committed demo: {differing} (run `make demo`)"


def test_generating_twice_gives_identical_bytes(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    write_demo(first, seed=7)
    write_demo(second, seed=7)
    for name in relative_files(first):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_another_seed_gives_other_data():
    one, _ = simulate_latent(seed=1)
    two, _ = simulate_latent(seed=2)
    assert not np.allclose(one["DK"]["functioning_bl_latent"], two["DK"]["functioning_bl_latent"])


def test_scaled_demo_keeps_design_proportions():
    latent, _ = simulate_latent(scale=3)
    assert len(latent["EU6"]) == 3 * 312
    assert latent["EU6"].groupby("site").size().eq(3 * 52).all()
    shares = latent["SE"].groupby("arm_label")["employed"].mean()
    assert abs(shares["IPS"] - 0.46) < 0.01 and abs(shares["Traditionell arbetsrehabilitering"] - 0.11) < 0.01


def test_the_aggregate_demo_file_is_what_its_script_writes(tmp_path, repo_root):
    from ipdpool.demo.aggregate import main

    main(["--out", str(tmp_path / "ips_rcts.tsv")])
    assert (tmp_path / "ips_rcts.tsv").read_bytes() == (
        repo_root / "config" / "aggregate" / "ips_rcts.tsv"
    ).read_bytes()
