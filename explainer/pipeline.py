"""The chain's stage functions: load → SAE decode → attribute → prune and build → persist.

Each stage reads its inputs from the artifact store, calls one of the pure libraries (`sae`, `attribution`, `hif`)
and writes its outputs back, so a stage can be re-run after a crash with the same result. `PipelineError` (and the
libraries' own input errors) are permanent: the trace fails with the message, the worker carries on.

Each stage works with the trace's `StagePlan` (`explainer.degrade`): the configs its recorded backpressure
degradation leaves it, passed in by the task, or computed from the trace when not given.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
from django.conf import settings

import attribution
import hif
import sae
from ingest.hooks import ShardsMissing, read_shards

from . import metrics, services
from .activations import decode_inline_activations
from .selectors import dictionary_catalog
from .shadow import shadow_inputs, shadow_model, verify_config
from .shards import shard_client
from .artifacts import ArtifactStore, configured_artifact_store
from .backpressure import Level
from .degrade import StagePlan, stage_plan
from .graph_documents import StoredGraph, graph_delete, graph_store
from .models import Stage, Trace
from .prompt_concepts import concepts_of, concepts_via_endpoint
from .text import sentence_windows
from .trace_data import activation_payloads, completion_of

log = logging.getLogger(__name__)


class PipelineError(Exception):
    """A problem with the trace's own data or its dictionary; retrying cannot fix it."""


@cache
def artifact_store() -> ArtifactStore:
    return configured_artifact_store()


@cache
def sae_service() -> "sae.SAEDecodeService":
    """The worker's decode service, pointed at the configured dictionary set."""
    return sae.SAEDecodeService(sae.SAEConfig.from_env(dict_root=settings.DICT_ROOT, dict_name=settings.DICT_NAME))


@cache
def attribution_config() -> "attribution.AttributionConfig":
    return attribution.AttributionConfig.from_env()


@cache
def hypergraph_config() -> "hif.HypergraphConfig":
    return hif.HypergraphConfig.from_env()


def stage_plan_of(trace: Trace) -> StagePlan:
    """The work the trace's recorded degradation leaves its stages (`explainer.degrade`); none: the configs."""
    return stage_plan(granularity=trace.granularity, actions=trace.degraded,
                      level=Level.of(trace.backpressure_level), attribution_config=attribution_config(),
                      graph_config=hypergraph_config())


# --- load ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerRows:
    """Activation rows of one layer placed at absolute positions (token_offset applied)."""

    positions: np.ndarray  # [N] int64
    rows: np.ndarray  # [N, d] float32


def _rows_of(payload: dict) -> dict[int, LayerRows]:
    offset = int(payload.get("token_offset", 0))
    if "data" in payload:
        rows = decode_inline_activations(payload)
        return {int(payload["layer"]): LayerRows(offset + np.arange(len(rows)), rows)}
    try:
        shards = read_shards(shard_client(), payload["shards"])
    except ShardsMissing as exc:
        raise PipelineError(f"activation shards expired or missing in Redis: {exc}") from None
    return {layer: LayerRows(offset + idx.astype(np.int64), rows) for layer, (idx, rows) in shards.items()}


def _stitch(layer: int, parts: list[LayerRows]) -> np.ndarray:
    """Join a layer's parts into one `[P, d]` array, refusing gaps, overlaps and mismatched widths.

    Positions must be exactly 0..P-1, checked before anything is allocated, so the array is never larger than the
    rows actually received (a huge `token_offset` cannot make it so).
    """
    widths = {p.rows.shape[1] for p in parts}
    if len(widths) != 1:
        raise PipelineError(f"layer {layer}: activation width differs between events: {sorted(widths)}")
    positions = np.concatenate([p.positions for p in parts])
    rows = np.concatenate([p.rows for p in parts])
    order = np.argsort(positions, kind="stable")
    positions = positions[order]
    if not np.array_equal(positions, np.arange(positions.size)):
        repeated = np.unique(positions[1:][positions[1:] == positions[:-1]])
        if repeated.size:
            raise PipelineError(f"layer {layer}: positions sent more than once: {repeated[:10].tolist()}")
        missing = np.setdiff1d(np.arange(min(int(positions[-1]), positions.size + 10)), positions)
        raise PipelineError(f"layer {layer}: no activations for positions {missing[:10].tolist()} "
                            f"(received {positions.size} rows, the last at position {int(positions[-1])})")
    return rows[order]


