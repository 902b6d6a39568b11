"""The lmms-eval model `explainprune`: any model family we support, its visual tokens pruned by any
scorer, behind lmms-eval's chat (`ExplainPruneChat`) and simple (`ExplainPruneSimple`) interfaces.

    lmms-eval --model explainprune --model_args pretrained=embedded,scorer=learned,keep_ratio=0.25 \\
        --tasks mmstar [--force_simple]

Model arguments: pretrained ('embedded' or a save_pretrained directory), scorer, keep_ratio,
predictor (the learned scorer's directory), device, dtype (bf16, fp16, fp32), attn_implementation,
max_new_tokens (when a task sets none), system_prompt. The batch size comes from lmms-eval's own
--batch_size. Prompts are built as `explainprune eval` builds them: one user turn with the visuals
followed by the text, the model's chat template, no system prompt unless one is given.

Generation is `Compressor.generate`. loglikelihood (multiple-choice tasks, simple interface) returns,
as lmms-eval 0.7.3 expects, the continuation's mean negative log-likelihood per token (a loss: lower
is likelier) and whether greedy decoding would produce it; the pruning is chosen from the prompt
alone, then the continuation is teacher-forced after the pruned prompt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from lmms_eval.api.instance import GenerationResult, Instance
from lmms_eval.api.model import lmms
from lmms_eval.protocol import ChatMessages
from PIL import Image
from tqdm import tqdm

from ...compressor import Compressor
from ...data.prompting import processor_inputs, user_message
from ...errors import ExplainPruneError
from ...explain.forward import teacher_forced_batch
from ...loading import load_model

DEFAULT_MAX_NEW_TOKENS = 128
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
OPTIONS = ("pretrained", "scorer", "keep_ratio", "predictor", "device", "dtype", "attn_implementation",
           "batch_size", "max_new_tokens", "system_prompt")  # fmt: skip


@dataclass
class Prompt:
    """One request as the processor takes it: chat messages with media placeholders, and the media."""

    messages: list[dict]
    images: list = field(default_factory=list)
    videos: list = field(default_factory=list)


def media_kind(visual) -> str:
    """'image' or 'video' for a visual lmms-eval hands over (PIL image, frames array, file path)."""
    if isinstance(visual, Image.Image):
        return "image"
    if isinstance(visual, (str, Path)):
        return "image" if str(visual).lower().endswith(IMAGE_SUFFIXES) else "video"
    if hasattr(visual, "ndim"):  # numpy / torch: (H, W, C) image or (T, H, W, C) frames
        return "video" if visual.ndim == 4 else "image"
    if isinstance(visual, (list, tuple)) and visual and all(isinstance(frame, Image.Image) for frame in visual):
        return "video"
    raise ExplainPruneError(f"unsupported visual of type {type(visual).__name__}: expected an image, a video path or frames")


def load_visual(visual, kind: str):
    """Image paths are opened; everything else goes to the processor as it is."""
    if kind == "image" and isinstance(visual, (str, Path)):
        return Image.open(visual)
    return visual


def prompt_from_visuals(text: str, visuals) -> Prompt:
    """The simple interface: the visuals in order, then the text, in one user turn."""
    visuals = [v for v in (visuals or []) if v is not None]
    kinds = tuple(media_kind(v) for v in visuals)
    prompt = Prompt(user_message(text, kinds))
    for visual, kind in zip(visuals, kinds):
        (prompt.images if kind == "image" else prompt.videos).append(load_visual(visual, kind))
    return prompt


def prompt_from_messages(messages: list[dict]) -> Prompt:
    """The chat interface: lmms-eval's messages (protocol.ChatMessages) with media placeholders."""
    prompt = Prompt([])
    for message in ChatMessages(messages=messages).messages:
        content = []
        for part in message.content:
            if part.type == "text":
                content.append({"type": "text", "text": part.text})
            elif part.type in ("image", "video"):
                kind = media_kind(part.url) if part.type == "image" else "video"
                content.append({"type": kind})
                (prompt.images if kind == "image" else prompt.videos).append(load_visual(part.url, kind))
            else:
                raise ExplainPruneError(f"{part.type} inputs are not supported: explainprune prunes images and videos")
        prompt.messages.append({"role": message.role, "content": content})
    return prompt


def truncate_at(text: str, stops) -> str:
    """`text` up to the first of the stop strings (lmms-eval's `until`)."""
    for stop in [stops] if isinstance(stops, str) else stops or []:
        if stop:
            text = text.split(stop, 1)[0]
    return text


def generate_options(gen_kwargs: dict, default_max_new_tokens: int) -> dict:
    """transformers generate() options from a task's generation_kwargs (greedy unless temperature > 0)."""
    options = {"max_new_tokens": int(gen_kwargs.get("max_new_tokens") or default_max_new_tokens)}
    temperature = float(gen_kwargs.get("temperature") or 0.0)
    if gen_kwargs.get("do_sample") or temperature > 0:
        options.update(do_sample=True, temperature=temperature or 1.0)
        if gen_kwargs.get("top_p") is not None:
            options["top_p"] = float(gen_kwargs["top_p"])
    else:
        options["do_sample"] = False
    if int(gen_kwargs.get("num_beams") or 1) != 1:
        options["num_beams"] = int(gen_kwargs["num_beams"])
    return options


