"""The coordinator's checks of a received bundle: the bundle schema, cross-products that data can
give, counts that agree, every configured model present or refused by name, and signatures.

Every tampering reported against format 1 is made here with the checksum recomputed, as whoever
edits a bundle would do: each is refused with one sentence naming study, file and field."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests_support import harmonized_pool

from ipdpool import __version__
from ipdpool.federated import (
    DISCLOSURE_DEFAULTS,
    FLOW_COLUMNS,
    FLOW_COUNTS,
    BundleError,
    accept_release,
    annotate_refusals,
    check_bundle,
    exact_records,
    make_bundle,
    manifest,
    plain,
    read_bundle,
    refusal_notes,
    refused_designs,
    sha256_json,
    sign_bundle,
    status_records,
    strict_json,
    verify_signature,
)
from ipdpool.harmonize.rulefile import load_rules
from ipdpool.harmonize.schema import load_schema
from ipdpool.harmonize.study import harmonize_study
from ipdpool.releases import release
from ipdpool.tables import read_table, write_table

FILE = "inbox/SE.bundle.json"
WHERE = f"study SE: bundle {FILE}"
DESIGN = "statistics.outcomes.functioning.designs.ips/primary"


@pytest.fixture(scope="module")
def setting(repo_root, tmp_path_factory):
    """SE's bundle as its site writes it, with the flow and rule log read back from their TSV files."""
    analysis = yaml.safe_load((repo_root / "config" / "config.yaml").read_text())["analysis"]
    schema = load_schema(repo_root / "config" / "schema.yaml")
    levels = schema["variables"]["diagnosis"]["allowed"]
    part = harmonized_pool(repo_root).query("study == 'SE'")
    released = release(part, analysis, levels, 3, "harmonize")
    audit = harmonize_study(load_rules(repo_root / "config/studies/SE.yaml"), schema, b"k" * 32, base_dir=repo_root)
    folder = tmp_path_factory.mktemp("audit")
    write_table(audit.flow, folder / "flow.tsv")
    write_table(audit.rule_log, folder / "rule_log.tsv")
    flow = exact_records(read_table(folder / "flow.tsv"), FLOW_COLUMNS, FLOW_COUNTS)
    status = status_records(read_table(folder / "rule_log.tsv"))
    about = manifest(
        "SE", repo_root / "config/studies/SE.yaml", repo_root / "config/schema.yaml", analysis, __version__
    )
    bundle = plain(make_bundle(released.statistics, released.table1, flow, status, about, DISCLOSURE_DEFAULTS))
    return analysis, json.loads(json.dumps(bundle)), repo_root / "config" / "schema.yaml"


def resealed(bundle: dict) -> dict:
    """The edited bundle with its content checksum recomputed."""
    content = {k: bundle[k] for k in ("statistics", "table1", "flow", "status")}
    bundle["manifest"]["content_sha256"] = sha256_json(content)
    return bundle


def problems_of(setting, edit) -> list[str]:
    analysis, bundle, schema = setting
    edited = copy.deepcopy(bundle)
    edit(edited)
    return check_bundle(resealed(edited), FILE, "SE", schema, analysis, __version__)


def design(bundle: dict) -> dict:
    return bundle["statistics"]["outcomes"]["functioning"]["designs"]["ips/primary"]


def test_the_bundle_as_written_passes(setting):
    analysis, bundle, schema = setting
    assert check_bundle(bundle, FILE, "SE", schema, analysis, __version__) == []
    assert refused_designs(bundle, FILE, "SE", analysis) == {}


def test_a_negative_n_is_refused(setting):
    problems = problems_of(setting, lambda b: design(b).update(n=-5))
    assert problems == [f"{WHERE}, field {DESIGN}.n: an integer fails the bundle schema (minimum: minimum 0)"]


def test_an_n_that_disagrees_with_the_matrix_is_refused(setting):
    n = design(setting[1])["n"]
    problems = problems_of(setting, lambda b: design(b).update(n=n - 5))
    assert problems == [f"{WHERE}, field {DESIGN}.n: disagrees with the count in its products[0][0]"]


def test_a_number_written_as_text_is_refused_without_echoing_the_text(setting):
    def edit(b):
        design(b)["products"][1][2] = "participant SE-000417 / 1987-03-02"

    assert problems_of(setting, edit) == [
        f'{WHERE}, field {DESIGN}.products.1.2: a string fails the bundle schema (type: type "number")'
    ]