def _logit_targets(token_ids: list[int] | None, count: int) -> list[int] | None:
    """The vocabulary id the model emitted after each of `count` positions.

    A causal LM's `generate` gives one id per position plus the last generated token, which is never fed back: then
    row p's target is `token_ids[p + 1]`. With exactly one id per row the client aligned them already.
    """
    if not token_ids or len(token_ids) < count:
        return None
    return token_ids[1:count + 1] if len(token_ids) > count else token_ids


def _check_rows_match_tokens(rows: int, tokens: int, tokenized_by_service: bool) -> None:
    """Every token needs its row: one row per token, or one fewer when the last generated token was never fed back."""
    if rows > 0 and rows in (tokens, tokens - 1):
        return
    advice = ("the service split the text into words because the completion has no `tokens`: send the model's "
              "tokens" if tokenized_by_service else "activations and tokens must come from the same sequence")
    raise PipelineError(f"activations cover {rows} positions but the completion has {tokens} tokens (expected "
                        f"{tokens}, or {tokens - 1} when the last generated token was not fed back); {advice}")


def public_message(text: str) -> str:
    """A failure reason as clients may read it: server folders replaced by the setting that names them."""
    for setting in ("DICT_ROOT", "ARTIFACT_ROOT"):
        folder = Path(getattr(settings, setting))
        for spelling in {str(folder.resolve()), str(folder)}:
            text = text.replace(spelling, f"${setting}")
    return text


def load_stage(trace: Trace, store: ArtifactStore, plan: StagePlan | None = None) -> None:
    plan = plan or stage_plan_of(trace)
    completion = completion_of(trace)
    if not completion.text and not completion.tokens:
        raise PipelineError("the trace has no completion event (model output text)")
    payloads = activation_payloads(trace)
    if not payloads:
        raise PipelineError("the trace has no activations events")
    parts: dict[int, list[LayerRows]] = {}
    for payload in payloads:
        for layer, rows in _rows_of(payload).items():
            parts.setdefault(layer, []).append(rows)
    layers = {layer: _stitch(layer, parts[layer]) for layer in plan.kept_layers(list(parts))}
    positions = {a.shape[0] for a in layers.values()}
    if len(positions) != 1:
        raise PipelineError(f"layers cover different numbers of positions: "
                            f"{ {layer: a.shape[0] for layer, a in layers.items()} }")
    count = positions.pop()
    _check_rows_match_tokens(count, len(completion.tokens), completion.tokenized_by_service)
    tokens = completion.tokens[:count]
    token_ids = _logit_targets(completion.token_ids, count)
    conventions = {p["convention"] for p in payloads if p.get("convention")}
    store.save_arrays(trace.pk, "acts", {f"layer_{layer}": a for layer, a in layers.items()})
    store.save_json(trace.pk, "trace", {
        "tokens": tokens,
        "token_ids": token_ids,
        "windows": sentence_windows(tokens, count),
        "layers": sorted(layers),
        "convention": conventions.pop() if len(conventions) == 1 else None,
    })


# --- SAE decode ----------------------------------------------------------------------------------------

def _layer_arrays(arrays: dict[str, np.ndarray], prefix: str) -> dict[int, np.ndarray]:
    return {int(k.removeprefix(prefix)): v for k, v in arrays.items() if k.startswith(prefix)}


def sae_decode_stage(trace: Trace, store: ArtifactStore, service: "sae.SAEDecodeService",
                     plan: StagePlan | None = None) -> None:
    plan = plan or stage_plan_of(trace)
    topk = min(plan.topk, service.config.topk) if plan.topk else None
    info = store.load_json(trace.pk, "trace")
    acts = _layer_arrays(store.load_arrays(trace.pk, "acts"), "layer_")
    features: dict[str, np.ndarray] = {}
    dictionaries = {}
    catalog = dictionary_catalog()
    for layer, rows in sorted(acts.items()):
        if layer not in catalog.widths:
            catalog = dictionary_catalog(max_age_s=0)  # a layer installed since the last look
        if layer not in catalog.widths:
            raise PipelineError(f"layer {layer} is not in dictionary '{catalog.name}' "
                                f"(it has layers {sorted(catalog.widths)})")
        dictionary = service.dictionary(layer)
        mismatch = sae.check_convention(dictionary, info["convention"]) if info["convention"] else None
        if mismatch:
            raise PipelineError(f"layer {layer}: {mismatch}")
        result = service.decode(layer, rows, topk=topk)
        features[f"idx_{layer}"] = result.indices.astype(np.int64)
        features[f"val_{layer}"] = result.values.astype(np.float32)
        dictionaries[str(layer)] = {"folder": str(dictionary.folder), "format": dictionary.format,
                                    "architecture": dictionary.architecture, "device": result.device}
    store.save_arrays(trace.pk, "features", features)
    store.save_json(trace.pk, "dictionaries", dictionaries)


