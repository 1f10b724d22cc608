"""Prepare a data folder for the real-data tasks from the data sets' public release files.

    instant-reward prepare-data --out data/          # then: --data-dir data/ or IR_DATA_DIR=data/

Each file is fetched once (``urllib``: https, or file:// for a local mirror), turned into the layout the
readers of ``ir_env.tasks.data`` expect (gzip-compressed where they expect ``.gz``, one member of a zip,
the first lines of a file), checked against the sha256 of its content published in the data folders'
READMEs, written atomically, and finally parsed by the readers. Nothing here runs at import or in the
env: tests only ever read an existing folder, and test this module on file:// mirrors.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ir_env.tasks.data import DataError, read_mrpc, read_multi30k, read_squad, read_sst2

MULTI30K = "https://raw.githubusercontent.com/multi30k/dataset/a3d2e0d26b56f3846f66a952536ffed4e401d05a/data/task1/raw/"
GLUE_SST2 = "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip"
SQUAD_DEV = "https://rajpurkar.github.io/SQuAD-explorer/dataset/dev-v1.1.json"
MRPC_TRAIN = ("https://raw.githubusercontent.com/Pzeyang/Paraphrase_Identification/"
              "dc1755eb1a4755ca310f97209391f1f5c06e2fd1/msr_paraphrase_train.txt")


@dataclass(frozen=True)
class Source:
    """One file of the data folder: where it comes from, how it is made, what its content must hash to.

    Attributes:
        dest: path inside the data folder, e.g. ``"multi30k/train.en.gz"``.
        url: the public release file (https or file://).
        member: for a zip, the member to take.
        head_lines: keep only the first lines (the MRPC copy appends 4 made-up rows after line 4077).
        compress: gzip the content before writing (when ``dest`` ends in ``.gz`` and the source does not).
        sha256: of the uncompressed content as the readers see it (the READMEs' published value).
        strict: a mismatch is an error; False only warns (SST-2's train file: the folder's copy is a
            reconstruction of GLUE's, equal in every data line, so GLUE's own file should match).
    """

    dest: str
    url: str
    sha256: str
    member: str | None = None
    head_lines: int | None = None
    compress: bool = False
    strict: bool = True


SOURCES: tuple[Source, ...] = (
    *(Source(f"multi30k/{name}", MULTI30K + name, sha)
      for name, sha in {
          "train.en.gz": "460a15fbd157e34a7a9957ee388c1ca247fe47af3ef25fb50442af6c274e0fc6",
          "train.de.gz": "2c2b73fd2b548fbcde3a875e0a78d6ee94d498bfdee6bd3eae3945779e9ddf72",
          "val.en.gz": "1f2a23d992769b5b3d209b0a10dd0b77c08cceb1f20dfb97ed0aafa49d107227",
          "val.de.gz": "660e09eb7e1da2f856ea13ee5ad3cf6d36b3d5b0b733c857e94c5747a3dfc660",
          "test_2016_flickr.en.gz": "399a4382932c1aadd3ceb9bef1008d388a64c76d4ae4e9d4728c6f4301cac182",
          "test_2016_flickr.de.gz": "4be6b5b3236b79c25475c6bb829800a7ce559e9ba7a1f6c2394fe4d40be46d16",
      }.items()),
    Source("sst2/train.tsv.gz", GLUE_SST2, "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1",
           member="SST-2/train.tsv", compress=True, strict=False),
    Source("sst2/dev.tsv", GLUE_SST2, "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0",
           member="SST-2/dev.tsv"),
    Source("squad/dev-v1.1.json.gz", SQUAD_DEV, "95aa6a52d5d6a735563366753ca50492a658031da74f301ac5238b03966972c9",
           compress=True),
    Source("mrpc/msr_paraphrase_train.txt", MRPC_TRAIN,
           "f3d26d73bb3510032f80836e2e81cf32c71863f8dd6151aa80a125c2c799a557", head_lines=4077),
)


def fetch_url(url: str) -> bytes:
    """The bytes at ``url`` (https or file://)."""
    with urllib.request.urlopen(url, timeout=120) as response:
        return response.read()


def content_of(source: Source, raw: bytes) -> bytes:
    """The uncompressed content of ``source``'s file, made from the downloaded bytes."""
    data = raw
    if source.member is not None:
        try:
            with zipfile.ZipFile(io.BytesIO(raw)) as archive:
                data = archive.read(source.member)
        except (zipfile.BadZipFile, KeyError) as err:
            raise DataError(f"{source.url}: cannot take {source.member!r} from it ({err})") from None
    if source.dest.endswith(".gz") and not source.compress:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as err:
            raise DataError(f"{source.url}: not a complete gzip file ({err})") from None
    if source.head_lines is not None:
        data = b"".join(data.splitlines(keepends=True)[: source.head_lines])
    return data


def prepare(
    out: str | os.PathLike[str],
    sources: tuple[Source, ...] = SOURCES,
    fetch: Callable[[str], bytes] = fetch_url,
    log: Callable[[str], None] = print,
) -> Path:
    """Make the data folder ``out`` (kept files are checked, not fetched again); returns its path.

    Raises DataError naming the file when a download's content does not hash to its published value
    (strict sources) or the readers cannot parse the result. Files already written are kept.
    """
    root = Path(out)
    cache: dict[str, bytes] = {}  # one download per URL (SST-2's zip holds two files)
    for source in sources:
        dest = root / source.dest
        if dest.exists():
            data = dest.read_bytes()
            content = gzip.decompress(data) if dest.suffix == ".gz" else data
        else:
            if source.url not in cache:
                log(f"fetching {source.url}")
                try:
                    cache[source.url] = fetch(source.url)
                except OSError as err:  # URLError, timeouts, a missing file:// path
                    raise DataError(f"cannot fetch {source.url} ({err}); the files written so far stay in {root}") from None
            raw = cache[source.url]
            content = content_of(source, raw)
            if source.compress:
                data = gzip.compress(content, mtime=0)
            elif dest.suffix == ".gz":
                data = raw  # a release .gz file, kept byte for byte
            else:
                data = content
        digest = hashlib.sha256(content).hexdigest()
        if digest != source.sha256:
            message = f"{source.dest}: content sha256 {digest} differs from the published {source.sha256} ({source.url})"
            if source.strict:
                raise DataError(message)
            log(f"warning: {message}")
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(dest.name + ".part")
            tmp.write_bytes(data)
            os.replace(tmp, dest)
            log(f"wrote {dest}")
    check_folder(root)
    return root


def check_folder(root: str | os.PathLike[str]) -> Mapping[str, int]:
    """Parse every split with the task readers; returns the number of records of each file group."""
    counts = {f"multi30k/{split}": len(read_multi30k(root, split)) for split in ("train", "val", "test_2016_flickr")}
    counts.update({f"sst2/{split}": len(read_sst2(root, split)) for split in ("train", "dev")})
    counts["squad/dev"] = len(read_squad(root))
    counts["mrpc/train"] = len(read_mrpc(root))
    return counts


__all__ = ["SOURCES", "Source", "check_folder", "content_of", "fetch_url", "prepare"]