def test_a_count_written_as_a_float_is_refused(setting):
    n = design(setting[1])["n"]
    problems = problems_of(setting, lambda b: design(b).update(n=float(n)))
    assert problems == [f'{WHERE}, field {DESIGN}.n: a number fails the bundle schema (type: type "integer")']


HUGE = "a number not finite or larger in magnitude than 1e+150, which no real count or cross-product reaches"


def test_huge_entries_that_overflow_the_scaling_are_refused(setting):
    """attack5 R3: +-1e300 entries overflowed sqrt(outer(diag, diag)) to inf, so the scaled
    matrix was 0 and an asymmetric, non-PSD matrix passed; R4: 10**400 crashed unnamed."""

    def edit(b):
        products = design(b)["products"]
        for i, row in enumerate(products):
            for j in range(len(row)):
                if i and j:
                    row[j] = 1e300 if i == j else -1e300
        products[1][2] = 5e299

    assert problems_of(setting, edit) == [f"{WHERE}, field {DESIGN}.products[1][1]: {HUGE}"]
    assert problems_of(setting, lambda b: design(b)["products"][1].__setitem__(1, 10**400)) == [
        f"{WHERE}, field {DESIGN}.products[1][1]: {HUGE}"
    ]
    (problem,) = problems_of(setting, lambda b: b["statistics"].update(n=10**400))
    assert problem == f"{WHERE}, field statistics.n: {HUGE}" and "1000" not in problem


def test_a_huge_reference_is_refused(setting):
    """attack5 R10: reference 1e300 passed and pooling failed later with a false, unnamed reason."""
    (problem,) = problems_of(setting, lambda b: design(b)["reference"].__setitem__(1, 1e300))
    assert problem.startswith(f"{WHERE}, field {DESIGN}.reference[1]: ")
    (problem,) = problems_of(setting, lambda b: design(b)["reference"].__setitem__(1, 1e100))
    assert problem == f"{WHERE}, field {DESIGN}.reference: a reference larger in magnitude than 1e+15"


def test_deeply_nested_json_is_refused_by_name(tmp_path):
    """attack5 R7: 100 000 nested arrays raised a bare RecursionError."""
    text = '{"statistics": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(BundleError, match=r"^study SE: bundle x.json: not valid JSON: nested too deep$"):
        strict_json(text, "study SE: bundle x.json")
    from ipdpool.releases import ReleaseRefused, read_ledger

    (tmp_path / "SE.json").write_text(text)
    with pytest.raises(ReleaseRefused, match="not valid JSON \\(nested too deep\\)"):
        read_ledger(tmp_path / "SE.json", "SE", b"k" * 32)


@pytest.mark.parametrize("edit", ["permuted", "renamed"])
def test_column_names_must_be_the_configured_designs(setting, edit):
    """attack5 R8: the centre adds matrices by position, so permuted (consistently: names, reference,
    products) or renamed columns would pool one study's baseline with another's ips."""

    def change(b):
        d = design(b)
        if edit == "renamed":
            d["names"][1] = "not-a-configured-column"
            return
        order = [0, 2, 1, *range(3, len(d["names"]))]
        d["names"] = [d["names"][i] for i in order]
        d["reference"] = [d["reference"][i] for i in order]
        d["products"] = [[d["products"][i][j] for j in order] for i in order]

    assert problems_of(setting, change) == [
        f"{WHERE}, field {DESIGN}.names: the column names or their order differ from the configured design's "
        "(the centre adds studies' matrices column by column)"
    ]


def test_an_asymmetric_matrix_is_refused(setting):
    def edit(b):
        design(b)["products"][1][2] += 1.0

    (problem,) = problems_of(setting, edit)
    assert problem.startswith(f"{WHERE}, field {DESIGN}.products: not symmetric (entries [1][2] and [2][1] differ by")


def test_a_negative_sum_of_squares_is_refused(setting):
    def edit(b):
        design(b)["products"][3][3] = -1.0

    assert problems_of(setting, edit) == [f"{WHERE}, field {DESIGN}.products[3][3]: a sum of squares is negative"]