def continuation_nll(token_logits: torch.Tensor, answers: torch.Tensor, answer_mask: torch.Tensor):
    """(mean NLL per continuation token, whether greedy decoding yields it) per sample, from the
    (B, T, vocab) logits predicting each of the (B, T) continuation tokens."""
    log_probs = torch.log_softmax(token_logits.float(), dim=-1).gather(-1, answers[..., None])[..., 0]
    mask = answer_mask.to(log_probs.dtype)
    nll = -(log_probs * mask).sum(1) / mask.sum(1)
    greedy = ((token_logits.argmax(-1) == answers) | ~answer_mask).all(1)
    return nll.tolist(), greedy.tolist()


class ExplainPruneModel(lmms):
    """Shared by both interfaces: loading, batching, generation and loglikelihood."""

    def __init__(
        self,
        pretrained: str = "embedded",
        scorer: str = "learned",
        keep_ratio: float = 1.0,
        predictor: str | None = None,
        device: str | None = None,
        dtype: str = "fp32",
        attn_implementation: str | None = None,
        batch_size: int | str = 1,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        system_prompt: str | None = None,
        **unknown,
    ) -> None:
        super().__init__()
        if unknown:
            raise ExplainPruneError(
                f"--model_args {', '.join(sorted(unknown))}: not an option of the explainprune model; "
                f"it takes: {', '.join(OPTIONS)} (the batch size comes from --batch_size)"
            )
        model, processor = load_model(str(pretrained), device, dtype, attn_implementation)
        self._setup(model, processor, scorer, keep_ratio, predictor, batch_size, max_new_tokens, system_prompt)

    @classmethod
    def around(cls, model, processor, scorer="learned", keep_ratio=1.0, predictor=None, batch_size=1,
               max_new_tokens=DEFAULT_MAX_NEW_TOKENS, system_prompt=None, **scorer_options):  # fmt: skip
        """A wrapper around an already loaded model (`scorer_options` go to the scorer, e.g. fastv's
        layer): lmms-eval's `clean()` strips a wrapper's modules after each evaluation, so a sweep
        makes a fresh one per run."""
        wrapper = cls.__new__(cls)
        lmms.__init__(wrapper)
        wrapper._setup(model, processor, scorer, keep_ratio, predictor, batch_size, max_new_tokens, system_prompt, scorer_options)
        return wrapper

    def _setup(self, model, processor, scorer, keep_ratio, predictor, batch_size, max_new_tokens, system_prompt, scorer_options=None):
        options = {"predictor": predictor} if predictor else {}
        options |= scorer_options or {}
        self._model = model
        self.processor = processor
        self.compressor = Compressor(model, processor, scorer=scorer, keep_ratio=float(keep_ratio), **options)
        self.batch_size_per_gpu = int(batch_size)
        self.max_new_tokens = int(max_new_tokens)
        if self.batch_size_per_gpu < 1 or self.max_new_tokens < 1:
            raise ExplainPruneError(f"batch_size and max_new_tokens must be >= 1, got {batch_size} and {max_new_tokens}")
        self.system_prompt = self._resolve_system_prompt(system_prompt) if system_prompt else None

    @property
    def model(self):
        return self.compressor.model

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def batch_size(self) -> int:
        return self.batch_size_per_gpu

    # -- requests -----------------------------------------------------------------------------
    def _doc(self, doc_id, task, split):
        return self.task_dict[task][split][doc_id]

    def _generation_prompt(self, arguments) -> tuple[Prompt, dict]:
        raise NotImplementedError

    def _texts(self, prompts: list[Prompt]) -> list[str]:
        texts = []
        for prompt in prompts:
            messages = prompt.messages
            if self.system_prompt:
                messages = self._apply_system_prompt([dict(m) for m in messages], self.system_prompt)
            texts.append(self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
        return texts

    def _inputs(self, prompts: list[Prompt]):
        images = [image for prompt in prompts for image in prompt.images]
        videos = [video for prompt in prompts for video in prompt.videos]
        return processor_inputs(self.processor, self._texts(prompts), images, videos, device=self.device)

    def _batches(self, keys: list[str]):
        """Batches of request indices, in request order, each of requests with equal keys."""
        groups: dict[str, list[int]] = {}
        for index, key in enumerate(keys):
            groups.setdefault(key, []).append(index)
        for indices in groups.values():
            for start in range(0, len(indices), self.batch_size):
                yield indices[start : start + self.batch_size]

    @torch.no_grad()
    def generate_until(self, requests: list[Instance]) -> list[str]:
        prompts = [self._generation_prompt(request.args) for request in requests]
        answers: list[str] = [""] * len(requests)
        keys = [json.dumps(gen_kwargs, sort_keys=True, default=str) for _, gen_kwargs in prompts]
        with tqdm(total=len(requests), desc=f"explainprune {self.compressor.scorer.name} keep {self.compressor.keep_ratio:g}") as bar:
            for batch in self._batches(keys):
                gen_kwargs = prompts[batch[0]][1]
                inputs = self._inputs([prompts[i][0] for i in batch])
                output = self.compressor.generate(**inputs, **generate_options(gen_kwargs, self.max_new_tokens))
                texts = self.processor.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
                for i, text in zip(batch, texts):
                    answers[i] = truncate_at(text, gen_kwargs.get("until"))
                    self.cache_hook.add_partial("generate_until", (requests[i].args[0], gen_kwargs), answers[i])
                bar.update(len(batch))
        return answers

    def generate_until_multi_round(self, requests):
        raise NotImplementedError("the explainprune model answers single-round tasks (generate_until, loglikelihood)")

    @torch.no_grad()
    def loglikelihood(self, requests: list[Instance]) -> list[GenerationResult]:
        results: list[GenerationResult | None] = [None] * len(requests)
        with tqdm(total=len(requests), desc="explainprune loglikelihood") as bar:
            for batch in self._batches([""] * len(requests)):
                prompts, continuations = [], []
                for i in batch:
                    context, target, doc_to_visual, doc_id, task, split = requests[i].args
                    doc = self._doc(doc_id, task, split)
                    prompts.append(prompt_from_visuals(context, doc_to_visual(doc)))
                    continuations.append(target if isinstance(target, str) else target(doc))
                nll, greedy = self.continuation_scores(prompts, continuations)
                for i, value, is_greedy in zip(batch, nll, greedy):
                    # lmms-eval 0.7.3 turns a bare (float, bool) tuple into a string; GenerationResult passes it through
                    results[i] = GenerationResult(text=(value, is_greedy))
                bar.update(len(batch))
        return results

    def continuation_scores(self, prompts: list[Prompt], continuations: list) -> tuple[list[float], list[bool]]:
        """Per prompt: the mean NLL of its continuation (the assistant's reply, leading whitespace
        dropped) after the pruned prompt, and whether greedy decoding would produce it."""
        tokenizer = self.processor.tokenizer
        answers = []
        for continuation in continuations:
            text = str(continuation[0] if isinstance(continuation, (list, tuple)) else continuation).lstrip()
            ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids[0]
            if ids.numel() == 0:
                raise ExplainPruneError(f"loglikelihood of an empty continuation ({continuation!r})")
            answers.append(ids)
        encoded = self.compressor.encode(**self._inputs(prompts))
        adapter = self.compressor.adapter
        if self.compressor.input_stage:
            batch = teacher_forced_batch(adapter, self.compressor.prepare_encoded(encoded), answers)
            rows, row_index = torch.unique(batch.query_rows, return_inverse=True)
            logits = self.model(
                inputs_embeds=batch.inputs_embeds,
                attention_mask=batch.attention_mask,
                position_ids=batch.position_ids,
                use_cache=False,
                logits_to_keep=rows,
            ).logits
            samples = torch.arange(len(answers), device=logits.device)[:, None]
            return continuation_nll(logits[samples, row_index.to(logits.device)], batch.answers, batch.answer_mask)
        # in-LLM pruners: the prefill's next-token logits, then one cached decoding step per continuation token
        pruner, width = self.compressor.scorer, max(a.numel() for a in answers)
        padded = torch.nn.utils.rnn.pad_sequence(answers, batch_first=True).to(self.device)
        mask = torch.arange(width, device=self.device)[None, :] < torch.tensor([a.numel() for a in answers], device=self.device)[:, None]
        state = pruner.prefill(adapter, encoded, self.compressor.keep_ratio)
        step_logits = [state.logits]
        for t in range(width - 1):
            pruner.decode_step(adapter, state, padded[:, t])
            step_logits.append(state.logits)
        return continuation_nll(torch.stack(step_logits, dim=1), padded, mask)


class ExplainPruneSimple(ExplainPruneModel):
    """Simple interface: `doc_to_visual` + the prompt text; generate_until and loglikelihood."""

    is_simple = True

    def _generation_prompt(self, arguments) -> tuple[Prompt, dict]:
        context, gen_kwargs, doc_to_visual, doc_id, task, split = arguments
        return prompt_from_visuals(context, doc_to_visual(self._doc(doc_id, task, split))), gen_kwargs


class ExplainPruneChat(ExplainPruneModel):
    """Chat interface: the task's `doc_to_messages`; generate_until."""

    is_simple = False

    def _generation_prompt(self, arguments) -> tuple[Prompt, dict]:
        _, doc_to_messages, gen_kwargs, doc_id, task, split = arguments
        return prompt_from_messages(doc_to_messages(self._doc(doc_id, task, split))), gen_kwargs
