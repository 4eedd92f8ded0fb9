import os
import stat

import pandas as pd

from ipdpool.harmonize.output import write_csv
from ipdpool.paths import make_private_dirs


def test_writing_into_a_shared_folder_keeps_its_mode(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    write_csv(pd.DataFrame({"a": [1]}), shared / "table.csv")
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert stat.S_IMODE((shared / "table.csv").stat().st_mode) == 0o600


def test_existing_folder_of_the_user_keeps_its_mode(tmp_path):
    os.chmod(tmp_path, 0o755)
    write_csv(pd.DataFrame({"a": [1]}), tmp_path / "table.csv")
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755


def test_folders_created_for_participant_data_are_owner_only(tmp_path):
    os.chmod(tmp_path, 0o755)
    make_private_dirs(tmp_path / "a" / "b")
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o700
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755