def test_cross_products_no_data_can_give_are_refused(setting):
    def edit(b):  # symmetric, positive diagonal, but a correlation above 1
        matrix = design(b)["products"]
        matrix[1][2] = matrix[2][1] = 2 * (matrix[1][1] * matrix[2][2]) ** 0.5

    (problem,) = problems_of(setting, edit)
    assert problem.startswith(f"{WHERE}, field {DESIGN}.products: not positive semi-definite")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.floats(-1e4, 1e4), min_size=3, max_size=3),
    st.lists(st.sampled_from([1e-3, 1.0, 60.0, 1e3]), min_size=3, max_size=3),
)
def test_cross_products_in_other_units_or_about_a_reference_pass(setting, shift, scale):
    """The engine's coming format: products about a reference (0 for the intercept), here with
    columns also in other units (a large offset and scale is what cancels digits in raw products)."""

    def edit(b):
        entry = design(b)
        units = np.diag([1.0, *scale])
        raw = units @ np.asarray(entry["products"]) @ units
        reference = np.array([0.0, *shift])
        # sum (w - r)(w - r)' = W'W - r s' - s r' + n r r', with s = W'1 (the first column)
        s = raw[:, 0]
        centred = raw - np.outer(reference, s) - np.outer(s, reference) + entry["n"] * np.outer(reference, reference)
        entry.update(products=centred.tolist(), reference=reference.tolist())

    assert problems_of(setting, edit) == []


def test_a_reference_must_have_one_number_per_column_and_0_first(setting):
    def edit(b):
        design(b)["reference"] = [1.0, 0.0, 0.0, 0.0]

    assert problems_of(setting, edit) == [
        f"{WHERE}, field {DESIGN}.reference: needs 4 numbers, the first (intercept) 0"
    ]


def with_centres(b: dict) -> dict:
    """SE's primary design split into two centre blocks that add up to it: all its participants
    at c1 and none at c2 (arithmetic any two blocks must satisfy)."""
    entry = design(b)
    size = len(entry["names"])
    empty = {"names": entry["names"], "n": 0, "reference": [0.0] * size, "products": [[0.0] * size] * size}
    entry["centres"] = {"c1": copy.deepcopy({k: v for k, v in entry.items() if k != "centres"}), "c2": empty}
    return entry["centres"]


def test_centre_blocks_that_add_up_pass_and_tampered_ones_are_refused(setting):
    assert problems_of(setting, with_centres) == []
    field = f"{WHERE}, field {DESIGN}.centres"
    assert problems_of(setting, lambda b: with_centres(b)["c1"].update(n=design(b)["n"] - 1)) == [
        f"{field}.c1.n: disagrees with the count in its products[0][0]",  # numbers are not echoed
        f"{field}: the centres' n do not add up to the design's n",
    ]

    def asymmetric(b):
        with_centres(b)["c1"]["products"][1][2] += 1.0

    (problem,) = problems_of(setting, asymmetric)
    assert problem.startswith(f"{field}.c1.products: not symmetric")

    def one_block(b):
        with_centres(b).pop("c2")

    assert problems_of(setting, one_block) == [f"{field}: one centre block (a site sends two or more, or none)"]

    def other_columns(b):
        with_centres(b)["c2"]["names"] = list(reversed(design(b)["names"]))

    assert problems_of(setting, other_columns) == [f"{field}.c2.names: not the design's columns"]


def test_a_centre_named_by_its_site_is_refused_by_the_schema(setting):
    def named(b):
        centres = with_centres(b)
        centres["Stockholm"] = centres.pop("c2")

    (problem,) = problems_of(setting, named)
    assert problem.startswith(f"{WHERE}, field {DESIGN}.centres") and 'pattern "^c[0-9]+$"' in problem


def test_a_deleted_model_refuses_the_study_for_that_model_by_name(setting):
    analysis, bundle, _ = setting
    edited = copy.deepcopy(bundle)
    del edited["statistics"]["outcomes"]["functioning"]["designs"]["ips/primary"]
    assert (
        problems_of(setting, lambda b: b["statistics"]["outcomes"]["functioning"]["designs"].pop("ips/primary")) == []
    )
    assert refused_designs(edited, FILE, "SE", analysis) == {
        "functioning": {
            "ips/primary": f"study SE refused for model ips/primary of outcome functioning (bundle {FILE}): "
            "missing from the bundle"
        }
    }