# --- attribute -----------------------------------------------------------------------------------------

def attribute_stage(trace: Trace, store: ArtifactStore, service: "sae.SAEDecodeService",
                    plan: StagePlan | None = None) -> None:
    plan = plan or stage_plan_of(trace)
    info = store.load_json(trace.pk, "trace")
    acts = _layer_arrays(store.load_arrays(trace.pk, "acts"), "layer_")
    features = store.load_arrays(trace.pk, "features")
    layers, labels, unembedding = [], {}, None
    for layer, rows in sorted(acts.items()):
        dictionary = service.dictionary(layer)
        layers.append(attribution.LayerFeatures(
            layer=layer, acts=rows, indices=features[f"idx_{layer}"], values=features[f"val_{layer}"],
            W_dec=dictionary.W_dec, b_dec=dictionary.b_dec,
        ))
        labels[layer] = _labels(Path(dictionary.folder))
        unembedding = unembedding or _unembedding_near(Path(dictionary.folder))
    windows = [tuple(w) for w in info["windows"]]
    inputs, why_not = _model_inputs(trace, layers)
    through_model = None
    if inputs is not None:
        try:
            through_model = _through_model(plan, layers, inputs, windows, labels, info["tokens"])
        except Exception as exc:  # out of memory, a model the library cannot run: the trace keeps the other reading
            log.exception("attribution through the shadow model failed for trace %s", trace.pk)
            why_not = f"attribution through the shadow model failed: {type(exc).__name__}: {exc}"
    if through_model is None:
        result = attribution.attribute(
            layers, granularity=plan.granularity, windows=windows, token_ids=info["token_ids"],
            unembedding=unembedding, config=plan.attribution, graph_config=plan.graph, labels=labels,
            tokens=info["tokens"],
        )
        graph, verification = result.graph, {"value": result.value, "shadow_model": None, "shadow_skipped": why_not}
    else:
        graph, verification = through_model
    store.save_arrays(trace.pk, "attribution", graph.to_arrays())
    services.trace_record_verification(trace_pk=trace.pk, run_id=str(trace.run_id), verification=verification)
    if through_model is not None or settings.SHADOW_ENDPOINT:
        services.trace_record_concepts(trace_pk=trace.pk, run_id=str(trace.run_id),
                                       concepts=_concepts(trace, inputs if through_model is not None else None))


def _concepts(trace: Trace, inputs: "attribution.ModelInputs | None") -> dict:
    """The prompt's concepts and their interactions (`prompt_concepts`), through the in-process shadow model when it
    explained the trace (`inputs`), else through `SHADOW_ENDPOINT`; a failure costs the trace only them."""
    completion = completion_of(trace)
    try:
        if inputs is not None:
            return concepts_of(shadow_model(), completion, np.append(inputs.input_ids, inputs.targets[-1:]))
        endpoint = attribution.EndpointModel(settings.SHADOW_ENDPOINT,
                                             model=settings.SHADOW_ENDPOINT_MODEL or completion.model,
                                             timeout_s=settings.SHADOW_ENDPOINT_TIMEOUT_S)
        return concepts_via_endpoint(endpoint, completion, mask_id=settings.SHADOW_ENDPOINT_MASK_ID)
    except Exception as exc:  # a pipeline spaCy cannot load, an endpoint that is down: the graph stands
        log.exception("concepts of trace %s failed", trace.pk)
        return {"skipped": f"concept extraction or interactions failed: {type(exc).__name__}: {exc}"}


def _model_inputs(trace: Trace, layers: list) -> tuple["attribution.ModelInputs | None", str]:
    """The shadow pass's ids when SHADOW_MODEL is set and matches the trace, else None and why the trace keeps the
    reading through the unembedding."""
    model = shadow_model()
    if model is None:
        return None, "SHADOW_MODEL is not set"
    inputs, why_not = shadow_inputs(model, completion=completion_of(trace), layers=layers)
    return inputs, why_not or ""


