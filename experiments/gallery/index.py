"""A gallery index: a folder of RGB images embedded once by one model, searched many times.

Layout of INDEX/ (a folder):
  index.json        format, status (`building` | `complete`), the model's identity, the gallery
                    folder, row count, embedding size, chunk size, and the manifest: size and
                    sha256 of every file below (`experiments.gallery.manifest`, checked on open)
  paths.json        gallery paths relative to the gallery folder, in row order
  identities.npy    int64 identity per row (the 4-digit parent folder; -1 when there is none)
  chunks/NNNNNN.npy embeddings while building, one file per chunk (atomic: a chunk is there
                    whole or not at all, so an interrupted build continues where it stopped)
  embeddings.npy    `[N, D]` float32, L2-normalised, once complete (memory-mapped when read)
  faiss_<kind>.index an approximate index (HNSW or IVF), built on first use and kept (and added
                    to the manifest)

A search refuses an index whose model identity (weights + config digest) is not the given
model's. Exact search is a chunked matrix product with `argpartition` per chunk; `hnsw` and `ivf`
are faiss indexes for large galleries (see docs/BENCHMARKS.md, "Gallery index and search").
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from experiments.gallery import manifest
from experiments.gallery.manifest import GalleryIndexError
from reid_core.data.evalfile import parse_identity_folder
from reid_core.errors import DataError, ReidError
from reid_core.fileio import atomic_path
from reid_core.modality import IMAGE_SUFFIXES
from reid_core.safeio import check_path_length, quote

__all__ = ["GalleryIndex", "GalleryIndexError", "build_index", "open_index"]

FORMAT_VERSION = 2  # 2: index.json holds the manifest
KINDS = ("exact", "hnsw", "ivf")
EXACT_CHUNK = 131_072  # rows per matrix product: 256 MiB of float32 at D=512
# Search-time defaults from the sweep in bench/gallery_index_bench.py at 1M rows (efSearch 256
# reached recall@10 0.949 there, nprobe 128 0.959 at p99 30 ms): docs/BENCHMARKS.md.
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 80, 512
IVF_NPROBE = 128  # of about 2 sqrt(N) lists
IVF_KMEANS_ITERATIONS = 10


# ---------------------------------------------------------------------------- gallery files
def gallery_folder(gallery: Path) -> Path:
    """The folder whose RGB images are the gallery: a dataset ROOT's `vis/`, else `gallery`."""
    check_path_length(gallery, "--gallery", DataError)
    gallery = Path(gallery)
    if not gallery.is_dir():
        raise DataError(f"--gallery {gallery}: not a folder")
    return gallery / "vis" if (gallery / "vis").is_dir() else gallery


def gallery_files(gallery: Path) -> list[Path]:
    """RGB images under `gallery_folder(gallery)`, sorted."""
    base = gallery_folder(gallery)
    files = sorted(p for p in base.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"--gallery {gallery}: no images")
    return files


def path_identity(path: Path) -> int | None:
    """The identity of a gallery image: its numbered parent folder (`0007`), else None."""
    return parse_identity_folder(path.parent.name)


def features(out: Any) -> np.ndarray:
    """The `[N, D]` float32 `bn_features` of a pyfunc `predict` answer."""
    return np.asarray(np.stack([np.asarray(v, dtype=np.float32) for v in out["bn_features"]]))


# ---------------------------------------------------------------------------- model identity
def weights_digest(model: Any, uri: str) -> str:
    """The digest of a loaded OmniReID pyfunc's weights and config: equal digests embed alike."""
    impl = model.get_raw_model() if hasattr(model, "get_raw_model") else model
    if not hasattr(impl, "weights_digest"):
        raise ReidError(f"{uri}: not an OmniReID pyfunc model (no weights digest)")
    return str(impl.weights_digest())


def model_identity(model: Any, uri: str) -> dict[str, Any]:
    """Who embeds: the registered name/version (or run id) behind `uri` and a digest of the
    weights and config, which alone decides whether two models embed alike."""
    meta = getattr(model, "metadata", None)
    out: dict[str, Any] = {
        "uri": uri,
        "weights_digest": weights_digest(model, uri),
        "run_id": getattr(meta, "run_id", None),
        "name": None,
        "version": None,
    }
    out.update(_registered(uri))
    return out