def test_strict_json_refuses_nan_and_duplicate_keys():
    with pytest.raises(BundleError, match=f"{WHERE}: not strict JSON: NaN is not a number"):
        strict_json('{"n": NaN}', WHERE)
    with pytest.raises(BundleError, match=f"{WHERE}: not strict JSON: key 'n' appears twice in one object"):
        strict_json('{"n": 1, "n": 2}', WHERE)


def leaves(value, path=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaves(item, (*path, index))
    yield path


BREAKING = {
    "text": lambda v: "12" if not isinstance(v, str) else None,
    "list": lambda v: [v],
    "object": lambda v: {"value": v},
    "bool": lambda v: True,
    "negative": lambda v: -3 if isinstance(v, int) and not isinstance(v, bool) else None,
    "fraction": lambda v: v + 0.5 if isinstance(v, int) and not isinstance(v, bool) else None,
}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_random_edits_are_refused_in_sentences_naming_study_file_and_field(setting, data):
    """Fuzz: a random leaf (or object) gets a value of another type, a negative or fractional count,
    or is deleted; the checksum is recomputed. Every such edit is refused, without an exception,
    in one-line sentences that each name study, file and field."""
    analysis, bundle, schema = setting
    paths = [p for p in leaves(bundle) if p and p[0] != "manifest" or p[:1] == ("manifest",) and len(p) == 2]
    path = data.draw(st.sampled_from(paths))
    edited = copy.deepcopy(bundle)
    parent = edited
    for step in path[:-1]:
        parent = parent[step]
    old = parent[path[-1]]
    kind = data.draw(st.sampled_from(["delete", *BREAKING]))
    if kind == "delete":
        if isinstance(parent, list) or path[-2:-1] in (("designs",), ("outcomes",), ("withheld",), ("harmonized",)):
            return  # a list item or a whole design/outcome: refused per model instead (test above)
        if path[-2:-1] in (("sex",), ("diagnosis",), ("employed",)) and path[-1] != "missing":
            return  # a level with no participants is simply absent
        del parent[path[-1]]
    else:
        new = BREAKING[kind](old)
        if new is None or (kind == "negative" and old == -3):
            return
        parent[path[-1]] = new
    if path[0] != "manifest" or path[-1] == "content_sha256":
        resealed(edited) if path[-1] != "content_sha256" else None
    problems = check_bundle(edited, FILE, "SE", schema, analysis, __version__)
    assert problems, (path, kind)
    for problem in problems:
        assert "\n" not in problem and problem.startswith(f"{WHERE}, field "), problem


# ------------------------------------------------------------------ signatures


def ssh_key(folder, name: str) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(folder / name)], check=True)
    return (folder / f"{name}.pub").read_text().strip()


@pytest.fixture
def signed(setting, tmp_path):
    """SE's bundle signed with a key pair made here; the centre's allowed_signers holds its public key."""
    _, bundle, _ = setting
    public = ssh_key(tmp_path, "se_key")
    ssh_key(tmp_path, "other_key")
    (tmp_path / "allowed_signers").write_text(f"SE {public}\n")
    path = tmp_path / "SE.bundle.json"
    path.write_text(json.dumps(bundle, sort_keys=True, indent=1) + "\n")
    sign_bundle(path, tmp_path / "se_key")
    return path, {"signatures": {"allowed_signers": str(tmp_path / "allowed_signers")}}


def test_a_valid_signature_is_accepted(signed):
    path, federated = signed
    assert verify_signature(path, "SE", federated).startswith("signed by SE, verified with ssh-keygen -Y")


def test_a_signature_by_another_key_is_refused(signed, tmp_path):
    path, federated = signed
    sign_bundle(path, tmp_path / "other_key")
    with pytest.raises(BundleError, match=f"study SE: bundle {path}: signature SE.bundle.json.sig is not a valid"):
        verify_signature(path, "SE", federated)


def test_a_signature_for_another_study_is_refused(signed):
    path, federated = signed
    with pytest.raises(BundleError, match="is not a valid signature by NL"):
        verify_signature(path, "NL", federated)


def test_a_bundle_edited_after_signing_is_refused(signed, setting):
    path, federated = signed
    bundle = json.loads(path.read_text())
    bundle["statistics"]["outcomes"]["functioning"]["designs"]["ips/primary"]["n"] = 80
    path.write_text(json.dumps(resealed(bundle), sort_keys=True, indent=1) + "\n")
    with pytest.raises(BundleError, match="is not a valid signature by SE"):
        verify_signature(path, "SE", federated)