def _through_model(plan: StagePlan, layers: list, inputs: "attribution.ModelInputs", windows: list, labels: dict,
                   tokens: list[str]) -> tuple["hif.Graph", dict]:
    """Attribution through the shadow model, then verification of its strongest incidences by ablation."""
    model = shadow_model().model
    result = attribution.attribute_through_model(
        layers, shadow=model, inputs=inputs, granularity=plan.granularity, windows=windows,
        config=plan.attribution, graph_config=plan.graph, labels=labels, tokens=tokens,
    )
    spans = attribution.window_spans(plan.granularity, windows, layers[0].n_positions)
    checked = attribution.verify(result.graph, layers, model, inputs, spans, verify_config())
    return checked.graph, {"value": result.value, "shadow_model": model.name, "shadow_skipped": None,
                           "attribution_note": result.reason, **checked.summary}


def _file_version(path: Path) -> tuple[int, int] | None:
    """(mtime, size) of a file, or None when it is absent: a cache key that changes when the file is rewritten."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


# A dictionary's labels and the model's unembedding are read once per version of their files, not once per trace:
# parsing thousands of labels or a vocabulary-wide W_U would otherwise cost more than attributing a short answer.

@lru_cache(maxsize=64)
def _labels_version(folder: Path, version: tuple[int, int] | None) -> dict[int, str]:
    return sae.load_labels(folder)


def _labels(folder: Path) -> dict[int, str]:
    return _labels_version(folder, _file_version(folder / sae.labels.LABELS_FILE))


@lru_cache(maxsize=16)
def _unembedding_version(folder: Path, version: tuple[int, int] | None) -> "attribution.Unembedding | None":
    return attribution.load_unembedding(folder)


def _unembedding_near(layer_folder: Path) -> "attribution.Unembedding | None":
    """The model's unembedding, from the layer folder or the dictionary set's folder above it."""
    for folder in (layer_folder, layer_folder.parent):
        found = _unembedding_version(folder, _file_version(folder / attribution.unembedding.FILENAME))
        if found is not None:
            return found
    return None


# --- prune and build, persist -------------------------------------------------------------------------

def build_stage(trace: Trace, store: ArtifactStore, plan: StagePlan | None = None) -> None:
    plan = plan or stage_plan_of(trace)
    graph = hif.Graph.from_arrays(store.load_arrays(trace.pk, "attribution"))
    dictionaries = store.load_json(trace.pk, "dictionaries")
    meta = {  # created_at: build_hif stamps now (UTC)
        "model_name": trace.model_name,
        "model_hash": trace.model_hash,
        "sae_dictionary": settings.DICT_NAME if not dictionaries else
        ",".join(sorted({Path(d["folder"]).parent.name for d in dictionaries.values()})),
        "granularity": plan.granularity,
    }
    document = hif.build_hif(graph, meta, plan.graph)
    errors = hif.validate_hif(document)
    if errors:
        raise PipelineError("built graph is not valid HIF v1: " + "; ".join(errors[:5]))
    metrics.graph_built(document=document, attributed_incidences=len(graph.incidences))
    store.save_json(trace.pk, "graph", document)


def persist_stage(trace: Trace, store: ArtifactStore) -> StoredGraph:
    """Write the built document to the object store; the trace is complete only once it is there (`persist_finish`).

    An unreachable store raises `StorageUnavailable`, which the runner retries, then dead-letters.
    """
    return graph_store(trace=trace, document=store.load_json(trace.pk, "graph"))


def persist_finish(trace: Trace, store: ArtifactStore, owner: str, graph: StoredGraph, seconds: float) -> bool:
    """Record the stored document as the trace's explanation and complete the run; then drop its artifacts.

    A trace deleted while this stage ran leaves nothing behind: its document and artifacts are deleted here.
    """
    done = services.trace_complete(trace_pk=trace.pk, run_id=str(trace.run_id), owner=owner, graph=graph,
                                   timings={**trace.timings, Stage.PERSIST: round(seconds, 4)})
    if done:
        store.delete(trace.pk)
    elif not Trace.objects.filter(pk=trace.pk).exists():
        graph_delete(key=graph.key)
        store.delete(trace.pk)
    return done
