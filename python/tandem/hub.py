# tandem.pull and tandem.hub_resolve: Hugging Face hub downloads into huggingface_hub's cache (tandem_download) and
# model references ("ORG/NAME", "ORG/NAME:QUANT") resolved in that cache without network (tandem_hub_resolve).
import ctypes
import os

from . import _lib
from ._lib import check, lib


def _opt(s):
    return None if s is None else os.fsencode(os.fspath(s)) if isinstance(s, os.PathLike) else str(s).encode("utf-8")


def pull(repo_id, file=None, *, revision=None, include=None, cache_dir=None, local_dir=None, token=None,
         endpoint=None, max_workers=0, progress=None):
    """Downloads a model from the hub as `tandem pull` does and returns its local path (str): the snapshot folder,
    or the file when file is given (a path in the repository or a quantization such as "Q4_K_M"; also written as
    repo_id "ORG/NAME:Q4_K_M"). include: fnmatch patterns (huggingface_hub's allow_patterns). Files already in the
    cache are not fetched again; an interrupted download resumes. token None: HF_TOKEN or the saved login;
    endpoint None: HF_ENDPOINT or huggingface.co; cache_dir None: HF_HUB_CACHE / HF_HOME/hub / ~/.cache/huggingface.
    progress: called with a tandem._lib.DownloadProgress (file set after each file, else None; n_files_done,
    n_files, bytes_done, bytes_total, bytes_start) a few times a second; returning True stops the download (parts
    are kept), as a streamer's True stops a generation. Errors raise TandemError with the library's message."""
    if file is None and ":" in repo_id:
        repo_id, file = repo_id.split(":", 1)
    if include is not None and file is not None:
        raise ValueError("pull: give file or include, not both")
    patterns = [p.encode("utf-8") for p in ([include] if isinstance(include, str) else include or [])]
    inc = (ctypes.c_char_p * max(len(patterns), 1))(*patterns)
    p = lib.tandem_download_default_params()
    p.repo_id = repo_id.encode("utf-8")
    p.revision, p.file, p.cache_dir, p.local_dir = _opt(revision), _opt(file), _opt(cache_dir), _opt(local_dir)
    p.token, p.endpoint = _opt(token), _opt(endpoint)
    p.include, p.n_include = inc, len(patterns)
    p.n_parallel = int(max_workers)
    failure = []

    def on_progress(ptr, user):
        try:
            return not progress(ptr.contents)
        except BaseException as e:
            failure.append(e)
            return False
    p.progress = _lib.DownloadCallback(on_progress) if progress else _lib.DownloadCallback()
    out = ctypes.POINTER(ctypes.c_char)()
    status = lib.tandem_download(ctypes.byref(p), ctypes.byref(out))
    if failure:
        raise failure[0]
    check(status)
    return _lib.take_bytes(out, len(ctypes.string_at(out))).decode("utf-8")


def hub_resolve(ref):
    """The local path of a hub reference ("ORG/NAME", "ORG/NAME:QUANT", "ORG/NAME:FILE") in the cache, without
    network; TandemError (saying to pull it) when it is not there. LLMPipeline(ref) resolves references itself."""
    out = ctypes.POINTER(ctypes.c_char)()
    check(lib.tandem_hub_resolve(ref.encode("utf-8"), ctypes.byref(out)))
    return _lib.take_bytes(out, len(ctypes.string_at(out))).decode("utf-8")
