"""A task, declared once: :class:`TaskSpec`, and the registry every layer above reads.

A task is what differs between training a GPT, an encoder, a classifier, a translator
or a question answerer; everything else (the runtime, the run folder, the loop, the
checkpoints, ``load_run``, ``minillm evaluate``, the command line and the server) is
written once and reads the task's :class:`TaskSpec` from :data:`TASK_SPECS`. A spec holds:

- the model class the backend builds and its extra arguments (``model_class``,
  :attr:`TaskParts.model_kwargs`);
- ``setup``: the training batches, the validation batches, the data contract and the
  tokenizer, from the data given;
- ``score``: the validation scores of a model on batches (the loss first), and
  ``best_by``: which of them chooses the checkpoint the trainer keeps as ``best`` (the
  task's own score where it has one: a classifier's accuracy);
- ``test``: the held-out scores at the end of training, and whether they are of the best
  checkpoint (``test_best``);
- ``evaluate``: what ``minillm evaluate`` computes on a loaded run;
- the task's defaults: steps, learning rate, batch size, its departures from
  :meth:`~minillm.train.training.TrainConfig.recipe`, and its own options;
- ``endpoints``: its REST endpoints (:class:`Endpoint`; the server builds them).

:mod:`minillm.train.task_specs` declares the training layer's three tasks
(``causal_lm``, ``masked_lm``, ``classification``); :mod:`minillm.apps.translation` and
:mod:`minillm.apps.question_answering` declare theirs when imported; a test or a user
declares one with :func:`register_task` (CONTRIBUTING.md, "Add a task").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..store.runtime import Runtime
from .evaluation import evaluate_lm
from .run_config import RunConfig
from .training import TrainConfig

__all__ = ["TaskSpec", "TaskInputs", "TaskParts", "Endpoint", "Refused", "register_task", "task_spec", "TASK_SPECS",
           "LONG_INPUT"]


@dataclass(frozen=True)
class TaskInputs:
    """What a task's ``setup`` and ``test`` read: the data and tokenizer given to
    :func:`train` (``None`` where the task makes its own), the run configuration, the
    runtime, the task's options (with their defaults filled in), and how the data was made
    (``source``, ``dataset``: see :mod:`minillm.train.contract`)."""

    data: Any
    tokenizer: Any
    run_config: RunConfig
    runtime: Runtime
    options: Mapping[str, Any]
    source: str = ""
    dataset: Mapping | None = None


@dataclass(frozen=True)
class TaskParts:
    """What a task's ``setup`` returns: the training batches (``batch(step)``), the
    validation batches (``None``: no evaluation during training), the data contract, the
    tokenizer, what the run records about the task (``info``: label names, corpus; in
    ``run.json`` and every checkpoint), the model's extra arguments, ``init`` (called on
    the new model, before the runtime prepares it: a pretrained encoder's weights),
    ``held_out`` (what ``test`` scores), ``data`` (what :attr:`TrainedRun.data` holds) and
    ``objective`` (``objective(model, **batch) -> loss``, the training loss where it is not
    the model's own ``model(**batch)[1]``: DPO's, of the policy's log-probabilities)."""

    train: Any
    validation: list | None
    contract: dict
    tokenizer: Any
    info: Mapping = field(default_factory=dict)
    model_kwargs: Mapping = field(default_factory=dict)
    init: Callable[[Any], None] | None = None
    held_out: Any = None
    data: Any = None
    objective: Callable[..., Any] | None = None


@dataclass(frozen=True)
class Endpoint:
    """One REST endpoint of a task: ``POST path`` with a JSON body of ``request`` fields,
    answered by ``handler(served, body) -> dict`` with ``response`` fields.

    ``request`` and ``response`` map each field to its type (``str``, ``int``, ``float``,
    ``bool``, ``list[int]``, ``dict[str, float]``, ``Optional[...]``) or to ``(type,
    constraints)``, constraints as pydantic's ``Field`` takes them (``default``,
    ``ge``, ``le``, ``min_length``, ``description``; a value ``"limits.NAME"`` is the
    server's limit of that name); the server turns them into the schema it checks
    requests against and publishes (``/openapi.json``). ``handler`` gets the served run
    (:class:`minillm.serving.model.ServedRun`: ``runtime``, ``model``, ``tokenizer``,
    ``config``, ``label_names``, ``encode(text, max_tokens, what)``, ``lock``, ``limits``)
    and the checked body as a dict; it raises :class:`Refused` for a request that is
    well-formed but cannot be served. ``doc``: the endpoint's description."""

    path: str
    request: Mapping[str, Any]
    response: Mapping[str, Any]
    handler: Callable[[Any, dict], dict]
    doc: str = ""


# The one rule for a text longer than the model's window (README "Long input"): cut and
# said (the CLI warns on stderr, the API answers truncated_tokens) where a part still gives
# an answer; refused where every token decides it.
LONG_INPUT = ("a text longer than the model's window (block_size tokens; scoring: block_size + 1) is cut to "
              "the window and the cut is said: a prompt to continue keeps its last tokens, a text to classify "
              "or score keeps its first tokens, as training cut its texts; a sentence to translate or a "
              "context to answer from is refused (422 too_many_tokens), since a cut one changes the answer")


class Refused(ValueError):
    """A request an endpoint cannot serve: ``status`` (4xx), ``kind`` and a message."""

    def __init__(self, status: int, kind: str, message: str):
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def _no_recipe_changes(steps: int, lr: float) -> dict:
    return {}


@dataclass(frozen=True)
class TaskSpec:
    """One task, declared once (see the module's list). ``recipe(steps, lr)`` returns the
    task's departures from :meth:`TrainConfig.recipe` (e.g. no weight decay), applied
    where the caller gives no value. ``score(runtime, model, batches)`` scores validation
    batches (``{"loss": ..., ...}``); ``best_by = (name, "min" | "max")`` names the score
    that chooses ``checkpoints/best`` (ties: the lower loss; default: the lowest loss, the
    only score a language model's validation has besides perplexity, its exponential);
    ``loss_per``: what the loss is the mean over, ``"token"`` or ``"example"`` (``loss.png``'s
    axes: a perplexity axis for tokens, a validation-accuracy panel where there is one).
    ``test(inputs, parts, model, tokenizer)`` scores the
    held-out data; with ``test_best`` the model first takes the weights of
    ``checkpoints/best`` (what ``evaluate`` and ``serve`` load). ``evaluate(run,
    **data)`` scores a loaded :class:`~minillm.store.runs.Run` for ``minillm evaluate``
    (``data``: ``dataset``, ``corpus_dir``, ``split_name``, ``text_column``,
    ``label_column``, each ``None`` for the run's own); ``None``: the task has no
    ``evaluate``. ``endpoints``: its REST endpoints. ``command``: the CLI command whose
    ``--task`` offers it (``"pretrain"``: trained on token ids from ``--corpus`` /
    ``--data``); ``None``: trained from Python, or by a command of its own."""

    name: str
    model_class: str
    setup: Callable[[TaskInputs], TaskParts]
    score: Callable[[Runtime, Any, list], dict] = evaluate_lm
    best_by: tuple[str, str] = ("loss", "min")
    loss_per: str = "token"
    test: Callable[[TaskInputs, TaskParts, Any, Any], dict] | None = None
    test_best: bool = False
    steps: int = 300
    lr: float = 3e-3
    batch_size: int = 16
    recipe: Callable[[int, float], dict] = _no_recipe_changes
    options: Mapping[str, Any] = field(default_factory=dict)
    evaluate: Callable[..., dict] | None = None
    endpoints: tuple[Endpoint, ...] = ()
    command: str | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"expected a task name that is an identifier, got {self.name!r}")

    def train_config(self, steps: int | None = None, lr: float | None = None, *,
                     batch_size: int | None = None, **given) -> TrainConfig:
        """This task's default training: :meth:`TrainConfig.recipe` with the task's steps,
        learning rate, batch size and recipe changes, where ``given`` does not set them
        (a ``None`` in ``given`` is not given)."""
        steps = self.steps if steps is None else steps
        lr = self.lr if lr is None else lr
        given = {k: v for k, v in given.items() if v is not None}
        return TrainConfig.recipe(steps, lr, batch_size=self.batch_size if batch_size is None else batch_size,
                                  **{**self.recipe(steps, lr), **given})


TASK_SPECS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    """Make ``spec`` what ``train(spec.name, ...)`` runs (the last one registered wins)."""
    TASK_SPECS[spec.name] = spec
    return spec


def task_spec(task: str) -> TaskSpec:
    """The :class:`TaskSpec` registered as ``task`` (a task registers when the module that
    declares it is imported: ``minillm.apps`` registers translation and question answering)."""
    if task in TASK_SPECS:
        return TASK_SPECS[task]
    raise ValueError(f"expected a registered task {sorted(TASK_SPECS)}, got {task!r} (a task registers "
                     f"when the module that declares it is imported, e.g. minillm.apps)")
