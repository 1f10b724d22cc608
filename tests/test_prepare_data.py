"""``prepare-data`` on a file:// mirror of the public release files, rebuilt from the shipped data folder.

The mirror holds what the public URLs serve (SQuAD as plain JSON, SST-2 inside GLUE's zip, the MRPC copy
with its 4 made-up rows appended, Multi30k's .gz files as they are); preparing from it must give back
files whose content equals the shipped ones, which the task readers parse. No network is used.
"""

from __future__ import annotations

import gzip
import io
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
from shipped import SHIPPED, shipped

from ir_env.tasks.data import DataError
from ir_env.tasks.prepare import SOURCES, prepare


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> dict[str, Path]:
    """URL -> local file that serves the same bytes the public URL does."""
    shipped("multi30k")
    root = tmp_path_factory.mktemp("mirror")
    files: dict[str, Path] = {}
    for source in SOURCES:
        if source.url in files:
            continue
        path = root / f"{len(files)}_{source.url.rsplit('/', 1)[-1]}"
        if source.url.endswith("SST-2.zip"):
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w") as archive:
                archive.writestr("SST-2/train.tsv", gzip.decompress((SHIPPED / "sst2/train.tsv.gz").read_bytes()))
                archive.writestr("SST-2/dev.tsv", (SHIPPED / "sst2/dev.tsv").read_bytes())
            path.write_bytes(buffer.getvalue())
        elif source.dest.startswith("squad/"):
            path.write_bytes(gzip.decompress((SHIPPED / source.dest).read_bytes()))
        elif source.dest.startswith("mrpc/"):
            path.write_bytes((SHIPPED / source.dest).read_bytes() + b"1\t-1\t-1\tI like green apples.\tI like apples.\r\n" * 4)
        else:
            path.write_bytes((SHIPPED / source.dest).read_bytes())
        files[source.url] = path
    return files


def local(mirror: dict[str, Path]) -> tuple:
    return tuple(replace(s, url=mirror[s.url].as_uri()) for s in SOURCES)


def test_prepare_rebuilds_the_shipped_folder_and_the_readers_parse_it(mirror, tmp_path):
    out = prepare(tmp_path / "data", sources=local(mirror), log=lambda _: None)
    for source in SOURCES:
        made, shipped = (out / source.dest).read_bytes(), (SHIPPED / source.dest).read_bytes()
        if source.dest.endswith(".gz"):
            made, shipped = gzip.decompress(made), gzip.decompress(shipped)
        assert made == shipped, source.dest
    # a second call finds every file in place, checks it and fetches nothing
    prepare(out, sources=local(mirror), fetch=lambda url: pytest.fail(f"fetched {url} again"), log=lambda _: None)


def test_a_download_whose_content_differs_is_refused_and_nothing_is_written(mirror, tmp_path):
    sources = local(mirror)
    squad = next(s for s in sources if s.dest.startswith("squad/"))
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"version": "1.1", "data": []}')
    with pytest.raises(DataError, match="squad/dev-v1.1.json.gz: content sha256 .* differs from the published"):
        prepare(tmp_path / "data", sources=(replace(squad, url=bad.as_uri()),), log=lambda _: None)
    assert not (tmp_path / "data" / squad.dest).exists()


def test_a_truncated_release_gzip_is_named(mirror, tmp_path):
    source = next(s for s in local(mirror) if s.dest == "multi30k/val.en.gz")
    cut = tmp_path / "val.en.gz"
    cut.write_bytes(Path(source.url.removeprefix("file://")).read_bytes()[:500])
    with pytest.raises(DataError, match="not a complete gzip file"):
        prepare(tmp_path / "data", sources=(replace(source, url=cut.as_uri()),), log=lambda _: None)


def test_an_unreachable_url_names_it_and_keeps_what_was_written(tmp_path):
    source = replace(SOURCES[0], url=(tmp_path / "missing.gz").as_uri())
    with pytest.raises(DataError, match="cannot fetch file://.*missing.gz"):
        prepare(tmp_path / "data", sources=(source,), log=lambda _: None)