def _registered(uri: str) -> dict[str, Any]:
    """`models:/NAME/VERSION` or `models:/NAME@ALIAS` -> name and version; else nothing."""
    if not uri.startswith("models:/"):
        return {}
    spec = uri.removeprefix("models:/")
    if "@" in spec:
        import mlflow

        name, _, alias = spec.partition("@")
        mv = mlflow.MlflowClient().get_model_version_by_alias(name, alias)
        return {"name": name, "version": str(mv.version)}
    name, _, version = spec.partition("/")
    return {"name": name, "version": version or None}


def describe(identity: dict[str, Any]) -> str:
    who = (
        f"{identity['name']} version {identity['version']}"
        if identity.get("name")
        else f"run {identity.get('run_id') or '?'}"
    )
    return f"{who} (weights {identity['weights_digest'][:12]})"


# ------------------------------------------------------------------------------------ reading
@dataclass
class GalleryIndex:
    folder: Path
    meta: dict[str, Any]
    paths: list[str]
    identities: np.ndarray
    embeddings: np.ndarray  # [N, D] float32, memory-mapped
    _faiss: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def gallery(self) -> Path:
        return Path(self.meta["gallery"])

    def file(self, row: int) -> Path:
        return self.gallery / self.paths[row]

    def identity(self, row: int) -> int | None:
        value = int(self.identities[row])
        return None if value < 0 else value

    def check_model(self, identity: dict[str, Any]) -> None:
        """Refuse a model other than the one that built the index."""
        built = self.meta["model"]
        if built["weights_digest"] != identity["weights_digest"]:
            raise GalleryIndexError(
                f"{self.folder} was built by {describe(built)}, not by {identity['uri']} = "
                f"{describe(identity)}; rebuild it with `reid index build --model "
                f"{identity['uri']}` or search with the model that built it"
            )

    def search(self, queries: np.ndarray, top: int, kind: str = "exact") -> tuple[Any, Any]:
        """Rows `[Q, k]` and scores `[Q, k]` of the `top` best gallery rows per query."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = min(top, len(self.paths))
        if kind == "exact":
            return exact_topk(self.embeddings, q, k)
        return faiss_topk(self.faiss(kind), q, k)

    def faiss(self, kind: str) -> Any:
        """The faiss index of `kind`, read from the index folder or built and kept there."""
        import faiss

        if kind not in ("hnsw", "ivf"):
            raise ReidError(f"--kind {kind!r}: choose one of {', '.join(KINDS)}")
        if kind not in self._faiss:
            name = f"faiss_{kind}.index"
            path = manifest.checked_faiss_file(self.folder, self.meta, name)
            if path is not None:
                self._faiss[kind] = faiss.read_index(str(path))
            else:
                self._faiss[kind] = build_faiss(self.embeddings, kind)
                with atomic_path(self.folder / name) as tmp:
                    faiss.write_index(self._faiss[kind], str(tmp))
                    entry = manifest.file_entry(tmp)
                self.meta["files"][name] = entry
                _write_json(self.folder / manifest.META_FILE, self.meta)
        return self._faiss[kind]


def open_index(folder: Path, verify: bool = False) -> GalleryIndex:
    """Read a complete index (embeddings memory-mapped), checked against its manifest (see
    `experiments.gallery.manifest`; `verify` hashes the embeddings too); one-line errors."""
    folder = Path(folder)
    meta = manifest.read_meta(folder)
    if meta is None:
        raise GalleryIndexError(f"--index {folder}: not an index (no index.json); build one first")
    if meta.get("format_version") != FORMAT_VERSION:
        raise GalleryIndexError(
            f"--index {folder}: index format {quote(meta.get('format_version'))} cannot "
            f"be read (this OmniReID reads {FORMAT_VERSION}); rebuild it"
        )
    complete = meta.get("status") == "complete"
    manifest.check_meta(meta, folder, complete)
    if not complete:
        raise GalleryIndexError(
            f"--index {folder}: unfinished build ({_done_rows(folder, meta)}/{meta['count']} "
            "rows); run the same `reid index build` again to continue"
        )
    paths = manifest.read_paths(folder, meta)
    ids = manifest.read_identities(folder, meta)
    emb = manifest.open_embeddings(folder, meta, verify)
    return GalleryIndex(folder, meta, paths, ids, emb)


def _write_json(path: Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1), encoding="utf-8")


# ----------------------------------------------------------------------------------- building
def listing_digest(gallery: Path, rel: list[str]) -> str:
    """sha256 over (path, size, mtime) of every gallery file: a changed gallery is a new one."""
    h = hashlib.sha256()
    for r in rel:
        st = (gallery / r).stat()
        h.update(f"{r}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def build_index(
    model: Any,
    uri: str,
    gallery: Path,
    out: Path,
    chunk_rows: int = 2048,
    progress: bool = True,
) -> tuple[GalleryIndex, str]:
    """Embed every RGB image under `gallery` into the index folder `out`; continues an
    interrupted build of the same model and gallery. Returns the index and what happened
    (`built`, `resumed at row N`, `up to date`)."""
    files = gallery_files(Path(gallery).resolve())
    base = gallery_folder(Path(gallery).resolve())
    rel = [p.relative_to(base).as_posix() for p in files]
    identity = model_identity(model, uri)
    meta = {
        "format_version": FORMAT_VERSION,
        "status": "building",
        "model": identity,
        "gallery": str(base),
        "count": len(rel),
        "listing_digest": listing_digest(base, rel),
        "chunk_rows": chunk_rows,
    }
    out = Path(out)
    state = _resume_state(out, meta)
    if state == "up to date":
        return open_index(out, verify=True), state
    out.mkdir(parents=True, exist_ok=True)
    if state == "new":
        _write_json(out / "paths.json", rel)
        ids = np.array([-1 if (i := path_identity(p)) is None else i for p in files])
        with atomic_path(out / "identities.npy") as tmp:
            np.save(tmp, ids.astype(np.int64))
        _write_json(out / "index.json", meta)
    done_before = _done_rows(out, meta)
    _embed_chunks(model, files, out / "chunks", chunk_rows, progress)
    meta["dim"] = _concatenate(out, len(rel), chunk_rows)
    meta["files"] = {name: manifest.file_entry(out / name) for name in manifest.DATA_FILES}
    meta["status"] = "complete"
    _write_json(out / "index.json", meta)
    shutil.rmtree(out / "chunks", ignore_errors=True)
    what = "built" if done_before == 0 else f"resumed at row {done_before}"
    return open_index(out, verify=True), what


def _resume_state(out: Path, meta: dict[str, Any]) -> str:
    """`new`, `resume` or `up to date`; an index of another model or gallery is refused."""
    if out.exists() and not out.is_dir():
        raise GalleryIndexError(f"--out {out} is a file, not a folder")
    old = manifest.read_meta(out) if out.is_dir() else None
    if old is None:
        if out.is_dir() and any(out.iterdir()):
            raise GalleryIndexError(
                f"--out {out}: a folder that is not an index; choose an empty one"
            )
        return "new"
    if old.get("format_version") != FORMAT_VERSION:
        raise GalleryIndexError(
            f"--out {out} holds an index of format {quote(old.get('format_version'))}, "
            f"not {FORMAT_VERSION}; remove it or choose another --out"
        )
    manifest.check_meta(old, out, complete=False)
    same_model = old["model"]["weights_digest"] == meta["model"]["weights_digest"]
    same_gallery = (old.get("gallery"), old.get("listing_digest")) == (
        meta["gallery"],
        meta["listing_digest"],
    )
    if not (same_model and same_gallery and old.get("chunk_rows") == meta["chunk_rows"]):
        what = "model" if not same_model else "gallery (or chunk size)"
        raise GalleryIndexError(
            f"--out {out} holds an index of another {what}; remove it or choose another --out"
        )
    return "up to date" if old.get("status") == "complete" else "resume"


def _chunk_path(folder: Path, i: int) -> Path:
    return folder / f"{i:06d}.npy"


def _done_rows(out: Path, meta: dict[str, Any]) -> int:
    n, size = meta["count"], meta["chunk_rows"]
    chunks = out / "chunks"
    done = sum(1 for i in range(-(-n // size)) if _chunk_path(chunks, i).is_file())
    return min(n, done * size)


def _embed_chunks(
    model: Any, files: list[Path], chunks: Path, chunk_rows: int, progress: bool
) -> None:
    import pandas as pd

    from reid_core.progress import track

    chunks.mkdir(parents=True, exist_ok=True)
    todo = [i for i in range(-(-len(files) // chunk_rows)) if not _chunk_path(chunks, i).is_file()]
    steps = track(todo, description="index") if progress else iter(todo)
    for i in steps:
        part = files[i * chunk_rows : (i + 1) * chunk_rows]
        frame = pd.DataFrame(
            {"query_id": list(range(len(part))), "modality": "vis", "path": [str(p) for p in part]}
        )
        feats = features(model.predict(frame))
        with atomic_path(_chunk_path(chunks, i)) as tmp:
            np.save(tmp, feats.astype(np.float32))


def _concatenate(out: Path, n: int, chunk_rows: int) -> int:
    """Chunks -> embeddings.npy without holding all of them in memory; returns D."""
    first = np.load(_chunk_path(out / "chunks", 0), mmap_mode="r")
    dim = int(first.shape[1])
    with atomic_path(out / "embeddings.npy") as tmp:
        emb = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, dim))
        for i in range(-(-n // chunk_rows)):
            part = np.load(_chunk_path(out / "chunks", i))
            emb[i * chunk_rows : i * chunk_rows + len(part)] = part
        emb.flush()
        del emb
    return dim


# ------------------------------------------------------------------------------------ search
def exact_topk(emb: np.ndarray, q: np.ndarray, k: int, chunk: int = EXACT_CHUNK):
    """Exact inner-product top-k: `[Q, k]` rows and scores, best first (ties: lower row first).

    Each chunk of gallery rows is one matrix product; `argpartition` keeps its k best per query,
    so memory is one `[chunk, Q]` block plus `Q x k` candidates per chunk."""
    n = emb.shape[0]
    k = min(k, n)
    cand_rows, cand_scores = [], []
    for start in range(0, n, chunk):
        scores = q @ np.asarray(emb[start : start + chunk]).T  # [Q, c]
        kk = min(k, scores.shape[1])
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        cand_rows.append(part + start)
        cand_scores.append(np.take_along_axis(scores, part, axis=1))
    rows = np.concatenate(cand_rows, axis=1)
    scores = np.concatenate(cand_scores, axis=1)
    order = np.lexsort((rows, -scores), axis=1)[:, :k]  # by score, then row
    return np.take_along_axis(rows, order, axis=1), np.take_along_axis(scores, order, axis=1)


def build_faiss(emb: np.ndarray, kind: str, chunk: int = 65_536, seed: int = 0) -> Any:
    """An inner-product faiss index over `emb` (added in chunks, so a memory map stays one)."""
    import faiss

    n, d = emb.shape
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    elif kind == "ivf":
        nlist = max(1, min(int(2 * np.sqrt(n)), n // 39))  # faiss wants >= 39 points per list
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = IVF_KMEANS_ITERATIONS  # k-means dominates the build; 10 rounds suffice
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(n, size=min(n, 40 * nlist), replace=False))
        index.train(np.ascontiguousarray(emb[sample], dtype=np.float32))
        index.nprobe = min(IVF_NPROBE, nlist)
    else:
        raise ReidError(f"unknown index kind {kind!r} (choose one of {', '.join(KINDS)})")
    for start in range(0, n, chunk):
        index.add(np.ascontiguousarray(emb[start : start + chunk], dtype=np.float32))
    return index


def faiss_topk(index: Any, q: np.ndarray, k: int):
    scores, rows = index.search(np.ascontiguousarray(q, dtype=np.float32), k)
    return rows, scores