def test_unsigned_bundles_are_refused_unless_acknowledged_with_a_reason(signed):
    path, federated = signed
    path.with_name(path.name + ".sig").unlink()
    with pytest.raises(BundleError, match="has no detached signature SE.bundle.json.sig beside it"):
        verify_signature(path, "SE", federated)
    with pytest.raises(BundleError, match="unsigned bundles are refused unless federated.unsigned is 'acknowledged'"):
        verify_signature(path, "SE", {})
    acknowledged = {"unsigned": "acknowledged", "unsigned_reason": "pilot; keys exchanged next month"}
    assert verify_signature(path, "SE", acknowledged) == (
        "UNSIGNED, accepted because federated.unsigned is acknowledged: pilot; keys exchanged next month"
    )


@pytest.fixture
def gnupg_home(tmp_path, monkeypatch):
    """A fresh GnuPG home; its agent is stopped afterwards (gpg starts one per home, which would
    outlive the test run)."""
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("GNUPGHOME", str(home))
    yield home
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)


@pytest.mark.skipif(shutil.which("gpg") is None, reason="GnuPG is not installed")
def test_gnupg_signatures_are_verified_against_the_keyring_and_the_study_fingerprint(signed, tmp_path, gnupg_home):
    path, _ = signed
    home = gnupg_home
    gpg = ["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""]
    for who in ("se", "other"):
        subprocess.run(
            [*gpg, "--quick-gen-key", f"{who} <{who}@example.invalid>", "ed25519", "sign", "never"], check=True
        )
    listing = subprocess.run(["gpg", "--with-colons", "--list-keys"], capture_output=True, text=True, check=True).stdout
    fingerprints = [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")]
    keyring = tmp_path / "sites.kbx"
    exported = subprocess.run(["gpg", "--export"], capture_output=True, check=True).stdout
    subprocess.run(
        ["gpg", "--batch", "--no-default-keyring", "--keyring", str(keyring), "--import"], input=exported, check=True
    )
    settings_ = {"signatures": {"gpg_keyring": str(keyring), "gpg_fingerprints": {"SE": fingerprints[0]}}}
    sig = path.with_name(path.name + ".sig")
    sig.unlink()
    subprocess.run([*gpg, "--local-user", fingerprints[0], "--detach-sign", "-o", str(sig), str(path)], check=True)
    assert verify_signature(path, "SE", settings_).startswith("signed by SE, verified with GnuPG")
    sig.unlink()
    subprocess.run([*gpg, "--local-user", fingerprints[1], "--detach-sign", "-o", str(sig), str(path)], check=True)
    with pytest.raises(BundleError, match="is not a valid GnuPG signature by SE's key .*made by another key"):
        verify_signature(path, "SE", settings_)
    assert os.environ["GNUPGHOME"] == str(home)


def gnupg_signed(path, home, expire: str, *when: str):
    """One key in the GnuPG home `home` (expiring as asked, made and used at `when`'s faked time)
    that signed `path`: gpg's command, its home and the key's fingerprint."""
    gpg = ["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", "", *when]
    subprocess.run([*gpg, "--quick-gen-key", "se <se@example.invalid>", "ed25519", "sign", expire], check=True)
    listing = subprocess.run(["gpg", "--with-colons", "--list-keys"], capture_output=True, text=True, check=True).stdout
    fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    sig = path.with_name(path.name + ".sig")
    sig.unlink(missing_ok=True)
    subprocess.run([*gpg, "--local-user", fingerprint, "--detach-sign", "-o", str(sig), str(path)], check=True)
    return gpg, home, fingerprint


def export_keyring(tmp_path, fingerprint) -> dict:
    keyring = tmp_path / "sites.kbx"
    exported = subprocess.run(["gpg", "--export", fingerprint], capture_output=True, check=True).stdout
    subprocess.run(
        ["gpg", "--batch", "--no-default-keyring", "--keyring", str(keyring), "--import"], input=exported, check=True
    )
    return {"signatures": {"gpg_keyring": str(keyring), "gpg_fingerprints": {"SE": fingerprint}}}


@pytest.mark.skipif(shutil.which("gpg") is None, reason="GnuPG is not installed")
def test_a_gnupg_signature_by_a_revoked_key_is_refused(signed, tmp_path, gnupg_home):
    path, _ = signed
    gpg, home, fingerprint = gnupg_signed(path, gnupg_home, "never")
    assert verify_signature(path, "SE", export_keyring(tmp_path, fingerprint)).startswith("signed by SE")
    # the stolen-key answer of docs/privacy.md: the site publishes its revocation certificate
    certificate = (home / "openpgp-revocs.d" / f"{fingerprint}.rev").read_text()
    subprocess.run([*gpg, "--import"], input=certificate.replace(":-----BEGIN", "-----BEGIN"), text=True, check=True)
    (tmp_path / "sites.kbx").unlink()
    with pytest.raises(BundleError, match=r"the signing key is revoked \((REVKEYSIG|KEYREVOKED)\)"):
        verify_signature(path, "SE", export_keyring(tmp_path, fingerprint))


@pytest.mark.skipif(shutil.which("gpg") is None, reason="GnuPG is not installed")
def test_a_gnupg_signature_by_an_expired_key_is_refused(signed, tmp_path, gnupg_home):
    path, _ = signed
    # a key made and used in 2020 that expired a day later
    _, _, fingerprint = gnupg_signed(path, gnupg_home, "1d", "--faked-system-time", "20200101T000000")
    with pytest.raises(BundleError, match=r"the signing key has expired \((EXPKEYSIG|KEYEXPIRED)\)"):
        verify_signature(path, "SE", export_keyring(tmp_path, fingerprint))


def test_read_bundle_refuses_with_every_sentence(setting, tmp_path):
    analysis, bundle, schema = setting
    edited = copy.deepcopy(bundle)
    design(edited)["n"] = 81
    design(edited)["products"][3][3] = -2.0
    path = tmp_path / "SE.bundle.json"
    path.write_text(json.dumps(resealed(edited)))
    with pytest.raises(BundleError) as refused:
        read_bundle(path, "SE", schema, analysis, __version__)
    lines = str(refused.value).splitlines()
    assert lines[0] == "study SE: bundle refused:" and len(lines) == 2
    assert lines[1] == f"study SE: bundle {path}, field {DESIGN}.products[3][3]: a sum of squares is negative"


def test_a_refused_study_is_named_in_the_warnings_of_exactly_the_rows_of_its_model(setting):
    analysis, bundle, _ = setting
    edited = copy.deepcopy(bundle)
    outcome = edited["statistics"]["outcomes"]["functioning"]
    del outcome["designs"]["ips/covariates"]
    outcome.setdefault("withheld", {})["ips/covariates"] = "withheld: differs from ips/primary by 2 and 0"
    statistics = {"SE": {**edited["statistics"], "outcomes": {}}}
    statistics["SE"]["outcomes"]["functioning"] = {
        **outcome,
        "refused": refused_designs(edited, FILE, "SE", analysis)["functioning"],
    }
    table = pd.DataFrame(
        {
            "contrast": ["ips", "ips", "ips", "employed"],
            "model": ["random_intercept", "covariates", "ml", "covariates"],
            "warnings": ["", "singular fit", None, ""],
        }
    )
    out = annotate_refusals(table, refusal_notes(statistics, "functioning"))
    message = (
        f"study SE refused for model ips/covariates of outcome functioning (bundle {FILE}): "
        "withheld: differs from ips/primary by 2 and 0"
    )
    assert out["warnings"].tolist() == ["", f"singular fit; {message}", "", ""]
    assert annotate_refusals(table, refusal_notes(statistics, "depression")).equals(table)


def test_a_release_numbered_again_with_other_content_is_refused(tmp_path):
    """attack5 R6: a site ledger restored from a backup numbers a different release 2 again; the
    centre accepted the equal sequence and the two releases differed by one participant."""
    state = tmp_path / "accepted_releases.json"
    first = {"release_sequence": 2, "released": "2026-12-02", "content_sha256": "a" * 64}
    assert accept_release(state, "SE", first).startswith("release 2 of 2026-12-02")
    assert accept_release(state, "SE", first).startswith("release 2")  # the same bundle again: a rerun
    with pytest.raises(BundleError, match="carries the sequence of a release already accepted .* with other content"):
        accept_release(state, "SE", {**first, "released": "2026-12-03", "content_sha256": "b" * 64})
    assert accept_release(state, "SE", {**first, "release_sequence": 3, "content_sha256": "b" * 64})
    # a record written before contents were kept (study -> highest) still refuses older releases
    state.write_text(json.dumps({"SE": 2}))
    with pytest.raises(BundleError, match="older than release 2"):
        accept_release(state, "SE", {**first, "release_sequence": 1})
    assert accept_release(state, "SE", first)


def test_a_superseded_signed_bundle_replayed_is_refused(setting, tmp_path):
    """F2: the release sequence is signed in the manifest; the centre refuses one older than it accepted."""
    analysis, bundle, schema = setting
    public = ssh_key(tmp_path, "se_key")
    (tmp_path / "allowed_signers").write_text(f"SE {public}\n")
    federated = {"signatures": {"allowed_signers": str(tmp_path / "allowed_signers")}}
    state = tmp_path / "centre" / "accepted_releases.json"
    paths = {}
    for sequence in (1, 2):
        about = {**bundle["manifest"], "release_sequence": sequence, "released": f"2026-12-0{sequence}T10:00:00+00:00"}
        path = tmp_path / f"release{sequence}" / "SE.bundle.json"
        path.parent.mkdir()
        path.write_text(json.dumps(resealed({**bundle, "manifest": about}), sort_keys=True, indent=1) + "\n")
        sign_bundle(path, tmp_path / "se_key")
        paths[sequence] = path
    for path in (paths[2], paths[2], paths[1]):  # the newest (twice: a rerun), then the old one replayed
        assert verify_signature(path, "SE", federated).startswith("signed by SE")
        checked = read_bundle(path, "SE", schema, analysis, __version__)
        if path == paths[1]:
            with pytest.raises(BundleError, match="release 1 of 2026-12-01T10:00:00.*older than release 2, already"):
                accept_release(state, "SE", checked["manifest"])
        else:
            assert accept_release(state, "SE", checked["manifest"]).startswith("release 2 of 2026-12-02")
    digest = bundle["manifest"]["content_sha256"]
    assert json.loads(state.read_text()) == {"SE": {"highest": 2, "contents": {"2": digest}}}
    # a fresh centre (no state) still refuses what is below the configured minimum
    with pytest.raises(BundleError, match="older than the minimum release 2 configured for it"):
        accept_release(
            tmp_path / "fresh.json", "SE", read_bundle(paths[1], "SE", schema, analysis, __version__)["manifest"], 2
        )
    # the sequence and release time are required and signed (an edit breaks the signature)
    edited = json.loads(paths[1].read_text())
    edited["manifest"]["release_sequence"] = 3
    paths[1].write_text(json.dumps(edited, sort_keys=True, indent=1) + "\n")
    with pytest.raises(BundleError, match="is not a valid signature by SE"):
        verify_signature(paths[1], "SE", federated)
    del edited["manifest"]["release_sequence"]
    paths[1].write_text(json.dumps(edited))
    with pytest.raises(BundleError, match="release_sequence"):
        read_bundle(paths[1], "SE", schema, analysis, __version__)


@pytest.mark.parametrize("literal", ["1e999", "-1e999", "1E+400", "-2.5e308"])
def test_a_number_too_large_to_be_finite_is_refused_naming_the_field(setting, tmp_path, literal):
    """F11: json parses an overflowing literal to inf without calling parse_constant."""
    assert strict_json('{"a": [1, {"b": -0.0}]}', "x") == {"a": [1, {"b": -0.0}]}
    with pytest.raises(
        BundleError, match=r"^where, field a\[1\]\.b: a number not finite or larger in magnitude than 1e\+150"
    ):
        strict_json(f'{{"a": [1, {{"b": {literal}}}]}}', "where")
    analysis, bundle, schema = setting
    path = tmp_path / "SE.bundle.json"
    edited = json.loads(json.dumps(bundle))
    edited["table1"]["IPS"]["age"]["mean"] = 12345.5
    path.write_text(json.dumps(resealed(edited)).replace("12345.5", literal))
    with pytest.raises(BundleError, match=f"study SE: bundle {path}, field table1.IPS.age.mean: a number not finite"):
        read_bundle(path, "SE", schema, analysis, __version__)


def test_a_constant_rule_s_value_is_not_in_the_bundle(setting):
    """SE's rule file sets site to the constant 'Malmö': the status row says only 'constant'."""
    _, bundle, _ = setting
    (site,) = [row for row in bundle["status"] if row["variable"] == "site"]
    assert site["rule"] == "constant" and site["source"] == "constant"
    assert "Malm" not in json.dumps(bundle, ensure_ascii=False)
